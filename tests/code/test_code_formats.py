"""Task formats: HumanEval, MBPP, function and I/O rows recognised by fields; bad rows located; assert splitting."""

from __future__ import annotations

import base64
import json
import pickle
import zlib
from pathlib import Path
from typing import Literal

import pytest

from reflectgym.core.tasks import TaskFormatError, TaskList
from reflectgym.envs.code.asserts import instrument, split_check
from reflectgym.envs.code.encoded_cases import EncodedCasesError, decode_livecodebench_cases
from reflectgym.envs.code.env import CodeEnv, CodeIOEnv
from reflectgym.envs.code.formats import FUNCTION_TASKS, IO_TASKS, load_code_tasks

HUMANEVAL_ROW = {
    "task_id": "Toy/0",
    "prompt": 'def double(x):\n    """Twice x."""\n',
    "canonical_solution": "    return 2 * x\n",
    "test": (
        "METADATA = {}\n\n\ndef check(candidate):\n    assert candidate(1) == 2\n    k = 5\n"
        "    assert candidate(k) == 10\n"
    ),
    "entry_point": "double",
}
MBPP_ROW = {
    "task_id": 7,
    "text": "Write a function to add two numbers.",
    "code": "def add(a, b):\n    return a + b",
    "test_list": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
    "test_setup_code": "",
    "challenge_test_list": ["assert add(-1, 1) == 0"],
}


def test_a_humaneval_check_is_split_into_one_test_per_assert_keeping_setup_lines() -> None:
    snippets = split_check(str(HUMANEVAL_ROW["test"]), "double")
    assert len(snippets) == 2
    assert "candidate = double" in snippets[1] and "k = 5" in snippets[1] and "candidate(1)" not in snippets[1]


def test_a_test_that_calls_check_itself_and_asserts_that_test_nothing_are_handled() -> None:
    # HumanEvalPack and MultiPL-E end `test` with `check(<entry_point>)`; HumanEval has `assert True, "..."` lines.
    test = str(HUMANEVAL_ROW["test"]) + '    assert True, "This prints if this assert fails"\n\ncheck(double)\n'
    snippets = split_check(test, "double")
    assert len(snippets) == 2 and not any("check(" in snippet or "assert True" in snippet for snippet in snippets)
    whole = split_check("def check(candidate):\n    for x in (1, 2):\n        pass\n\ncheck(double)\n", "double")
    assert len(whole) == 1 and whole[0].count("check(double)") == 1
    multipl_e = str(HUMANEVAL_ROW["test"]) + "\ndef test_check():\n    check(double)\n\ntest_check()\n"
    snippets = split_check(multipl_e, "double")
    assert len(snippets) == 2 and all("test_check()" not in snippet.splitlines() for snippet in snippets)


def test_the_humaneval_row_that_calls_check_passes_with_its_canonical_solution() -> None:
    row = {**HUMANEVAL_ROW, "test": str(HUMANEVAL_ROW["test"]) + "\ncheck(double)\n"}
    env = CodeEnv(tasks=[row])
    try:
        env.reset()
        assert env.step("```python\n" + str(row["prompt"]) + str(row["canonical_solution"]) + "```")[1] == 1.0
    finally:
        env.close()


def test_an_instrumented_comparison_shows_the_call_with_the_entry_point_name() -> None:
    test = instrument("candidate = double\nassert candidate(3) == 6", "double")
    assert (test.call, test.expected, test.shown) == ("double(3)", "6", "assert double(3) == 6")


def test_formats_are_recognised_by_their_fields() -> None:
    tasks = load_code_tasks([HUMANEVAL_ROW, MBPP_ROW], "function")
    humaneval, mbpp = tasks.get("Toy/0"), tasks.get("7")
    assert humaneval.data["format"] == "humaneval" and str(humaneval.reference).endswith("return 2 * x\n")
    assert humaneval.data["preamble"] == HUMANEVAL_ROW["prompt"]
    assert mbpp.data["format"] == "mbpp" and mbpp.data["entry_point"] == "add"
    assert mbpp.data["hidden_tests"] == ["assert add(-1, 1) == 0"]
    assert "assert add(1, 2) == 3" in mbpp.prompt and "add(-1, 1)" not in mbpp.prompt


