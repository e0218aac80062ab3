"""SFT end to end on a tiny model: demonstrations become masked sequences, a toy task is learnt, resume is exact,
LoRA trains adapters only, and a separate sampler is sent the new weights."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")
pytest.importorskip("transformers", reason="transformers is not installed")

import gymnasium as gym
import torch

import reflectgym
from reflectgym.agents.evaluation import evaluate_policy
from reflectgym.agents.hf_policy import HFPolicy, HFPolicyConfig
from reflectgym.agents.policy import Sampling
from reflectgym.agents.rollout import RolloutConfig
from reflectgym.agents.scripted import OracleAgent
from reflectgym.agents.tiny import TinyModelConfig, build_tiny_model
from reflectgym.core import Task
from reflectgym.core.trajectory import Trajectory, Turn, write_trajectories
from reflectgym.trainers.config import ConfigError
from reflectgym.trainers.demonstrations import demonstration_sequences_of, play_demonstrations
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer
from reflectgym.trainers.sft import SFTConfig, SFTTrainer, epoch_batches

SOKOBAN = "reflectgym/Sokoban-6x6-1-v0"


def exact(task: Task, answer: str) -> float:
    return float(answer.strip() == task.reference)


TOY = reflectgym.register_task_env(
    "SFTToy-v0",
    [{"id": "greet", "prompt": "Greet.", "answer": "hello"}, {"id": "part", "prompt": "Part.", "answer": "bye"}],
    exact,
    max_attempts=1,
)


LENGTHY = reflectgym.register_task_env(  # a dense reward: reply lengths vary, so groups carry signal
    "SFTLength-v0",
    [{"id": "talk", "prompt": "Talk.", "answer": "aaaaaa"}],
    lambda task, answer: min(len(answer.strip()), 6) / 6,
    max_attempts=1,
)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return build_tiny_model(tmp_path / "model", TinyModelConfig(seed=0))


def toy_config(tmp_path: Path, **overrides: object) -> SFTConfig:
    values: dict[str, object] = {
        "env_id": TOY,
        "output_dir": str(tmp_path / "run"),
        "num_demonstrations": 8,
        "first_seed": 0,
        "steps": 40,
        "lr": 3e-3,
        "save_every": 0,
        "progress": False,
    }
    return SFTConfig(**{**values, **overrides})  # type: ignore[arg-type]


def test_a_demonstration_carries_loss_on_the_replies_and_their_stop_token_only(tiny: Path) -> None:
    policy = HFPolicy.from_pretrained(tiny)
    [episode] = play_demonstrations(lambda: gym.make(SOKOBAN), OracleAgent(), [3], env_id=SOKOBAN)
    eos = int(policy.tokenizer.eos_token_id)
    [sequence] = demonstration_sequences_of(episode, policy.chat, "Play well.", eos)
    learnt = [token for token, mask in zip(sequence.input_ids, sequence.loss_mask, strict=True) if mask]
    expected = [token for turn in episode.turns for token in (*policy.chat.encode(turn.action), eos)]
    assert learnt == expected
    text = policy.tokenizer.decode(list(sequence.input_ids))
    assert text.startswith("<|im_start|>system\nPlay well.<|im_end|>")
    assert all(turn.observation in text for turn in episode.turns), "every observation is in the context"


@pytest.mark.parametrize("history_turns", [0, 2])
def test_windowed_demonstrations_render_the_contexts_the_rollout_engine_samples_in(
    tiny: Path, history_turns: int
) -> None:
    from reflectgym.agents.chat import TokenRecord
    from reflectgym.agents.rollout import RolloutEngine

    policy = HFPolicy.from_pretrained(tiny)
    config = RolloutConfig(
        num_envs=2, max_turns=4, history_turns=history_turns, sampling=Sampling(temperature=1.0, max_new_tokens=4)
    )
    system = "You are playing Sokoban."  # any prompt: both sides get the same
    played = RolloutEngine(
        policy, lambda: gym.make(SOKOBAN), SOKOBAN, dataclasses.replace(config, system_prompt=system)
    ).collect([0, 1])
    for episode in played:
        recorded = TokenRecord.segments_of(episode)
        assert len(recorded) == len(episode.turns) > 1, "one context per turn"
        text_only = dataclasses.replace(episode, metadata={})
        rebuilt = demonstration_sequences_of(
            text_only, policy.chat, system, int(policy.tokenizer.eos_token_id), history_turns
        )
        for record, sequence in zip(recorded, rebuilt, strict=True):
            prompt = record.loss_mask.index(1)
            assert sequence.input_ids[:prompt] == record.input_ids[:prompt]


def test_recorded_tokens_are_used_only_when_the_student_would_have_seen_them(tiny: Path) -> None:
    from reflectgym.agents.chat import TokenRecord
    from reflectgym.agents.rollout import RolloutEngine

    policy = HFPolicy.from_pretrained(tiny)
    config = RolloutConfig(num_envs=1, max_turns=2, system_prompt="Recorded.", sampling=Sampling(max_new_tokens=4))
    [episode] = RolloutEngine(policy, lambda: gym.make(SOKOBAN), SOKOBAN, config).collect([0])
    [record] = TokenRecord.segments_of(episode)
    eos = int(policy.tokenizer.eos_token_id)
    [same] = demonstration_sequences_of(episode, policy.chat, "Recorded.", eos)
    assert same.input_ids == record.input_ids and same.old_logprobs == record.logprobs  # as sampled
    [other] = demonstration_sequences_of(episode, policy.chat, "The student's own prompt.", eos)
    assert policy.tokenizer.decode(list(other.input_ids)).startswith(
        "<|im_start|>system\nThe student's own prompt.<|im_end|>"
    )  # another prompt (or template): rendered anew from the text


def test_lora_adapters_start_the_same_for_the_same_seed(tmp_path: Path, tiny: Path) -> None:
    pytest.importorskip("peft", reason="peft is not installed (pip install 'reflectgym[train]')")
    first, second = (
        SFTTrainer(toy_config(tmp_path / name, lora_rank=4, steps=1), HFPolicy.from_pretrained(tiny)).model
        for name in ("a", "b")
    )
    adapters = {name: value for name, value in first.named_parameters() if "lora_A" in name}
    assert adapters
    assert all(torch.equal(value, adapters[name]) for name, value in second.named_parameters() if name in adapters)


@pytest.mark.parametrize("by_length", [False, True])
def test_an_epoch_visits_every_sequence_once_in_a_seeded_order(by_length: bool) -> None:
    import numpy as np

    lengths = [int(n) for n in np.random.default_rng(0).integers(10, 500, size=203)]
    batches = epoch_batches(203, 8, np.random.default_rng(1), lengths if by_length else None)
    assert sorted(i for batch in batches for i in batch) == list(range(203))
    assert len(batches) == 26 and all(len(batch) == 8 for batch in batches[:-1] if not by_length)
    assert batches == epoch_batches(203, 8, np.random.default_rng(1), lengths if by_length else None)
    if by_length:  # within a batch, lengths are close: far less spread than a random batch's
        spread = np.mean([np.ptp([lengths[i] for i in batch]) for batch in batches if len(batch) > 1])
        assert spread < 100


def test_sft_teaches_a_toy_task_from_oracle_demonstrations(tmp_path: Path, tiny: Path) -> None:
    policy = HFPolicy.from_pretrained(tiny)
    rollout = RolloutConfig(num_envs=4, sampling=Sampling(temperature=0.0, max_new_tokens=8))
    make = lambda: gym.make(TOY)  # noqa: E731
    before, _ = evaluate_policy(policy, make, env_id=TOY, episodes=4, config=rollout, progress=False)
    history = SFTTrainer(toy_config(tmp_path, steps=120), policy).train()
    after, _ = evaluate_policy(policy, make, env_id=TOY, episodes=4, config=rollout, progress=False)
    assert before.success_rate == 0.0 and after.success_rate == 1.0, (before, after, history[-1])
    assert history[-1]["loss"] < 0.1 * history[0]["loss"]
    exported = HFPolicy.from_pretrained(tmp_path / "run" / "model")  # the final model loads like any checkpoint
    again, _ = evaluate_policy(exported, make, env_id=TOY, episodes=4, config=rollout, progress=False)
    assert again.success_rate == 1.0


def test_resume_reaches_the_same_weights_and_losses_as_an_uninterrupted_run(tmp_path: Path, tiny: Path) -> None:
    whole = SFTTrainer(toy_config(tmp_path / "a", steps=6, batch_size=3), HFPolicy.from_pretrained(tiny))
    assert whole.batches_per_epoch > 2, "several batches per epoch, so the data position matters"
    whole_history = whole.train()
    part = toy_config(tmp_path / "b", steps=3, batch_size=3, save_every=1)
    SFTTrainer(part, HFPolicy.from_pretrained(tiny)).train()
    resumed = SFTTrainer(toy_config(tmp_path / "b", steps=6, batch_size=3, resume=True), HFPolicy.from_pretrained(tiny))
    resumed_history = resumed.train()
    assert [h["step"] for h in resumed_history] == [4.0, 5.0, 6.0]
    assert [h["loss"] for h in resumed_history] == pytest.approx([h["loss"] for h in whole_history[3:]], abs=1e-6)
    for (name, a), (_, b) in zip(whole.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


def test_a_resumed_run_trains_with_the_learning_rate_its_config_gives(
    tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Loading the optimiser's state puts back the checkpoint's settings; the config given now must win."""
    SFTTrainer(toy_config(tmp_path, steps=2, save_every=1, lr=1e-2), HFPolicy.from_pretrained(tiny)).train()
    resumed = SFTTrainer(
        toy_config(tmp_path, steps=3, lr=1e-6, weight_decay=0.1, resume=True), HFPolicy.from_pretrained(tiny)
    )
    resumed.train()
    [group] = resumed.session.optimizer.param_groups
    assert (group["lr"], group["weight_decay"]) == (1e-6, 0.1)
    assert "the config changes the optimiser's lr 0.01 -> 1e-06, weight_decay 0.0 -> 0.1" in capsys.readouterr().err


