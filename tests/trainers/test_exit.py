"""ExIt against the properties TRAINERS.md §3 lists: learnability p(1 − p) and 0 for uniform groups; the buffer's
capacity, eviction and priority sampling (χ²); children one attempt deeper ending with their parent's reply and
feedback; p_select = p_div = 0 being GRPO exactly; identical embeddings without NaN. Then end to end on a tiny
model: metrics, checkpoints and an exact resume, instances that replay to the observation they were stored with,
env errors left out of their group, and the example config."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")
pytest.importorskip("transformers", reason="transformers is not installed")

import gymnasium as gym
import torch

import reflectgym
from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.agents.policy import Generation
from reflectgym.agents.tiny import TinyModelConfig, build_tiny_model
from reflectgym.core import Task, TaskEnv, Transition
from reflectgym.trainers.config import ConfigError, from_dict, load_values
from reflectgym.trainers.exit import (
    INSTRUCTIONS,
    Attempt,
    ExItConfig,
    ExItTrainer,
    Instance,
    InstanceBuffer,
    Outcome,
    ReplayMismatchError,
    Reply,
    Slot,
    diversity_weights,
    improvement_reward,
    learnability,
    play,
    reply_embeddings,
    restore,
    start,
    with_diversity_bonus,
)
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "configs" / "math_exit.yaml"


def length_share(task: Task, answer: str) -> float:
    """Dense: a tiny model's reply lengths vary, so groups carry signal; passed (the episode ends) at length 6."""
    return min(len(answer.strip()), 6) / 6


TASKS = [{"id": "talk", "prompt": "Talk.", "answer": "aaaaaa"}, {"id": "chat", "prompt": "Chat.", "answer": "aaaaaa"}]
SINGLE_ID = reflectgym.register_task_env("ExItTalkOnce-v0", TASKS, length_share, max_attempts=1)
MULTI_ID = reflectgym.register_task_env("ExItTalk-v0", TASKS, length_share, max_attempts=3)


class FlakyEnv(TaskEnv):
    """A `TaskEnv` whose verifier crashes on every third judged reply (a sandbox that dies, say)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(tasks=TASKS, verify=length_share, max_attempts=3, **kwargs)
        self.calls = 0

    def _apply(self, action: str) -> Transition:
        self.calls += 1
        if self.calls % 3 == 0:
            raise ConnectionError("the verifier is down")
        return super()._apply(action)


FLAKY_ID = "exit-tests/Flaky-v0"  # (hostile envs stay out of reflectgym's catalogue: the registry-wide tests play it)
gym.register(FLAKY_ID, FlakyEnv)


class StuckEnv(TaskEnv):
    """A `TaskEnv` whose verifier hangs on the reply "hang" (a verifier stuck on a lock, a wedged browser)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(tasks=TASKS, verify=length_share, max_attempts=3, **kwargs)

    def _apply(self, action: str) -> Transition:
        if action == "hang":
            time.sleep(5)
        return super()._apply(action)


STUCK_ID = "exit-tests/Stuck-v0"
gym.register(STUCK_ID, StuckEnv)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("exit") / "model", TinyModelConfig(seed=3))


def config_for(run_dir: Path, **changes: Any) -> ExItConfig:
    config = ExItConfig(
        env_id=MULTI_ID, output_dir=str(run_dir), steps=4, tasks_per_step=2, group_size=4, lr=3e-3,
        max_new_tokens=6, save_every=1, progress=False, device="cpu", system_prompt="", select_prob=0.75,
        diverge_prob=0.5, min_buffer=2, buffer_size=6,
    )  # fmt: skip
    return dataclasses.replace(config, **changes)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.named_parameters()}


# ----------------------------------------------------------------------------------------------- scoring
@pytest.mark.parametrize("successes", [1, 2, 3, 5, 7])
def test_learnability_is_p_times_one_minus_p_for_binary_groups(successes: int) -> None:
    returns = [1.0] * successes + [0.0] * (8 - successes)
    p = successes / 8
    assert learnability(returns) == pytest.approx(p * (1 - p), abs=1e-12)


@pytest.mark.parametrize("value", [0.0, 1.0, 0.4, -0.1])
def test_learnability_of_a_uniform_group_is_zero(value: float) -> None:
    assert learnability([value] * 6) == 0.0


