"""A stand-in for the `vllm` module and its `LLM` engine, where vLLM cannot run (no GPU): it records what the
adapter asks of them and answers as they do."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


class FakeVLLM:
    """Records what the adapter asks of `vllm`; answers like `LLM.generate` does."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.calls: list[Any] = []

    def LLM(self, **kwargs: Any) -> FakeVLLM:
        """Stands for `vllm.LLM(...)`: records the engine arguments and is the engine."""
        self.calls.append(("LLM", kwargs))
        return self

    def SamplingParams(self, **kwargs: Any) -> dict[str, Any]:
        return kwargs

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(self, requests: list[dict[str, Any]], sampling_params: Any, use_tqdm: bool) -> list[Any]:
        self.calls.append(("generate", requests, sampling_params))
        out = []
        for request in requests:
            ids = [request["prompt_token_ids"][-1], 258]
            steps = [
                {token: SimpleNamespace(logprob=-0.25 * (i + 1)), 1: SimpleNamespace(logprob=-9.0)}
                for i, token in enumerate(ids)
            ]
            completion = SimpleNamespace(token_ids=ids, logprobs=steps, text="x", finish_reason="stop")
            out.append(SimpleNamespace(outputs=[completion], prompt_token_ids=request["prompt_token_ids"]))
        return out

    def collective_rpc(self, method: Any, args: tuple[Any, ...] = ()) -> list[Any]:
        self.calls.append(("rpc", method, args))
        worker = SimpleNamespace(model_runner=SimpleNamespace(model=SimpleNamespace(load_weights=self.loaded)))
        return [method(worker, *args)]

    def loaded(self, weights: Any) -> None:
        self.calls.append(("load_weights", list(weights)))

    def reset_prefix_cache(self) -> None:
        self.calls.append(("reset_prefix_cache",))
