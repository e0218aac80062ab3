"""The rollout engine: a crashing or hanging env ends only its episode, groups stream out as they finish,
and per-episode limits stop episodes with the reason recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import pytest

from reflectgym.agents import Generation, RolloutConfig, RolloutEngine, Sampling, evaluate, evaluate_policy
from reflectgym.core.spaces import FreeText
from reflectgym.core.trajectory import read_trajectories
from reflectgym.core.types import Verdict

RELEASE = threading.Event()


class ToyEnv(gym.Env[str, str]):
    """Solved on the second step; misbehaves on chosen seeds."""

    def __init__(self, crash: int | None = None, slow: int | None = None, hang: int | None = None) -> None:
        self.observation_space = FreeText()
        self.action_space = FreeText()
        self.crash, self.slow, self.hang = crash, slow, hang
        self.seed_: int | None = None
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self.seed_, self.steps = seed, 0
        task_id = (options or {}).get("task_id", f"t{seed}")
        return f"task {seed}", {"task_id": task_id, "privileged": "say ok twice", "feedback": ""}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.seed_ == self.crash:
            raise RuntimeError("boom")
        if self.seed_ == self.hang:
            RELEASE.wait(30)
        if self.seed_ == self.slow:
            time.sleep(0.6)
        self.steps += 1
        solved = self.steps >= 2
        verdict = Verdict(reward=float(solved), passed=solved, feedback="solved" if solved else "again")
        info = {"feedback": verdict.feedback, "verdict": verdict, "parse_error": None}
        return f"step {self.steps}", float(solved), solved, False, info


class OkPolicy:
    """Text-only policy answering "ok"; optionally fails for conversations mentioning a task."""

    name = "ok"

    def __init__(self, fail_task: str | None = None) -> None:
        self.calls = 0
        self.fail_task = fail_task

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        self.calls += 1
        return [
            Generation("", finish_reason="error", error="server on fire")
            if self.fail_task and any(self.fail_task == m["content"] for m in c)
            else Generation("ok")
            for c in conversations
        ]


def engine(policy: Any = None, **env: Any) -> RolloutEngine:
    config = RolloutConfig(num_envs=4, group_size=2, max_turns=10, env_timeout=0.5, system_prompt="")
    return RolloutEngine(policy or OkPolicy(), lambda: ToyEnv(**env), "toy", config)


def test_a_crashing_env_ends_its_episodes_and_not_the_batch() -> None:
    trajectories = engine(crash=2).collect(range(6))
    assert len(trajectories) == 12
    crashed = [t for t in trajectories if t.seed == 2]
    assert all(t.metadata["stop_reason"] == "error" and "RuntimeError: boom" in t.metadata["error"] for t in crashed)
    assert "Traceback" in crashed[0].metadata["traceback"]
    others = [t for t in trajectories if t.seed != 2]
    assert all(t.success and t.metadata["stop_reason"] == "terminated" and len(t.turns) == 2 for t in others)
    assert others[0].privileged == "say ok twice" and others[0].task_id is not None


def test_a_hanging_env_is_abandoned_after_its_timeout() -> None:
    RELEASE.clear()
    start = time.perf_counter()
    try:
        trajectories = engine(hang=1).collect(range(4))
    finally:
        RELEASE.set()
    assert time.perf_counter() - start < 10
    hung = [t for t in trajectories if t.seed == 1]
    assert [t.metadata["stop_reason"] for t in hung] == ["error", "error"]
    assert "more than 0.5 s" in hung[0].metadata["error"]
    assert all(t.success for t in trajectories if t.seed != 1)


def test_finished_groups_stream_out_before_the_slowest() -> None:
    policy = OkPolicy()
    order: list[tuple[int | None, float]] = []
    start = time.perf_counter()
    for group in engine(policy, slow=0).run(range(4)):
        order.append((group[0].seed, time.perf_counter() - start))
        assert [t.metadata["index"] for t in group] == [0, 1]
    assert [seed for seed, _ in order][-1] == 0  # the slow seed's group comes last
    assert all(seconds < 0.5 for seed, seconds in order if seed != 0)  # the others did not wait for it
    assert policy.calls >= 3  # the policy kept serving fast envs while the slow one stepped


def test_turn_and_time_limits_are_recorded() -> None:
    config = RolloutConfig(num_envs=2, max_turns=1, system_prompt="")
    [limited] = RolloutEngine(OkPolicy(), ToyEnv, "toy", config).collect([0])
    assert limited.metadata["stop_reason"] == "turn_limit" and limited.turns[-1].truncated and limited.done
    slow = RolloutConfig(num_envs=1, max_episode_seconds=0.3, system_prompt="")
    [timed] = RolloutEngine(OkPolicy(), lambda: ToyEnv(slow=0), "toy", slow).collect([0])
    assert timed.metadata["stop_reason"] == "time_limit" and len(timed.turns) == 1


def test_a_failed_generation_ends_that_episode_only() -> None:
    trajectories = engine(OkPolicy(fail_task="task 1")).collect(range(3))
    failed = [t for t in trajectories if t.seed == 1]
    assert all("policy: server on fire" in t.metadata["error"] for t in failed)
    assert all(t.success for t in trajectories if t.seed != 1)


def test_evaluate_policy_summarises_with_an_interval(tmp_path: Any) -> None:
    summary, trajectories = evaluate_policy(
        OkPolicy(), lambda: ToyEnv(crash=3), env_id="toy", episodes=5, out_dir=tmp_path, progress=False
    )
    assert summary.episodes == 5 and summary.errors == 1 and summary.success_rate == 0.8
    assert 0.3 < summary.ci_low < 0.8 < summary.ci_high <= 1.0
    assert (tmp_path / "trajectories.jsonl").read_text().count("\n") == 5
    assert [t.seed for t in trajectories] == [0, 1, 2, 3, 4]


def test_evaluate_policy_plays_each_listed_task_once() -> None:
    summary, trajectories = evaluate_policy(
        OkPolicy(), lambda: ToyEnv(), env_id="toy", task_ids=["b", "a", "c"], seed=7, progress=False
    )
    assert summary.episodes == 3 and [(t.task_id, t.seed) for t in trajectories] == [("b", 7), ("a", 8), ("c", 9)]
    with pytest.raises(ValueError, match="2 task ids for 3 seeds"):
        engine().collect(range(3), task_ids=["a", "b"])


class RecordingPolicy(OkPolicy):
    """Answers "ok" and keeps every conversation it was shown."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[dict[str, str]]] = []

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        self.seen.extend([dict(message) for message in conversation] for conversation in conversations)
        return super().generate(conversations, sampling)