def test_tasks_and_rows_mixed_in_one_list_all_load_in_order() -> None:
    ready = load_code_tasks([HUMANEVAL_ROW], "function").get("Toy/0")
    tasks = load_code_tasks([MBPP_ROW, ready], "function")
    assert isinstance(tasks, TaskList) and [task.id for task in tasks] == ["7", "Toy/0"]


def test_codecontests_style_columns_become_public_and_hidden_cases() -> None:
    row = {
        "name": "echo",
        "description": "Echo.",
        "public_tests": {"input": ["1\n"], "output": ["1\n"]},
        "private_tests": {"input": ["2\n", "3\n"], "output": ["2\n", "3\n"]},
    }
    task = load_code_tasks([row], "io").get("echo")
    assert len(task.data["tests"]) == 1 and len(task.data["hidden_tests"]) == 2
    generated = {**row, "generated_tests": {"input": ["4\n"], "output": ["4\n"]}}
    hidden = load_code_tasks([generated], "io").get("echo").data["hidden_tests"]
    assert [case["input"] for case in hidden] == ["2\n", "3\n", "4\n"]  # (private, then generated)


CODECONTESTS_ROW = {  # (the layout of deepmind/code_contests: `solutions.language` 1 Python 2, 2 C++, 3 Python 3)
    "name": "1A. Sum",
    "description": "Print a + b.",
    "public_tests": {"input": ["1 2\n"], "output": ["3\n"]},
    "private_tests": {"input": ["5 5\n"], "output": ["10\n"]},
    "generated_tests": {"input": [], "output": []},
    "source": 2,
    "solutions": {
        "language": [2, 1, 3, 3],
        "solution": [
            "int main() {}",
            "print sum(map(int, raw_input().split()))",
            "print(sum(map(int, input().split())))",
            "x",
        ],
    },
    "incorrect_solutions": {"language": [3], "solution": ["print(0)"]},
}


def test_a_codecontests_row_takes_its_first_python3_solution_as_the_reference() -> None:
    task = load_code_tasks([CODECONTESTS_ROW], "io").get("1A. Sum")
    assert task.reference == "print(sum(map(int, input().split())))"
    named = {**CODECONTESTS_ROW, "solutions": {"language": ["CPP", "PYTHON3"], "solution": ["int main() {}", "pass"]}}
    assert load_code_tasks([named], "io").get("1A. Sum").reference == "pass"
    no_python3 = {**CODECONTESTS_ROW, "solutions": {"language": [2, 1], "solution": ["int main() {}", "print 3"]}}
    assert load_code_tasks([no_python3], "io").get("1A. Sum").reference is None
    env = CodeIOEnv(tasks=[CODECONTESTS_ROW])
    try:
        env.reset()
        assert env.step(env.oracle_action())[1] == 1.0
    finally:
        env.close()


def test_a_codecontests_row_with_unmatched_solution_columns_is_refused() -> None:
    row = {**CODECONTESTS_ROW, "solutions": {"language": [3, 3], "solution": ["pass"]}}
    with pytest.raises(TaskFormatError, match="solutions"):
        load_code_tasks([row], "io")


def test_a_row_of_the_other_family_is_refused_with_its_location() -> None:
    with pytest.raises(TaskFormatError, match="io task"):
        load_code_tasks(IO_TASKS, "function")


def test_a_bad_row_names_the_field() -> None:
    row = dict(MBPP_ROW, test_list="assert add(1, 2) == 3")
    with pytest.raises(TaskFormatError, match="test_list"):
        load_code_tasks([row], "function")


