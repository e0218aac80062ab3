"""`VLLMPolicy`: vLLM's offline engine (`vllm.LLM`) on GPU, with new weights loaded in place from a trainer.

vLLM is imported when a policy is made, never at module import, and its absence is an `ImportError` with the
install command. Prompts go in as token ids (`{"prompt_token_ids": ...}`), so multi-turn contexts stay
token-exact; `SamplingParams(logprobs=0)` returns the sampled token's log-prob per position, and the engine is
started with `logprobs_mode="processed_logprobs"` (vLLM ≥ 0.10.2, V1 engine): of the distribution the token was
sampled from, after temperature, as `HFPolicy` reports and a trainer's update scores (greedy: the model's own). vLLM
takes them after top-p too: with `top_p` < 1 they are renormalised over the nucleus, which `HFPolicy` and the
trainers' updates do not do (TRL's vLLM sampling has the same gap); the trainers sample with `top_p` 1.

Weights: `update_weights(pairs)` runs `model.load_weights(pairs)` inside every vLLM worker through
`LLM.collective_rpc` and resets the prefix cache, so cached KV of old weights is never reused. With vLLM's
engine core in a process of its own (its default) the callable and the tensors are serialised: set
`VLLM_ALLOW_INSECURE_SERIALIZATION=1`, and the tensors travel as host copies. For a trainer and the engine on
one GPU, `VLLM_ENABLE_V1_MULTIPROCESSING=0` keeps the engine in the trainer's process and the tensors on the GPU.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflectgym.agents.chat import ChatFormat
from reflectgym.agents.policy import Conversation, FinishReason, Generation, Sampling, check_conversations

INSTALL_HINT = "VLLMPolicy needs vLLM on a CUDA machine: pip install 'reflectgym[vllm]' (or pip install vllm)"


@dataclass(frozen=True)
class VLLMConfig:
    """Engine settings passed to `vllm.LLM`."""

    gpu_memory_utilization: float = 0.6
    """Share of GPU memory for weights and KV cache (leave room for a trainer on the same GPU)."""
    max_model_len: int | None = None
    """Context length; default: the model's."""
    dtype: str = "auto"
    """Weight dtype (`auto`, `bfloat16`, `float16`)."""
    enforce_eager: bool = False
    """Skip CUDA graphs (faster start, slower decoding)."""
    seed: int = 0
    """Engine seed."""
    distributed_executor_backend: str | None = None
    """vLLM's executor; `"external_launcher"` under `torchrun`: each rank's engine runs in the rank's own process on
    its own GPU (cuda:LOCAL_RANK), as TRL's colocated vLLM starts it. None: vLLM's default (one process, its GPU)."""


def import_vllm() -> Any:
    """The `vllm` module, or an `ImportError` saying how to install it."""
    try:
        return importlib.import_module("vllm")
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error