def test_a_history_window_shows_the_system_prompt_and_the_last_turns_only() -> None:
    class ThreeSteps(ToyEnv):
        def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
            self.steps += 1
            return f"step {self.steps}", 0.0, self.steps >= 3, False, {"feedback": "", "parse_error": None}

    for window, expected in [
        (0, ["step 2"]),
        (1, ["step 1", "ok", "step 2"]),
        (None, ["task 0", "ok", "step 1", "ok", "step 2"]),
    ]:
        policy = RecordingPolicy()
        config = RolloutConfig(num_envs=1, max_turns=10, system_prompt="sys", history_turns=window)
        [episode] = RolloutEngine(policy, ThreeSteps, "toy", config).collect([0])
        assert len(episode.turns) == 3
        last = policy.seen[-1]
        assert last[0] == {"role": "system", "content": "sys"}
        assert [message["content"] for message in last[1:]] == expected, window


class SurrogateAgent:
    """Replies with a lone surrogate, which UTF-8 cannot encode."""

    name = "surrogate"

    def begin(self, env: gym.Env[Any, Any], observation: str, info: dict[str, Any]) -> None:
        pass

    def act(self, env: gym.Env[Any, Any], observation: str) -> str:
        return "up \ud800"


def test_evaluate_writes_every_episode_even_with_unencodable_text(tmp_path: Any) -> None:
    summary, _ = evaluate(
        lambda: ToyEnv(), SurrogateAgent(), env_id="toy", episodes=3, out_dir=tmp_path, progress=False
    )  # type: ignore[arg-type]
    written = list(read_trajectories(tmp_path / "trajectories.jsonl"))
    assert summary.episodes == 3 and len(written) == 3
    assert written[0].turns[0].action == "up \ud800"


class MalformedEnv(ToyEnv):
    """A dict observation on reset for seed 1, an old-Gym 4-tuple from step for seed 2."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        observation, info = super().reset(seed=seed, options=options)
        return ({"board": "#@."} if seed == 1 else observation), info

    def step(self, action: str) -> Any:
        if self.seed_ == 2:
            return "obs", 0.0, True, {}
        return super().step(action)


def test_a_malformed_env_result_ends_its_episode_only() -> None:
    trajectories = RolloutEngine(
        OkPolicy(), MalformedEnv, "toy", RolloutConfig(num_envs=4, max_turns=10, system_prompt="")
    ).collect(range(4))
    errors = {t.seed: t.metadata.get("error") for t in trajectories}
    assert errors[1] == "TypeError: env.reset returned a dict observation; a text env returns a str"
    assert "env.step must return (observation, reward, terminated, truncated, info)" in (errors[2] or "")
    assert "got a tuple of 4 values" in (errors[2] or "")
    assert all(t.success for t in trajectories if t.seed in (0, 3))
    assert [t.metadata["stop_reason"] for t in trajectories] == ["terminated", "error", "error", "terminated"]


class SeedRecordingPolicy(OkPolicy):
    """Answers "ok" and keeps, per conversation's first observation and turn, the seed it was sampled with."""

    def __init__(self) -> None:
        super().__init__()
        self.seeds: dict[tuple[str, int], list[int | None]] = {}

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        for position, conversation in enumerate(conversations):
            key = (conversation[0]["content"], len(conversation))
            self.seeds.setdefault(key, []).append(sampling.request_seed(position))
        return super().generate(conversations, sampling)


