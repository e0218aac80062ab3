"""RLTF (TRAINERS.md §4): two-turn episodes, RLTF-SD's re-attached answers and its −5 rule, RLTF-FM's critique
targets, and the trainer on a tiny model (GRPO when both coefficients are 0; exact resume)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
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
from reflectgym.core.types import Verdict
from reflectgym.trainers.batching import TrainingSequence, collate, target_logprobs
from reflectgym.trainers.config import ConfigError, from_dict, load_values
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer
from reflectgym.trainers.rltf import (
    REVISION_INSTRUCTION,
    SecondTurn,
    critique_sequence,
    feedback_sequences,
    reattached_sequence,
    second_turn,
    second_turns,
    self_distillation_sequences,
)
from reflectgym.trainers.rltf import trainer as rltf_trainer
from reflectgym.trainers.rltf.trainer import RLTFConfig, RLTFTrainer


def length_share(task: Task, answer: str) -> float:
    """Dense: a tiny model's reply lengths vary, so groups carry signal; a reply of 6 characters or more passes."""
    return min(len(answer.strip()), 6) / 6


ENV_ID = reflectgym.register_task_env(
    "RLTFTalk-v0", [{"id": "a", "prompt": "Talk.", "answer": "aaaaaa"}], length_share, max_attempts=2
)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "configs" / "math_rltf.yaml"
PROMPT = (60, 61, 62)
"""x_0's ids in hand-built episodes (byte tokens of the tiny model's vocabulary)."""


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("rltf") / "model", TinyModelConfig(seed=0))


@pytest.fixture(scope="module")
def policy(model_dir: Path) -> HFPolicy:
    return HFPolicy.from_pretrained(model_dir)


def config_for(tmp_path: Path, model_dir: Path, name: str = "run", /, **overrides: object) -> RLTFConfig:
    values: dict[str, object] = dict(
        model=str(model_dir),
        env_id=ENV_ID,
        env_kwargs={},
        output_dir=str(tmp_path / name),
        steps=2,
        tasks_per_step=2,
        group_size=4,
        lr=3e-3,
        max_new_tokens=6,
        save_every=0,
        progress=False,
        device="cpu",
    )
    values.update(overrides)
    return RLTFConfig(**values)  # type: ignore[arg-type]


def hand_episode(rewards: Sequence[float], replies: Sequence[tuple[int, ...]], error: str | None = None) -> Trajectory:
    """A token-recorded episode: x_0, y_0, (the env's answer, y_1); a first reward of 1 passes and ends it."""
    ids: list[int] = []
    mask: list[int] = []
    turns: list[int] = []

    def add(tokens: Sequence[int], loss: int, turn: int) -> None:
        ids.extend(tokens)
        mask.extend([loss] * len(tokens))
        turns.extend([turn] * len(tokens))

    add(PROMPT, 0, 0)
    add(replies[0], 1, 0)
    add((70,), 0, 0)  # the template's closing
    played = [Turn("Q?", "y0", rewards[0], feedback="c0", verdict=Verdict(rewards[0], rewards[0] == 1.0, "c0"))]
    if len(rewards) > 1:
        add((71, 72), 0, 1)  # the critique as a user turn
        add(replies[1], 1, 1)
        verdict = Verdict(rewards[1], rewards[1] == 1.0, "c1")
        played.append(Turn("c0", "y1", rewards[1], verdict=verdict, action_token_ids=replies[1]))
    record = TokenRecord(tuple(ids), tuple(mask), tuple(-1.0 * m for m in mask), tuple(turns))
    metadata: dict[str, object] = {"tokens": record.to_dict(), **({"error": error} if error else {})}
    return Trajectory("toy", None, 0, played, metadata=metadata)


