"""HFPolicy on a tiny model built offline and loaded back like a user's checkpoint; GGUF conversion; SmolLM2."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from support.fake_gpu import fake_gpu

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from reflectgym.agents import Sampling, make_policy  # noqa: E402
from reflectgym.agents.gguf import smollm2_gguf  # noqa: E402
from reflectgym.agents.hf_policy import (  # noqa: E402
    HFPolicy,
    HFPolicyConfig,
    _reply_end,
    _SampledLogprobs,
    checkpoint_path,
)
from reflectgym.agents.tiny import build_tiny_model  # noqa: E402

CHAT = [{"role": "user", "content": "Which way?"}]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_hf_spec_loads_the_checkpoint_with_the_given_device_and_batch(folder: Path) -> None:
    policy = make_policy(f"hf:{folder}", device="cpu", batch_size=2)
    assert isinstance(policy, HFPolicy)
    assert policy.device.type == "cpu" and policy.config.batch_size == 2 and policy.name == f"hf:{folder.name}"


@pytest.mark.parametrize(
    "sampling", [Sampling(temperature=1.0), Sampling(temperature=0.7, top_p=0.9), Sampling(temperature=0)]
)
def test_sampled_logprobs_match_a_forward_pass(folder: Path, sampling: Sampling) -> None:
    """The model's log-probs at the sampling temperature (1 when greedy), before top-p. On whatever device the policy
    picks (CUDA when there is one), in float32 so that 1e-4 is meaningful."""
    policy = HFPolicy.from_pretrained(folder, HFPolicyConfig(dtype="float32", batch_size=2))
    prompts = [policy.chat.prompt_ids(CHAT), policy.chat.prompt_ids([{"role": "user", "content": "a longer one"}])]
    replies = policy.generate_ids(prompts * 2, dataclasses.replace(sampling, max_new_tokens=12, seed=0))
    assert len(replies) == 4
    for prompt, reply in zip(prompts * 2, replies, strict=True):
        ids = list(prompt) + list(reply.token_ids or ())
        with torch.no_grad():
            logits = policy.model(torch.tensor([ids], device=policy.device)).logits[0].float()
        expected = torch.log_softmax(logits[len(prompt) - 1 : -1] / sampling.logprob_temperature, -1).gather(
            -1, torch.tensor(reply.token_ids, device=policy.device)[:, None]
        )
        assert reply.logprobs == pytest.approx(expected.squeeze(-1).tolist(), abs=1e-4)
        assert reply.prompt_tokens == len(prompt) and reply.finish_reason in ("stop", "length")


def test_the_log_prob_recorder_holds_one_step_of_the_vocabulary_at_a_time() -> None:
    """transformers' `output_logits` would keep every step's full-vocabulary logits (gigabytes for long replies on
    a large vocabulary); the recorder keeps one step's and a float per sampled token."""
    rows, vocabulary, width, steps = 2, 1000, 3, 40
    recorder, ids, expected = _SampledLogprobs(width), torch.zeros((rows, width), dtype=torch.long), []
    for _ in range(steps):
        scores = torch.randn(rows, vocabulary)
        assert recorder(ids, scores) is scores
        token = torch.multinomial(torch.softmax(scores, -1), 1)
        expected.append(torch.log_softmax(scores, -1).gather(-1, token).squeeze(-1))
        ids = torch.cat([ids, token], dim=1)
        held = [value for value in vars(recorder).values() for value in (value if isinstance(value, list) else [value])]
        assert sum(value.numel() for value in held if isinstance(value, torch.Tensor)) <= (rows * vocabulary) + (
            steps * rows
        )
    assert torch.equal(recorder.finish(ids), torch.stack(expected, dim=1))


def test_greedy_is_repeatable_and_seeded_sampling_too(folder: Path) -> None:
    policy = HFPolicy.from_pretrained(folder)
    greedy = Sampling(temperature=0, max_new_tokens=10)
    assert policy.generate([CHAT], greedy) == policy.generate([CHAT], greedy)
    seeded = Sampling(max_new_tokens=10, seed=7)
    assert policy.generate([CHAT], seeded)[0].token_ids == policy.generate([CHAT], seeded)[0].token_ids