def test_each_episode_and_turn_samples_with_its_own_seed_whatever_the_batch() -> None:
    seen = []
    for num_envs in (1, 4):
        policy = SeedRecordingPolicy()
        config = RolloutConfig(num_envs=num_envs, group_size=2, system_prompt="", sampling=Sampling(seed=0))
        RolloutEngine(policy, ToyEnv, "toy", config).collect(range(2))
        seen.append({key: sorted(seeds, key=str) for key, seeds in policy.seeds.items()})
    assert seen[0] == seen[1]  # batched or one at a time: the same seeds
    seeds = [seed for group in seen[0].values() for seed in group]
    assert len(seeds) == 8 and len(set(seeds)) == 8  # 2 seeds x 2 episodes x 2 turns, all different


class DroppingPolicy(OkPolicy):
    """Answers every batch but drops its last reply, as a server batch that lost one would."""

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        return super().generate(conversations, sampling)[:-1]


def test_too_few_generations_fail_that_batch_only() -> None:
    config = RolloutConfig(num_envs=4, max_turns=10, system_prompt="", lockstep=True)
    trajectories = RolloutEngine(DroppingPolicy(), ToyEnv, "toy", config).collect(range(4))
    assert len(trajectories) == 4
    assert all("the policy returned 3 generations for 4 requests" in t.metadata["error"] for t in trajectories)


# ----------------------------------------------------------------------------------------------- TimedEnv
class CountingEnv(gym.Env[str, str]):
    """Counts the envs made and closed; `step` sleeps, raises its own `TimeoutError`, or echoes."""

    made: ClassVar[list[CountingEnv]] = []

    def __init__(self, make_delay: float = 0.0) -> None:
        time.sleep(make_delay)
        self.observation_space, self.action_space = FreeText(), FreeText()
        self.closed = False
        CountingEnv.made.append(self)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if action.startswith("sleep"):
            time.sleep(float(action.split()[1]))
        if action == "own-timeout":
            raise TimeoutError("the env's own page load timed out")
        return action, 0.0, False, False, {}

    def close(self) -> None:
        self.closed = True


def test_a_timed_env_abandons_a_call_past_its_timeout_and_the_next_call_gets_a_fresh_env() -> None:
    from reflectgym.agents.rollout import TimedEnv

    CountingEnv.made.clear()
    timed = TimedEnv(CountingEnv, timeout=0.3)
    assert timed.call(lambda env: env.step("a")[0]) == "a"
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"took over 0\.3 s"):
        timed.call(lambda env: env.step("sleep 1.0"))
    assert time.monotonic() - started < 0.9
    assert timed.call(lambda env: env.step("b")[0]) == "b" and len(CountingEnv.made) == 2
    time.sleep(1.0)
    assert CountingEnv.made[0].closed, "the abandoned env was closed once its call returned"
    timed.close()
    assert CountingEnv.made[1].closed, "close waits for the env to close"


@pytest.mark.parametrize("timeout", [None, 5.0])
def test_the_envs_own_timeout_error_is_its_error_not_the_wait_running_out(timeout: float | None) -> None:
    from reflectgym.agents.rollout import TimedEnv

    CountingEnv.made.clear()
    timed = TimedEnv(CountingEnv, timeout=timeout)
    with pytest.raises(TimeoutError, match="own page load"):
        timed.call(lambda env: env.step("own-timeout"))
    assert timed.call(lambda env: env.step("c")[0]) == "c"
    assert len(CountingEnv.made) == 2 and CountingEnv.made[0].closed  # (an env that raised is replaced)
    timed.close()


def test_a_failing_factory_is_not_called_again_just_to_close_and_an_env_made_after_stop_is_closed() -> None:
    from reflectgym.agents.rollout import EnvWorker, TimedEnv

    calls = []

    def failing() -> gym.Env[str, str]:
        calls.append(1)
        raise OSError("no browser")

    timed = TimedEnv(failing, timeout=5.0)
    for _ in range(2):
        with pytest.raises(OSError, match="no browser"):
            timed.call(lambda env: env.step("a"))
    assert len(calls) == 2, "one make per call: discarding a failed make makes nothing"
    timed.close()
    CountingEnv.made.clear()
    worker = EnvWorker(lambda: CountingEnv(make_delay=0.3))
    worker.submit(lambda env: env.step("a"))
    worker.stop(wait_s=5.0)  # (called while the env is still being made)
    assert len(CountingEnv.made) == 1 and CountingEnv.made[0].closed
