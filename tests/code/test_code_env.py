"""CodeEnv / CodeIOEnv: bundled references pass, wrong code fails with feedback naming the failing test, and
syntax errors, endless loops, exceptions, partial passes, missing code, hidden tests and hostile code."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import reflectgym
from reflectgym.core import audit_feedback_leaks, check_determinism, check_garbage_actions, check_snapshot_roundtrip
from reflectgym.envs.code.env import CodeEnv, CodeIOEnv, HumanEvalEnv
from reflectgym.envs.code.verifier import IOCase, IOVerifier, Program, VerifierConfig, outputs_match
from reflectgym.sandboxes.pool import PoolConfig, bwrap_pool

FAST = VerifierConfig(per_test_seconds=0.5, run_seconds=2.0)
IDS = {"function": "reflectgym/CodeTest-v0", "io": "reflectgym/CodeIOTest-v0"}


def fenced(code: str) -> str:
    return f"Here is my code:\n```python\n{code}\n```"


@pytest.fixture(scope="module")
def env_ids() -> Iterator[dict[str, str]]:
    reflectgym.register(IDS["function"], "reflectgym.envs.code.env:CodeEnv", family="code")
    reflectgym.register(IDS["io"], "reflectgym.envs.code.env:CodeIOEnv", family="code")
    yield IDS
    for env_id in IDS.values():
        gym.registry.pop(env_id, None)


@pytest.fixture
def code_env() -> Iterator[CodeEnv]:
    env = CodeEnv(verifier=FAST)
    yield env
    env.close()


@pytest.fixture
def io_env() -> Iterator[CodeIOEnv]:
    env = CodeIOEnv(verifier=FAST)
    yield env
    env.close()


@pytest.mark.parametrize("family", ["function", "io"])
def test_gymnasium_conformance(env_ids: dict[str, str], family: str) -> None:
    env = gym.make(env_ids[family])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        check_env(env.unwrapped)
    check_snapshot_roundtrip(env)
    check_garbage_actions(env, turns=6)
    env.close()
    check_determinism(lambda: gym.make(env_ids[family]), seeds=(0, 5), turns=3)


@pytest.mark.parametrize("family", ["function", "io"])
def test_no_reference_solution_leaks_into_feedback(env_ids: dict[str, str], family: str) -> None:
    env = gym.make(env_ids[family])
    report = audit_feedback_leaks(env, episodes=6, max_turns=3)
    assert report.ok, str(report)
    env.close()


@pytest.mark.parametrize("env_class", [CodeEnv, CodeIOEnv])
def test_every_bundled_reference_solution_passes_every_test(env_class: type[CodeEnv]) -> None:
    env = env_class()
    for task in env.tasks:  # type: ignore[attr-defined]
        env.reset(options={"task_id": task.id})
        _, reward, terminated, _, info = env.step(env.oracle_action())
        assert (reward, terminated) == (1.0, True), f"{task.id}: {info['feedback']}"
        assert info["privileged"] == task.reference
    env.close()


def test_a_wrong_function_fails_naming_the_call_expected_and_actual(code_env: CodeEnv) -> None:
    code_env.reset(options={"task_id": "fn/second_largest"})
    wrong = "def second_largest(numbers):\n    return sorted(numbers)[-2]"
    observation, reward, terminated, truncated, info = code_env.step(fenced(wrong))
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert "Test 1 failed." in info["feedback"]
    assert "call:     second_largest([4, 1, 4, 3])" in info["feedback"]
    assert "expected: 3" in info["feedback"] and "actual:   4" in info["feedback"]
    assert "Attempt 2 of 3" in observation


def test_a_body_only_reply_completes_the_prompt(code_env: CodeEnv) -> None:
    code_env.reset(options={"task_id": "fn/chunk"})
    body = "    return [items[i:i + size] for i in range(0, len(items), size)]"
    assert code_env.step(body)[1] == 1.0


def test_a_body_only_reply_indented_deeper_or_shallower_still_completes_the_prompt() -> None:
    env = HumanEvalEnv(max_attempts=1)
    try:
        env.reset(options={"task_id": "HumanEval/0"})
        body = "for i, a in enumerate(numbers):\n    for j, b in enumerate(numbers):\n"
        body += "        if i != j and abs(a - b) < threshold:\n            return True\nreturn False\n"
        for indent in ("        ", "  "):
            env.reset(options={"task_id": "HumanEval/0"})
            reply = "".join(indent + line + "\n" for line in body.splitlines())
            assert env.step(reply)[1] == 1.0, indent
    finally:
        env.close()


def test_a_syntax_error_is_reported_with_the_candidates_own_line_number(code_env: CodeEnv) -> None:
    code_env.reset(options={"task_id": "fn/is_prime"})
    feedback = code_env.step(fenced("def is_prime(n):\n    return n >\n"))[4]["feedback"]
    assert "failed before any test ran" in feedback and "SyntaxError" in feedback and "line 2" in feedback


def test_an_exception_shows_a_traceback_trimmed_to_the_candidates_lines(code_env: CodeEnv) -> None:
    code_env.reset(options={"task_id": "fn/digit_root"})
    code = "def digit_root(n):\n    parts = []\n    return parts[0]"
    feedback = code_env.step(fenced(code))[4]["feedback"]
    assert "raised an exception" in feedback and "IndexError" in feedback
    assert 'File "solution.py", line 3, in digit_root' in feedback and "_harness" not in feedback


def test_a_long_traceback_keeps_its_innermost_frames_and_the_exception_line(code_env: CodeEnv) -> None:
    code_env.reset(options={"task_id": "fn/digit_root"})
    padding = "  # " + "a long comment that makes every frame line long " * 2
    code = f"def digit_root(n):\n    return digit_root(n + 1){padding}"
    feedback = code_env.step(fenced(code))[4]["feedback"]
    assert "RecursionError: maximum recursion depth exceeded" in feedback, feedback
    assert "earlier lines cut)" in feedback


def test_an_endless_loop_is_reported_as_a_timeout_and_the_episode_goes_on(code_env: CodeEnv) -> None:
    code_env.reset(options={"task_id": "fn/is_prime"})
    _, reward, terminated, _, info = code_env.step(fenced("def is_prime(n):\n    while True:\n        pass"))
    assert reward == 0.0 and not terminated
    assert "timed out" in info["feedback"] and "time limit" in info["feedback"]


def test_a_memory_blowup_is_reported_as_such(code_env: CodeEnv) -> None:
    code_env.reset(options={"task_id": "fn/flatten"})
    code = "def flatten(nested):\n    return [0] * (10 ** 10)"
    assert "memory limit" in code_env.step(fenced(code))[4]["feedback"]


def test_a_partial_pass_earns_partial_credit_only_when_asked() -> None:
    wrong_on_empty = (
        "def running_max(values):\n    out = [values[0]]\n    for v in values[1:]:\n"
        "        out.append(max(out[-1], v))\n    return out"
    )
    for partial, expected in ((False, 0.0), (True, 4 / 5)):
        env = CodeEnv(partial_credit=partial, verifier=FAST)
        env.reset(options={"task_id": "fn/running_max"})
        _, reward, terminated, _, info = env.step(fenced(wrong_on_empty))
        assert reward == pytest.approx(expected) and not terminated
        assert info["verdict"].details["passed_tests"] == 4
        env.close()


def test_a_reply_without_code_is_a_format_turn(code_env: CodeEnv) -> None:
    code_env.reset(options={"task_id": "fn/chunk"})
    _, reward, _, _, info = code_env.step("I would split the list into pieces.")
    assert reward == -0.1 and info["parse_error"] is not None and "```python" in info["feedback"]


def test_hidden_tests_count_for_the_reward_but_feedback_never_shows_them(code_env: CodeEnv) -> None:
    code_env.reset(options={"task_id": "fn/is_prime"})
    cheat = "def is_prime(n):\n    return n in (97,)"  # passes the three public tests only
    _, reward, _, _, info = code_env.step(fenced(cheat))
    assert reward == 0.0 and "All 3 public tests pass, but 2 hidden test(s) fail." in info["feedback"]
    assert "1_000_003" not in info["feedback"] and "-7" not in info["feedback"]


def test_public_tests_makes_only_the_first_tests_visible() -> None:
    env = CodeEnv(public_tests=1, verifier=FAST)
    env.reset(options={"task_id": "fn/second_largest"})
    wrong = "def second_largest(numbers):\n    d = sorted(set(numbers))\n    return d[-2]"
    feedback = env.step(fenced(wrong))[4]["feedback"]
    assert "All 1 public tests pass, but" in feedback and "IndexError" not in feedback
    env.close()


def test_binary_and_hint_levels() -> None:
    wrong = "def digit_root(n):\n    return n % 10"
    feedbacks = {}
    for level in ("binary", "hint"):
        env = CodeEnv(feedback=level, verifier=FAST)
        env.reset(options={"task_id": "fn/digit_root"})
        feedbacks[level] = env.step(fenced(wrong))[4]["feedback"]
        env.close()
    assert feedbacks["binary"] == "Incorrect: some tests fail."
    assert "of 5 tests pass" in feedbacks["hint"] and "expected: 2" in feedbacks["hint"]


def test_hostile_code_is_contained_and_cannot_forge_a_pass(code_env: CodeEnv) -> None:
    code_env.reset(options={"task_id": "fn/is_prime"})
    forge = (  # what the test harness once printed, behind every marker-like word in reach, then a clean exit
        "import sys, json, os\n"
        "seen = ' '.join(sys.argv) + sys.stdin.read() + ' '.join(os.listdir('.'))\n"
        "for marker in [w for w in seen.split() if w.startswith('@@')] + ['@@reflectgym-0@@']:\n"
        "    for i in range(20):\n"
        "        print(marker + json.dumps({'index': i, 'status': 'passed', 'message': '', 'tb': ''}), flush=True)\n"
        "os._exit(0)\n"
    )
    _, reward, terminated, _, _ = code_env.step(fenced(forge))
    assert reward == 0.0 and not terminated
    always_equal = "class Yes:\n    def __eq__(self, other):\n        return True\ndef is_prime(n):\n    return Yes()"
    _, reward, _, _, info = code_env.step(fenced(always_equal))
    assert reward == 0.0 and "plain data" in info["feedback"], info["feedback"]
    network = (
        "import socket\ndef is_prime(n):\n    socket.create_connection(('1.1.1.1', 53), timeout=1)\n    return True"
    )
    feedback = code_env.step(fenced(network))[4]["feedback"]
    assert "raised an exception" in feedback and "OSError" in feedback


def test_a_reply_that_does_not_define_the_function_says_so(code_env: CodeEnv) -> None:
    code_env.reset(options={"task_id": "fn/valid_ipv4"})
    feedback = code_env.step(fenced("def helper():\n    return 1"))[4]["feedback"]
    assert "does not define valid_ipv4" in feedback and "actual: None" not in feedback


def test_restoring_a_snapshot_puts_the_episode_back_without_running_any_code(code_env: CodeEnv) -> None:
    code_env.reset(options={"task_id": "fn/is_prime"})
    code_env.step(fenced("def is_prime(n):\n    return n == 2"))  # (wrong: the episode goes on)
    snapshot = code_env.snapshot()
    code_env.step(fenced("def is_prime(n):\n    return False"))

    def no_runs(code: str) -> None:
        raise AssertionError("restore() ran the candidate's code again")

    code_env.run_tests = no_runs  # type: ignore[method-assign]
    assert code_env.restore(snapshot) == snapshot.last_observation
    assert code_env.snapshot().actions == snapshot.actions and code_env.task_id == "fn/is_prime"


def test_io_wrong_output_shows_input_expected_and_actual(io_env: CodeIOEnv) -> None:
    io_env.reset(options={"task_id": "io/gcd_lcm"})
    info = io_env.step(fenced("a, b = map(int, input().split())\nprint(1, a * b)"))[4]
    assert "wrong output" in info["feedback"] and "12 18" in info["feedback"]
    assert "6 36" in info["feedback"] and "1 216" in info["feedback"]


def test_io_endless_loop_and_crash_are_reported(io_env: CodeIOEnv) -> None:
    io_env.reset(options={"task_id": "io/reverse_words"})
    assert "timed out" in io_env.step(fenced("while True:\n    pass"))[4]["feedback"]
    feedback = io_env.step(fenced("words = input().split()\nprint(words[10])"))[4]["feedback"]
    assert "IndexError" in feedback and 'File "solution.py", line 2' in feedback


def test_io_outputs_compare_by_tokens(io_env: CodeIOEnv) -> None:
    io_env.reset(options={"task_id": "io/gcd_lcm"})
    code = "import math\na, b = map(int, input().split())\nprint(math.gcd(a, b), '  ')\nprint(a * b // math.gcd(a, b))"
    assert io_env.step(fenced(code))[1] == 1.0


@pytest.mark.parametrize(
    ("actual", "expected", "same"),
    [
        ("1000000000001\n", "1000000000000\n", False),  # integers compare exactly, however large
        ("999999999", "1000000000", False),
        ("1000000000001.0", "1000000000000", False),  # an expected integer comes back as exactly that integer
        ("7.0", "7", True),
        ("7  8\n", "7\n8", True),
        ("0.3333333", "0.33333333", True),  # floats within the relative tolerance
        ("2", "2.0000000001", True),
        ("2.5", "2.6", False),
    ],
)
def test_io_numbers_compare_exactly_as_integers_and_within_a_tolerance_as_floats(
    actual: str, expected: str, same: bool
) -> None:
    assert outputs_match(actual, expected) is same


def test_an_unknown_sandbox_name_fails_when_the_env_is_made() -> None:
    with pytest.raises(ValueError, match="unknown sandbox 'nosuch'; choose one of auto, "):
        CodeEnv(sandbox="nosuch")


def test_a_full_definition_replaces_a_prompt_that_is_only_a_signature() -> None:
    task = {
        "task_id": "add", "prompt": "import functools\nimport math\n\n\n@functools.cache\ndef add(a, b):\n",
        "canonical_solution": "    return a + b\n", "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
        "entry_point": "add",
    }  # fmt: skip
    env = CodeEnv(tasks=[task], verifier=FAST)
    env.reset(seed=0)
    assert env.step(fenced("def add(a, b):\n    return a + math.floor(b)\n"))[1] == 1.0  # the imports stay
    env.reset(seed=0)
    assert env.step("    return a + b")[1] == 1.0
    env.close()


def test_a_named_sandbox_backend_is_used_and_closed() -> None:
    env = CodeIOEnv(sandbox="bwrap", verifier=FAST)
    env.reset(options={"task_id": "io/distinct_count"})
    assert env.step(env.oracle_action())[1] == 1.0
    assert env.sandbox.get().name == "bwrap"
    env.close()


def test_rebinding_a_builtin_the_tests_call_does_not_pass_them() -> None:
    row = {
        "task_id": "mad", "prompt": "Write mad(values): the mean absolute deviation.", "entry_point": "mad",
        "solution": "def mad(v):\n    m = sum(v) / len(v)\n    return sum(abs(x - m) for x in v) / len(v)",
        "tests": ["assert abs(mad([1.0, 3.0]) - 1.0) < 1e-6", "assert abs(mad([0.0, 4.0]) - 2.0) < 1e-6"],
    }  # fmt: skip
    env = CodeEnv(tasks=[row], sandbox="bwrap", verifier=FAST)
    for attack in ("abs = lambda value: 0\n", "from math import *\nimport builtins\nbuiltins.abs = lambda v: 0\n"):
        env.reset(seed=0)
        assert env.step(fenced(attack + "def mad(values):\n    return 0.0"))[1] == 0.0, attack
    env.reset(seed=0)
    assert env.step(env.oracle_action())[1] == 1.0
    env.close()


def test_an_entry_point_named_like_a_builtin_is_tested_on_the_programs_function() -> None:
    row = {
        "task_id": "sum", "prompt": "Write sum(values): the sum of the squares.", "entry_point": "sum",
        "solution": "def sum(values):\n    total = 0\n    for v in values:\n        total += v * v\n    return total",
        "tests": ["assert sum([1, 2]) == 5", "assert abs(sum([3]) - 9) < 1e-9"],
    }  # fmt: skip
    env = CodeEnv(tasks=[row], sandbox="bwrap", verifier=FAST)
    env.reset(seed=0)
    assert env.step(env.oracle_action())[1] == 1.0
    env.reset(seed=0)
    assert env.step(fenced("def sum(values):\n    return 0"))[1] == 0.0
    env.reset(seed=0)  # (split, so judged outside the program: not run whole, where this would pass)
    always_equal = "class Yes:\n    def __eq__(self, other):\n        return True\ndef sum(values):\n    return Yes()"
    _, reward, _, _, info = env.step(fenced(always_equal))
    assert reward == 0.0 and "plain data" in info["feedback"], info["feedback"]
    env.close()


def test_a_replys_future_imports_go_before_the_preamble_keeping_its_line_numbers() -> None:
    task = {
        "task_id": "add", "prompt": "from typing import List\n\n\ndef add(a: int, b: int) -> int:\n    '''a + b'''\n",
        "canonical_solution": "    return a + b\n", "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
        "entry_point": "add",
    }  # fmt: skip
    env = CodeEnv(tasks=[task], verifier=FAST)
    head = '"""Adds."""\nfrom __future__ import annotations\nfrom __future__ import division\n\n'
    env.reset(seed=0)
    assert env.step(fenced(head + "def add(a: int, b: int) -> int:\n    return a + b"))[1] == 1.0
    env.reset(seed=0)
    feedback = env.step(fenced(head + "def add(a: List[int], b: int) -> int:\n    return [][a]"))[4]["feedback"]
    assert 'File "solution.py", line 6, in add' in feedback and "IndexError" in feedback, feedback
    env.close()


def test_the_runs_time_budget_grows_with_its_tests_and_an_overrun_is_said_as_such() -> None:
    row = {
        "task_id": "slow", "prompt": "Write slow(x) returning x.", "entry_point": "slow",
        "solution": "import time\ndef slow(x):\n    time.sleep(0.25)\n    return x",
        "tests": [f"assert slow({i}) == {i}" for i in range(8)],
    }  # fmt: skip
    scaled = VerifierConfig(per_test_seconds=0.5, run_seconds=1.0, max_run_seconds=10.0)
    env = CodeEnv(tasks=[row], sandbox="bwrap", verifier=scaled)
    env.reset(seed=0)
    assert env.step(env.oracle_action())[1] == 1.0  # 2 s of tests: past run_seconds, within 9 x 0.5 s
    env.close()
    capped = VerifierConfig(per_test_seconds=0.5, run_seconds=1.0, max_run_seconds=1.2)
    env = CodeEnv(tasks=[row], sandbox="bwrap", verifier=capped)
    env.reset(seed=0)
    feedback = env.step(env.oracle_action())[4]["feedback"]
    assert "did not finish: the run went past its total time budget (1.2 s for the program and all 8 tests" in feedback
    assert "endless loop" not in feedback, feedback
    env.close()


@pytest.mark.parametrize("max_timeouts", [1, 2, None])
def test_a_program_that_loops_on_every_test_costs_max_timeouts_tests_time_not_one_per_test(
    max_timeouts: int | None,
) -> None:
    row = {
        "task_id": "loop", "prompt": "Write ident(x) returning x.", "entry_point": "ident",
        "solution": "def ident(x):\n    return x", "tests": [f"assert ident({i}) == {i}" for i in range(6)],
    }  # fmt: skip
    config = VerifierConfig(per_test_seconds=0.3, run_seconds=1.0, max_run_seconds=10.0, max_timeouts=max_timeouts)
    env = CodeEnv(tasks=[row], sandbox="bwrap", verifier=config)
    env.reset(seed=0)
    run = env.run_tests("def ident(x):\n    while x >= 0:\n        pass\n    return x")
    statuses = [result.status.value for result in run.results]
    timed_out = 6 if max_timeouts is None else max_timeouts
    assert statuses == ["timeout"] * timed_out + ["not_run"] * (6 - timed_out), statuses
    if max_timeouts is not None:
        stopped = f"not run: the run stopped after {max_timeouts} test{'s' * (max_timeouts > 1)} timed out"
        assert run.results[timed_out].message == stopped
    env.close()


@pytest.mark.parametrize("max_timeouts", [1, None])
def test_an_io_program_that_loops_on_every_case_stops_after_max_timeouts(max_timeouts: int | None) -> None:
    config = VerifierConfig(per_test_seconds=0.3, run_seconds=1.0, max_timeouts=max_timeouts)
    env = CodeIOEnv(verifier=config)
    env.reset(options={"task_id": "io/reverse_words"})
    run = env.run_tests("while True:\n    pass")
    statuses = [result.status.value for result in run.results]
    assert len(statuses) > 2 and statuses[0] == "timeout", statuses
    if max_timeouts is None:
        assert set(statuses) == {"timeout"}, statuses
    else:  # one wave of cases (one per worker) runs, then the rest are not run
        assert statuses[-1] == "not_run" and "stopped after" in run.results[-1].message, statuses
    env.close()


def test_io_cases_stop_after_the_same_timeout_whatever_the_pool_size() -> None:
    program = Program("x = input()\nwhile x == '2':\n    pass\nprint(x)\n")  # loops on "2" only
    cases = [IOCase(str(i), f"{i}\n") for i in range(6)]
    config = VerifierConfig(per_test_seconds=0.3, max_timeouts=1)
    seen = []
    for workers in (1, 2, 4):
        with bwrap_pool(PoolConfig(workers=workers)) as pool:
            seen.append([result.status.value for result in IOVerifier(pool, config).verify(program, cases).results])
    assert seen == [["passed", "passed", "timeout", "not_run", "not_run", "not_run"]] * 3, seen


def test_max_timeouts_must_be_a_whole_number_of_at_least_one() -> None:
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="max_timeouts"):
            VerifierConfig(max_timeouts=bad)


def test_an_mbpp_prompt_lists_only_the_public_tests() -> None:
    row = {
        "task_id": 1, "text": "Write a function to add two numbers.", "code": "def add(a,b):\n    return a+b",
        "test_list": ["assert add(1,2)==3", "assert add(2,2)==4", "assert add(7,5)==12"],
    }  # fmt: skip
    env = CodeEnv(tasks=[row], public_tests=1, verifier=FAST)
    observation, _ = env.reset(seed=0)
    assert "assert add(1,2)==3" in observation and "add(2,2)" not in observation and "add(7,5)" not in observation
    env.close()
    env = CodeEnv(tasks=[row], verifier=FAST)
    assert "assert add(7,5)==12" in env.reset(seed=0)[0]  # (each task's own split: every listed test is public)
    env.close()


def test_a_crash_by_a_signal_is_reported_as_a_crash() -> None:
    row = {"task_id": "io1", "prompt": "print n", "tests": [{"input": "3\n", "output": "3\n"}]}
    env = CodeIOEnv(tasks=[row], sandbox="bwrap", verifier=FAST, feedback="hint")
    env.reset(seed=0)
    feedback = env.step(fenced("import ctypes\nctypes.string_at(0)"))[4]["feedback"]
    assert "Test 1 crashed with SIGSEGV: often a recursion too deep" in feedback, feedback
    assert "Replace deep recursion" in feedback
    env.reset(seed=0)  # a program that kills itself did not crash (the unit-test harness says the same)
    killed = env.step(fenced("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"))[4]["feedback"]
    assert "crashed" not in killed and "Replace deep recursion" not in killed, killed
    env.close()
