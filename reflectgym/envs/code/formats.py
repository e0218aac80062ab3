"""Row parsers for code task formats, recognised by their fields or named with `task_format=`.

Function tasks (`Task.data["family"] == "function"`):
* `humaneval`: `task_id`, `prompt` (signature + docstring), `canonical_solution` (the body), `test` (a
  `check(candidate)` function, split into one test per assert), `entry_point`.
* `mbpp`: `task_id`, `text` (`prompt` in MBPP sanitized and MBPP+), `code`, `test_list` (asserts), optional
  `test_setup_code`, `test_imports` (sanitized and MBPP+), `challenge_test_list` (kept as hidden tests) and `test`
  (MBPP+'s extra cases: a script of its own, run as one more hidden test).
* `function` (this project's): `task_id`, `prompt`, `entry_point`, `solution`, `tests` (asserts), optional
  `hidden_tests` and `setup`.
* `livecodebench_call`: a functional LiveCodeBench row (LeetCode): `Solution().<metadata func_name>` is called with
  each case's input lines read as JSON, and must return the output read as JSON (a returned tuple counts as a list,
  as LiveCodeBench's checker turns it into one); typing, collections, math, heapq, bisect, itertools and functools
  come imported, as on LeetCode.
* `apps_call`: a call-based APPS / TACO row (`input_output` names an `fn_name`): each case calls it (a method of
  `Solution` when `starter_code` declares that class) with the case's argument list, and the result must equal the
  expected output or, as APPS's own checker also accepts, that output's only element; as there, a returned tuple
  counts as a list (and a list of tuples as a list of lists); the imports APPS's checker puts before the program
  come first (`APPS_IMPORTS`).

A call-based case's assert is `assert CALL in (EXPECTED, *ALSO_ACCEPTED)` when more than one value passes
(`data["alternatives"]`): feedback shows the first as the expected value.

Stdin/stdout tasks (`family == "io"`):
* `io`: `task_id`, `prompt`, `solution` (optional), `tests` and optional `hidden_tests`, each a list of
  `{"input": ..., "output": ...}`; or CodeContests-style `public_tests` / `private_tests` / `generated_tests`,
  each `{"input": [...], "output": [...]}` (private and generated cases are hidden tests: CodeContests counts a
  program correct only when it passes all three), whose reference is the first Python 3 program of `solutions`
  (`{"language": [...], "solution": [...]}`, language 3 or "PYTHON3").
* `apps`: APPS / TACO rows: `question`, `input_output` (JSON text `{"inputs": [...], "outputs": [...]}`; the first
  case is public, the rest hidden), optional `solutions` (JSON list, the first is the reference).
* `livecodebench`: `question_content`, `public_test_cases` (JSON list of `{"input", "output", "testtype"}`) and
  `private_test_cases`, as JSON or as LiveCodeBench ships it (base64 of zlib of a pickled JSON string: the pickle
  is read as data, never loaded, and must hold one string; see `encoded_cases`).

`Task.reference` is the complete reference program; `Task.data["preamble"]` is code run before the candidate
(a HumanEval prompt, so helpers and imports it defines exist), or "" when the prompt is prose.
"""

from __future__ import annotations

import ast
import json
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from reflectgym.core.tasks import (
    OnError,
    RowError,
    Task,
    TaskSource,
    first_present,
    listed,
    load_jsonl,
    require,
    tasks_from_rows,
)
from reflectgym.envs.code.asserts import called_function, split_check
from reflectgym.envs.code.encoded_cases import EncodedCasesError, decode_livecodebench_cases

TaskFamily = Literal["function", "io"]
DATA_DIR = Path(__file__).parent / "data"
FUNCTION_TASKS = DATA_DIR / "function_tasks.jsonl"
IO_TASKS = DATA_DIR / "io_tasks.jsonl"


def humaneval_row(row: Mapping[str, Any]) -> Task:
    """A HumanEval row; its `check(candidate)` becomes one test per assert."""
    prompt = require(row, "prompt", str)
    entry_point = require(row, "entry_point", str)
    try:
        tests = split_check(require(row, "test", str), entry_point)
    except ValueError as error:
        raise RowError("test", str(error)) from None
    if row.get("plus_input"):
        warnings.warn(PLUS_INPUTS_UNPLAYED, UserWarning, stacklevel=2)
    return Task(
        id=_row_id(row),
        prompt=prompt,
        reference=prompt + require(row, "canonical_solution", str),
        data=_function_data(entry_point, prompt, tests, [], "humaneval"),
    )