def test_a_checkpoints_own_generation_settings_do_not_change_what_is_sampled(folder: Path) -> None:
    """A checkpoint's `repetition_penalty` (Qwen2.5-Instruct ships 1.05) or `no_repeat_ngram_size` would make the
    samples come from another distribution than the log-probs reported; the policy leaves them out."""
    policy = HFPolicy.from_pretrained(folder, HFPolicyConfig(dtype="float32"))
    greedy, seeded = Sampling(temperature=0, max_new_tokens=24), Sampling(max_new_tokens=24, seed=3)
    plain = [policy.generate([CHAT], greedy)[0].token_ids, policy.generate([CHAT], seeded)[0].token_ids]
    settings = policy.model.generation_config
    settings.repetition_penalty, settings.no_repeat_ngram_size = 3.0, 1
    assert [policy.generate([CHAT], greedy)[0].token_ids, policy.generate([CHAT], seeded)[0].token_ids] == plain
    assert policy.model.generation_config is settings and settings.repetition_penalty == 3.0  # put back as it was
    assert len(set(plain[0] or ())) < len(plain[0] or ())  # (a repeat, which the settings would have forbidden)


def test_stop_strings_end_the_reply_inside_the_ids(folder: Path) -> None:
    policy = HFPolicy.from_pretrained(folder)
    free = policy.generate([CHAT], Sampling(temperature=0, max_new_tokens=16))[0]
    assert free.finish_reason == "length" and len(free.text) > 2
    stop = free.text[2]
    [cut] = policy.generate([CHAT], Sampling(temperature=0, max_new_tokens=16, stop=(stop,)))
    assert cut.finish_reason == "stop" and cut.text.endswith(stop) and len(cut.token_ids or ()) < 16


class Letters:
    """Decodes id i as chr(i); EOS (also the pad token, as for tokenizers without one) is special."""

    EOS = 0

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(i) for i in ids if i != self.EOS)


def test_a_reply_cut_by_a_stop_string_does_not_take_the_pad_fill_for_a_sampled_eos() -> None:
    eos, stop = Letters.EOS, Sampling(stop=("!",))
    assert _reply_end([97, 98, 33, eos, eos], [eos], stop, Letters()) == (3, "stop")  # ends at "!", not the fill
    assert _reply_end([97, eos, 33, eos], [eos], stop, Letters()) == (2, "stop")  # a sampled eos first
    assert _reply_end([97, 98], [eos], stop, Letters()) == (2, "length")
    assert _reply_end([97, 98, eos], [eos], Sampling(), Letters()) == (3, "stop")


def test_update_weights_changes_what_it_generates(folder: Path) -> None:
    policy = HFPolicy.from_pretrained(folder)
    greedy = Sampling(temperature=0, max_new_tokens=8)
    before = policy.generate([CHAT], greedy)[0]
    weights = {name: torch.randn_like(p) for name, p in policy.model.named_parameters() if "embed" in name}
    policy.update_weights(weights)
    after = policy.generate([CHAT], greedy)[0]
    assert after.logprobs != before.logprobs
    with pytest.raises(KeyError, match="no parameter named"):
        policy.update_weights({"nope": torch.zeros(1)})


def test_a_folder_with_neither_checkpoint_nor_gguf_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a checkpoint"):
        HFPolicy.from_pretrained(tmp_path)


@pytest.mark.slow
def test_smollm2_from_gguf_answers_and_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        gguf = smollm2_gguf()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    cache = Path(os.environ.get("REFLECTGYM_CACHE") or Path.home() / ".cache" / "reflectgym")
    monkeypatch.setenv("REFLECTGYM_CACHE", str(cache))
    policy = HFPolicy.from_pretrained(gguf)
    [reply] = policy.generate(
        [[{"role": "user", "content": "What is 2+3?"}]], Sampling(temperature=0, max_new_tokens=12)
    )
    assert "5" in reply.text and reply.finish_reason == "stop"
    assert any((cache / "gguf").glob("SmolLM2*/config.json"))


def test_a_missing_local_checkpoint_says_so_before_any_hub_lookup(tmp_path: Path) -> None:
    for source in (tmp_path / "nope", "runs/sokoban-bc/model", "./nope", "~/nope-reflectgym"):
        with pytest.raises(FileNotFoundError, match=r"no checkpoint at .*no such file or folder"):
            HFPolicy.from_pretrained(source)


