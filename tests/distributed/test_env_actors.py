"""Envs in Ray actors, on a real local cluster: the same episodes as a local env (the spec's wrappers here, the
base env's methods and snapshots there), an env registered at run time made in its actor, a crashed or hung env
failing only its own episode, and trainers (GRPO, ExIt) whose runs with `env_actors` equal their local runs,
weight for weight."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

import reflectgym
from reflectgym.agents import Generation, RolloutConfig, RolloutEngine, Sampling
from reflectgym.core import Task, TaskEnv, Transition
from reflectgym.trainers.config import ConfigError

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")

from reflectgym.distributed.cluster import check_room  # noqa: E402
from reflectgym.distributed.envs import EnvActorConfig, EnvActorError, RemoteEnv, remote_env_factory  # noqa: E402

SOKOBAN = "reflectgym/Sokoban-6x6-1-v0"
SMALL = EnvActorConfig(num_cpus=0.25, start_timeout_s=120)


def length_share(task: Task, answer: str) -> float:
    """Dense: a tiny model's reply lengths vary, so groups carry signal; passed (the episode ends) at length 6."""
    return min(len(answer.strip()), 6) / 6


TASKS = [{"id": "talk", "prompt": "Talk.", "answer": "aaaaaa"}, {"id": "chat", "prompt": "Chat.", "answer": "aaaaaa"}]
TALK_ID = reflectgym.register_task_env("ActorTalk-v0", TASKS, length_share, max_attempts=3)


class FragileEnv(TaskEnv):
    """Kills its own process on the reply "die", hangs on "hang" (a browser that crashes, a verifier stuck)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(tasks=TASKS, verify=length_share, max_attempts=3, **kwargs)

    def _apply(self, action: str) -> Transition:
        if action == "die":
            os._exit(1)
        if action == "hang":
            time.sleep(60)
        if action == "attr":
            raise AttributeError("a bug inside the env")
        return super()._apply(action)


# (hostile envs stay out of reflectgym's catalogue, which the registry-wide conformance tests play)
FRAGILE_ID = "actor-tests/Fragile-v0"
gym.register(FRAGILE_ID, FragileEnv)


class BrokenEnv(TaskEnv):
    def __init__(self, **kwargs: Any) -> None:
        raise ValueError("no such dataset: ./missing.jsonl")


BROKEN_ID = "actor-tests/Broken-v0"
gym.register(BROKEN_ID, BrokenEnv)


def play(env: gym.Env[Any, Any], actions: Sequence[str], seed: int) -> list[Any]:
    """What a script of moves sees: the first observation, then each step's result."""
    seen: list[Any] = [env.reset(seed=seed)[0]]
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        seen.append((observation, reward, terminated, truncated, info.get("feedback")))
        if terminated or truncated:
            break
    return seen


def test_a_remote_env_plays_as_the_local_one_with_the_specs_wrappers_here() -> None:
    moves = ["up", "left", "down", "right", "wait", "up"]
    local = gym.make(SOKOBAN, max_episode_steps=4)
    remote = remote_env_factory(SOKOBAN, {"max_episode_steps": 4}, SMALL)()
    try:
        assert isinstance(remote.unwrapped, RemoteEnv)
        assert remote.spec is not None and remote.spec.id == SOKOBAN and copy.deepcopy(remote.spec) is not None
        assert remote.unwrapped.spec is not None and local.unwrapped.spec is not None
        assert remote.unwrapped.spec.kwargs.keys() == local.unwrapped.spec.kwargs.keys()
        assert "TimeLimit" in repr(remote) and "PassiveEnvChecker" in repr(remote)  # (the wrappers run here)
        assert play(remote, moves, seed=7) == play(local, moves, seed=7)
        assert play(remote, moves, seed=7)[-1][3], "the time limit (a wrapper on this side) truncated it"
        assert remote.observation_space == local.observation_space
        assert remote.unwrapped.action_format == local.unwrapped.action_format  # type: ignore[attr-defined]
        assert getattr(remote.unwrapped, "no_such_thing", "absent") == "absent"
        with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
            remote.unwrapped.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    finally:
        remote.close()
        local.close()
    remote.close()  # (idempotent)