def test_the_bundled_sets_hold_at_least_forty_original_tasks_with_references() -> None:
    function_tasks, io_tasks = load_code_tasks(FUNCTION_TASKS, "function"), load_code_tasks(IO_TASKS, "io")
    assert isinstance(function_tasks, TaskList) and isinstance(io_tasks, TaskList)
    assert len(function_tasks) + len(io_tasks) >= 40 and len(io_tasks) >= 10
    for task in [*function_tasks, *io_tasks]:
        assert task.reference and task.data["tests"] and task.data["hidden_tests"], task.id


FUNCTION_ROW = {
    "task_id": "s1",
    "prompt": "def f(x):\n    '''Echo.'''\n",
    "entry_point": "f",
    "solution": "def f(x):\n    return x\n",
    "tests": ["assert f(1) == 1"],
}
IO_ROW = {"task_id": "i1", "prompt": "Echo the input.", "tests": [{"input": "a", "output": "a"}]}


@pytest.mark.parametrize(
    ("family", "row", "field"),
    [
        ("function", dict(FUNCTION_ROW, tests=["assert f('\ud800') == '\ud800'"]), r"tests\[0\]"),
        ("function", dict(FUNCTION_ROW, setup="X = '\udc80'"), "setup"),
        ("function", dict(FUNCTION_ROW, prompt="def f(x):\n    '''\ud800'''\n"), "prompt"),
        ("io", dict(IO_ROW, tests=[{"input": "a\ud800", "output": "a"}]), r"tests\[0\]\.input"),
    ],
    ids=["tests", "setup", "prompt", "io-input"],
)
def test_a_lone_surrogate_in_a_row_is_refused_at_load_time(
    tmp_path: Path, family: Literal["function", "io"], row: dict[str, object], field: str
) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(row) + "\n")  # json.dumps writes the surrogate as a \ud800 escape
    with pytest.raises(TaskFormatError, match=rf"tasks\.jsonl:1: field '{field}'.*surrogate"):
        load_code_tasks(path, family)


APPS_ROW = {
    "problem_id": 17,
    "question": "Read n, print n + 1.",
    "solutions": json.dumps(["print(int(input()) + 1)"]),
    "input_output": json.dumps({"inputs": ["1\n", "5\n", ["7"]], "outputs": ["2\n", "6\n", ["8"]]}),
}
LIVECODEBENCH_ROW = {
    "question_id": "abc301_a",
    "question_content": "Print the sum of two numbers.",
    "public_test_cases": json.dumps([{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]),
    "private_test_cases": json.dumps([{"input": "5 5\n", "output": "10\n", "testtype": "stdin"}]),
}


def test_apps_and_livecodebench_rows_become_io_tasks() -> None:
    tasks = load_code_tasks([APPS_ROW, LIVECODEBENCH_ROW], "io")
    apps, lcb = tasks.get("17"), tasks.get("abc301_a")
    assert (apps.data["format"], apps.reference) == ("apps", "print(int(input()) + 1)")
    assert apps.data["tests"] == [{"input": "1\n", "output": "2\n"}]
    assert apps.data["hidden_tests"][-1] == {"input": "7\n", "output": "8\n"}  # (lines given as a list)
    assert lcb.data["tests"] == [{"input": "1 2\n", "output": "3\n"}]
    assert lcb.data["hidden_tests"] == [{"input": "5 5\n", "output": "10\n"}]


def _livecodebench_encoded(value: object, protocol: int = 4) -> str:
    """`value` as LiveCodeBench ships `private_test_cases`: base64 of zlib of a pickle (of a JSON string)."""
    return base64.b64encode(zlib.compress(pickle.dumps(value, protocol=protocol))).decode()


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_livecodebench_private_cases_in_its_own_encoding_are_decoded_and_played(protocol: int) -> None:
    private = [{"input": "5 5\n", "output": "10\n", "testtype": "stdin"}, {"input": "2 2\n", "output": "4\n"}]
    row = {**LIVECODEBENCH_ROW, "private_test_cases": _livecodebench_encoded(json.dumps(private), protocol)}
    task = load_code_tasks([row], "io").get("abc301_a")
    assert task.data["hidden_tests"] == [{"input": "5 5\n", "output": "10\n"}, {"input": "2 2\n", "output": "4\n"}]
    env = CodeIOEnv(tasks=[row], max_attempts=1)
    try:
        env.reset()
        assert env.step("```python\nprint(3)\n```")[1] == 0.0  # (passes the public case only)
        env.reset()
        assert env.step("```python\nprint(sum(map(int, input().split())))\n```")[1] == 1.0
    finally:
        env.close()


class _Hostile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.marker),))