def test_demonstrations_from_a_file_skip_broken_episodes_and_say_why(tmp_path: Path, tiny: Path) -> None:
    good = Trajectory(env_id=TOY, task_id="greet", seed=0, turns=[Turn("Greet.", "hello", 1.0, terminated=True)])
    empty = Trajectory(env_id=TOY, task_id="part", seed=1, turns=[])
    path = tmp_path / "demos.jsonl"
    write_trajectories(path, [good, empty])
    with path.open("a") as handle:
        handle.write('{"env_id": "cut off mid-wri\n')
    trainer = SFTTrainer(
        toy_config(tmp_path, demonstrations=str(path), successful_only=False, steps=2), HFPolicy.from_pretrained(tiny)
    )
    assert len(trainer.sequences) == 1
    assert len(trainer.skipped) == 2, trainer.skipped
    assert any("demos.jsonl:3: not a trajectory" in line for line in trainer.skipped)
    assert any("no turns" in line for line in trainer.skipped)
    assert len(trainer.train()) == 2


def test_lora_trains_adapters_only_and_exports_a_merged_model(tmp_path: Path, tiny: Path) -> None:
    pytest.importorskip("peft", reason="peft is not installed (pip install 'reflectgym[train]')")
    policy = HFPolicy.from_pretrained(tiny)
    base = {name: tensor.clone() for name, tensor in policy.model.state_dict().items()}
    trainer = SFTTrainer(toy_config(tmp_path, steps=4, lora_rank=4, lr=1e-2, save_every=2), policy)
    trainer.train()
    state = trainer.model.state_dict()
    lora = [name for name in state if "lora_" in name]
    assert lora and all(name.split(".")[-2] in {"lora_A", "lora_B"} or "lora_" in name for name in lora)
    frozen = {name.replace("base_model.model.", "").replace(".base_layer", ""): t for name, t in state.items()}
    assert all(torch.equal(frozen[name], tensor) for name, tensor in base.items() if name in frozen)
    exported = HFPolicy.from_pretrained(tmp_path / "run" / "model")
    changed = [name for name, tensor in exported.model.state_dict().items() if not torch.equal(tensor, base[name])]
    assert any("q_proj" in name for name in changed), "the adapters are merged into the exported weights"
    resumed = SFTTrainer(
        toy_config(tmp_path, steps=5, lora_rank=4, lr=1e-2, resume=True), HFPolicy.from_pretrained(tiny)
    )
    assert [h["step"] for h in resumed.train()] == [5.0], "a LoRA run resumes from its adapter checkpoint"