def test_snapshots_travel_to_and_from_the_actor() -> None:
    remote = remote_env_factory(f"reflectgym:{SOKOBAN}", {}, SMALL)()  # (`module:Name`, as `gym.make` takes)
    try:
        remote.reset(seed=3)
        remote.step("up")
        snapshot = remote.unwrapped.snapshot()  # type: ignore[attr-defined]
        after = [remote.step(move)[0] for move in ("left", "down")]
        remote.unwrapped.restore(snapshot)  # type: ignore[attr-defined]
        assert [remote.step(move)[0] for move in ("left", "down")] == after
        local = gym.make(SOKOBAN)
        local.reset(seed=99)
        local.unwrapped.restore(snapshot)  # type: ignore[attr-defined]  # (the actor's snapshot is an ordinary one)
        assert local.step("left")[0] == after[0]
    finally:
        remote.close()


def test_an_env_registered_at_run_time_is_made_in_its_actor() -> None:
    remote = remote_env_factory(TALK_ID, {}, SMALL)()
    try:
        observation, _ = remote.reset(seed=0)
        assert observation in ("Talk.", "Chat.")
        _, reward, terminated, _, _ = remote.step("aaa")
        assert reward == pytest.approx(0.5) and not terminated
        assert remote.unwrapped.max_attempts == 3  # type: ignore[attr-defined]
    finally:
        remote.close()


def test_an_env_that_cannot_be_made_is_an_env_actor_error_naming_its_cause() -> None:
    with pytest.raises(EnvActorError, match="no such dataset"):
        remote_env_factory(BROKEN_ID, {}, SMALL)()


def test_a_dead_or_hung_actor_fails_its_calls_and_close_still_returns() -> None:
    dying = remote_env_factory(FRAGILE_ID, {}, SMALL)()
    dying.reset(seed=0)
    with pytest.raises(EnvActorError, match="died during step"):
        dying.step("die")
    dying.close()
    hung = remote_env_factory(FRAGILE_ID, {}, dataclasses.replace(SMALL, call_timeout_s=1.0))()
    hung.reset(seed=0)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="step\\(\\) took over 1 s in its Ray actor"):
        hung.step("hang")
    hung.close()
    assert time.monotonic() - started < 30, "close kills a hung actor rather than waiting for its env"


def test_a_cleanly_closed_env_leaves_its_actor_for_the_next_one_and_a_faulty_one_does_not() -> None:
    make_env = remote_env_factory(FRAGILE_ID, {}, SMALL, max_envs=1)
    first = make_env()
    first.reset(seed=0)
    first.step("aaa")
    first.close()
    second, third = make_env(), make_env()  # (the kept actor, then a new one)
    assert make_env.hosts.started == 2
    second.reset(seed=1)
    with pytest.raises(gym.error.ResetNeeded):
        third.step("aaa")  # (the wrappers here: a new env must be reset first, whatever its actor did before)
    third.reset(seed=0)
    with pytest.raises(EnvActorError):
        third.step("die")
    third.close()  # faulty: not kept (so there is room for the next)
    second.close()
    fourth = make_env()
    fourth.reset(seed=0)
    assert fourth.step("aaaaaa")[1] == 1.0 and make_env.hosts.started == 2, "it took the actor second left"
    fourth.close()
    fifth, sixth = make_env(), make_env()  # one kept at most: the second one is new
    assert make_env.hosts.started == 3
    fifth.reset(seed=0)
    with pytest.raises(AttributeError, match="a bug inside the env"):
        fifth.step("attr")  # (an AttributeError from inside the env is its fault, not a missing name)
    fifth.close()
    sixth.close()  # (kept: the faulty one was not)
    make_env.close()
    assert make_env.hosts._free == []
    seventh = make_env()
    seventh.reset(seed=0)
    seventh.close()  # after the factory closed: not kept
    assert make_env.hosts._free == [] and make_env.hosts.started == 4


@pytest.mark.browser
@pytest.mark.skipif(importlib.util.find_spec("miniwob") is None, reason="the miniwob package is not installed")
def test_a_browser_env_plays_in_its_actor_and_the_next_env_keeps_its_browser() -> None:
    make_env = remote_env_factory("reflectgym/MiniWoB-v0", {"task": "click-button"}, SMALL, max_envs=1)
    env = make_env()
    env.reset(seed=3)
    action = env.unwrapped.oracle_action()  # type: ignore[attr-defined]  # (the env's own solver, in the actor)
    _, reward, terminated, _, _ = env.step(action)
    assert reward == 1.0 and terminated
    env.close()
    again = make_env()
    started = time.monotonic()
    assert "Task:" in again.reset(seed=4)[0]
    assert make_env.hosts.started == 1 and time.monotonic() - started < 5, "the kept actor's browser was reused"
    again.close()
    make_env.close()