PLUS_INPUTS_UNPLAYED = (
    "HumanEval+ rows (evalplus's HumanEvalPlus.jsonl) hold their extra cases as bare inputs, whose expected outputs "
    "evalplus computes from the reference at evaluation time: only HumanEval's own tests (`test`) are played. "
    "evalplus's HumanEvalPlus-OriginFmt file writes every case into `test`: load it for the plus cases."
)


def mbpp_row(row: Mapping[str, Any]) -> Task:
    """An MBPP row; the prompt lists the public asserts, as in the MBPP paper."""
    text = require(row, "text" if "text" in row else "prompt", str)  # (MBPP sanitized and MBPP+ say `prompt`)
    tests = _strings(row, "test_list")
    if not tests:
        raise RowError("test_list", "needs at least one assert")
    imports = _strings(row, "test_imports") if row.get("test_imports") else []
    setup = "\n".join([*imports, str(row.get("test_setup_code") or "")])
    hidden = _strings(row, "challenge_test_list") if row.get("challenge_test_list") else []
    plus = row.get("test")
    if plus is not None and not isinstance(plus, str):
        raise RowError("test", f"expected MBPP+'s test script as text, got {type(plus).__name__}")
    if plus and plus.strip():
        hidden.append(plus)
    entry_point = called_function(tests[0])
    if entry_point is None:
        raise RowError("test_list", "the first test calls no function, so the entry point is unknown")
    data = _function_data(entry_point, "", _with_setup(setup, tests), _with_setup(setup, hidden), "mbpp")
    return Task(
        id=_row_id(row),
        prompt=mbpp_prompt(text, tests),
        reference=require(row, "code", str),
        data={**data, "description": text, "examples": [*tests, *hidden]},
    )


def mbpp_prompt(text: str, examples: Sequence[str]) -> str:
    """An MBPP prompt: the description, then the tests it shows (the public ones), as in the MBPP paper.
    (`data["examples"]` keeps every test as written, in the order of `tests` then `hidden_tests`, so an env that
    makes only some tests public can show just those.)"""
    if not examples:
        return text
    shown = "\n".join(examples)
    return f"{text}\nYour code should pass these tests:\n\n{shown}"


def function_row(row: Mapping[str, Any]) -> Task:
    """This project's function-task row: a prompt, an entry point, a solution and assert lists."""
    prompt = require(row, "prompt", str)
    setup = str(row.get("setup") or "")
    tests = _strings(row, "tests")
    if not tests:
        raise RowError("tests", "needs at least one assert")
    hidden = _strings(row, "hidden_tests") if "hidden_tests" in row else []
    preamble = prompt if _is_code(prompt) else ""
    return Task(
        id=_row_id(row),
        prompt=prompt,
        reference=require(row, "solution", str),
        data=_function_data(
            require(row, "entry_point", str),
            preamble,
            _with_setup(setup, tests),
            _with_setup(setup, hidden),
            "function",
        ),
    )


def io_row(row: Mapping[str, Any]) -> Task:
    """A stdin/stdout row: `tests`/`hidden_tests` case lists, or CodeContests `public_tests`, `private_tests` and
    `generated_tests` columns."""
    prompt_key = first_present(row, ("prompt", "description", "question"))
    if prompt_key is None:
        raise RowError("prompt", "missing (an I/O task needs 'prompt' or 'description')")
    if "tests" in row:
        tests = _cases(row, "tests")
        hidden = _cases(row, "hidden_tests") if "hidden_tests" in row else []
    else:
        tests = _column_cases(row, "public_tests")
        hidden = [case for name in CODECONTESTS_HIDDEN if name in row for case in _column_cases(row, name)]
    if not tests and not hidden:
        raise RowError("tests", "needs at least one input/output case")
    return Task(
        id=_row_id(row),
        prompt=require(row, prompt_key, str),
        reference=_io_reference(row),
        data={"family": "io", "format": "io", "tests": tests, "hidden_tests": hidden},
    )