def test_bf16_autocast_trains_on_cpu(tmp_path: Path, tiny: Path) -> None:
    policy = HFPolicy.from_pretrained(tiny, HFPolicyConfig(device="cpu"))
    trainer = SFTTrainer(toy_config(tmp_path, steps=3, bf16=True), policy)
    assert trainer.session.autocast_dtype == torch.bfloat16
    history = trainer.train()
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
    assert next(trainer.model.parameters()).dtype == torch.float32, "master weights stay float32"


def test_a_separate_sampler_receives_the_trained_weights(tmp_path: Path, tiny: Path) -> None:
    learner, sampler = HFPolicy.from_pretrained(tiny), HFPolicy.from_pretrained(tiny)
    config = GRPOConfig(
        env_id=LENGTHY, output_dir=str(tmp_path / "grpo"), steps=3, tasks_per_step=2, group_size=4, lr=1e-2,
        max_new_tokens=6, save_every=0, drop_zero_variance_groups=False, progress=False,
    )  # fmt: skip
    initial = {name: tensor.clone() for name, tensor in sampler.model.state_dict().items()}
    GRPOTrainer(config, learner, sampler=sampler).train()
    trained, synced = learner.model.state_dict(), sampler.model.state_dict()
    assert all(torch.equal(trained[name], synced[name]) for name in trained)
    assert any(not torch.equal(initial[name], synced[name]) for name in synced)


