"""MathTool-v0: a Python tool run in a real sandbox before answering; conformance, budgets and answer judging."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import reflectgym
from reflectgym.core import audit_feedback_leaks, check_determinism, check_garbage_actions, check_snapshot_roundtrip
from reflectgym.envs.math.tool import MathToolEnv, ToolCall

ENV_ID = "reflectgym/MathToolTest-v0"
TASKS = [{"id": "mul", "question": "What is 17 * 23?", "answer": "391"}]


@pytest.fixture(scope="module")
def env_id() -> Iterator[str]:
    reflectgym.register(ENV_ID, "reflectgym.envs.math.tool:MathToolEnv", family="math", reference="worked solution")
    yield ENV_ID
    gym.registry.pop(ENV_ID, None)


@pytest.fixture
def env() -> Iterator[MathToolEnv]:
    tool_env = MathToolEnv(tasks=TASKS, max_attempts=2, max_tool_calls=2, tool_seconds=1.0)
    tool_env.reset(seed=0)
    yield tool_env
    tool_env.close()


def test_gymnasium_conformance_and_no_leaks(env_id: str) -> None:
    made = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        check_env(made.unwrapped)
    check_snapshot_roundtrip(made)
    check_garbage_actions(made, turns=6)
    assert audit_feedback_leaks(made, episodes=6, max_turns=4).ok
    made.close()
    check_determinism(lambda: gym.make(env_id), seeds=(0, 2), turns=3)


def test_a_code_block_without_an_answer_is_a_tool_call_and_its_output_comes_back(env: MathToolEnv) -> None:
    assert env.parse_action("```python\nanswer = 17 * 23\nprint(answer)\n```") == ToolCall(
        "answer = 17 * 23\nprint(answer)\n"
    )
    observation, reward, terminated, truncated, info = env.step("```python\nprint(17 * 23)\n```")
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert "391" in observation and "Tool calls left: 1" in observation and info["verdict"].details["tool_call"] == "ok"


def test_a_final_answer_outside_the_code_wins_over_the_code(env: MathToolEnv) -> None:
    _, reward, terminated, _, _ = env.step("```python\nprint(17 * 23)\n```\nSo the answer is \\boxed{391}.")
    assert (reward, terminated) == (1.0, True)


def test_errors_and_endless_loops_in_the_tool_are_reported_not_raised(env: MathToolEnv) -> None:
    error = env.step("```python\nprint(1 / 0)\n```")[0]
    assert "ZeroDivisionError" in error and 'File "tool.py", line 1' in error
    timeout = env.step("```python\nwhile True:\n    pass\n```")[0]
    assert "time limit of 1 s exceeded" in timeout


def test_tool_calls_past_the_budget_run_nothing(env: MathToolEnv) -> None:
    for _ in range(2):
        observation = env.step("```python\nprint(1)\n```")[0]
    assert observation.endswith("No tool calls left: give your final answer as \\boxed{...}.")  # not "Run code"
    observation, _, _, truncated, info = env.step("```python\nprint('should not run')\n```")
    assert "No tool calls left" in observation and "should not run" not in observation
    assert info["verdict"].details["tool_call"] == "refused" and not truncated


def test_running_out_of_answers_truncates_even_with_tool_calls_left(env: MathToolEnv) -> None:
    assert env.step("\\boxed{390}")[3] is False
    _, reward, terminated, truncated, _ = env.step("\\boxed{392}")
    assert (reward, terminated, truncated) == (0.0, False, True)


def test_the_oracle_solves_generated_problems() -> None:
    tool_env = MathToolEnv()
    for seed in range(5):
        tool_env.reset(seed=seed)
        assert tool_env.step(tool_env.oracle_action())[1] == 1.0
    tool_env.close()


def test_code_with_a_lone_surrogate_is_a_feedback_turn_and_replays(env: MathToolEnv) -> None:
    observation, reward, terminated, _, info = env.step("```python\nprint('\ud800')\n```")
    assert (reward, terminated) == (0.0, False) and info["verdict"].details["tool_call"] == "unencodable"
    assert "not run" in observation and "\\ud800" in observation and "\ud800" not in observation
    snapshot = env.snapshot()
    fresh = MathToolEnv(tasks=TASKS, max_attempts=2, max_tool_calls=2, tool_seconds=1.0)
    assert fresh.restore(snapshot) == observation
    fresh.close()


def test_restoring_a_snapshot_runs_no_tool_call_again(env: MathToolEnv) -> None:
    env.step("```python\nimport random\nprint(random.random())\n```")
    snapshot = env.snapshot()
    env.step("\\boxed{1}")

    def no_runs(code: str) -> tuple[str, str]:
        raise AssertionError("restore() ran the tool again")

    env.run_tool = no_runs  # type: ignore[method-assign]
    assert env.restore(snapshot) == snapshot.last_observation  # the random output the agent saw, unchanged
    assert "Answers left: 2. Tool calls left: 1." in env.observation()


@pytest.mark.parametrize("reply", ["```" + " " * 150_000, "```python" + "\t" * 150_000 + "x", "```\n" * 20000])
def test_hostile_fences_are_read_in_linear_time(env: MathToolEnv, reply: str) -> None:
    started = time.perf_counter()
    _, reward, _, _, info = env.step(reply)
    assert time.perf_counter() - started < 5.0
    assert info["parse_error"] and reward < 0  # no code to run and no answer: a format turn


def test_an_unknown_sandbox_name_fails_when_the_env_is_made() -> None:
    with pytest.raises(ValueError, match="unknown sandbox 'bwarp'"):
        MathToolEnv(tasks=TASKS, sandbox="bwarp")


def test_envs_without_a_named_sandbox_share_one_pool() -> None:
    envs = [MathToolEnv(tasks=TASKS) for _ in range(3)]
    try:
        assert len({id(env.sandbox) for env in envs}) == 1
    finally:
        for env in envs:
            env.close()