class ScriptedPolicy:
    """Replies from a fixed list by seed and turn: "die" on seed 1's first turn, else "aaaaaa"."""

    name = "scripted"

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        return [Generation("die" if "Chat." in str(c[0]["content"]) else "aaaaaa") for c in conversations]


def test_an_env_whose_process_dies_ends_only_its_episode_and_the_next_one_gets_a_fresh_actor() -> None:
    rollout = RolloutConfig(num_envs=2, group_size=2, max_turns=2, system_prompt="", lockstep=True)
    make_env = remote_env_factory(FRAGILE_ID, {}, SMALL, max_envs=2)
    seeds = range(6)
    trajectories = RolloutEngine(ScriptedPolicy(), make_env, FRAGILE_ID, rollout).collect(seeds)
    died = [t for t in trajectories if t.task_id == "chat"]
    lived = [t for t in trajectories if t.task_id == "talk"]
    assert died and lived and len(trajectories) == 12
    assert all(t.metadata["stop_reason"] == "error" for t in died)
    assert all(
        "EnvActorError: the Ray actor of actor-tests/Fragile-v0 died during step()" in t.metadata["error"] for t in died
    )
    assert all(t.success for t in lived), "episodes played after a crash (on fresh actors) ran normally"


def test_a_cluster_too_small_is_an_error_when_fixed_and_a_warning_when_it_may_grow() -> None:
    with pytest.raises(ValueError, match="9 env actors need 9 x 1 CPUs, the cluster has 4"):
        check_room(9, {"CPU": 1.0}, "9 env actors", fixed=True, wait_s=60)
    with pytest.warns(UserWarning, match="they wait until it grows"):
        check_room(9, {"CPU": 1.0}, "9 env actors", fixed=False, wait_s=60)
    check_room(4, {"CPU": 1.0}, "4 env actors", fixed=True, wait_s=60)  # fits: nothing said


# ----------------------------------------------------------------------------------------------- trainers
torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")
pytest.importorskip("transformers", reason="transformers is not installed")

from reflectgym.agents.hf_policy import HFPolicy  # noqa: E402
from reflectgym.agents.tiny import TinyModelConfig, build_tiny_model  # noqa: E402
from reflectgym.trainers.exit import ExItConfig, ExItTrainer  # noqa: E402
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("env-actors") / "model", TinyModelConfig(seed=3))


SHARED: dict[str, Any] = dict(
    env_id=TALK_ID, steps=2, tasks_per_step=2, group_size=4, num_envs=2, lr=3e-3, max_new_tokens=6, save_every=0,
    progress=False, device="cpu", system_prompt="", env_actor_cpus=0.25,
)  # fmt: skip
TRAINERS = {
    "grpo": (GRPOConfig, GRPOTrainer, {"max_turns": 2}),
    "exit": (ExItConfig, ExItTrainer, {"select_prob": 0.75, "diverge_prob": 0.5, "min_buffer": 2}),
}


@pytest.mark.parametrize("name", list(TRAINERS))
def test_a_run_with_env_actors_equals_the_run_with_local_envs(
    tmp_path: Path, model_dir: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ExIt also restores its instances' snapshots in the actors and plays replies there."""
    config_class, trainer_class, own = TRAINERS[name]
    started = []
    start = RemoteEnv.__init__
    monkeypatch.setattr(RemoteEnv, "__init__", lambda self, *a, **k: started.append(1) or start(self, *a, **k))
    runs = {}
    for actors in (False, True):
        assert not started or actors
        config = config_class(output_dir=str(tmp_path / str(actors)), env_actors=actors, **SHARED, **own)
        trainer = trainer_class(config, HFPolicy.from_pretrained(model_dir))
        try:
            runs[actors] = (trainer.train(), dict(trainer.model.named_parameters()))
        finally:
            getattr(trainer, "close", lambda: None)()
    (local, local_weights), (remote, remote_weights) = runs[False], runs[True]
    assert len(started) >= 2, "the second run's envs were made in actors"
    assert any("loss" in step for step in local), "no update: the weights never moved, nothing was tested"
    keys = ("reward", "success", "sequences", "loss", "grad_norm")
    assert [[step.get(k) for k in keys] for step in remote] == [[step.get(k) for k in keys] for step in local]
    assert all(torch.equal(value, local_weights[key]) for key, value in remote_weights.items())


def test_env_actor_cpus_must_be_a_number_of_cpus() -> None:
    with pytest.raises(ConfigError, match="env_actor_cpus must be 0 or positive"):
        GRPOConfig(env_actor_cpus=-1.0)