def test_learnability_clips_and_scales_returns_to_the_reward_range() -> None:
    # scaled to [0, 1] over (-1, 3): [0, 1, 0.5, 0.5] after clipping 5 to 3 and -2 to -1
    assert learnability([-2.0, 5.0, 1.0, 1.0], low=-1.0, high=3.0) == pytest.approx(np.var([0.0, 1.0, 0.5, 0.5]))
    assert learnability([0.7]) == 0.0  # one return: no spread to speak of


def test_improvement_reward_is_the_share_of_the_gap_closed() -> None:
    assert improvement_reward(0.75, 0.5) == pytest.approx(0.5)
    assert improvement_reward(1.0, 0.0) == 1.0
    assert improvement_reward(0.2, 0.5) == 0.0  # worse: no negative reward
    assert improvement_reward(1.0, 1.0) == 0.0  # nothing left to close: no division by zero
    assert improvement_reward(0.0, -0.1) == 0.0  # after a format penalty, a wrong answer closed nothing
    assert improvement_reward(-0.1, 0.5) == -0.1  # a new format penalty stays a penalty


def test_identical_embeddings_give_no_nan() -> None:
    weights_ = diversity_weights(torch.ones(4, 8))
    assert torch.isfinite(weights_).all() and torch.equal(weights_, torch.ones(4))
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert torch.equal(with_diversity_bonus(advantages, weights_), advantages)


def test_diversity_weights_are_min_max_normalised_distances_and_scale_positive_advantages_only() -> None:
    embeddings = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.5, 0.5]])
    distances = (embeddings - embeddings.mean(0)).norm(dim=-1)
    expected = (distances - distances.min()) / (distances.max() - distances.min())
    weights_ = diversity_weights(embeddings)
    assert torch.allclose(weights_, expected) and weights_.min() == 0 and weights_.max() == 1
    advantages = torch.tensor([1.0, -1.0, 2.0, 0.5])
    bonus = with_diversity_bonus(advantages, weights_)
    assert bonus[1] == -1.0  # a negative advantage is left alone
    assert torch.allclose(bonus[[0, 2, 3]], advantages[[0, 2, 3]] * weights_[[0, 2, 3]])


# ----------------------------------------------------------------------------------------------- buffer
def toy_instance(name: str, k: int = 1) -> Instance:
    attempts = tuple(Attempt(f"{name}-{i}", f"obs {i}", "Incorrect.", 0.0) for i in range(k))
    return Instance(0, {}, "Talk.", attempts)


def test_buffer_keeps_the_top_n_by_score_evicting_the_lowest_and_the_oldest_among_ties() -> None:
    buffer = InstanceBuffer(capacity=3)
    for name, score in [("a", 0.2), ("b", 0.1), ("c", 0.1), ("d", 0.3)]:
        buffer.add(toy_instance(name), score)
    assert len(buffer) == 3
    assert [e.instance.attempts[0].reply for e in buffer.entries] == ["a-0", "c-0", "d-0"]  # b: lowest and oldest
    assert buffer.add(toy_instance("e"), 0.0) is None  # lower than everything held: it is the one evicted
    buffer.add(toy_instance("f"), 0.25)
    assert sorted(e.score for e in buffer.entries) == [0.2, 0.25, 0.3]
    assert len(buffer) == buffer.capacity


def test_buffer_holds_an_instance_once_and_rescores_it() -> None:
    buffer = InstanceBuffer(capacity=4)
    first = buffer.add(toy_instance("a"), 0.1)
    again = buffer.add(toy_instance("a"), 0.2)
    assert first is again and len(buffer) == 1 and buffer.entries[0].score == 0.2
    assert first is not None
    buffer.rescore(first.serial, 0.05)
    assert buffer.entries[0].score == 0.05


