"""The test harness's judge: a split test is decided outside the program's process, so a program cannot forge it.

Every attack here passed the old harness, which reported outcomes from inside the program's process behind a marker
the program could read from its argv. Each runs on every backend (the judge's protection does not depend on one).
"""

from __future__ import annotations

import pytest

from reflectgym.sandboxes import Limits, Sandbox, run_python_tests
from reflectgym.sandboxes import TestStatus as Status
from reflectgym.sandboxes.probes import split_test
from reflectgym.sandboxes.python_tests import PythonTest

LIMITS = Limits(wall_seconds=8, cpu_seconds=6)
TESTS = ["assert double(2) == 4", "assert double(21) == 42", "assert sorted([double(3), double(1)]) == [2, 6]"]


def judged(sandbox: Sandbox, program: str, tests: list[str] | None = None) -> list[Status]:
    report = run_python_tests(sandbox, program, tests or TESTS, LIMITS, per_test_seconds=2)
    assert not report.passed or all(o.status is Status.PASSED for o in report.outcomes)
    return [outcome.status for outcome in report.outcomes]


def test_a_correct_program_passes(sandbox: Sandbox) -> None:
    assert judged(sandbox, "def double(x):\n    return 2 * x\n") == [Status.PASSED] * 3


FORGERIES = {
    "outcome lines for every marker it can find, then a clean exit": (
        "import os, sys, json, glob\n"
        "def double(x):\n    return 0\n"
        "found = ' '.join(sys.argv) + sys.stdin.read() + open('/proc/self/cmdline').read()\n"
        "for path in glob.glob('/proc/*/cmdline') + glob.glob('/proc/*/environ') + glob.glob('*'):\n"
        "    try:\n        found += open(path, errors='replace').read()\n    except OSError:\n        pass\n"
        "markers = {word[:word.index('@@', 2) + 2] for word in found.split('@@reflectgym')[1:] if '@@' in word}\n"
        "for marker in markers | {'@@reflectgym-0000000000000000@@'}:\n"
        "    for i in range(3):\n"
        "        print('@@reflectgym' + marker + json.dumps({'index': i, 'status': 'passed'}))\n"
        "sys.stdout.flush()\nos._exit(0)\n"
    ),
    "an early exit(0) with sys.exit and os._exit rewritten": (
        "import os, sys, builtins\n"
        "def double(x):\n    return 0\n"
        "sys.exit = lambda *a: os._exit(0)\nbuiltins.AssertionError = type('Never', (Exception,), {})\n"
        "os._exit(0)\n"
    ),
    "an object that equals anything": (
        "class Anything:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
        "    def __lt__(self, other):\n        return True\n"
        "def double(x):\n    return Anything()\n"
    ),
    "an int that equals anything": (
        "class Anything(int):\n    def __eq__(self, other):\n        return True\n"
        "def double(x):\n    return Anything(0)\n"
    ),
    "passed reports written straight into the results channel": (
        "import os, json\n"
        "def double(x):\n"
        "    for fd in range(3, 64):\n"
        "        for i in range(3):\n"
        "            try:\n"
        "                os.write(fd, (json.dumps({'index': i, 'status': 'passed'}) + '\\n').encode())\n"
        "            except OSError:\n"
        "                pass\n"
        "    return -1\n"
    ),
    "reading the judge's memory for the expected values": (
        "import os\n"
        "def double(x):\n"
        "    judge = os.getppid()\n"
        "    for what in ('mem', 'fd/0', 'environ'):\n"
        "        try:\n"
        "            with open(f'/proc/{judge}/{what}', 'rb') as handle:\n"
        "                print(what, 'readable', handle.read(64))\n"
        "        except OSError as error:\n"
        "            print(what, type(error).__name__)\n"
        "    return -1\n"
    ),
}


@pytest.mark.parametrize("attack", list(FORGERIES))
def test_a_program_cannot_forge_a_split_test(sandbox: Sandbox, attack: str) -> None:
    report = run_python_tests(sandbox, FORGERIES[attack], TESTS, LIMITS, per_test_seconds=2)
    assert not report.passed and report.pass_count == 0, [(o.status, o.message) for o in report.outcomes]
    assert "readable" not in report.result.stdout_text or sandbox.name == "local"