def test_sft_config_errors_say_what_to_change() -> None:
    with pytest.raises(ConfigError, match="num_demonstrations must be at least 1"):
        SFTConfig(num_demonstrations=0)
    with pytest.raises(ConfigError, match="lora_rank must be 0"):
        SFTConfig(lora_rank=-1)


def test_metrics_and_checkpoints_are_written(tmp_path: Path, tiny: Path) -> None:
    SFTTrainer(toy_config(tmp_path, steps=4, save_every=2), HFPolicy.from_pretrained(tiny)).train()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4] and all({"loss", "epoch", "tokens"} <= set(r) for r in records)
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-00000004" / "trainer_state.json").read_text())
    assert state["position"] == 4 and state["config"]["env_id"] == TOY
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["trainer"] == "sft" and recorded["model"] == str(tiny)  # the policy passed in, not `tiny`


def test_training_half_precision_weights_warns(tmp_path: Path, tiny: Path) -> None:
    """bfloat16 weights (what an inference policy loads on a GPU) would take AdamW's updates rounded to 8 bits of
    mantissa; the trainer says so and how to keep float32 master weights."""
    policy = HFPolicy.from_pretrained(tiny, HFPolicyConfig(device="cpu", dtype="bfloat16"))
    with pytest.warns(UserWarning, match="float32"):
        SFTTrainer(toy_config(tmp_path, steps=1), policy)


def test_demonstrations_from_an_eval_folder_and_none_solved_says_so(tmp_path: Path, tiny: Path) -> None:
    unsolved = [
        Trajectory(env_id=TOY, task_id="greet", seed=seed, turns=[Turn("Greet.", "no", 0.0, terminated=True)])
        for seed in range(5)
    ]
    write_trajectories(tmp_path / "demo6" / "trajectories.jsonl", unsolved)
    config = toy_config(tmp_path, demonstrations=str(tmp_path / "demo6"), steps=1)
    with pytest.raises(ValueError, match=r"5 episodes read, none solved \(successful_only: true\)"):
        SFTTrainer(config, HFPolicy.from_pretrained(tiny))
    trainer = SFTTrainer(dataclasses.replace(config, successful_only=False), HFPolicy.from_pretrained(tiny))
    assert len(trainer.sequences) == 5


def test_overwriting_deletes_the_earlier_run_only_once_the_new_one_can_run(tmp_path: Path, tiny: Path) -> None:
    SFTTrainer(toy_config(tmp_path, steps=2, save_every=1), policy=HFPolicy.from_pretrained(tiny)).train()
    checkpoints = tmp_path / "run" / "checkpoints"
    earlier = sorted(path.name for path in checkpoints.iterdir())
    broken_configs: list[dict[str, object]] = [
        {"env_id": "reflectgym/Nope-v0"},
        {"demonstrations": str(tmp_path / "none.jsonl")},
    ]
    if importlib.util.find_spec("tensorboard") is None:
        broken_configs.append({"tensorboard": True})  # a sink that is not installed
    for broken in broken_configs:
        with pytest.raises(Exception):  # noqa: B017  (whatever the typo raises)
            SFTTrainer(toy_config(tmp_path, overwrite_output_dir=True, **broken), policy=HFPolicy.from_pretrained(tiny))
        assert sorted(path.name for path in checkpoints.iterdir()) == earlier, broken
    with pytest.raises(gym.error.Error, match="Nope"):
        GRPOTrainer(
            GRPOConfig(env_id="reflectgym/Nope-v0", output_dir=str(tmp_path / "run"), overwrite_output_dir=True),
            policy=HFPolicy.from_pretrained(tiny),
        )
    assert sorted(path.name for path in checkpoints.iterdir()) == earlier
    trainer = SFTTrainer(toy_config(tmp_path, steps=1, overwrite_output_dir=True), HFPolicy.from_pretrained(tiny))
    assert sorted(path.name for path in checkpoints.iterdir()) == earlier  # built, not begun: nothing deleted yet
    trainer.train()
    assert sorted(path.name for path in checkpoints.iterdir() if path.name.startswith("step-")) == ["step-00000001"]


def test_a_quiet_run_silences_the_libraries_bars_too(tmp_path: Path, tiny: Path) -> None:
    from transformers.utils import logging as transformers_logging

    transformers_logging.enable_progress_bar()
    try:
        SFTTrainer(toy_config(tmp_path, steps=1), HFPolicy.from_pretrained(tiny))  # progress: false
        assert not transformers_logging.is_progress_bar_enabled()  # no "Writing model shards" bar at the end
    finally:
        transformers_logging.enable_progress_bar()
