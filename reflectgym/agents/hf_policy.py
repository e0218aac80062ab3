"""`HFPolicy`: a transformers causal LM as a policy, on CPU or GPU, with sampled ids and log-probs.

Loads a local checkpoint folder, a hub name (for users with a network), or a `.gguf` file (converted once and
cached, see `reflectgym.agents.gguf`). Log-probs are of the model's distribution at the sampling temperature, before
top-p (`Sampling.logprob_temperature`: 1 when greedy): the distribution a trainer's update scores the replies under
(as TRL and verl divide the logits by the sampling temperature), and what vLLM reports (`VLLMPolicy`). Sampling applies
`Sampling`'s temperature and top-p and nothing else: a checkpoint's own generation settings (`repetition_penalty`,
`min_p`, `no_repeat_ngram_size`, beams...) are not used, or the samples would not come from the distribution whose
log-probs are reported (see `_sampling_alone`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflectgym.agents.chat import ChatFormat
from reflectgym.agents.policy import (
    Conversation,
    FinishReason,
    Generation,
    Sampling,
    check_conversations,
    derive_seed,
)

DTYPES = ("float32", "bfloat16", "float16")
"""The weight precisions `HFPolicyConfig.dtype` names."""


@dataclass(frozen=True)
class HFPolicyConfig:
    """How to load and run a transformers model."""

    device: str | None = None
    """`"cpu"`, `"cuda"`, `"cuda:1"`...; default: CUDA when available, else CPU."""
    dtype: str | None = None
    """`"float32"`, `"bfloat16"`, `"float16"`; default: bfloat16 on a GPU that computes in it natively (compute
    capability 8.0 on: A100, H100...), float16 on older GPUs (V100, T4: torch emulates bfloat16 there, several times
    slower), float32 on CPU."""
    batch_size: int = 16
    """Prompts per forward batch (longer request lists are split)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {self.batch_size}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(
                f"dtype must be one of {', '.join(DTYPES)} (or None for the device's default); got {self.dtype!r}"
            )