# --------------------------------------------------------------------------------------------- RLTF-SD
def test_the_reattached_sequence_is_x0_then_exactly_the_second_sampled_reply(tmp_path: Path, model_dir: Path) -> None:
    trainer = RLTFTrainer(config_for(tmp_path, model_dir))
    groups = [list(group) for group in trainer.engine.run([0, 1])]
    episodes = [trajectory for group in groups for trajectory in group if len(trajectory.turns) == 2]
    assert episodes, "no episode went to a second turn: nothing was tested"
    tokenizer = trainer.policy.tokenizer
    for trajectory in episodes:
        first, second = trajectory.turns
        view = second_turn(trajectory, 0)
        record = TokenRecord.from_trajectory(trajectory)
        assert view is not None and record is not None
        assert view.reply_ids == second.action_token_ids
        x0 = tokenizer.decode(list(view.prompt_ids))
        assert x0.endswith(f"{first.observation}<|im_end|>\n<|im_start|>assistant\n")
        assert record.input_ids[: len(view.prompt_ids)] == view.prompt_ids
        # x_1, as the policy saw it: the question, y_0, the critique, then the instruction to answer afresh
        x1 = tokenizer.decode(list(record.input_ids[: len(record) - len(view.reply_ids)]))
        assert x1.startswith(x0) and first.feedback and REVISION_INSTRUCTION not in first.observation
        assert x1.index(first.action, len(x0)) < x1.index(first.feedback, len(x0)) < x1.index(REVISION_INSTRUCTION)
        assert second.observation.endswith(REVISION_INSTRUCTION)
    sequences, counts = self_distillation_sequences(
        trainer.model, groups, coef=0.1, pad_id=trainer.session.pad_id, batch_size=3, floor=-math.inf
    )
    views = {(*view.prompt_ids, *view.reply_ids): view for view in second_turns(groups)}
    assert counts["sd_tokens_masked"] == 0 and 0 < len(sequences) <= len(views)
    for sequence in sequences:
        view = views[sequence.input_ids]  # x_0 then exactly y_1's sampled ids
        assert sequence.loss_mask == (0,) * len(view.prompt_ids) + (1,) * len(view.reply_ids)


def test_the_sd_advantage_is_the_second_reward_less_the_groups_mean_first_reward_times_the_coef(
    policy: HFPolicy,
) -> None:
    replies = [(80, 81), (82, 83, 84)]
    group = [
        hand_episode([0.0, 1.0], replies),
        hand_episode([0.0, 0.0], replies),
        hand_episode([1.0], replies),  # solved at the first turn: no second answer to re-attach
        hand_episode([-0.1, 0.5], replies),
        hand_episode([1.0, 1.0], replies, error="verifier down"),  # left out, of the baseline too
    ]
    baseline = (0.0 + 0.0 + 1.0 - 0.1) / 4
    sequences, counts = self_distillation_sequences(
        policy.model, [group], coef=0.1, pad_id=0, batch_size=2, floor=-math.inf
    )
    expected = [(1.0 - baseline) * 0.1, (0.0 - baseline) * 0.1, (0.5 - baseline) * 0.1]
    assert [s.advantage for s in sequences] == pytest.approx(expected, abs=1e-12)
    assert counts == {"sd_sequences": 3.0, "sd_tokens": 9.0, "sd_tokens_masked": 0.0}
    assert all(s.input_ids == PROMPT + replies[1] for s in sequences)
    # a second answer exactly as good as the group's first ones teaches nothing: no sequence
    level = [hand_episode([0.0, 0.0], replies), hand_episode([0.0, 0.0], replies)]
    assert self_distillation_sequences(policy.model, [level], coef=0.1, pad_id=0, batch_size=2)[0] == []


def test_episodes_solved_at_the_first_turn_give_no_sd_and_no_fm_sequence(policy: HFPolicy) -> None:
    solved = [hand_episode([1.0], [(80,)]), hand_episode([1.0], [(81, 82)])]
    assert second_turns([solved]) == []
    sequences, counts = self_distillation_sequences(policy.model, [solved], coef=0.1, pad_id=0, batch_size=2)
    assert sequences == [] and counts["sd_sequences"] == 0
    assert feedback_sequences(policy.chat, second_turns([solved]))[0] == []