CODECONTESTS_HIDDEN = ("private_tests", "generated_tests")
"""CodeContests' hidden case columns, in the order they are played (a program is correct when it passes them all)."""
CODECONTESTS_PYTHON3 = (3, "PYTHON3")
"""How CodeContests' `solutions.language` names Python 3 (its enum: 1 is Python 2, 2 C++, 3 Python 3, 4 Java)."""


def _io_reference(row: Mapping[str, Any]) -> str | None:
    """The row's `solution`, else CodeContests' first Python 3 program in `solutions` (a Python 2 or C++ one
    would not run as the reference), else None."""
    reference = row.get("solution")
    if reference is not None:
        if not isinstance(reference, str):
            raise RowError("solution", f"expected a program as text, got {type(reference).__name__}")
        return reference
    solutions = row.get("solutions")
    if not isinstance(solutions, Mapping):
        return None
    languages, programs = solutions.get("language"), solutions.get("solution")
    if not isinstance(languages, list) or not isinstance(programs, list) or len(languages) != len(programs):
        raise RowError("solutions", "expected CodeContests' {'language': [...], 'solution': [...]} of equal length")
    pairs = zip(languages, programs, strict=True)
    python3 = (program for language, program in pairs if language in CODECONTESTS_PYTHON3)
    return next((program for program in python3 if isinstance(program, str) and program.strip()), None)


def apps_row(row: Mapping[str, Any]) -> Task:
    """An APPS / TACO row: stdin/stdout cases in the JSON text `input_output`."""
    cases = _json_field(row, "input_output")
    if not isinstance(cases, Mapping) or not isinstance(cases.get("inputs"), list):
        raise RowError("input_output", 'expected JSON {"inputs": [...], "outputs": [...]}')
    if cases.get("fn_name"):
        raise RowError("input_output", f"names fn_name {cases['fn_name']!r}: a call-based (function) task")
    inputs, outputs = _apps_cases(cases)
    tests = [
        {"input": _io_text(given), "output": _io_text(wanted)} for given, wanted in zip(inputs, outputs, strict=True)
    ]
    return Task(
        id=_row_id(row),
        prompt=require(row, "question", str),
        reference=_apps_reference(row),
        data={"family": "io", "format": "apps", "tests": tests[:1], "hidden_tests": tests[1:]},
    )


def apps_call_row(row: Mapping[str, Any]) -> Task:
    """A call-based APPS / TACO row: `fn_name` is called with each case's arguments."""
    cases = _json_field(row, "input_output")
    if not isinstance(cases, Mapping) or not isinstance(cases.get("fn_name"), str):
        raise RowError("input_output", 'expected JSON {"fn_name": ..., "inputs": [...], "outputs": [...]}')
    name = cases["fn_name"]
    inputs, outputs = _apps_cases(cases)
    starter = str(row.get("starter_code") or "")
    call = f"Solution().{name}" if re.search(r"^class Solution\b", starter, re.MULTILINE) else name
    tests = []
    for arguments, wanted in zip(inputs, outputs, strict=True):
        if not isinstance(arguments, list):
            raise RowError("input_output", "each input of a call-based problem is a list of arguments")
        if isinstance(wanted, list) and len(wanted) == 1:  # (APPS wraps most outputs in a list)
            accepted = [*_as_returned(wanted[0]), *_as_returned(wanted)]
        else:
            accepted = _as_returned(wanted)
        tests.append(_call_test(call, arguments, _accepting(accepted)))
    return Task(
        id=_row_id(row),
        prompt=_with_starter(require(row, "question", str), starter),
        reference=_apps_reference(row),
        data={**_function_data(name, APPS_IMPORTS, tests[:1], tests[1:], "apps_call"), "alternatives": True},
    )


APPS_IMPORTS = (
    "import sys\nimport time\nimport itertools\nfrom itertools import accumulate, product, permutations, combinations\n"
    "import collections\nfrom collections import Counter, OrderedDict, deque, defaultdict, ChainMap\n"
    "from functools import lru_cache\nimport math\nfrom math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, "
    "log, log2\nimport fractions\nfrom typing import List, Tuple\ntry:\n    import numpy as np\nexcept ImportError:\n"
    "    pass\nimport random\nimport heapq\nfrom heapq import *\n"
)
"""What APPS's own checker puts before a call-based program (`testing_util.py`), so its references (`List[int]`
annotations, a bare `Counter`) run as they did there; numpy only where the sandbox's Python has it."""