def chi_square_p_value(observed: np.ndarray, expected: np.ndarray) -> float:
    """P(χ² ≥ statistic) with len − 1 degrees of freedom: scipy's when installed, else Wilson–Hilferty's
    normal approximation of the χ² distribution (accurate to about 1e-3 here)."""
    statistic = float(((observed - expected) ** 2 / expected).sum())
    df = len(observed) - 1
    try:
        from scipy.stats import chi2  # pyright: ignore[reportMissingImports]
    except ImportError:
        z = ((statistic / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
        return 0.5 * math.erfc(z / math.sqrt(2))
    return float(chi2.sf(statistic, df))


SCORES = [0.05, 0.9, 0.3, 0.3, 0.6]


@pytest.mark.parametrize(
    ("priority", "expected"),
    [
        ("softmax", np.exp(2.0 * np.array(SCORES))),  # kappa = 2
        ("rank", (1 / np.array([5, 1, 3, 4, 2])) ** (1 / 0.5)),  # beta = 0.5; the older of the 0.3s ranks first
    ],
)
def test_sampling_frequencies_match_the_priority_rule(priority: str, expected: np.ndarray) -> None:
    buffer = InstanceBuffer(capacity=8, priority=priority, kappa=2.0, beta=0.5)  # type: ignore[arg-type]
    for index, score in enumerate(SCORES):
        buffer.add(toy_instance(str(index)), score)
    probabilities = expected / expected.sum()
    assert np.allclose(buffer.probabilities(), probabilities)
    rng = np.random.default_rng(7)
    draws = 20_000
    serials = [buffer.sample(rng).serial for _ in range(draws)]
    observed = np.bincount(serials, minlength=len(SCORES)).astype(float)
    assert chi_square_p_value(observed, probabilities * draws) > 0.01
    uniform = np.full(len(SCORES), draws / len(SCORES))
    assert chi_square_p_value(observed, uniform) < 1e-6, "the test could not tell the rule from uniform sampling"


def test_the_buffer_round_trips_through_json() -> None:
    buffer = InstanceBuffer(capacity=4, priority="rank")
    for name, score in [("a", 0.1), ("b", 0.3)]:
        buffer.add(toy_instance(name, k=2), score)
    again = InstanceBuffer(capacity=4, priority="rank")
    again.load_state(json.loads(json.dumps(buffer.state())))
    assert [(e.instance, e.score, e.serial) for e in again.entries] == [
        (e.instance, e.score, e.serial) for e in buffer.entries
    ]
    assert again.add(toy_instance("c"), 0.2) is not None and again.entries[-1].serial == 2  # serials go on


# ----------------------------------------------------------------------------------------------- instances
def test_children_have_k_plus_one_and_end_with_the_parents_reply_and_feedback() -> None:
    env = gym.make(MULTI_ID)
    root = start(env, seed=5)
    first = play(env, root, "ab")
    child = root.child(first.attempt, first.snapshot)
    second = play(env, child, "abc")
    grandchild = child.child(second.attempt, second.snapshot)
    assert (root.k, child.k, grandchild.k) == (0, 1, 2)
    assert grandchild.attempts[:-1] == child.attempts and grandchild.attempts[-1].reply == "abc"
    assert grandchild.attempts[-1].feedback == second.attempt.feedback and second.attempt.feedback
    assert second.attempt.reward == pytest.approx(3 / 6)
    for mode in ("improve", "diverge"):
        messages = grandchild.messages("Be brief.", mode)  # type: ignore[arg-type]
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]  # the latest attempt only
        assert messages[-2]["content"] == "abc"
        assert messages[-1]["content"] == f"{second.attempt.observation}\n\n{INSTRUCTIONS[mode]}"  # type: ignore[index]
    assert len(grandchild.messages("", "improve", shown_attempts=None)) == 5  # the task and both attempts
    assert root.messages("", "solve") == [{"role": "user", "content": root.opening}]
    with pytest.raises(ValueError, match="does not fit"):
        root.messages("", "improve")
    assert play(env, child, "abcdef").ended  # solved: the trainer makes no child of it


def test_instances_restored_from_the_buffer_reproduce_their_observation() -> None:
    env = gym.make(MULTI_ID)
    instance = start(env, seed=3)
    for reply in ("x", "xy"):
        outcome = play(env, instance, reply)
        instance = instance.child(outcome.attempt, outcome.snapshot)
    env.reset(seed=99)  # somewhere else entirely
    assert restore(env, instance) is instance  # from its native snapshot
    assert env.unwrapped.snapshot().last_observation == instance.observation  # type: ignore[attr-defined]
    read_back = Instance.from_dict(json.loads(json.dumps(instance.to_dict())))
    assert read_back == instance and read_back.snapshot is None
    fresh = gym.make(MULTI_ID)
    replayed = restore(fresh, read_back)  # replays its seed and replies
    assert replayed.snapshot is not None and replayed.snapshot.last_observation == instance.observation
    assert play(fresh, replayed, "xyz").attempt == play(env, instance, "xyz").attempt
    tampered = dataclasses.replace(read_back, attempts=(read_back.attempts[0], Attempt("xy", "other", "", 0.0)))
    with pytest.raises(ReplayMismatchError, match="k = 2"):
        restore(fresh, tampered)


# ----------------------------------------------------------------------------------------------- the trainer
def test_p_select_and_p_div_zero_reduce_to_grpo_exactly(tmp_path: Path, model_dir: Path) -> None:
    """On a three-attempt env, with a buffer that fills from the first step (B_min = 1): p_select = p_div = 0
    never draws from it and is GRPO on single attempts (`max_turns: 1`), weight for weight (at a temperature other
    than 1, with a KL term: both score their updates and references at it)."""
    shared: dict[str, Any] = dict(
        env_id=MULTI_ID, steps=3, tasks_per_step=2, group_size=4, lr=3e-3, max_new_tokens=6, save_every=0,
        progress=False, device="cpu", temperature=0.7, kl_coef=0.05,
    )  # fmt: skip
    grpo_config = GRPOConfig(output_dir=str(tmp_path / "grpo"), max_turns=1, **shared)
    grpo = GRPOTrainer(grpo_config, HFPolicy.from_pretrained(model_dir))
    grpo_history = grpo.train()
    exit_config = ExItConfig(
        output_dir=str(tmp_path / "exit"), select_prob=0.0, diverge_prob=0.0, min_buffer=1, **shared
    )
    trainer = ExItTrainer(exit_config, HFPolicy.from_pretrained(model_dir))
    history = trainer.train()
    assert any("loss" in step for step in history), "no update: the weights never moved, nothing was tested"
    assert history[0]["buffer_size"] >= 1 and all(step["from_buffer"] == 0 for step in history)
    for ours, theirs in zip(history, grpo_history, strict=True):
        for key in ("reward", "success", "sequences", "groups_dropped", "loss", "grad_norm"):
            assert ours.get(key) == theirs.get(key), key
    theirs = dict(grpo.model.named_parameters())
    assert all(torch.equal(value, theirs[name]) for name, value in trainer.model.named_parameters())


def test_envs_without_a_second_attempt_are_refused(tmp_path: Path, model_dir: Path) -> None:
    policy = HFPolicy.from_pretrained(model_dir)
    with pytest.raises(ConfigError, match="needs a second attempt"):
        ExItTrainer(config_for(tmp_path / "once", env_id=SINGLE_ID), policy)
    with pytest.raises(ConfigError, match="multi-step env"):
        ExItTrainer(config_for(tmp_path / "sokoban", env_id="reflectgym/Sokoban-6x6-1-v0"), policy)


def test_a_generation_failure_or_a_nan_reward_costs_replies_not_the_run(tmp_path: Path, model_dir: Path) -> None:
    policy = HFPolicy.from_pretrained(model_dir)
    trainer = ExItTrainer(config_for(tmp_path / "run", steps=2), policy)
    calls = {"n": 0}
    generate_ids = policy.generate_ids

    def flaky(prompts: Any, sampling: Any) -> list[Generation]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return generate_ids(prompts, sampling)

    policy.generate_ids = flaky  # type: ignore[method-assign]
    with pytest.warns(UserWarning, match="generation failed"):
        history = trainer.train()
    assert history[0]["replies_failed"] == 8 and "loss" not in history[0] and history[1]["replies_failed"] == 0
    root = start(gym.make(MULTI_ID), seed=0)
    nan = trainer.play_reply(root, Generation("abc", (97,), (0.0,)))
    assert nan.outcome is not None  # a real reward...
    broken = dataclasses.replace(nan.outcome, attempt=dataclasses.replace(nan.outcome.attempt, reward=math.nan))
    trainer.env.call = lambda call, **_: broken  # type: ignore[method-assign]
    assert trainer.play_reply(root, Generation("abc", (97,), (0.0,))).outcome is None  # ...and a NaN is an error


@pytest.mark.parametrize("envs", [1, 2])
def test_an_env_call_past_env_timeout_is_an_error_reply_and_a_fresh_env_plays_the_next(
    tmp_path: Path, model_dir: Path, envs: int
) -> None:
    config = config_for(tmp_path / "run", env_id=STUCK_ID, env_timeout=0.5, num_envs=envs)
    trainer = ExItTrainer(config, HFPolicy.from_pretrained(model_dir))
    root = trainer.env.call(partial(start, seed=0))
    replies = [Generation(text, (97,), (0.0,)) for text in ("abc", "hang", "abcd", "abcdef")]
    play_one = trainer.play_reply if envs == 1 else trainer._play_pooled  # (the trainer's env, or a pool's)
    started = time.monotonic()
    played = [play_one(root, reply) for reply in replies]
    assert time.monotonic() - started < 4, "the stuck call was abandoned after env_timeout, not waited for"
    assert [reply.outcome is None for reply in played] == [False, True, False, False]
    assert [reply.ret for reply in played if reply.outcome is not None] == pytest.approx([0.5, 4 / 6, 1.0])
    trainer.close()


def test_prompts_that_leave_no_room_for_a_reply_are_not_played(tmp_path: Path, model_dir: Path) -> None:
    trainer = ExItTrainer(config_for(tmp_path / "run"), HFPolicy.from_pretrained(model_dir))
    prompt = len(trainer.policy.chat.prompt_ids(start(gym.make(MULTI_ID), seed=0).messages("", "solve")))
    trainer.context_limit = prompt + trainer.config.max_new_tokens - 1
    slots, counts = trainer.choose_slots(0)
    assert slots == [] and counts["prompts_too_long"] == 2
    trainer.context_limit = prompt + trainer.config.max_new_tokens + 50
    assert len(trainer.choose_slots(0)[0]) == 2


def test_a_resumed_buffer_keeps_its_capacity() -> None:
    buffer = InstanceBuffer(capacity=4)
    for name, score in [("a", 0.1), ("b", 0.4), ("c", 0.3), ("d", 0.2)]:
        buffer.add(toy_instance(name), score)
    smaller = InstanceBuffer(capacity=2)
    smaller.load_state(json.loads(json.dumps(buffer.state())))
    assert sorted(entry.score for entry in smaller.entries) == [0.3, 0.4]


TIMING = {"rollout_seconds", "step_seconds"}


def test_exit_trains_writes_metrics_and_checkpoints_and_resumes_exactly(tmp_path: Path, model_dir: Path) -> None:
    before = weights(HFPolicy.from_pretrained(model_dir).model)
    whole = ExItTrainer(config_for(tmp_path / "whole"), HFPolicy.from_pretrained(model_dir))
    history = whole.train()
    assert any(not torch.equal(value, before[name]) for name, value in whole.model.named_parameters())
    assert any(step["from_buffer"] > 0 for step in history), "the buffer was never drawn from: nothing was tested"
    assert any(step["mean_k"] > 0 and step["diverge"] > 0 for step in history)
    records = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    wanted = {"reward", "success", "buffer_size", "mean_k", "from_buffer", "learnability", "replies_failed"}
    assert len(records) == 4 and all(wanted <= set(record) for record in records)
    assert all(record["buffer_size"] <= 6 for record in records)
    state = json.loads((tmp_path / "whole" / "checkpoints" / "step-00000004" / "trainer_state.json").read_text())
    assert state["buffer"] == whole.buffer.state() and len(state["buffer"]["entries"]) == len(whole.buffer)
    assert all(1 <= entry.instance.k <= 2 for entry in whole.buffer.entries)  # 3 attempts: children at k = 1, 2

    part = config_for(tmp_path / "part", steps=2)
    ExItTrainer(part, HFPolicy.from_pretrained(model_dir)).train()
    resumed = ExItTrainer(dataclasses.replace(part, steps=4, resume=True), HFPolicy.from_pretrained(model_dir))
    rest = resumed.train()
    assert [step["step"] for step in rest] == [3.0, 4.0]
    assert any(step["from_buffer"] > 0 for step in rest), "the resumed steps never drew from the restored buffer"
    strip = [{k: v for k, v in step.items() if k not in TIMING} for step in history[2:]]
    assert [{k: v for k, v in step.items() if k not in TIMING} for step in rest] == strip
    assert resumed.buffer.state() == whole.buffer.state()
    expected = dict(whole.model.named_parameters())
    assert all(torch.equal(value, expected[name]) for name, value in resumed.model.named_parameters())


def test_children_respect_max_depth_and_only_ongoing_episodes_have_them(tmp_path: Path, model_dir: Path) -> None:
    trainer = ExItTrainer(config_for(tmp_path / "run", max_depth=2), HFPolicy.from_pretrained(model_dir))
    env = gym.make(MULTI_ID)
    root = start(env, seed=1)
    first = play(env, root, "a")
    drawn = trainer.buffer.add(root.child(first.attempt, first.snapshot), 0.9)
    assert drawn is not None and drawn.instance.k == 1
    parent = drawn.instance
    generation = Generation("", (1,), (0.0,))
    ongoing = [Reply(generation, play(env, parent, reply), 0.0) for reply in ("ab", "abc")]
    solved = Reply(generation, play(env, parent, "abcdef"), 1.0)
    failed = Reply(generation, None)
    slot = Slot(parent, "improve", [], drawn.serial)
    assert trainer.grow_buffer(slot, [*ongoing, solved, failed], 0.25) == 2
    children = [entry.instance for entry in trainer.buffer.entries if entry.instance.k == 2]
    assert [child.attempts[-1].reply for child in children] == ["ab", "abc"]
    assert all(child.attempts[:-1] == parent.attempts for child in children)
    assert [entry.score for entry in trainer.buffer.entries] == [0.25] * 3  # the parent took the group's score
    deep = Slot(children[0], "improve", [], None)
    assert trainer.grow_buffer(deep, [Reply(generation, play(env, children[0], "x"), 0.0)], 0.1) == 0  # k = 3 > 2


def test_the_improvement_reward_is_measured_against_the_parents_attempt(tmp_path: Path, model_dir: Path) -> None:
    trainer = ExItTrainer(config_for(tmp_path / "run", reward="improvement"), HFPolicy.from_pretrained(model_dir))
    root = start(gym.make(MULTI_ID), seed=0)
    first = play(gym.make(MULTI_ID), root, "abc")  # quality 0.5
    parent = root.child(first.attempt, first.snapshot)
    better, worse = (trainer.play_reply(parent, Generation(text, (1,), (0.0,))) for text in ("abcde", "a"))
    assert better.ret == pytest.approx((5 / 6 - 0.5) / 0.5) and worse.ret == 0.0
    assert trainer.play_reply(root, Generation("ab", (1,), (0.0,))).ret == pytest.approx(2 / 6)  # k = 0: quality
    assert trainer.play_reply(root, Generation("", None, None, "error")).outcome is None


def test_env_errors_leave_their_group_and_are_counted(tmp_path: Path, model_dir: Path) -> None:
    config = config_for(  # (one env: its every third verdict fails, whatever the threads do)
        tmp_path / "run", env_id=FLAKY_ID, steps=2, group_size=3, save_every=0, kl_coef=0.1, num_envs=1
    )
    trainer = ExItTrainer(config, HFPolicy.from_pretrained(model_dir))
    slots, _ = trainer.choose_slots(0)
    groups = trainer.play_slots(slots)
    assert any(reply.outcome is None for group in groups for reply in group), "no env error: nothing was tested"
    for slot, group in zip(slots, groups, strict=True):
        sequences, score = trainer.group_sequences(slot, group, 0)
        returns = [reply.ret for reply in group if reply.outcome is not None]
        assert score == learnability(returns)
        if sequences:  # one per reply that did not fail, advantages normalised over them alone
            assert len(sequences) == len(returns) and abs(sum(s.advantage for s in sequences)) < 1e-5
    history = trainer.train()
    assert len(history) == 2 and sum(step["replies_failed"] for step in history) > 0
    assert any("kl" in step for step in history)


def test_the_diversity_bonus_scales_positive_advantages_by_the_replies_distances(
    tmp_path: Path, model_dir: Path
) -> None:
    trainer = ExItTrainer(config_for(tmp_path / "run", group_size=6), HFPolicy.from_pretrained(model_dir))
    [slot, *_] = trainer.choose_slots(0)[0]
    [replies, *_] = trainer.play_slots([slot])
    plain, score = trainer.group_sequences(slot, replies, 0)
    trainer.config = dataclasses.replace(trainer.config, diversity_bonus=True)
    bonus, same_score = trainer.group_sequences(slot, replies, 0)
    assert plain and score == same_score, "a group without signal: nothing was tested"
    weights_ = diversity_weights(reply_embeddings(trainer.model, [r.generation.token_ids or () for r in replies]))
    for before, after, weight in zip(plain, bonus, weights_.tolist(), strict=True):
        assert after.input_ids == before.input_ids
        expected = before.advantage * weight if before.advantage > 0 else before.advantage
        assert after.advantage == pytest.approx(expected, abs=1e-6)
    assert any(b.advantage != p.advantage for b, p in zip(bonus, plain, strict=True))


def test_the_example_config_runs(tmp_path: Path) -> None:
    values = load_values(EXAMPLE, ["--output-dir", str(tmp_path / "run"), "--steps", "2", "--progress", "false"])
    assert values.pop("trainer") == "exit"
    config = from_dict(ExItConfig, values)
    assert config.env_kwargs["max_attempts"] >= 2
    history = ExItTrainer(config).train()
    assert len(history) == 2 and (tmp_path / "run" / "model").is_dir()
    assert all(step["replies_failed"] == 0 for step in history)  # garbage replies are format penalties, not errors


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"select_prob": 1.5}, "select_prob must be a probability"),
        ({"diverge_prob": -0.1}, "diverge_prob must be a probability"),
        ({"min_buffer": 10, "buffer_size": 5}, "min_buffer must be at least 1 and at most buffer_size"),
        ({"group_size": 1}, "group_size must be at least 2"),
        ({"reward_range": (1.0, 0.0)}, "reward_range must be two finite numbers"),
        ({"max_depth": 0}, "max_depth must be None or at least 1"),
        ({"reward": "delta"}, "reward"),
        ({"rank_beta": 0.0}, "rank_beta positive"),
    ],
)
def test_config_validation_says_what_to_change(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExItConfig(**changes)


def test_an_outcome_after_the_last_attempt_has_no_snapshot() -> None:
    env = gym.make(MULTI_ID)
    instance = start(env, seed=0)
    outcomes: list[Outcome] = []
    for reply in ("a", "b", "c"):
        outcomes.append(play(env, instance, reply))
        instance = instance.child(outcomes[-1].attempt, outcomes[-1].snapshot)
    assert [o.ended for o in outcomes] == [False, False, True] and outcomes[-1].snapshot is None


def test_replies_played_by_a_pool_of_envs_match_one_env_playing_them_in_turn(tmp_path: Path, model_dir: Path) -> None:
    """Each reply restores its instance's snapshot, so which env of the pool plays it changes nothing: the same
    run with one env gives the same metrics and weights."""
    runs = {}
    for envs in (1, 4):
        trainer = ExItTrainer(config_for(tmp_path / f"envs-{envs}", num_envs=envs), HFPolicy.from_pretrained(model_dir))
        history = trainer.train()
        runs[envs] = ([{k: v for k, v in step.items() if k not in TIMING} for step in history], weights(trainer.model))
        assert (len(trainer._made_envs) == 0) == (envs == 1) and len(trainer._made_envs) <= envs
    assert any(step["from_buffer"] > 0 for step in runs[1][0]), "no buffer draw: children were never played"
    assert runs[1][0] == runs[4][0]
    assert all(torch.equal(runs[1][1][name], runs[4][1][name]) for name in runs[1][1])


def test_a_separate_sampler_generates_the_replies_and_takes_every_new_weight(tmp_path: Path, model_dir: Path) -> None:
    """A sampler (a `VLLMPolicy` on GPU; here a second `HFPolicy`) samples instead of the trained policy, so the run
    is the one the policy would have sampled itself; after each update, and at a resume, it holds the new weights."""
    plain = ExItTrainer(config_for(tmp_path / "plain", steps=2), HFPolicy.from_pretrained(model_dir))
    plain_history = plain.train()
    sampler = HFPolicy.from_pretrained(model_dir)
    policy = HFPolicy.from_pretrained(model_dir)

    def never(*_: Any) -> list[Generation]:
        raise AssertionError("the trained policy sampled")

    policy.generate_ids = never  # type: ignore[method-assign]
    trainer = ExItTrainer(config_for(tmp_path / "sampled", steps=2), policy, sampler)
    history = trainer.train()
    assert any("loss" in step for step in history), "no update: the weights never moved, nothing was tested"
    strip = [{k: v for k, v in step.items() if k not in TIMING} for step in history]
    assert strip == [{k: v for k, v in step.items() if k not in TIMING} for step in plain_history]
    assert all(torch.equal(value, weights(trainer.model)[name]) for name, value in weights(sampler.model).items())
    restarted = HFPolicy.from_pretrained(model_dir)  # the initial weights, as a restarted vLLM engine has them
    resumed = ExItTrainer(
        config_for(tmp_path / "sampled", steps=2, resume=True), HFPolicy.from_pretrained(model_dir), restarted
    )
    assert resumed.train() == []  # every step was already taken
    assert all(torch.equal(value, weights(resumed.model)[name]) for name, value in weights(restarted.model).items())