class HFPolicy:
    """A transformers model and tokenizer as a `TokenPolicy`.

    Args:
        model: A causal LM (`AutoModelForCausalLM`); a trainer may pass the model it is training.
        tokenizer: Its tokenizer, with a chat template.
        config: Device and batching.
        name: A label for reports.
        source: What the model was loaded from, for run records (`from_pretrained` sets it).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: HFPolicyConfig | None = None,
        name: str = "hf",
        source: str | None = None,
    ) -> None:

        self.config = config or HFPolicyConfig()
        self.name = name
        self.source = source
        """What the model was loaded from (a folder, hub name or .gguf file), for run records; None if unknown."""
        self.model = model
        self._tokenizer = tokenizer
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.device = resolve_device(self.config.device)
        self.model.to(self.device)
        self.model.eval()
        self.chat = ChatFormat(tokenizer)
        self._stop_ids = _stop_token_ids(model, tokenizer)

    @classmethod
    def from_pretrained(
        cls, source: str | os.PathLike[str], config: HFPolicyConfig | None = None, name: str | None = None
    ) -> HFPolicy:
        """Loads a checkpoint folder, a hub name, or a `.gguf` file (converted once to a cached folder)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        config = config or HFPolicyConfig()
        path = checkpoint_folder(source)
        dtype = getattr(torch, config.dtype) if config.dtype else default_dtype(resolve_device(config.device))
        where = str(path) if path is not None else str(source)
        try:
            tokenizer = AutoTokenizer.from_pretrained(where)
            model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype)
        except OSError as error:
            if path is not None:
                raise
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise FileNotFoundError(
                f"no checkpoint at {source}: no such local folder, and the hub could not give it ({first})"
            ) from error
        return cls(model, tokenizer, config, name=name or f"hf:{Path(where).name}", source=os.fspath(source))

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer."""
        return self._tokenizer

    @property
    def max_context_tokens(self) -> int | None:
        """The longest context the model has positions for (its config's `max_position_embeddings`), or None;
        the rollout engine's default context limit."""
        settings = getattr(self.model, "config", None)
        for name in ("max_position_embeddings", "n_positions"):
            value = getattr(settings, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return None

    def generate(self, conversations: Sequence[Conversation], sampling: Sampling) -> list[Generation]:
        """Renders each conversation through the chat template and generates."""
        conversations = check_conversations(conversations)
        return self.generate_ids([self.chat.prompt_ids(conversation) for conversation in conversations], sampling)

    def generate_ids(self, prompts: Sequence[Sequence[int]], sampling: Sampling) -> list[Generation]:
        """Continues each token-id prompt; returns the sampled ids with their log-probs. A seeded call seeds torch
        once from its requests' seeds (`Sampling.request_seed`): the rows of a batch share one generator, so a
        row's sample depends on its batch, but the same batch gives the same samples and episodes of a group
        played one at a time do not repeat one sample."""
        import torch

        seed = _batch_seed(sampling, len(prompts))
        if seed is not None:
            torch.manual_seed(seed)
        out: list[Generation] = []
        size = self.config.batch_size
        for start in range(0, len(prompts), size):
            out.extend(self._generate_batch(prompts[start : start + size], sampling))
        return out

    def update_weights(self, weights: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """Loads new weights (a state dict or `(name, tensor)` pairs) in place, e.g. from a trainer."""
        import torch

        named = dict(weights.items() if isinstance(weights, Mapping) else weights)
        params = dict(self.model.named_parameters())
        missing = [name for name in named if name not in params]
        if missing:
            raise KeyError(f"no parameter named {missing[0]!r} in the model ({len(missing)} unknown names)")
        with torch.no_grad():
            for name, tensor in named.items():
                params[name].copy_(tensor.to(params[name].device, params[name].dtype))

    def _generate_batch(self, prompts: Sequence[Sequence[int]], sampling: Sampling) -> list[Generation]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        if any(len(prompt) == 0 for prompt in prompts):
            raise ValueError("every prompt needs at least one token")
        pad = int(self._tokenizer.pad_token_id)
        width = max(len(prompt) for prompt in prompts)
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # left padding: every row ends where generation starts
            input_ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            attention[row, width - len(prompt) :] = 1
        options: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "eos_token_id": list(self._stop_ids),
            "pad_token_id": pad,
            "do_sample": not sampling.greedy,
        }
        if not sampling.greedy:  # top_k=0: no top-k cut, whatever the model's own generation config says
            options.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.stop:
            options["stop_strings"] = list(sampling.stop)
        recorder = _SampledLogprobs(width, sampling.logprob_temperature)
        # synced_gpus=False: transformers would otherwise sync every token step of a sharded (FSDP) model across the
        # ranks, which sample different numbers of replies; a trainer gathers such a model's weights whole first
        with torch.inference_mode(), _sampling_alone(self.model):
            sequences = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                generation_config=GenerationConfig(**options),
                logits_processor=LogitsProcessorList([recorder]),
                tokenizer=self._tokenizer if sampling.stop else None,
                synced_gpus=False,
            )
            logprobs = recorder.finish(sequences).cpu()  # (B, N)
        new = sequences[:, width:].cpu()  # (B, N)
        return [
            self._one(new[row].tolist(), logprobs[row].tolist(), len(prompts[row]), sampling)
            for row in range(len(prompts))
        ]

    def _one(self, ids: list[int], logprobs: list[float], prompt_tokens: int, sampling: Sampling) -> Generation:
        end, reason = _reply_end(ids, self._stop_ids, sampling, self._tokenizer)
        ids, logprobs = ids[:end], logprobs[:end]
        text = self._tokenizer.decode(ids, skip_special_tokens=True)
        return Generation(text, tuple(ids), tuple(logprobs), reason, prompt_tokens)


class _SampledLogprobs:
    """A logits processor that keeps the log-prob of each sampled token at `temperature` as generation goes, holding
    one step's distribution at a time. (transformers' `output_logits` keeps every step's full-vocabulary logits in
    float32: batch x new tokens x vocabulary, 10 GB for 16 replies of 1,024 tokens on a 150k vocabulary, and taking
    the log-softmax of their stack held three such copies.) It must see the raw logits, so it runs first: the model's
    own generation settings, whose processors would run before it, are set aside (`_sampling_alone`); temperature
    and top-p come after every processor passed in."""

    def __init__(self, prompt_width: int, temperature: float = 1.0) -> None:
        self.prompt_width = prompt_width
        self.temperature = temperature
        self.previous: Any = None  # (B, V) log-softmax of the step before, until its token is known
        self.taken: list[Any] = []  # (B,) per generated token

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if input_ids.shape[1] > self.prompt_width:  # the last id was sampled from the previous step's distribution
            self._take(input_ids[:, -1])
        scaled = scores.float() if self.temperature == 1.0 else scores.float() / self.temperature
        self.previous = torch.log_softmax(scaled, dim=-1)
        return scores

    def finish(self, sequences: Any) -> Any:
        """(B, N) log-probs of the N generated tokens of `sequences` (which include the prompt)."""
        import torch

        generated = sequences.shape[1] - self.prompt_width
        if len(self.taken) < generated:  # the last token, sampled after the processor's last call
            self._take(sequences[:, -1])
        if len(self.taken) != generated:
            raise RuntimeError(f"recorded {len(self.taken)} log-probs for {generated} generated tokens")
        if not self.taken:
            return torch.zeros((sequences.shape[0], 0), dtype=torch.float32, device=sequences.device)
        return torch.stack(self.taken, dim=1)

    def _take(self, tokens: Any) -> None:
        self.taken.append(self.previous.gather(-1, tokens.to(self.previous.device).unsqueeze(-1)).squeeze(-1))
        self.previous = None


def _batch_seed(sampling: Sampling, count: int) -> int | None:
    """One seed for a batch: its only request's seed, else one derived from all of them; None when unseeded."""
    seeds = [sampling.request_seed(position) for position in range(count)]
    if not seeds or any(seed is None for seed in seeds):
        return None
    return seeds[0] if len(seeds) == 1 else derive_seed(*(seed for seed in seeds if seed is not None))


def resolve_device(name: str | None) -> Any:
    """The `torch.device` named (default: CUDA when available, else CPU); a device this machine lacks is a
    `ValueError` in one line."""
    import torch

    cuda_available = torch.cuda.is_available()
    try:
        device = torch.device(name or ("cuda" if cuda_available else "cpu"))
    except RuntimeError as error:
        raise ValueError(f"unknown device {name!r}: use cpu, cuda or cuda:N") from error
    if device.type == "cuda" and not cuda_available:
        why = "this torch is a CPU-only build" if torch.version.cuda is None else "no GPU is visible"
        raise ValueError(f"device {name!r} asked for, but {why}: use cpu (--device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    return device


def native_bf16(device: Any) -> bool:
    """Whether the CUDA `device` computes in bfloat16 natively (compute capability 8.0 on; ROCm GPUs do). On older
    GPUs (V100, T4) torch emulates it, several times slower than float16 or float32."""
    import torch

    with torch.cuda.device(device):  # (`is_bf16_supported` asks about the current device)
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))