def test_a_livecodebench_field_that_is_not_a_pickled_string_is_refused_and_never_loaded(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bomb = base64.b64encode(zlib.compress(b"\0" * (1 << 20))).decode()
    for bad, message in [
        (_livecodebench_encoded(_Hostile(marker)), "more than a string"),
        (_livecodebench_encoded([json.dumps([])]), "more than a string"),
        (_livecodebench_encoded("not json"), "decoded, but not JSON"),
        (base64.b64encode(zlib.compress(b"garbage")).decode(), "not a pickle"),
        (base64.b64encode(b"plain bytes").decode(), "not zlib"),
        ("{not json and not base64", "not base64"),
    ]:
        with pytest.raises(TaskFormatError, match=message):
            load_code_tasks([{**LIVECODEBENCH_ROW, "private_test_cases": bad}], "io")
    assert not marker.exists()
    with pytest.raises(EncodedCasesError, match="more than 4096 bytes"):
        decode_livecodebench_cases(bomb, max_bytes=4096)
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        skipped = load_code_tasks([{**LIVECODEBENCH_ROW, "private_test_cases": "%%%"}, APPS_ROW], "io", on_error="skip")
    assert isinstance(skipped, TaskList) and [task.id for task in skipped] == ["17"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({**APPS_ROW, "input_output": "{not json"}, "not valid JSON"),
        (
            {
                **LIVECODEBENCH_ROW,
                "public_test_cases": json.dumps([{"input": "[1]", "output": "2", "testtype": "functional"}]),
            },
            "a function task",
        ),
    ],
)
def test_rows_that_cannot_play_say_why(row: dict[str, object], message: str) -> None:
    with pytest.raises(TaskFormatError, match=message):
        load_code_tasks([row], "io")


def test_mbpp_sanitized_rows_use_prompt_and_test_imports() -> None:
    row = {
        "task_id": 2,
        "prompt": "Write a function that floors a number.",
        "code": "import math\ndef f(a):\n    return math.floor(a)",
        "test_imports": ["import math"],
        "test_list": ["assert f(2.5) == math.floor(2.5)"],
    }
    task = load_code_tasks([row], "function").get("2")
    assert task.prompt.startswith("Write a function that floors") and task.data["tests"][0].startswith("import math")


def test_a_code_env_can_skip_bad_rows_with_a_warning() -> None:
    broken = {"task_id": "bad", "prompt": "p", "entry_point": "f"}  # (no solution, no tests)
    with pytest.raises(TaskFormatError):
        CodeEnv(tasks=[HUMANEVAL_ROW, broken])
    with pytest.warns(UserWarning, match="skipped"):
        env = CodeEnv(tasks=[HUMANEVAL_ROW, broken], on_error="skip")
    assert env.task_ids() == ["Toy/0"]
    env.close()


