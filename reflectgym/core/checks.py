"""Conformance checks every reflectgym env passes (and users can run on theirs): same-seed determinism, snapshot
round trips, and robustness to garbage actions. Each raises `AssertionError` saying what differed."""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium as gym
import numpy as np

from reflectgym.core.env import TextEnv
from reflectgym.core.spaces import FreeText


def _unwrapped_text_env(env: gym.Env[Any, Any]) -> TextEnv[Any]:
    base = env.unwrapped
    if not isinstance(base, TextEnv):
        raise TypeError(f"expected a reflectgym TextEnv; got {type(base).__name__}")
    return base


def _actions(count: int, seed: int) -> list[str]:
    """A fixed, seeded list of garbage action texts (`play` mixes in oracle moves where the env has them)."""
    space = FreeText(sample_max_length=32, seed=seed)
    return [space.sample() for _ in range(count)]


def play(env: gym.Env[Any, Any], seed: int, actions: list[str], use_oracle: bool = True) -> list[tuple[Any, ...]]:
    """Resets with `seed` and plays; odd turns use the oracle when the env has one. Returns every step's output."""
    base = _unwrapped_text_env(env)
    observation, info = env.reset(seed=seed)
    record: list[tuple[Any, ...]] = [(observation, info.get("task_id"))]
    for turn, action in enumerate(actions):
        oracle = getattr(base, "oracle_action", None)
        text = _oracle_or(oracle, action) if use_oracle and oracle is not None and turn % 2 else action
        observation, reward, terminated, truncated, info = env.step(text)
        record.append((observation, reward, terminated, truncated, info.get("feedback"), info.get("parse_error")))
        if terminated or truncated:
            break
    return record


def _oracle_or(oracle: Any, action: str) -> str:
    """The oracle's action, or `action` where the oracle has nothing to say (a task without a reference answer, a
    page without a scripted solver): the check is about determinism, not about the oracle."""
    try:
        return str(oracle())
    except Exception:
        return action


def check_determinism(make_env: Any, seeds: tuple[int, ...] = (0, 1, 7), turns: int = 6) -> None:
    """Two fresh envs reset with the same seed and fed the same actions produce identical episodes."""
    for seed in seeds:
        actions = _actions(turns, seed)
        first, second = make_env(), make_env()
        try:
            run_1, run_2 = play(first, seed, actions), play(second, seed, actions)
        finally:
            first.close()
            second.close()
        for index, (step_1, step_2) in enumerate(zip(run_1, run_2, strict=False)):
            assert step_1 == step_2, f"seed {seed}: step {index} differs between two same-seed runs"
        assert len(run_1) == len(run_2), f"seed {seed}: the runs ended after different numbers of turns"


def check_snapshot_roundtrip(env: gym.Env[Any, Any], seed: int = 0, prefix: int = 2, suffix: int = 3) -> None:
    """A snapshot taken mid-episode, pickled and restored, continues exactly as the original did."""
    base = _unwrapped_text_env(env)
    actions = _actions(prefix + suffix, seed)
    env.reset(seed=seed)
    done = False
    for action in actions[:prefix]:
        *_, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
        if done:
            return
    snapshot = pickle.loads(pickle.dumps(base.snapshot()))
    after = [_step_record(env, action) for action in actions[prefix:]]
    restored_observation = base.restore(snapshot)
    assert restored_observation == snapshot.last_observation
    again = [_step_record(env, action) for action in actions[prefix:]]
    assert after == again, "the episode continued differently after restore()"


def _step_record(env: gym.Env[Any, Any], action: str) -> tuple[Any, ...]:
    base = _unwrapped_text_env(env)
    if base.episode_over:
        return ("over",)
    observation, reward, terminated, truncated, info = env.step(action)
    return (observation, reward, terminated, truncated, info.get("feedback"))


def check_garbage_actions(env: gym.Env[Any, Any], seed: int = 0, turns: int = 20) -> None:
    """Random text (unicode, brackets, empty strings, huge strings) never raises: each is a turn."""
    rng = np.random.default_rng(seed)
    extremes = ["", " ", "\x00", "💥" * 100, "{" * 1000, "a" * 100_000, "\n\n\n", "None", "null", "-1"]
    space = FreeText(sample_max_length=200, seed=seed)
    env.reset(seed=seed)
    for turn in range(turns):
        text = extremes[turn] if turn < len(extremes) else space.sample()
        observation, reward, terminated, truncated, info = env.step(text)
        assert isinstance(observation, str) and isinstance(info.get("feedback"), str)
        assert np.isfinite(float(reward))
        if terminated or truncated:
            env.reset(seed=int(rng.integers(1_000_000)))