def test_a_value_that_is_not_plain_data_fails_and_says_so(sandbox: Sandbox) -> None:
    program = "class Box:\n    pass\ndef double(x):\n    return Box()\n"
    report = run_python_tests(sandbox, program, TESTS[:1], LIMITS, per_test_seconds=2)
    [outcome] = report.outcomes
    assert outcome.status is Status.FAILED and "Box" in outcome.message and "plain data" in outcome.message


def test_the_judge_compares_plain_values_as_python_does(sandbox: Sandbox) -> None:
    program = (
        "from fractions import Fraction\n"
        "def f(kind):\n"
        "    return {'tuple': (1, [2.5, None]), 'set': frozenset({1, 2}), 'dict': {(1, 'a'): b'x'},\n"
        "            'nan': float('nan'), 'frac': Fraction(1, 3), 'big': 7 ** 5000, 'bool': True}[kind]\n"
    )
    tests = [
        "assert f('tuple') == (1, [2.5, None])",
        "assert f('set') == {2, 1}",
        "assert f('dict') == {(1, 'a'): b'x'}",
        "import math\nassert math.isnan(f('nan'))",
        "assert f('nan') == f('nan')",  # NaN equals nothing, itself included
        "assert f('frac') * 3 == 1",
        "assert f('big') == 7 ** 5000",
        "assert f('bool') is True",
        "assert all(v > 0 for v in f('set'))",
    ]
    statuses = judged(sandbox, program, tests)
    assert statuses == [Status.PASSED] * 4 + [Status.FAILED] + [Status.PASSED] * 4


def test_failures_report_the_value_or_the_asserts_own_message(sandbox: Sandbox) -> None:
    program = "def double(x):\n    return x + 1\n"
    tests = ["assert double(3) == 6", "assert double(3) == 6, f'double(3) gave {double(3)}'", "assert not double(0)"]
    report = run_python_tests(sandbox, program, tests, LIMITS, per_test_seconds=2)
    assert [o.message for o in report.outcomes] == ["actual: 4", "double(3) gave 4", ""]  # no internal encoding
    assert [o.actual for o in report.outcomes] == ["4", None, None]
    assert all(o.status is Status.FAILED for o in report.outcomes)


def test_a_test_that_cannot_be_split_runs_whole_in_the_program(sandbox: Sandbox) -> None:
    program = "def double(x):\n    return 2 * x\n"
    loop = "for x in range(5):\n    assert double(x) == x + x\n"
    assert judged(sandbox, program, [loop, "assert double(1) == 3"]) == [Status.PASSED, Status.FAILED]
    report = run_python_tests(sandbox, program, [PythonTest(loop, whole="assert False, 'the whole version ran'")])
    assert report.outcomes[0].message == "the whole version ran"


def test_the_programs_own_output_still_reaches_stdout(sandbox: Sandbox) -> None:
    program = "import sys\nprint('loading', end='')\ndef double(x):\n    print('called with', x)\n    return 2 * x\n"
    report = run_python_tests(sandbox, program, TESTS[:2], LIMITS, per_test_seconds=2)
    assert report.passed, report
    assert "loading" in report.result.stdout_text and "called with 21" in report.result.stdout_text


def test_a_program_that_kills_the_judge_fails(sandbox: Sandbox) -> None:
    program = "import os, signal\ndef double(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n    return 2 * x\n"
    report = run_python_tests(sandbox, program, TESTS, LIMITS, per_test_seconds=2)
    assert not report.passed and report.pass_count == 0


def test_splitting_keeps_the_program_to_its_calls() -> None:
    split = split_test("import math\ncandidate = f\nassert math.isclose(candidate(2)[0], 2.5), 'close'")
    assert split is not None
    assert split.probes == ("candidate(2)",) and split.verdict == "math.isclose(_probe[0][0], 2.5)"
    assert split.judge_setup == "import math" and split.message == "'close'" and not split.compared
    compared = split_test("assert f(3) == [1, 2]")
    assert compared is not None and compared.compared and compared.verdict == "_probe[0] == [1, 2]"
    over = split_test("assert all(x > 0 for x in f(3))")
    assert over is not None and over.probes == ("f(3)",)


def test_the_judge_keeps_expected_values_from_setup_lines_and_sends_only_the_data() -> None:
    split = split_test("data = [3, 1, 2]\nwant = sorted(data)\ncandidate = f\nassert candidate(data) == want")
    assert split is not None and split.shared == ("data",) and split.probes == ("candidate(data)",)
    assert "want" not in split.setup and "want = sorted(data)" in split.judge_setup
    assert split.verdict == "_probe[0] == want"