def test_a_two_part_name_under_a_folder_here_is_a_local_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "runs" / "sokoban-bc" / "checkpoints").mkdir(parents=True)  # a folder of training runs
    (tmp_path / "openai").mkdir()  # a folder of something else
    (tmp_path / "openai" / "README.md").write_text("not models")
    monkeypatch.chdir(tmp_path)  # `runs/typo` names a run folder here, not a hub repo to wait for offline
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at runs/typo: no such file or folder"):
        HFPolicy.from_pretrained("runs/typo")
    assert checkpoint_path("openai/gpt-oss-20b") is None  # still a hub name


def test_misuses_of_the_api_say_what_to_pass(folder: Path) -> None:
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, float16"):
        HFPolicyConfig(dtype="fp33")
    policy = HFPolicy.from_pretrained(folder)
    with pytest.raises(TypeError, match=r"for one conversation, pass \[conversation\]"):
        policy.generate([{"role": "user", "content": "hi"}], Sampling(max_new_tokens=2))  # type: ignore[list-item]


def test_a_training_run_folder_points_at_its_model(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    (tmp_path / "config.json").write_text("{}")  # the trainer's config, not a model's
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(FileNotFoundError, match=f"training run; its model is {tmp_path / 'model'}"):
        HFPolicy.from_pretrained(tmp_path)


def test_an_unreachable_hub_name_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import transformers

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck your connection.")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at nope_model: .*couldn't connect") as caught:
        HFPolicy.from_pretrained("nope_model")
    assert "\n" not in str(caught.value)


def test_cuda_on_a_machine_without_it_is_a_one_line_error(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device 'cuda' asked for, but .*--device cpu"):
        HFPolicy.from_pretrained(folder, HFPolicyConfig(device="cuda"))
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        HFPolicy.from_pretrained(folder, HFPolicyConfig(device="gpu"))


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bfloat16"), (False, "float16")])
def test_on_a_gpu_weights_default_to_bfloat16_only_where_it_is_native(
    folder: Path, monkeypatch: pytest.MonkeyPatch, native_bf16: bool, expected: str
) -> None:
    """An A100 or later computes in bfloat16; a V100 or T4 only emulates it (several times slower): float16 there."""
    import transformers

    fake_gpu(monkeypatch, native_bf16)
    loaded: list[object] = []

    def load(where: str, dtype: object) -> None:
        loaded.append(dtype)
        raise RuntimeError("loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", load)
    for device in ("cuda", "cpu"):
        with pytest.raises(RuntimeError, match="loaded"):
            HFPolicy.from_pretrained(folder, HFPolicyConfig(device=device))
    assert loaded == [getattr(torch, expected), torch.float32]


def test_a_seeded_group_played_one_episode_at_a_time_is_not_one_sample_repeated(folder: Path) -> None:
    import gymnasium as gym

    import reflectgym  # noqa: F401  (registers the envs)
    from reflectgym.agents import RolloutConfig, RolloutEngine

    policy = HFPolicy.from_pretrained(folder, HFPolicyConfig(device="cpu"))
    config = RolloutConfig(num_envs=1, group_size=3, max_turns=1, sampling=Sampling(max_new_tokens=6, seed=0))
    env = "reflectgym/Sokoban-v0"
    engine = RolloutEngine(policy, lambda: gym.make(env), env, config)
    runs = [[t.turns[0].action_token_ids for t in engine.collect([0])] for _ in range(2)]
    assert len(set(runs[0])) == 3 and runs[0] == runs[1]


def test_the_models_positions_bound_the_context_by_default(tmp_path: Path) -> None:
    import gymnasium as gym

    import reflectgym  # noqa: F401  (registers the envs)
    from reflectgym.agents import RolloutConfig, RolloutEngine
    from reflectgym.agents.tiny import TinyModelConfig

    policy = HFPolicy.from_pretrained(build_tiny_model(tmp_path / "short", TinyModelConfig(max_positions=64)))
    assert policy.max_context_tokens == 64
    env = "reflectgym/Sokoban-v0"
    config = RolloutConfig(num_envs=1, max_turns=2, sampling=Sampling(max_new_tokens=4))
    [cut] = RolloutEngine(policy, lambda: gym.make(env), env, config).collect([0])  # its first prompt is longer
    assert cut.metadata["stop_reason"] == "context_limit" and cut.turns == []
    wide = RolloutConfig(num_envs=1, max_turns=2, max_context_tokens=100_000, sampling=Sampling(max_new_tokens=4))
    [played] = RolloutEngine(policy, lambda: gym.make(env), env, wide).collect([0])  # the config's limit wins
    assert played.metadata["stop_reason"] in ("turn_limit", "terminated") and played.turns