def test_call_based_apps_rows_become_function_tasks_that_accept_apps_outputs() -> None:
    plain = {
        "problem_id": 3,
        "question": "Return the sum of a list.",
        "input_output": json.dumps({"fn_name": "add_all", "inputs": [[[1, 2]], [[5]], [[]]], "outputs": [[3], [5], 0]}),
    }
    leetcode = {
        "problem_id": 4,
        "question": "Reverse a string.",
        "starter_code": "class Solution:\n    def rev(self, s: str) -> str:\n        ",
        "input_output": json.dumps({"fn_name": "rev", "inputs": [["ab"], ["xyz"]], "outputs": [["ba"], ["zyx"]]}),
    }
    tasks = load_code_tasks([plain, leetcode], "function")
    assert tasks.get("3").data["tests"] == ["assert add_all([1, 2]) in (3, [3], (3,))"]
    assert tasks.get("4").data["tests"] == ["assert Solution().rev('ab') in ('ba', ['ba'], ('ba',))"]
    assert "class Solution" in tasks.get("4").prompt
    env = CodeEnv(tasks=[plain, leetcode])
    try:
        for task_id, code, reward in [
            ("3", "def add_all(xs):\n    return sum(xs)", 1.0),
            ("4", "class Solution:\n    def rev(self, s):\n        return s[::-1]", 1.0),
            ("4", "class Solution:\n    def rev(self, s):\n        return s", 0.0),
            # APPS's checker imports typing's List and collections' names first: its references rely on them
            (
                "4",
                "class Solution:\n    def rev(self, s: List[str]) -> str:\n        return ''.join(deque(s)[::-1])",
                0.0,
            ),
            (
                "4",
                "class Solution:\n    def rev(self, s: List[str]) -> str:\n        return ''.join(reversed(deque(s)))",
                1.0,
            ),
        ]:
            env.reset(options={"task_id": task_id})
            assert env.step(f"```python\n{code}\n```")[1] == reward, (task_id, code)
    finally:
        env.close()


def test_functional_livecodebench_rows_call_the_solution_method_with_json_arguments() -> None:
    row = {
        "question_id": "two-sum",
        "question_content": "Return the indices of the two numbers that add up to target.",
        "starter_code": "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        ",
        "public_test_cases": json.dumps([{"input": "[2,7,11,15]\n9", "output": "[0, 1]", "testtype": "functional"}]),
        "private_test_cases": json.dumps([{"input": "[3,3]\n6", "output": "[0, 1]", "testtype": "functional"}]),
        "metadata": json.dumps({"func_name": "twoSum"}),
    }
    task = load_code_tasks([row], "function").get("two-sum")
    assert task.data["tests"] == ["assert Solution().twoSum([2, 7, 11, 15], 9) in ([0, 1], (0, 1))"]
    solution = (
        "class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
        "        seen = {}\n        for i, n in enumerate(nums):\n            if target - n in seen:\n"
        "                return [seen[target - n], i]\n            seen[n] = i\n"
    )
    env = CodeEnv(tasks=[row])
    try:
        observation, _ = env.reset()
        assert "```python\nReturn the indices" not in observation  # (a prose prompt is not shown as code)
        assert env.step(f"```python\n{solution}```")[1] == 1.0  # (List comes imported, as on LeetCode)
    finally:
        env.close()


def test_the_words_fn_name_or_functional_inside_a_case_do_not_make_a_stdin_row_call_based() -> None:
    apps = {**APPS_ROW, "input_output": json.dumps({"inputs": ["fn_name\n"], "outputs": ["7\n"]})}
    lcb = {
        **LIVECODEBENCH_ROW,
        "public_test_cases": json.dumps([{"input": "functional\n", "output": "1\n", "testtype": "stdin"}]),
    }
    tasks = load_code_tasks([apps, lcb], "io")
    assert isinstance(tasks, TaskList)
    assert [task.data["format"] for task in tasks] == ["apps", "livecodebench"]


