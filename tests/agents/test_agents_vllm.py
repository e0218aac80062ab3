"""VLLMPolicy: the adapter's own logic against stand-ins where vLLM is absent; the real engine on a GPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
from support.fake_vllm import FakeVLLM

from reflectgym.agents import Sampling
from reflectgym.agents.vllm_policy import (
    INSTALL_HINT,
    VLLMConfig,
    VLLMPolicy,
    engine_arguments,
    from_vllm_output,
    to_vllm_sampling,
)

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_no_vllm = pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed: the real-engine tests cover this")


@pytest.fixture
def fake() -> FakeVLLM:
    pytest.importorskip("transformers")
    from reflectgym.agents.tiny import build_tokenizer

    return FakeVLLM(build_tokenizer())


@needs_no_vllm
def test_missing_vllm_says_how_to_install() -> None:
    with pytest.raises(ImportError, match="pip install"):
        VLLMPolicy("some/model")
    assert "reflectgym[vllm]" in INSTALL_HINT


@needs_no_vllm
def test_sampling_maps_to_vllm_params_with_sampled_logprobs(fake: FakeVLLM) -> None:
    params = to_vllm_sampling(fake, Sampling(temperature=0, top_p=0.9, max_new_tokens=5, stop=("END",), seed=1))
    assert params["logprobs"] == 0 and params["max_tokens"] == 5 and params["temperature"] == 0
    assert params["stop"] == ["END"] and params["include_stop_str_in_output"] and params["seed"] == 1


@needs_no_vllm
def test_generate_sends_token_ids_and_reads_sampled_logprobs(fake: FakeVLLM) -> None:
    policy = VLLMPolicy("m", llm=fake, module=fake)
    [reply] = policy.generate([[{"role": "user", "content": "hi"}]], Sampling())
    _, requests, _ = fake.calls[0]
    assert requests[0]["prompt_token_ids"] == policy.chat.prompt_ids([{"role": "user", "content": "hi"}])
    assert reply.token_ids == (requests[0]["prompt_token_ids"][-1], 258)
    assert reply.logprobs == (-0.25, -0.5)  # the sampled token's entry, not the other candidates
    assert reply.prompt_tokens == len(requests[0]["prompt_token_ids"])


@needs_no_vllm
def test_update_weights_loads_in_every_worker_and_drops_the_prefix_cache(fake: FakeVLLM) -> None:
    policy = VLLMPolicy("m", llm=fake, module=fake)
    policy.update_weights({"model.embed_tokens.weight": 1})
    kinds = [call[0] for call in fake.calls]
    assert kinds == ["rpc", "load_weights", "reset_prefix_cache"]
    assert fake.calls[1][1] == [("model.embed_tokens.weight", 1)]


@needs_no_vllm
def test_weights_for_an_engine_in_another_process_travel_as_host_copies(
    fake: FakeVLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")
    weight = torch.ones(2, requires_grad=True)
    policy = VLLMPolicy("m", llm=fake, module=fake)
    policy.update_weights({"w": weight})
    [(_, sent)] = fake.calls[1][1]
    assert not sent.requires_grad and torch.equal(sent, torch.ones(2))
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process: the tensor itself
    policy.update_weights({"w": weight})
    assert fake.calls[4][1][0][1] is weight


@needs_no_vllm
def test_a_temperature_vllm_would_raise_is_refused(fake: FakeVLLM) -> None:
    """vLLM samples (and reports log-probs) at 0.01 when asked for less: a trainer would score at another one."""
    with pytest.raises(ValueError, match=r"at least 0\.01"):
        to_vllm_sampling(fake, Sampling(temperature=0.001))
    assert to_vllm_sampling(fake, Sampling(temperature=0.01))["temperature"] == 0.01


def test_engine_reports_logprobs_at_the_sampling_temperature() -> None:
    arguments = engine_arguments("m", VLLMConfig(max_model_len=512, seed=3))
    assert arguments["logprobs_mode"] == "processed_logprobs"
    assert arguments["model"] == "m" and arguments["max_model_len"] == 512 and arguments["seed"] == 3


def test_length_finish_reason_is_kept() -> None:
    completion = SimpleNamespace(token_ids=[5], logprobs=None, text="a", finish_reason="length")
    reply = from_vllm_output(SimpleNamespace(outputs=[completion], prompt_token_ids=None))
    assert reply.finish_reason == "length" and reply.logprobs is None and reply.token_ids == (5,)


@pytest.mark.vllm
@pytest.mark.gpu
def test_real_engine_generates_ids_with_logprobs_at_the_sampling_temperature(tmp_path: Path) -> None:
    import torch

    from reflectgym.agents.hf_policy import HFPolicy, HFPolicyConfig
    from reflectgym.agents.tiny import build_tiny_model
    from reflectgym.trainers.batching import target_logprobs

    folder = build_tiny_model(tmp_path / "tiny")
    policy = VLLMPolicy(
        folder, VLLMConfig(gpu_memory_utilization=0.2, max_model_len=4096, enforce_eager=True, dtype="float32")
    )
    sampling = Sampling(temperature=0.7, max_new_tokens=8, seed=0)
    replies = policy.generate([[{"role": "user", "content": "hi"}]] * 3, sampling)
    assert all(r.token_ids and r.logprobs and len(r.token_ids) == len(r.logprobs) for r in replies)
    reference = HFPolicy.from_pretrained(folder, HFPolicyConfig(dtype="float32"))  # the trainers' way to score
    prompt = policy.chat.prompt_ids([{"role": "user", "content": "hi"}])
    for reply in replies:
        ids = torch.tensor([[*prompt, *(reply.token_ids or ())]], device=reference.device)
        with torch.no_grad():
            scored = target_logprobs(reference.model, ids, torch.ones_like(ids), temperature=0.7)[0, len(prompt) - 1 :]
        assert reply.logprobs == pytest.approx(scored.tolist(), abs=1e-3)  # at the sampling temperature


@needs_no_vllm
def test_each_request_of_a_seeded_batch_gets_its_own_seed(fake: FakeVLLM) -> None:
    policy = VLLMPolicy("m", llm=fake, module=fake)
    policy.generate([[{"role": "user", "content": "hi"}]] * 3, Sampling(seed=5))
    _, _, params = fake.calls[0]
    assert params[0]["seed"] == 5 and len({p["seed"] for p in params}) == 3
    policy.generate([[{"role": "user", "content": "hi"}]] * 2, Sampling())
    assert fake.calls[1][2]["seed"] is None  # unseeded: one SamplingParams for the batch


@needs_no_vllm
def test_the_engines_context_length_is_the_policys_limit(fake: FakeVLLM) -> None:
    assert VLLMPolicy("m", llm=fake, module=fake).max_context_tokens is None  # unknown
    fake.llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=2048))  # type: ignore[attr-defined]
    assert VLLMPolicy("m", llm=fake, module=fake).max_context_tokens == 2048
    assert VLLMPolicy("m", VLLMConfig(max_model_len=512), llm=fake, module=fake).max_context_tokens == 512