def _as_returned(wanted: Any) -> list[Any]:
    """The values a call may return for the JSON value `wanted`: a list may come back as a tuple, and a list of
    lists as a list (or tuple) of tuples, since the official checkers turn tuples into lists (JSON has none)."""
    shapes = [wanted]
    if isinstance(wanted, list):
        shapes.append(tuple(wanted))
        if wanted and all(isinstance(item, list) for item in wanted):
            inner = [tuple(item) for item in wanted]
            shapes += [inner, tuple(inner)]
    return shapes


def _accepting(accepted: list[Any]) -> str:
    """The check of a call-based case: `== value`, or `in (expected, *others)` where several values pass."""
    unique = list({repr(value): value for value in accepted}.values())
    if len(unique) == 1:
        return f"== {unique[0]!r}"
    return f"in ({', '.join(map(repr, unique))})"


def _call_test(call: str, arguments: list[Any], check: str) -> str:
    """An assert that calls `call` with `arguments` (JSON values: their repr is Python) and applies `check`."""
    return f"assert {call}({', '.join(map(repr, arguments))}) {check}"


def _with_starter(prompt: str, starter: str) -> str:
    """The prompt, then the starter code the problem gives (a signature or a `Solution` class), if any."""
    return f"{prompt}\n\nStart from:\n{starter.rstrip()}\n" if starter.strip() else prompt


