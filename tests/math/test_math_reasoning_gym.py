"""The reasoning-gym adapter: seeded tasks by id, and the dataset's own scorer as the verifier."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("reasoning_gym")

from reflectgym.core import check_determinism, check_snapshot_roundtrip
from reflectgym.envs.math.env import MathEnv
from reflectgym.envs.math.reasoning_gym import ReasoningGymTasks


def test_tasks_are_reproducible_and_addressable() -> None:
    source = ReasoningGymTasks("basic_arithmetic", size=20, seed=3)
    task = source.sample(np.random.default_rng(0))
    assert source.get(task.id) == task
    assert ReasoningGymTasks("basic_arithmetic", size=20, seed=3).get(task.id) == task
    with pytest.raises(KeyError, match="basic_arithmetic-<index>"):
        source.get("basic_arithmetic-99")
    for bad in ("basic_arithmetic-²", "basic_arithmetic-" + "9" * 5000):  # `int` refuses both
        with pytest.raises(KeyError, match="basic_arithmetic-<index>"):
            source.get(bad)


def test_scorer_judges_the_env() -> None:
    source = ReasoningGymTasks("basic_arithmetic", size=20, seed=3)
    env = MathEnv(tasks=source, max_attempts=2)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("\\boxed{123456789}")
    assert (reward, terminated) == (0.0, False) and "score 0.00" in info["feedback"]
    _, reward, terminated, _, _ = env.step(env.oracle_action())
    assert (reward, terminated) == (1.0, True)
    check_determinism(lambda: MathEnv(tasks=ReasoningGymTasks("basic_arithmetic", size=20, seed=3)), seeds=(0, 1))
    check_snapshot_roundtrip(MathEnv(tasks=source, max_attempts=4))
