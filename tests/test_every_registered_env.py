"""Registry-wide conformance: every registered env passes check_env, same-seed determinism, snapshot round
trips, garbage actions and the feedback-leak audit; the scripted oracle solves it."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env
from support.resources import resource_missing

import reflectgym
from reflectgym.agents import OracleAgent, evaluate
from reflectgym.core import check_determinism, check_garbage_actions, check_snapshot_roundtrip

ENVS = reflectgym.list_envs()


def make_or_skip(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    for resource in reflectgym.env_info(env_id).requires:
        reason = resource_missing(resource)
        if reason is not None:
            pytest.skip(f"[{resource}] {reason}")
    return gym.make(env_id, **kwargs)


params = pytest.mark.parametrize("env_id", [info.id for info in ENVS])


@params
def test_check_env(env_id: str) -> None:
    env = make_or_skip(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # gymnasium's checker warns about real problems
        check_env(env.unwrapped)
    env.close()


@params
def test_same_seed_same_episode(env_id: str) -> None:
    make_or_skip(env_id).close()
    check_determinism(lambda: gym.make(env_id), seeds=(0, 3), turns=4)


@params
def test_snapshot_round_trip(env_id: str) -> None:
    env = make_or_skip(env_id)
    check_snapshot_roundtrip(env)
    env.close()


@params
def test_garbage_actions_are_turns_not_crashes(env_id: str) -> None:
    env = make_or_skip(env_id)
    check_garbage_actions(env, turns=12)
    env.close()


@params
def test_nothing_privileged_leaks_to_the_student(env_id: str) -> None:
    env = make_or_skip(env_id)
    report = reflectgym.audit_feedback_leaks(env, episodes=8, max_turns=10)
    assert report.ok, str(report)
    env.close()


@params
def test_oracle_solves_it(env_id: str) -> None:
    make_or_skip(env_id).close()
    summary, _ = evaluate(lambda: gym.make(env_id), OracleAgent(), env_id=env_id, episodes=3, progress=False)
    assert summary.errors == 0 and summary.success_rate == 1.0


@params
def test_every_env_takes_the_wait_action_when_asked(env_id: str) -> None:
    env = make_or_skip(env_id, wait_action=True)
    env.reset(seed=0)
    observation, reward, terminated, _, info = env.step("Thought: I should revise my plan.\nAction: wait")
    assert (observation, reward, terminated, info["parse_error"]) == ("ok.", 0.0, False, None)
    env.close()
