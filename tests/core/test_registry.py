"""Registration: the namespace, gymnasium.make with and without import, the catalogue, the task-env helper."""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import reflectgym
from reflectgym.core import TaskEnv, TaskFormatError, audit_feedback_leaks, check_determinism
from reflectgym.core.registry import qualify
from reflectgym.core.types import Verdict

ROOT = Path(__file__).resolve().parents[2]


def test_qualify_fills_in_the_namespace_and_refuses_others() -> None:
    assert qualify("Foo-v0") == "reflectgym/Foo-v0" == qualify("reflectgym/Foo-v0")
    with pytest.raises(ValueError, match="namespace"):
        qualify("other/Foo-v0")


def test_a_custom_env_in_a_few_lines_is_a_full_gymnasium_env() -> None:
    tasks = [{"id": "one", "prompt": "Say one.", "answer": "one"}, {"id": "two", "prompt": "Say two.", "answer": "two"}]
    env_id = reflectgym.register_task_env("SayIt-v0", tasks, lambda task, answer: answer.lower() == task.reference)
    env = gym.make(env_id, max_attempts=2)
    check_env(env.unwrapped)
    check_determinism(lambda: gym.make(env_id, max_attempts=2))
    observation, info = env.reset(seed=0, options={"task_id": "two"})
    assert observation == "Say two." and info["task_id"] == "two" and info["privileged"] == "two"
    assert env.step("three")[1:4] == (0.0, False, False)
    _, reward, terminated, _, info = env.step("TWO")
    assert reward == 1.0 and terminated and info["verdict"].passed
    assert reflectgym.env_info(env_id).family == "custom"
    assert env_id in [info.id for info in reflectgym.list_envs()]


def test_a_built_in_id_cannot_be_replaced_but_ones_own_env_can_be_registered_again() -> None:
    verify = lambda task, answer: answer == task.reference  # noqa: E731
    tasks = [{"id": "one", "prompt": "Say one.", "answer": "one"}]
    for built_in in ("Sokoban-v0", "reflectgym/Math-v0"):
        with pytest.raises(ValueError, match="is a built-in env: register yours under another name"):
            reflectgym.register_task_env(built_in, tasks, verify)
    assert reflectgym.env_info("Sokoban-v0").family == "sokoban"
    env_id = reflectgym.register_task_env("AgainAndAgain-v0", tasks, verify)
    again = [{"id": "two", "prompt": "Say two.", "answer": "two"}]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (Gymnasium says it overrides the earlier registration)
        assert reflectgym.register_task_env("AgainAndAgain-v0", again, verify) == env_id
    env = gym.make(env_id)
    assert env.reset(seed=0)[0] == "Say two."  # (the second registration's tasks)
    env.close()


def test_the_custom_env_example_is_registered_and_passes_check_env() -> None:
    namespace = __import__("runpy").run_path(str(ROOT / "examples" / "custom_env.py"))
    assert "verify" in namespace
    lines = [line for line in (ROOT / "examples" / "custom_env.py").read_text().splitlines() if line.strip()]
    body = lines[: next(i for i, line in enumerate(lines) if line.startswith("if __name__"))]
    code_lines = [line for line in body if not line.lstrip().startswith(("#", '"""', "import", "from"))]
    assert len(code_lines) <= 20, "the custom env example should stay within 20 lines of code"
    env = gym.make("reflectgym/Capitals-v0", feedback="hint")
    check_env(env.unwrapped)
    env.reset(seed=0, options={"task_id": "fr"})
    *_, info = env.step("Lyon")
    assert "'P'" in info["feedback"]
    assert audit_feedback_leaks(env, episodes=10).ok


def test_broken_task_file_fails_at_registration(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"id": "a", "prompt": "x"}\n{"id": "b"}\n')
    with pytest.raises(TaskFormatError, match=r"tasks\.jsonl:2: field 'prompt'"):
        reflectgym.register_task_env("Broken-v0", path, lambda task, answer: True)