def _apps_cases(cases: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    inputs, outputs = cases.get("inputs"), cases.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(outputs) != len(inputs) or not inputs:
        raise RowError("input_output", "needs as many outputs as inputs, and at least one case")
    return inputs, outputs


def _apps_reference(row: Mapping[str, Any]) -> str | None:
    """The first of `solutions` (JSON text of a list of programs), if any."""
    solutions = _json_field(row, "solutions") if row.get("solutions") else []
    return solutions[0] if isinstance(solutions, list) and solutions and isinstance(solutions[0], str) else None


def livecodebench_row(row: Mapping[str, Any]) -> Task:
    """A LiveCodeBench code-generation row (stdin problems)."""
    public, cases = _livecodebench_cases(row)
    if any(case.get("testtype", "stdin") != "stdin" for case in cases):
        raise RowError("public_test_cases", "has functional cases: a function (LeetCode) task")
    tests = [{"input": _io_text(case.get("input")), "output": _io_text(case.get("output"))} for case in cases]
    return Task(
        id=_row_id(row),
        prompt=require(row, "question_content", str),
        reference=None,
        data={
            "family": "io",
            "format": "livecodebench",
            "tests": tests[: len(public)],
            "hidden_tests": tests[len(public) :],
        },
    )


def livecodebench_call_row(row: Mapping[str, Any]) -> Task:
    """A functional LiveCodeBench row (LeetCode): `metadata`'s `func_name`, a method of `Solution`, is called with
    each case's input lines read as JSON arguments, and must return the output read as JSON."""
    public, cases = _livecodebench_cases(row)
    metadata = _json_field(row, "metadata") if row.get("metadata") else {}
    name = metadata.get("func_name") if isinstance(metadata, Mapping) else None
    if not isinstance(name, str):
        raise RowError("metadata", "a functional problem needs its func_name")
    tests = []
    for case in cases:
        try:
            arguments = [json.loads(line) for line in str(case.get("input", "")).splitlines() if line.strip()]
            wanted = json.loads(str(case.get("output", "")))
        except json.JSONDecodeError as error:
            raise RowError("public_test_cases", f"a functional case is not JSON: {error.msg}") from None
        tests.append(_call_test(f"Solution().{name}", arguments, _accepting([wanted, *_as_tuple(wanted)])))
    prompt = _with_starter(require(row, "question_content", str), str(row.get("starter_code") or ""))
    preamble = "from typing import *\nfrom collections import *\nimport math, heapq, bisect, itertools, functools\n"
    return Task(
        id=_row_id(row),
        prompt=prompt,
        reference=None,
        data={
            **_function_data(name, preamble, tests[: len(public)], tests[len(public) :], "livecodebench_call"),
            "alternatives": True,
        },
    )


def _as_tuple(wanted: Any) -> list[Any]:
    """A list's tuple form, which LiveCodeBench's checker accepts for it (it turns a returned tuple into a list)."""
    return [tuple(wanted)] if isinstance(wanted, list) else []


def _livecodebench_cases(row: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """(public cases, all cases); `private_test_cases` as JSON text or in LiveCodeBench's own encoding."""
    public = _json_field(row, "public_test_cases")
    if not isinstance(public, list):
        raise RowError("public_test_cases", "expected a JSON list of {input, output, testtype}")
    private = _livecodebench_private(row.get("private_test_cases"))
    if not isinstance(private, list):
        raise RowError("private_test_cases", "expected a JSON list of {input, output, testtype}")
    cases = [*public, *private]
    if not cases or not all(isinstance(case, Mapping) for case in cases):
        raise RowError("public_test_cases", "needs at least one case, each {input, output, testtype}")
    return public, cases


def _livecodebench_private(value: Any) -> Any:
    """`private_test_cases` parsed: plain JSON (or already parsed), else decoded from LiveCodeBench's base64 of
    zlib of a pickled JSON string, whose pickle is read as data and never loaded (`encoded_cases`)."""
    if not value:
        return []
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    try:
        text = decode_livecodebench_cases(value)
    except EncodedCasesError as error:
        raise RowError("private_test_cases", f"neither JSON nor LiveCodeBench's encoding of it: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RowError("private_test_cases", f"decoded, but not JSON: {error.msg}") from None


PARSERS: dict[str, Callable[[Mapping[str, Any]], Task]] = {
    "humaneval": humaneval_row,
    "mbpp": mbpp_row,
    "function": function_row,
    "io": io_row,
    "apps": apps_row,
    "apps_call": apps_call_row,
    "livecodebench": livecodebench_row,
    "livecodebench_call": livecodebench_call_row,
}
FAMILY_OF = {
    "humaneval": "function",
    "mbpp": "function",
    "function": "function",
    "io": "io",
    "apps": "io",
    "apps_call": "function",
    "livecodebench": "io",
    "livecodebench_call": "function",
}


def detect_format(row: Mapping[str, Any]) -> str:
    """Names a row's format from its fields."""
    if "test_list" in row:
        return "mbpp"
    if "canonical_solution" in row or ("test" in row and "entry_point" in row):
        return "humaneval"
    if "public_tests" in row or "private_tests" in row:
        return "io"
    if "input_output" in row:
        cases = _json_or_none(row["input_output"])
        return "apps_call" if isinstance(cases, Mapping) and cases.get("fn_name") else "apps"
    if "public_test_cases" in row:
        cases = _json_or_none(row["public_test_cases"])
        functional = isinstance(cases, list) and any(
            isinstance(case, Mapping) and case.get("testtype") == "functional" for case in cases
        )
        return "livecodebench_call" if functional else "livecodebench"
    tests = row.get("tests")
    if isinstance(tests, list) and tests and isinstance(tests[0], Mapping):
        return "io"
    if "entry_point" in row:
        return "function"
    raise RowError(
        None, "unknown code task format (expected HumanEval, MBPP, APPS, LiveCodeBench, function or I/O fields)"
    )


def row_parser(task_format: str | None, family: TaskFamily) -> Callable[[Mapping[str, Any]], Task]:
    """A parser for `task_format` (None or "auto": detected per row) that refuses rows of the other family."""
    if task_format not in (None, "auto") and task_format not in PARSERS:
        raise ValueError(f"task_format must be 'auto' or one of {', '.join(PARSERS)}; got {task_format!r}")

    def parse(row: Mapping[str, Any]) -> Task:
        name = detect_format(row) if task_format in (None, "auto") else str(task_format)
        if FAMILY_OF[name] != family:
            raise RowError(None, f"a {name} row is a {FAMILY_OF[name]} task; this env plays {family} tasks")
        return PARSERS[name](row)

    return parse


def load_code_tasks(
    tasks: str | os.PathLike[str] | Sequence[Mapping[str, Any] | Task] | TaskSource,
    family: TaskFamily,
    task_format: str | None = None,
    on_error: OnError = "raise",
) -> TaskSource:
    """What the code envs accept as `tasks=`: a JSONL path, a list of rows or `Task`s, or a `TaskSource`. A bad row
    stops the load (`on_error="raise"`) or is skipped, warned about and listed in `TaskList.skipped`."""
    parser = row_parser(task_format, family)
    if isinstance(tasks, (str, os.PathLike)):
        return load_jsonl(tasks, parser, on_error=on_error)
    if isinstance(tasks, TaskSource):
        return tasks
    if (items := listed(tasks)) is not None:  # (a list, a Hugging Face Dataset, any iterable of rows)
        rows = [{"__task__": task} if isinstance(task, Task) else task for task in items]  # (in order, mixed too)
        return tasks_from_rows(
            rows, lambda row: _check_task(row, family) if "__task__" in row else parser(row), on_error=on_error
        )
    raise TypeError(f"tasks must be a JSONL path, a list of rows or Tasks, or a TaskSource; got {type(tasks).__name__}")


def _check_task(row: Mapping[str, Any], family: TaskFamily) -> Task:
    task: Task = row["__task__"]
    if task.data.get("family") != family:
        raise RowError("family", f"task {task.id!r} is not a {family} task (data['family'] says so)")
    return task


def _function_data(
    entry_point: str, preamble: str, tests: list[str], hidden: list[str], task_format: str
) -> dict[str, Any]:
    if not entry_point.isidentifier():
        raise RowError("entry_point", f"{entry_point!r} is not a Python name")
    return {
        "family": "function",
        "format": task_format,
        "entry_point": entry_point,
        "preamble": preamble,
        "tests": tests,
        "hidden_tests": hidden,
    }


def _row_id(row: Mapping[str, Any]) -> str:
    key = first_present(row, ("task_id", "id", "name", "problem_id", "question_id"))
    return str(require(row, key, (str, int))) if key else ""


def _strings(row: Mapping[str, Any], name: str) -> list[str]:
    values = require(row, name, list)
    if not all(isinstance(value, str) for value in values):
        raise RowError(name, "expected a list of strings (one test each)")
    return list(values)


def _cases(row: Mapping[str, Any], name: str) -> list[dict[str, str]]:
    cases = []
    for index, case in enumerate(require(row, name, list)):
        if not isinstance(case, Mapping) or not isinstance(case.get("input"), str):
            raise RowError(name, f"case {index} needs 'input' and 'output' strings")
        if not isinstance(case.get("output"), str):
            raise RowError(name, f"case {index} needs 'input' and 'output' strings")
        cases.append({"input": case["input"], "output": case["output"]})
    return cases


def _column_cases(row: Mapping[str, Any], name: str) -> list[dict[str, str]]:
    columns = require(row, name, Mapping)
    inputs, outputs = columns.get("input"), columns.get("output")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
        raise RowError(name, "expected {'input': [...], 'output': [...]} of equal length")
    return [{"input": str(given), "output": str(wanted)} for given, wanted in zip(inputs, outputs, strict=True)]


def _json_field(row: Mapping[str, Any], name: str) -> Any:
    """A field holding JSON text (as APPS and LiveCodeBench store their cases), parsed; a parsed value passes."""
    value = row.get(name)
    if not isinstance(value, str):
        return require(row, name, (list, dict))
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise RowError(name, f"is not valid JSON: {error.msg} (at character {error.pos})") from None


def _json_or_none(value: Any) -> Any:
    """`value` parsed when it is JSON text, as it is when already parsed, None when it is text but not JSON (the
    row's parser then says what is wrong)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return None


def _io_text(value: Any) -> str:
    """A case's input or output as text: lines given as a list are joined (TACO writes some that way)."""
    if isinstance(value, list):
        return "".join(line if str(line).endswith("\n") else f"{line}\n" for line in map(str, value))
    if not isinstance(value, str):
        raise RowError("input_output", f"a case's input or output must be text, got {type(value).__name__}")
    return value


def _with_setup(setup: str, tests: list[str]) -> list[str]:
    return [f"{setup.rstrip()}\n{test}" if setup.strip() else test for test in tests]


def _is_code(text: str) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True