def test_the_floor_masks_exactly_the_tokens_below_it(policy: HFPolicy) -> None:
    sequence, masked = reattached_sequence((1, 2), (3, 4, 5, 6, 7), [-0.1, -5.0, -5.0001, -7.0, -4.99], 0.5)
    assert sequence is not None and masked == 2
    assert sequence.input_ids == (1, 2, 3, 4, 5, 6, 7)
    assert sequence.loss_mask == (0, 0, 1, 1, 0, 0, 1)
    assert sequence.old_logprobs == (0.0, 0.0, -0.1, -5.0, 0.0, 0.0, -4.99)  # π_old: the log-prob under x_0
    assert reattached_sequence((1,), (3, 4), [-6.0, -9.0], 0.5) == (None, 2)
    # with the model: the floor applies to each token's log-prob under x_0, at the right position
    replies = [(80, 81), (90, 100, 110, 120, 130, 140)]
    group = [hand_episode([0.0, 1.0], replies), hand_episode([0.0, 0.0], replies)]
    ids = torch.tensor([PROMPT + replies[1]])
    scored = target_logprobs(policy.model.eval(), ids, torch.ones_like(ids))[0, len(PROMPT) - 1 :].tolist()
    ordered = sorted(scored)
    assert ordered[2] - ordered[1] > 1e-4, "log-probs too close to put a floor between them"
    floor = (ordered[1] + ordered[2]) / 2
    [sequence], counts = self_distillation_sequences(
        policy.model, [group], coef=0.1, pad_id=0, batch_size=4, floor=floor
    )
    assert sequence.loss_mask[len(PROMPT) :] == tuple(int(lp >= floor) for lp in scored)
    assert counts["sd_tokens_masked"] == 2
    olds = sequence.old_logprobs[len(PROMPT) :]
    assert all(old == pytest.approx(lp if lp >= floor else 0.0, abs=1e-5) for old, lp in zip(olds, scored, strict=True))


def test_at_a_sampling_temperature_every_pi_old_is_what_the_update_scores(tmp_path: Path, model_dir: Path) -> None:
    """At temperature 0.5 both kinds of policy sequence carry π_old at that temperature, as the update scores them:
    GRPO's (the sampler's log-probs) and RLTF-SD's (y_1 scored under x_0 before the update)."""
    config = config_for(tmp_path, model_dir, temperature=0.5, sd_coef=1.0, sd_logprob_floor=-math.inf)
    trainer = RLTFTrainer(config)
    groups = [list(group) for group in trainer.engine.run([0, 1])]
    sequences, counts = trainer._training_sequences(groups)
    assert counts["sd_sequences"] > 0 and counts["grpo_sequences"] > 0, "a kind of sequence is missing: not tested"
    batch = collate(sequences, pad_id=trainer.session.pad_id)
    with torch.no_grad():
        scored = target_logprobs(trainer.model.eval(), batch.input_ids, batch.attention_mask, temperature=0.5)
    mask = batch.loss_mask.bool()
    assert torch.allclose(batch.old_logprobs[mask], scored[mask], atol=1e-4)


# --------------------------------------------------------------------------------------------- RLTF-FM
def test_fm_sequences_carry_loss_only_on_the_critique_tokens(policy: HFPolicy) -> None:
    critique = "Incorrect. It reads as a number, the right kind of answer, but its value is wrong."
    episode = SecondTurn(0, PROMPT, (80,), 0.0, 1.0, "What is 2 + 2?", "It is 5.", critique)
    sequence = critique_sequence(policy.chat, episode)
    assert sequence is not None and sequence.supervised
    start = sequence.loss_mask.index(1)
    assert all(sequence.loss_mask[start:]) and not any(sequence.loss_mask[:start])
    tokenizer = policy.tokenizer
    assert list(sequence.input_ids[start:]) == [*policy.chat.encode(critique), policy.chat.reply_tail_ids[0]]
    assert tokenizer.decode(list(sequence.input_ids[start:])) == critique + "<|im_end|>"  # it learns to stop
    prompt = tokenizer.decode(list(sequence.input_ids[:start]))
    assert "What is 2 + 2?" in prompt and "It is 5." in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert critique not in prompt
    assert critique_sequence(policy.chat, dataclasses.replace(episode, critique=" ")) is None