def test_builtins_stay_the_judges_except_names_under_test_or_bound_from_the_program() -> None:
    judged_abs = split_test("assert abs(candidate(2) - 0.5) < 1e-6")
    assert judged_abs is not None and judged_abs.probes == ("candidate(2)",)
    split = split_test("assert max([1, 5, 3]) == 5", under_test=frozenset({"max"}))
    assert split is not None and split.probes == ("max([1, 5, 3])",)
    rebound = split_test("sum = candidate\nassert sum([1, 2]) == 3")
    assert rebound is not None and rebound.probes == ("sum([1, 2])",)


SHADOWING = {
    "abs bound at top level": "abs = lambda value: 0\ndef mad(values):\n    return 0.0\n",
    "set bound at top level": "set = lambda *args: 0\ndef mad(values):\n    return None\n",
    "a star import and builtins rewritten": (
        "from math import *\nimport builtins\nbuiltins.abs = lambda value: 0\nbuiltins.set = lambda *a: 0\n"
        "def mad(values):\n    return 0.0\n"
    ),
}
SHADOWED_TESTS = ["assert abs(mad([1.0, 3.0]) - 1.0) < 1e-6", "assert set(mad([1, 2])) == set((1, 2))"]


@pytest.mark.parametrize("attack", list(SHADOWING))
def test_a_program_that_rebinds_a_builtin_cannot_answer_the_tests_builtin_calls(sandbox: Sandbox, attack: str) -> None:
    if sandbox.name == "local":
        pytest.skip("hostile code runs only in a real sandbox")
    report = run_python_tests(sandbox, SHADOWING[attack], SHADOWED_TESTS, LIMITS, per_test_seconds=2)
    assert report.pass_count == 0, [(o.status, o.message) for o in report.outcomes]
    honest = "set = frozenset\ndef mad(values):\n    return abs(values[0] - values[1]) / 2 if len(values) > 1 else 0\n"
    statuses = judged(sandbox, honest, [*SHADOWED_TESTS[:1], "assert sorted(set(mad([4, 2]) for _ in 'ab')) == [1]"])
    assert statuses == [Status.PASSED, Status.PASSED]  # its own code still sees its own `set`


def test_a_function_under_test_named_like_a_builtin_is_the_programs(sandbox: Sandbox) -> None:
    tests = ["assert max([3, 5, 1]) == 3", "assert abs(max([2, 9]) - 2) < 1e-9"]
    program = "def max(values):\n    return values[0] + 0.0 * len(values)\n"
    report = run_python_tests(sandbox, program, tests, LIMITS, per_test_seconds=2, under_test=("max",))
    assert report.passed, [(o.status, o.message) for o in report.outcomes]
    wrong = "def max(values):\n    return 0\n"
    report = run_python_tests(sandbox, wrong, tests, LIMITS, per_test_seconds=2, under_test=("max",))
    assert report.pass_count == 0


@pytest.mark.parametrize(
    "snippet",
    [
        "assert max([1, 5, 3]) == 5",  # nothing of the program in it
        "from solution import candidate\nassert candidate(3) == 4",  # an import from outside the standard library
        "for i in range(3):\n    assert f(i) == i",  # not a single final assert
        "assert all(f(i) for i in range(3))",  # the probe needs the comprehension's variable
        "assert list(map(lambda v: f(v), [1])) == [1]",  # ... or a lambda's
        "assert (y := f(1)) == 2",
        "f(1)",
    ],
)
def test_what_cannot_be_split_is_left_whole(snippet: str) -> None:
    assert split_test(snippet) is None