def engine_arguments(model: str | Path, config: VLLMConfig) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM` for `model` under `config`."""
    return {
        "model": str(model),
        "gpu_memory_utilization": config.gpu_memory_utilization,
        "max_model_len": config.max_model_len,
        "dtype": config.dtype,
        "enforce_eager": config.enforce_eager,
        "seed": config.seed,
        "logprobs_mode": "processed_logprobs",  # the sampled token's log-prob at the sampling temperature
    } | (
        {"distributed_executor_backend": config.distributed_executor_backend}
        if config.distributed_executor_backend is not None
        else {}
    )


MIN_TEMPERATURE = 0.01
"""vLLM raises a temperature between 0 and this to it (with a log line), and reports log-probs at it."""


def to_vllm_sampling(vllm: Any, sampling: Sampling, position: int = 0) -> Any:
    """Our `Sampling` as `vllm.SamplingParams` for request `position` of a batch, with that request's seed
    (`Sampling.request_seed`; greedy = temperature 0; log-prob of the sampled token). A temperature vLLM would
    silently raise is refused: the log-probs would be of another distribution than a trainer scores."""
    if 0 < sampling.temperature < MIN_TEMPERATURE:
        raise ValueError(
            f"vLLM samples at temperature {MIN_TEMPERATURE} at least (it raises {sampling.temperature} to it); "
            "use 0 for greedy, or a temperature of at least 0.01"
        )
    return vllm.SamplingParams(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_new_tokens,
        stop=list(sampling.stop) or None,
        include_stop_str_in_output=True,  # the text must match the sampled ids
        seed=sampling.request_seed(position),
        logprobs=0,
        skip_special_tokens=True,
    )


def from_vllm_output(output: Any) -> Generation:
    """One `RequestOutput` as a `Generation`: ids, their log-probs, text and finish reason."""
    completion = output.outputs[0]
    ids = tuple(int(token) for token in completion.token_ids)
    logprobs = None
    if completion.logprobs is not None:
        logprobs = tuple(float(step[token].logprob) for step, token in zip(completion.logprobs, ids, strict=True))
    reason: FinishReason = "length" if completion.finish_reason == "length" else "stop"
    prompt = getattr(output, "prompt_token_ids", None)
    return Generation(completion.text, ids, logprobs, reason, len(prompt) if prompt is not None else None)


class VLLMPolicy:
    """A vLLM engine as a `TokenPolicy`.

    Args:
        model: A checkpoint folder or hub name (GGUF: convert first with `reflectgym.agents.gguf.convert_gguf`).
        config: Engine settings.
        name: A label for reports.
        llm: An existing `vllm.LLM` to wrap instead of starting one.
        module: The `vllm` module to use (default: imported; tests without vLLM pass a stand-in).
    """

    def __init__(
        self,
        model: str | Path,
        config: VLLMConfig | None = None,
        name: str | None = None,
        llm: Any = None,
        module: Any = None,
    ) -> None:
        self.config = config or VLLMConfig()
        self.name = name or f"vllm:{Path(model).name}"
        vllm = module if module is not None else import_vllm()
        self._vllm = vllm
        if llm is None:
            llm = vllm.LLM(**engine_arguments(model, self.config))
        self.llm = llm
        self.chat = ChatFormat(self.tokenizer)

    @property
    def tokenizer(self) -> Any:
        """The engine's Hugging Face tokenizer."""
        return self.llm.get_tokenizer()

    @property
    def max_context_tokens(self) -> int | None:
        """The engine's context length: `VLLMConfig.max_model_len`, else the running engine's
        (`llm.llm_engine.model_config.max_model_len`), else None; the rollout engine's default context limit."""
        if self.config.max_model_len is not None:
            return self.config.max_model_len
        model_config = getattr(getattr(self.llm, "llm_engine", None), "model_config", None)
        value = getattr(model_config, "max_model_len", None)
        return value if isinstance(value, int) and value > 0 else None

    def generate(self, conversations: Sequence[Conversation], sampling: Sampling) -> list[Generation]:
        """Renders each conversation through the chat template and generates."""
        conversations = check_conversations(conversations)
        return self.generate_ids([self.chat.prompt_ids(conversation) for conversation in conversations], sampling)

    def generate_ids(self, prompts: Sequence[Sequence[int]], sampling: Sampling) -> list[Generation]:
        """Continues each token-id prompt in one engine call."""
        requests = [{"prompt_token_ids": list(prompt)} for prompt in prompts]
        outputs = self.llm.generate(
            requests, sampling_params=self._sampling_params(sampling, len(requests)), use_tqdm=False
        )
        return [from_vllm_output(output) for output in outputs]

    def _sampling_params(self, sampling: Sampling, count: int) -> Any:
        """One `SamplingParams` for an unseeded batch; else a list, one per request with its own seed
        (`LLM.generate` pairs a list with the prompts one by one), so seeded samples of a group differ."""
        if sampling.seed is None and sampling.seeds is None:
            return to_vllm_sampling(self._vllm, sampling)
        return [to_vllm_sampling(self._vllm, sampling, position) for position in range(count)]

    def update_weights(self, weights: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        """Loads `(name, tensor)` pairs (Hugging Face names) into the running engine without a restart."""
        pairs = list(weights.items() if isinstance(weights, Mapping) else weights)
        if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING", "1") != "0":  # to another process: host copies
            pairs = [(name, tensor.detach().cpu() if hasattr(tensor, "cpu") else tensor) for name, tensor in pairs]
        self.llm.collective_rpc(_load_weights, args=(pairs,))
        self.llm.reset_prefix_cache()

    def load_checkpoint(self, folder: str | Path) -> None:
        """Loads the safetensors weights of a checkpoint folder (same architecture) into the running engine."""
        from safetensors.torch import load_file

        files = sorted(Path(folder).glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no .safetensors files in {folder}")
        for file in files:
            self.update_weights(load_file(str(file)))


def _load_weights(worker: Any, pairs: list[tuple[str, Any]]) -> None:
    """Runs inside each vLLM worker: its model's own loader maps HF names to its (fused) parameters."""
    worker.model_runner.model.load_weights(weights=pairs)