def test_the_step_loss_is_grpos_mean_plus_the_weighted_mean_critique_nll(tmp_path: Path, model_dir: Path) -> None:
    trainer = RLTFTrainer(config_for(tmp_path, model_dir, fm_coef=0.25))
    policy_seq = TrainingSequence((60, 61, 62, 63, 64), (0, 0, 1, 1, 1), (0.0,) * 5, advantage=0.8)
    episode = SecondTurn(0, PROMPT, (80,), 0.0, 1.0, "Q", "A", "Wrong.")
    target_seq = critique_sequence(trainer.policy.chat, episode)
    assert target_seq is not None
    batch = collate([policy_seq, target_seq], pad_id=trainer.session.pad_id)
    logprobs = target_logprobs(trainer.model.eval(), batch.input_ids, batch.attention_mask)
    batch = dataclasses.replace(batch, old_logprobs=logprobs.detach() * batch.loss_mask[0:1].expand_as(logprobs))
    n_policy, n_target = 3, len("Wrong.") + 1  # (the byte tokenizer's bytes and the end of turn)
    trainer._target_share = n_target / (n_policy + n_target)
    loss, metrics = trainer._loss(batch, logprobs)
    nll = -float(logprobs.detach()[1][batch.loss_mask[1].bool()].sum())
    expected = -0.8 + 0.25 * nll / n_target  # GRPO's mean (ratio 1) plus fm_coef times the critique's mean NLL
    assert int(batch.loss_mask[1].sum()) == n_target
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert metrics["fm_nll"] == pytest.approx(nll / n_target, rel=1e-5) and metrics["ratio"] == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------- trainer
def test_config_and_env_that_would_not_be_rltf_are_refused(tmp_path: Path, model_dir: Path) -> None:
    for bad in (
        {"sd_coef": -0.1},
        {"fm_coef": math.inf},
        {"max_turns": 3},
        {"history_turns": 0},
        {"sd_logprob_floor": 1.0},
    ):
        with pytest.raises(ConfigError):
            config_for(tmp_path, model_dir, **bad)
    with pytest.raises(ConfigError, match="needs a second attempt"):
        RLTFTrainer(config_for(tmp_path, model_dir, env_kwargs={"max_attempts": 1}))
    with pytest.raises(ConfigError, match="multi-step env"):
        RLTFTrainer(config_for(tmp_path, model_dir, env_id="reflectgym/Sokoban-6x6-1-v0", env_kwargs={}))