def default_dtype(device: Any) -> Any:
    """The weights' dtype when the config names none: bfloat16 on a GPU that computes in it natively, float16 on
    an older GPU, float32 on CPU."""
    import torch

    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if native_bf16(device) else torch.float16


def silence_library_bars() -> None:
    """Turns off transformers' own progress bars (loading and writing weights) for this process: what a quiet run
    (`progress: false`, `eval --quiet`) asks for beside its own bars."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # (an openai: policy needs no transformers)
        return
    transformers_logging.disable_progress_bar()


def looks_local(source: str | os.PathLike[str]) -> bool:
    """Whether `source` names a local path rather than a hub name: it exists, starts with ./ ../ / or ~, has more
    parts than a hub's `namespace/name`, or its first part is a folder here that holds models or training runs
    (`runs/typo`: a mistyped run, not a hub repo to wait for offline; a folder `openai/` of other things leaves
    `openai/gpt-oss-20b` a hub name)."""
    text = os.fspath(source)
    prefixes = ("./", "../", "/", "~", ".\\", "..\\")
    parts = Path(text).parts
    return (
        Path(text).expanduser().exists()
        or text.startswith(prefixes)
        or len(parts) > 2
        or (len(parts) == 2 and _holds_models(Path(parts[0])))
    )


def _holds_models(folder: Path, look_at: int = 64) -> bool:
    """Whether `folder` holds a model or a training run among its first `look_at` entries."""
    if not folder.is_dir():
        return False
    for entry in itertools.islice(folder.iterdir(), look_at):
        if entry.suffix == ".gguf" or (entry / "config.json").is_file() or _is_training_run(entry):
            return True
    return False


def checkpoint_folder(source: str | os.PathLike[str]) -> Path | None:
    """The checkpoint folder transformers (or vLLM) loads for `source`: the folder itself, or the one a `.gguf` file
    (or a folder holding only one) is converted to once; None for a hub name. A local path that holds no checkpoint
    is a `FileNotFoundError` saying so."""
    from reflectgym.agents.gguf import convert_gguf

    path = checkpoint_path(source)
    if path is None or (path.is_dir() and (path / "config.json").is_file()):
        return path
    if path.suffix == ".gguf":
        return convert_gguf(path)
    ggufs = sorted(path.glob("*.gguf"))
    if not ggufs:
        raise FileNotFoundError(
            f"no checkpoint at {path}: it holds neither a checkpoint (config.json) nor a .gguf file"
        )
    return convert_gguf(ggufs[0])


def checkpoint_path(source: str | os.PathLike[str]) -> Path | None:
    """The local folder or .gguf file `source` names, None for a hub name; a local path that holds no
    checkpoint is a `FileNotFoundError` saying what to load instead."""
    if not looks_local(source) and not os.fspath(source).endswith(".gguf"):
        return None
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {source}: no such file or folder")
    if path.is_dir() and _is_training_run(path):
        if (path / "model" / "config.json").is_file():
            raise FileNotFoundError(f"no checkpoint at {source}: it is a training run; its model is {path / 'model'}")
        raise FileNotFoundError(
            f"no checkpoint at {source}: it is a training run without a final model yet; load one of its "
            f"checkpoints ({path / 'checkpoints' / 'step-N' / 'model'}) or resume the run"
        )
    return path


def _is_training_run(path: Path) -> bool:
    """A `reflectgym train` output folder: metrics and checkpoints, the model under `model/`."""
    return (path / "metrics.jsonl").is_file() or (path / "checkpoints").is_dir()


@contextlib.contextmanager
def _sampling_alone(model: Any) -> Iterator[None]:
    """While generating, the model's generation config holds its special tokens only. transformers fills every option
    a call leaves unset from it, so a checkpoint's `repetition_penalty`, `min_p`, `no_repeat_ngram_size`, bad words
    or beams would change what is sampled, while the log-probs reported (a trainer's old policy) stay the model's at the
    sampling temperature:
    the rollouts would be silently off-policy. (A `peft` model generates through its base model's config.)"""
    from transformers import GenerationConfig

    owner = model.get_base_model() if hasattr(model, "get_base_model") else model
    saved = getattr(owner, "generation_config", None)
    if saved is None:
        yield
        return
    tokens = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
    owner.generation_config = GenerationConfig(**{name: getattr(saved, name, None) for name in tokens})
    try:
        yield
    finally:
        owner.generation_config = saved


def _stop_token_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    """Ids that end a reply: the tokenizer's eos and the model's generation-config eos (ids or a list)."""
    ids: list[int] = []
    for value in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None and int(item) not in ids:
                ids.append(int(item))
    if not ids:
        raise ValueError("the tokenizer has no eos token; set tokenizer.eos_token")
    return tuple(ids)


def _reply_end(ids: list[int], stop_ids: Sequence[int], sampling: Sampling, tokenizer: Any) -> tuple[int, FinishReason]:
    """Where the reply ends in a padded row and why: at its first stop token (included) or, sooner, at the token
    that completes a stop string. The stop string is looked for first: a row that generation ended on one is
    filled with the pad token, which is the eos (a stop token) for tokenizers without a pad token of their own,
    and that fill was never sampled."""
    token_end = next((index + 1 for index, token in enumerate(ids) if token in stop_ids), None)
    if sampling.stop:
        for index in range(1, token_end or len(ids) + 1):
            text = tokenizer.decode(ids[:index], skip_special_tokens=True)
            if any(stop in text for stop in sampling.stop):
                return index, "stop"
    return (token_end, "stop") if token_end is not None else (len(ids), "length")