def test_a_sandbox_python_of_another_version_runs_the_harness_from_source(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reflectgym.sandboxes import python_tests

    files = {**python_tests.harness_files(), python_tests.HARNESS_CODE_FILE: b"cpython-0\nnot bytecode"}
    monkeypatch.setattr(python_tests, "harness_files", lambda: files)
    assert judged(sandbox, "def double(x):\n    return 2 * x\n") == [Status.PASSED] * 3


REDTEAM = {
    "a module planted in the work dir for the judge to import": (
        "import fractions\n"
        "planted = (\n"
        "    'import gc\\n'\n"
        "    'for obj in gc.get_objects():\\n'\n"
        "    '    if isinstance(obj, type) and obj.__name__ == \"Judge\":\\n'\n"
        "    '        obj.report = lambda self, i, *rest, _report=obj.report: _report(self, i, \"passed\")\\n'\n"
        "    'class Fraction:\\n    pass\\n'\n"
        ")\n"
        "for name in ('fractions', 'decimal', 'statistics', 'string'):\n"
        "    with open(name + '.py', 'w') as handle:\n"
        "        handle.write(planted)\n"
        "def candidate(*args):\n    return fractions.Fraction(1)\n"
    ),
    "a program function named like a builtin": "def max(values):\n    return 0\ncandidate = max\n",
    "eval rewritten to send the expected values back": (
        "import builtins\nreal_eval = builtins.eval\n"
        "def forged(source, scope=None, *rest):\n"
        "    values = real_eval(source, scope, *rest)\n"
        "    return tuple(scope.get('expected', value) if scope else value for value in values)\n"
        "builtins.eval = forged\n"
        "def candidate(x):\n    return 0\n"
    ),
}
REDTEAM_TESTS = [
    "import statistics\nassert candidate([1, 2, 3]) == 2",
    "assert max([1, 5, 3]) == 5",
    "expected = [1, 2]\nassert candidate(3) == expected",
    "assert candidate(5) == 'hello'",
]


@pytest.mark.parametrize("attack", list(REDTEAM))
def test_the_judge_runs_nothing_of_the_program(sandbox: Sandbox, attack: str) -> None:
    report = run_python_tests(sandbox, REDTEAM[attack], REDTEAM_TESTS, LIMITS, per_test_seconds=2)
    statuses = [outcome.status for outcome in report.outcomes]
    assert not report.passed and Status.PASSED not in [statuses[0], statuses[2], statuses[3]], statuses
    assert attack != "a program function named like a builtin" or statuses[1] is not Status.PASSED


def test_data_the_judge_sends_is_what_both_sides_see(sandbox: Sandbox) -> None:
    program = "def candidate(values):\n    return sorted(values)\n"
    tests = ["import random\ndata = [random.random() for _ in range(9)]\nassert candidate(data) == sorted(data)"]
    assert judged(sandbox, program, tests) == [Status.PASSED]


LEAKY_TESTS = [
    "assert sq(2) == 4",
    "for x, want in [(1234567, 1524155677489)]:\n    assert sq(x) == want",
    "assert sq(7654321) == 58588629971041",
]
STACK_DUMP = (
    "import sys, gc, io, os\n"
    "def peek(reader):\n"
    "    try:\n"
    "        return repr(reader.peek(1 << 16))\n"
    "    except (OSError, TypeError, ValueError):\n"
    "        return ''\n"
    "def dump():\n"
    "    seen, frame = [], sys._getframe(1)\n"
    "    try:\n"
    "        os.set_blocking(3, False)  # (what the judge has sent and no one read yet)\n"
    "    except OSError:\n"
    "        pass\n"
    "    while frame is not None:\n"
    "        seen.append(repr(frame.f_locals)[:20000])\n"
    "        seen += [peek(v) for v in frame.f_locals.values() if isinstance(v, io.BufferedReader)]\n"
    "        frame = frame.f_back\n"
    "    seen += [repr(o)[:2000] for o in gc.get_objects() if isinstance(o, (dict, list, str, bytes))]\n"
    "    try:\n"
    "        seen.append(repr(os.read(3, 1 << 16)))\n"
    "    except OSError:\n"
    "        pass\n"
    "    text = ' '.join(seen)  # (what would quote a test first, as feedback keeps only a message's start)\n"
    "    return ' '.join(text[max(0, at - 80) : at + 120] for at in range(len(text)) if text.startswith('sq(', at))\n"
)
LEAKS = {
    "at import": STACK_DUMP + "raise RuntimeError(dump())\ndef sq(x):\n    return x * x\n",
    "in the first test": STACK_DUMP + "def sq(x):\n    raise RuntimeError(dump())\n",
    "a forged ready line, then the shares read at import": (
        "import os, json\nos.write(4, b'{\"ready\": true}\\n')\nshares = os.fdopen(3, 'rb')\n"
        "raise RuntimeError(str([shares.readline() for _ in range(1)]))\ndef sq(x):\n    return x * x\n"
    ),
}


@pytest.mark.parametrize("leak", list(LEAKS))
def test_the_program_never_holds_a_hidden_share_while_it_could_quote_it(sandbox: Sandbox, leak: str) -> None:
    if sandbox.name == "local":
        pytest.skip("hostile code runs only in a real sandbox")
    sources = LEAKY_TESTS if leak != "a forged ready line, then the shares read at import" else LEAKY_TESTS[::-1]
    tests = [PythonTest(source, hidden=index > 0) for index, source in enumerate(sources)]  # (hidden ones last)
    report = run_python_tests(sandbox, LEAKS[leak], tests, LIMITS, per_test_seconds=2)
    said = f"{report.outcomes[0].message} {report.outcomes[0].traceback}"  # (a later test's own share is its own)
    assert "RuntimeError" in said or "gave up" in said, said
    for later in ("1234567", "1524155677489", "7654321", "58588629971041"):
        assert later not in said, (later, said[:3000])


def test_a_program_killed_by_a_signal_fails_the_test_it_was_running_saying_so(sandbox: Sandbox) -> None:
    if sandbox.name == "local":
        pytest.skip("hostile code runs only in a real sandbox")
    program = "import ctypes\ndef double(x):\n    if x > 5:\n        ctypes.string_at(0)\n    return 2 * x\n"
    report = run_python_tests(sandbox, program, TESTS, LIMITS, per_test_seconds=2)
    assert [o.status for o in report.outcomes] == [Status.PASSED, Status.ERROR, Status.NOT_RUN]
    assert report.outcomes[1].message.startswith("crashed with SIGSEGV: often a recursion too deep")


def test_tracebacks_number_tests_from_one(sandbox: Sandbox) -> None:
    report = run_python_tests(sandbox, "def double(x):\n    return [][x]\n", TESTS[:2], LIMITS, per_test_seconds=2)
    assert [o.traceback.count("<test 1>") for o in report.outcomes] == [1, 0]
    assert 'File "<test 2>", line 1' in report.outcomes[1].traceback


def test_the_program_and_its_tests_compile_as_in_a_fresh_interpreter(sandbox: Sandbox) -> None:
    """No `__future__` of reflectgym's own reaches them: annotations are evaluated (a program that reads its
    annotations, or names an undefined type in one, behaves as under `python3 solution.py`)."""
    program = (
        "def double(x: int) -> int:\n    return 2 * x\n\n"
        "def kinds():\n    return [type(value).__name__ for value in double.__annotations__.values()]\n"
    )
    assert judged(sandbox, program, ["assert kinds() == ['type', 'type']"]) == [Status.PASSED]  # (not 'str')
    assert judged(sandbox, "def double(x: Undefined):\n    return 2 * x\n") == [Status.NOT_RUN] * 3
    assert judged(sandbox, program, ["def f(y: Undefined): pass"]) == [Status.ERROR]


@pytest.mark.parametrize(
    ("test", "truth_only"),
    [
        ("assert check(s)", (True,)),
        ("assert not found(1)", (True,)),
        ("assert f(1) and g(2) == 3", (True, False)),
        ("assert (1 if f(1) else 2) == 1", (True,)),
        ("assert f(1) == 2", (False,)),
        ("assert f(1), f(1)", (True, False)),  # (the message shows its value)
        ("assert (f(1) and 5) == 5", (False,)),
    ],
)
def test_probes_whose_truth_alone_the_verdict_reads_are_marked(test: str, truth_only: tuple[bool, ...]) -> None:
    split = split_test(test)
    assert split is not None and split.truth_only == truth_only


def test_a_value_the_test_reads_only_for_its_truth_may_be_any_object(sandbox: Sandbox) -> None:
    """MBPP's `assert check_str('annie')` on a `re.Match` passes, as under the interpreter; a value that is compared
    must still be plain data, so an object that equals anything passes nothing."""
    program = (
        "import re\n"
        "def starts_with_vowel(s):\n    return re.match('[aeiou]', s)\n"
        "class Anything:\n    def __eq__(self, other):\n        return True\n    def __bool__(self):\n"
        "        return True\n"
        "def double(x):\n    return Anything()\n"
    )
    tests = [
        "assert starts_with_vowel('annie')",
        "assert not starts_with_vowel('dawood')",
        "assert starts_with_vowel('dawood')",
        "assert starts_with_vowel('annie') == 1",
        "assert double(2) == 4",
    ]
    assert judged(sandbox, program, tests) == [
        Status.PASSED,
        Status.PASSED,
        Status.FAILED,
        Status.FAILED,
        Status.FAILED,
    ]
