"""MiniWoBEnv: MiniWoB++ pages from the `miniwob` package through the same interface; the four named tasks
solved by their scripted solvers; conformance checks on the default task."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import reflectgym
from reflectgym.core import check_determinism, check_garbage_actions, check_snapshot_roundtrip
from reflectgym.core.audit import audit_feedback_leaks
from reflectgym.envs.web.miniwob import SOLVED_TASKS, MiniWoBPages

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(importlib.util.find_spec("miniwob") is None, reason="the miniwob package is not installed"),
]


def make(**kwargs: object) -> gym.Env:
    from reflectgym.envs.web.env import MiniWoBEnv

    return MiniWoBEnv(**kwargs)  # type: ignore[arg-type]


def test_the_package_pages_are_found() -> None:
    pages = MiniWoBPages.locate()
    assert len(pages.tasks) >= 100 and set(SOLVED_TASKS) <= set(pages.tasks)
    with pytest.raises(KeyError, match="similar"):
        pages.check("click-tset")


def test_a_folder_that_is_not_miniwob_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a MiniWoB"):
        make(miniwob_dir=tmp_path)


@pytest.mark.parametrize("task", SOLVED_TASKS)
def test_scripted_solvers_succeed(task: str) -> None:
    env = make(task=task)
    for seed in (0, 1):
        env.reset(seed=seed)
        reward, terminated, info = 0.0, False, {}
        for _ in range(6):
            _, reward, terminated, truncated, info = env.step(env.unwrapped.oracle_action())  # type: ignore[attr-defined]
            if terminated or truncated:
                break
        assert terminated and reward == 1.0 and info["error"] is None
    env.close()


def test_a_wrong_click_ends_with_the_pages_reward() -> None:
    env = make(task="click-button", feedback="diagnostic")
    observation, info = env.reset(seed=3)
    assert "Click on the" in observation and info["privileged"].startswith("Solution")
    right = env.unwrapped.oracle_action()  # type: ignore[attr-defined]
    buttons = [line.split("]")[0].strip(" [") for line in observation.splitlines() if "] button " in line]
    wrong = next(b for b in buttons if f"click({b})" != right)
    _, reward, terminated, _, info = env.step(f"click({wrong})")
    assert terminated and reward == -1.0 and "reward -1" in info["feedback"]
    env.close()


def test_a_users_own_checkout_folder_works() -> None:
    root = MiniWoBPages.locate().root
    env = make(task="enter-text", miniwob_dir=root)
    observation, _ = env.reset(seed=0)
    assert observation.startswith('Task: Enter "')
    env.close()


@pytest.mark.slow
def test_conformance_on_click_test() -> None:
    env_id = reflectgym.register(
        "MiniWoBCheck-v0", "reflectgym.envs.web.env:MiniWoBEnv", family="web", requires=("browser",)
    )
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        check_env(env.unwrapped)
    check_snapshot_roundtrip(env)
    check_garbage_actions(env, turns=10)
    assert audit_feedback_leaks(env, episodes=4, max_turns=5).ok
    env.close()
    check_determinism(lambda: gym.make(env_id), seeds=(2,), turns=4)
