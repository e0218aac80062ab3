"""Atomic checkpoints that resume exactly: model, optimizer, scheduler, every RNG, step and trainer state.

A checkpoint is written into a temporary folder beside its final place, flushed to disk, then renamed into
place (a rename is atomic on POSIX), and the `latest` pointer is replaced the same way. A run killed at any
moment leaves either the previous checkpoint or the new one, never half of one.

Layout of `RUN_DIR/checkpoints/step-00000042/`: `model/` (Hugging Face `save_pretrained` when the model has it,
so the folder loads with `from_pretrained`; a LoRA model saves its adapters only; else `model.pt`),
`training_state.pt` (optimizer, scheduler, RNG states: this process's, or one per rank of a data-parallel run),
`trainer_state.json` (step, data position, curriculum/buffer state — anything JSON). A fully sharded run writes
the same layout, its optimizer state keyed by parameter name: sharded and unsharded runs resume from each other's.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reflectgym.trainers.sharding import is_sharded, load_full_model_state, load_optimizer_state

LATEST = "latest"


def capture_rng_state() -> dict[str, Any]:
    """Every generator a training step may draw from."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of `capture_rng_state`. CUDA states are restored for the GPUs visible here: a run saved with more
    of them visible (another `torchrun` size, `CUDA_VISIBLE_DEVICES`) holds states of GPUs this process has not."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"])[: torch.cuda.device_count()])


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_text_atomic(path: Path, text: str) -> None:
    """Writes `text` to `path` through a temporary file and a rename."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _save_model(model: torch.nn.Module, folder: Path, state: Mapping[str, torch.Tensor] | None) -> None:
    """`state`: the whole weights of a sharded model (else its own state dict)."""
    save_pretrained = getattr(model, "save_pretrained", None)
    if callable(save_pretrained):
        save_pretrained(folder, state_dict=dict(state) if state is not None else None, safe_serialization=True)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(dict(state) if state is not None else model.state_dict(), folder / "model.pt")


def _saved_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The whole weights `_save_model` wrote into `folder` (`model.pt`, else safetensors files), on the CPU."""
    if (folder / "model.pt").exists():
        return torch.load(folder / "model.pt", map_location="cpu", weights_only=True, mmap=True)
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    )
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(load_file(folder / name, device="cpu"))
    return state


def _load_model(model: torch.nn.Module, folder: Path) -> None:
    if (folder / "adapter_model.safetensors").exists():  # a peft model saves (and restores) its adapters only
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(folder / "adapter_model.safetensors", device="cpu"))
        return
    state = _saved_weights(folder)
    if is_sharded(model):
        missing, unexpected = load_full_model_state(model, state)
    else:
        missing, unexpected = model.load_state_dict(state, strict=False)
    # save_pretrained drops weights tied to others (e.g. lm_head tied to the embeddings); re-tie them
    tie_weights = getattr(model, "tie_weights", None)
    if callable(tie_weights):
        tie_weights()
    tied = {key for key in missing if key.endswith("lm_head.weight")}
    if set(missing) - tied or unexpected:
        raise RuntimeError(
            f"checkpoint {folder} does not fit the model: missing {sorted(set(missing) - tied)}, "
            f"unexpected {sorted(unexpected)}"
        )


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None = None,
    trainer_state: Mapping[str, Any] | None = None,
    keep: int = 2,
    rng_states: Sequence[Mapping[str, Any]] | None = None,
    model_state: Mapping[str, torch.Tensor] | None = None,
    optimizer_state: Mapping[str, Any] | None = None,
) -> Path:
    """Writes checkpoint `step` atomically, points `latest` at it, and keeps the newest `keep` checkpoints.

    `rng_states`: every rank's `capture_rng_state()`, in rank order, from a data-parallel run (default: this
    process's alone). `model_state`, `optimizer_state`: a sharded model's whole weights and optimiser state
    (`reflectgym.trainers.sharding`), written in place of `model`'s and `optimizer`'s own."""
    rng = list(rng_states) if rng_states else [capture_rng_state()]
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    temporary = root / f".tmp-step-{step:08d}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    _save_model(model, temporary / "model", model_state)
    torch.save(
        {
            "optimizer": dict(optimizer_state) if optimizer_state is not None else optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": rng[0],
            "rng_per_rank": rng,
        },
        temporary / "training_state.pt",
    )
    (temporary / "trainer_state.json").write_text(json.dumps({"step": step, **dict(trainer_state or {})}, indent=2))
    _fsync_tree(temporary)
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    write_text_atomic(root / LATEST, final.name)
    others = [old for old in sorted(root.glob("step-*")) if old != final]  # the one just written always stays
    for old in others[: max(len(others) - keep + 1, 0)] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / LATEST
    if not pointer.exists():
        return None
    candidate = root / pointer.read_text().strip()
    return candidate if (candidate / "trainer_state.json").exists() else None


class CheckpointError(ValueError):
    """A run folder whose checkpoints cannot serve as asked: a resume without its checkpoint, or a fresh run
    beside an earlier run's checkpoints."""


def saved_checkpoints(run_dir: str | Path) -> list[Path]:
    """The checkpoint folders of a run, oldest first (complete or not)."""
    root = Path(run_dir) / "checkpoints"
    return sorted(path for path in root.glob("step-*") if path.is_dir()) if root.is_dir() else []


def resume_checkpoint(run_dir: str | Path) -> Path | None:
    """The checkpoint a resumed run continues from (the one `latest` names), None when the run has none yet.

    Raises:
        CheckpointError: If `latest` names a missing or incomplete checkpoint, or checkpoints lie there without
            a `latest` pointer: resuming from anything else would silently restart or mix runs."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / LATEST
    found = ", ".join(path.name for path in saved_checkpoints(run_dir)) or "none"
    if not pointer.is_file():
        if found != "none":
            raise CheckpointError(f"cannot resume: {root} has no `latest` pointer (checkpoints there: {found})")
        return None
    name = pointer.read_text(encoding="utf-8").strip()
    candidate = root / name
    if not (candidate / "trainer_state.json").is_file():
        raise CheckpointError(
            f"cannot resume: {pointer} names {name!r}, which is missing or incomplete (checkpoints there: "
            f"{found}); point `latest` at one of them, or start over with overwrite_output_dir: true"
        )
    return candidate


def clear_checkpoints(run_dir: str | Path) -> list[Path]:
    """Deletes a run's checkpoints (the whole `checkpoints/` folder); returns the checkpoint folders it held."""
    removed = saved_checkpoints(run_dir)
    shutil.rmtree(Path(run_dir) / "checkpoints", ignore_errors=True)
    return removed


def load_checkpoint(
    checkpoint: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    restore_rng: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> dict[str, Any]:
    """Loads a checkpoint into live objects and returns its trainer state (with `step`).

    Restores rank `rank`'s generators when the checkpoint holds one state per rank of a `world_size`-rank run,
    else the first rank's (a checkpoint of another world size, or of one process)."""
    folder = Path(checkpoint)
    _load_model(model, folder / "model")
    training = torch.load(folder / "training_state.pt", map_location="cpu", weights_only=False, mmap=True)
    if optimizer is not None:
        load_optimizer_state(model, optimizer, training["optimizer"])
    if scheduler is not None and training["scheduler"] is not None:
        scheduler.load_state_dict(training["scheduler"])
    if restore_rng:
        per_rank = training.get("rng_per_rank") or [training["rng"]]
        restore_rng_state(per_rank[rank] if len(per_rank) == world_size else per_rank[0])
    return json.loads((folder / "trainer_state.json").read_text())