def test_call_based_rows_accept_a_returned_tuple_for_a_list_and_show_the_expected_value() -> None:
    apps = {
        "problem_id": 5,
        "question": "Return the minimum and the maximum of a list.",
        "input_output": json.dumps(
            {"fn_name": "min_max", "inputs": [[[1, 2, 3]], [[5, -1]]], "outputs": [[[1, 3]], [[-1, 5]]]}
        ),
    }
    lcb = {
        "question_id": "pair",
        "question_content": "Return [a + b, a * b].",
        "starter_code": "class Solution:\n    def f(self, a: int, b: int) -> List[int]:\n        ",
        "public_test_cases": json.dumps([{"input": "2\n3", "output": "[5, 6]", "testtype": "functional"}]),
        "private_test_cases": "[]",
        "metadata": json.dumps({"func_name": "f"}),
    }
    env = CodeEnv(tasks=[apps, lcb], sandbox="bwrap")
    try:
        for task_id, code, reward in [
            ("5", "def min_max(lst):\n    return min(lst), max(lst)", 1.0),
            ("5", "def min_max(lst):\n    return [min(lst), max(lst)]", 1.0),
            ("pair", "class Solution:\n    def f(self, a, b):\n        return a + b, a * b", 1.0),
        ]:
            env.reset(options={"task_id": task_id})
            assert env.step(f"```python\n{code}\n```")[1] == reward, (task_id, code)
        env.reset(options={"task_id": "5"})
        feedback = env.step("```python\ndef min_max(lst):\n    return max(lst), min(lst)\n```")[4]["feedback"]
        assert "expected: [1, 3]\n" in feedback and "actual:   (3, 1)" in feedback, feedback
        env.reset(options={"task_id": "pair"})
        feedback = env.step("```python\nclass Solution:\n    def f(self, a, b):\n        return a\n```")[4]["feedback"]
        assert "expected: [5, 6]\n" in feedback, feedback
    finally:
        env.close()


def test_mbpp_plus_rows_run_their_test_script_as_a_hidden_test() -> None:
    plus_test = (
        "def assertion(out, exp, atol):\n    assert out == exp or (atol and abs(out - exp) <= atol)\n\n\n"
        "inputs = [[10], [5], [4], [7], [0], [100]]\nresults = [40, 20, 16, 28, 0, 400]\n"
        "for i, (inp, exp) in enumerate(zip(inputs, results)):\n    assertion(square_perimeter(*inp), exp, 0)\n"
    )
    row = {
        "task_id": 17, "prompt": "Write a function that returns the perimeter of a square given its side length.",
        "code": "def square_perimeter(a):\n  perimeter=4*a\n  return perimeter", "source_file": "x.ipynb",
        "test_imports": [], "test": plus_test,
        "test_list": [f"assert square_perimeter({a})=={4 * a}" for a in (10, 5, 4)],
    }  # fmt: skip
    task = load_code_tasks([row], "function").get("17")
    assert task.data["hidden_tests"] == [plus_test]
    env = CodeEnv(tasks=[row], sandbox="bwrap")
    try:
        env.reset(seed=0)
        hard_coded = "def square_perimeter(a):\n    return {10: 40, 5: 20, 4: 16}[a]"
        _, reward, _, _, info = env.step(f"```python\n{hard_coded}\n```")
        assert reward == 0.0 and "1 hidden test(s) fail" in info["feedback"], info["feedback"]
        env.reset(seed=0)
        assert env.step(env.oracle_action())[1] == 1.0
    finally:
        env.close()


def test_a_humaneval_plus_row_with_bare_plus_inputs_says_they_are_not_played() -> None:
    row = {**HUMANEVAL_ROW, "base_input": [[1]], "plus_input": [[2], [3]], "atol": 0}
    with pytest.warns(UserWarning, match="HumanEvalPlus-OriginFmt"):
        task = load_code_tasks([row], "function").get("Toy/0")
    assert task.data["tests"] == load_code_tasks([HUMANEVAL_ROW], "function").get("Toy/0").data["tests"]