def test_gymnasium_make_with_module_prefix_works_without_importing_reflectgym() -> None:
    code = (
        "import sys, gymnasium as gym\n"
        "assert 'reflectgym' not in sys.modules\n"
        "env = gym.make('reflectgym:reflectgym/Sokoban-v0')\n"
        "print(type(env.unwrapped).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "SokobanEnv"


def test_importing_reflectgym_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, reflectgym\n"
        "heavy = [m for m in ('torch', 'transformers', 'playwright', 'docker', 'ray', 'vllm', 'datasets')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_non_string_action_through_gymnasium_make_is_a_type_error() -> None:
    env = gym.make("reflectgym/Capitals-v0")
    env.reset(seed=0)
    with pytest.raises(TypeError, match="str"):
        env.step(42)


def _step_with(verify: Callable[..., object]) -> tuple[Any, ...]:
    env = TaskEnv(tasks=[{"id": "a", "prompt": "2+2?", "answer": "4"}], verify=verify, max_attempts=2)  # type: ignore[arg-type]
    env.reset(seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return env.step("four")


@pytest.mark.parametrize(
    ("result", "reward", "passed"),
    [
        (np.float32(1.0), 1.0, True),
        (np.bool_(True), 1.0, True),
        (np.int64(0), 0.0, False),
        (np.float64(0.5), 0.5, False),
    ],
)
def test_numpy_scalars_from_verify_are_scores(result: object, reward: float, passed: bool) -> None:
    _, got, terminated, _, info = _step_with(lambda task, answer: result)
    assert got == reward and type(got) is float and terminated is passed and info["verdict"].passed is passed


@pytest.mark.parametrize(
    "verify",
    [
        lambda task, answer: float("nan"),
        lambda task, answer: float("inf"),
        lambda task, answer: reflectgym.Verdict(float("nan"), True, "odd"),
        lambda task, answer: None,
        lambda task, answer: float(answer) == 4.0,  # ValueError on "four"
    ],
    ids=["nan", "inf", "nan-verdict", "none", "raises"],
)
def test_an_answer_verify_cannot_judge_is_an_unverified_turn_not_a_crash(verify: Callable[..., object]) -> None:
    _, reward, terminated, truncated, info = _step_with(verify)
    assert (reward, terminated, truncated, info["verdict"].passed) == (0.0, False, False, False)
    assert "could not be verified" in info["feedback"] and "Error)" in info["feedback"]  # the type, not the text
    assert info["verdict"].details["status"] == "unknown" and "Error: " in info["verdict"].details["verify_error"]


def test_a_verify_error_is_warned_and_kept_out_of_binary_feedback() -> None:
    tasks = [{"id": "a", "prompt": "2+2?", "answer": "4"}]
    env_id = reflectgym.register_task_env("RaisingVerify-v0", tasks, lambda task, answer: 1 / 0, feedback="binary")
    env = gym.make(env_id)
    env.reset(seed=0)
    with pytest.warns(RuntimeWarning, match="ZeroDivisionError"):
        *_, truncated, info = env.step("4")
    assert info["feedback"] == "Incorrect." and truncated
    assert "ZeroDivisionError" in info["verdict"].details["verify_error"]
    gym.registry.pop(env_id)


def test_determinism_check_plays_on_where_the_oracle_has_nothing_to_say() -> None:
    """A task without a reference answer: the oracle raises, and the check falls back to its garbage action."""
    poem = [{"id": "p", "prompt": "Write a haiku."}]
    env_id = reflectgym.register_task_env("Poem-v0", poem, lambda t, a: False, max_attempts=3)
    check_determinism(lambda: gym.make(env_id), seeds=(0,), turns=3)


def test_the_leak_audit_sees_a_marker_in_another_case() -> None:
    tasks = [{"id": "fr", "prompt": "Capital of France?", "answer": "Paris"}]
    env_id = reflectgym.register_task_env(
        "Shouty-v0", tasks, lambda task, answer: Verdict(reward=0.0, passed=False, feedback="No, it was PARIS.")
    )
    assert not audit_feedback_leaks(env_id, episodes=2).ok


@pytest.mark.parametrize("attempts", [None, 0, True])
def test_max_attempts_must_be_a_whole_number(attempts: object) -> None:
    with pytest.raises(ValueError, match="max_attempts must be a whole number of at least 1"):
        TaskEnv(tasks=[{"id": "a", "prompt": "?"}], verify=lambda t, a: True, max_attempts=attempts)  # type: ignore[arg-type]


def test_a_bad_feedback_level_fails_at_registration() -> None:
    with pytest.raises(ValueError, match="verbose"):
        reflectgym.register_task_env("Verbose-v0", [{"id": "a", "prompt": "?"}], lambda t, a: True, feedback="verbose")


def test_a_verdict_with_no_feedback_shows_none_and_passed_may_be_one() -> None:
    verdict = Verdict(reward=1.0, passed=1, feedback=None)  # type: ignore[arg-type]
    env = TaskEnv(tasks=[{"id": "a", "prompt": "?"}], verify=lambda t, a: verdict)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("x")
    assert reward == 1.0 and terminated and "None" not in info["feedback"]


def test_a_boolean_task_id_is_a_located_row_error(tmp_path: Path) -> None:
    path = tmp_path / "ids.jsonl"
    path.write_text('{"id": true, "prompt": "?"}\n')
    with pytest.raises(TaskFormatError, match=r"ids.jsonl:1.*'id'.*bool"):
        reflectgym.register_task_env("BoolId-v0", path, lambda t, a: True)