def test_the_target_share_and_the_turn_metrics_are_sums_over_every_rank(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under torchrun each rank holds its own episodes: the share of the step's loss units that are critiques, and
    the turn metrics, come from counts summed over every rank (here a stand-in all-reduce adds another rank's)."""
    other = {"part": 30.0, "whole": 50.0, "episodes": 4.0, "first_passed": 4.0, "second_turns": 0.0}
    summed: list[set[str]] = []

    def with_another_rank(values: dict[str, float], device: torch.device) -> dict[str, float]:
        summed.append(set(values))
        return {key: value + other.get(key, 0.0) for key, value in values.items()}

    monkeypatch.setattr(rltf_trainer, "global_sums", with_another_rank)
    trainer = RLTFTrainer(config_for(tmp_path, model_dir, fm_coef=0.1, sd_logprob_floor=-math.inf))
    replies = [(80, 81), (82, 83, 84)]
    group = [
        hand_episode([0.0, 1.0], replies),
        hand_episode([0.0, 0.0], replies),
        hand_episode([1.0], replies),
        hand_episode([-0.1, 0.5], replies),
    ]
    sequences, _ = trainer._training_sequences([group])
    targets = sum(sum(sequence.loss_mask) for sequence in sequences if sequence.supervised)
    units = sum(sum(sequence.loss_mask) for sequence in sequences)
    assert 0 < targets < units and targets / units != pytest.approx(30 / 50)
    assert trainer._target_share == pytest.approx((targets + 30) / (units + 50), abs=1e-12)
    metrics = trainer._after_update([group])
    assert metrics == pytest.approx(
        {"first_turn_accuracy": 5 / 8, "second_turn_rate": 3 / 8, "second_turn_accuracy": 1 / 3}, abs=1e-12
    )
    assert summed == [{"part", "whole"}, {"episodes", "first_passed", "second_turns", "second_passed"}]


def test_zero_coefficients_reproduce_grpo_weight_for_weight(tmp_path: Path, model_dir: Path) -> None:
    shared = dict(
        env_id=ENV_ID, model=str(model_dir), steps=2, tasks_per_step=1, group_size=4, lr=3e-3, max_new_tokens=6,
        max_turns=2, save_every=0, progress=False, device="cpu",
    )  # fmt: skip
    grpo = GRPOTrainer(GRPOConfig(output_dir=str(tmp_path / "grpo"), **shared))  # type: ignore[arg-type]
    assert any("loss" in step for step in grpo.train()), "no update: nothing was compared"
    expected = grpo.model.state_dict()

    def rltf(name: str, **coefs: float) -> dict[str, torch.Tensor]:
        config = RLTFConfig(output_dir=str(tmp_path / name), revision_instruction="", **coefs, **shared)  # type: ignore[arg-type]
        trainer = RLTFTrainer(config)
        trainer.train()
        return trainer.model.state_dict()

    same = rltf("zero", sd_coef=0.0, fm_coef=0.0)
    assert all(torch.equal(same[name], expected[name]) for name in expected)
    moved = rltf("fm", sd_coef=0.0, fm_coef=0.1)
    assert any(not torch.equal(moved[name], expected[name]) for name in expected)


def test_a_run_writes_metrics_and_checkpoints_and_a_resumed_run_matches_an_uninterrupted_one(
    tmp_path: Path, model_dir: Path
) -> None:
    run = dict(tasks_per_step=1, save_every=2, fm_coef=0.1, sd_logprob_floor=-5.6)  # (tiny model: tokens near -5.56)
    whole = RLTFTrainer(config_for(tmp_path, model_dir, "whole", steps=3, **run))
    history = whole.train()
    records = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in records] == [1, 2, 3]
    wanted = {"first_turn_accuracy", "second_turn_rate", "second_turn_accuracy", "sd_sequences", "sd_tokens_masked"}
    assert all(wanted | {"fm_sequences", "fm_nll", "loss", "grpo_sequences"} <= set(record) for record in records)
    assert sum(step["sd_sequences"] for step in history) > 0, "no re-attached answer trained: SD untested"
    checkpoints = sorted(path.name for path in (tmp_path / "whole" / "checkpoints").glob("step-*"))
    assert checkpoints == ["step-00000002", "step-00000003"]
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["trainer"] == "rltf"
    RLTFTrainer(config_for(tmp_path, model_dir, "cut", steps=2, **run)).train()
    resumed = RLTFTrainer(config_for(tmp_path, model_dir, "cut", steps=3, resume=True, **run))
    assert [step["step"] for step in resumed.train()] == [3.0]
    expected = whole.model.state_dict()
    assert all(torch.equal(resumed.model.state_dict()[name], expected[name]) for name in expected)


def test_the_example_config_runs(tmp_path: Path) -> None:
    values = load_values(EXAMPLE, ["--output-dir", str(tmp_path / "run"), "--steps", "1", "--progress", "false"])
    assert values.pop("trainer") == "rltf"
    config = from_dict(RLTFConfig, values)
    assert config.env_id == "reflectgym/Math-v0" and config.env_kwargs["max_attempts"] == 2
    [step] = RLTFTrainer(config).train()
    assert step["fm_sequences"] > 0 and step["sd_sequences"] > 0 and "second_turn_accuracy" in step
    assert (tmp_path / "run" / "model").is_dir()
