"""Runs a Python program plus test snippets in a sandbox and returns one outcome per test, for text feedback.

The harness (written into the work dir as `_harness.py`) executes the program as `solution.py`, then each test
snippet on its own (`assert f(2) == 4`), with a per-test time limit, and prints one JSON line per test behind a
random marker. Tracebacks are trimmed to the frames in the user's code (`solution.py` and the test itself).

Threat model: the outcomes are reported from inside the program's own process, so a hostile program can forge
them (it can read the marker); the sandbox still contains it. A verifier that must not be fooled should compare the
process's exit status (`ExecResult`) too: the harness exits 0 only when every test passed, and a forged line cannot
make a crashed or killed run look `ok`.
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from reflectgym.sandboxes.types import ExecRequest, ExecResult, Limits, Sandbox

SOLUTION_FILE = "solution.py"
HARNESS_FILE = "_harness.py"

_HARNESS = r"""
import json, signal, sys, traceback
MARKER, PER_TEST, COUNT = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
KEEP = ("solution.py", "<test ")
def report(index, status, message="", tb=""):
    sys.stdout.flush()
    sys.__stdout__.write(MARKER + json.dumps({"index": index, "status": status, "message": message, "tb": tb}) + "\n")
    sys.__stdout__.flush()
def trimmed(error):
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(KEEP)]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    return "".join(lines + traceback.format_exception_only(type(error), error))
class TestTimeout(BaseException):
    pass
def on_alarm(signum, frame):
    raise TestTimeout(f"took longer than {PER_TEST:g} s")
signal.signal(signal.SIGALRM, on_alarm)
namespace = {"__name__": "solution"}
try:
    signal.setitimer(signal.ITIMER_REAL, PER_TEST)
    exec(compile(open("solution.py", encoding="utf-8").read(), "solution.py", "exec"), namespace)
    signal.setitimer(signal.ITIMER_REAL, 0)
except BaseException as error:
    signal.setitimer(signal.ITIMER_REAL, 0)
    for index in range(COUNT):
        report(index, "not_run", "the program itself failed: " + repr(error)[:500], trimmed(error))
    sys.exit(1)
failed = 0
for index in range(COUNT):
    source = open(f"_test_{index}.py", encoding="utf-8").read()
    try:
        signal.setitimer(signal.ITIMER_REAL, PER_TEST)
        exec(compile(source, f"<test {index}>", "exec"), dict(namespace))
        signal.setitimer(signal.ITIMER_REAL, 0)
        report(index, "passed")
    except AssertionError as error:
        signal.setitimer(signal.ITIMER_REAL, 0)
        failed += 1
        report(index, "failed", str(error)[:2000], trimmed(error))
    except TestTimeout as error:
        failed += 1
        report(index, "timeout", str(error))
    except BaseException as error:
        signal.setitimer(signal.ITIMER_REAL, 0)
        failed += 1
        report(index, "error", repr(error)[:2000], trimmed(error))
sys.exit(1 if failed else 0)
"""


class TestStatus(enum.Enum):
    """How one test ended."""

    PASSED = "passed"
    FAILED = "failed"
    """An assertion failed."""
    ERROR = "error"
    """The test raised something other than AssertionError."""
    TIMEOUT = "timeout"
    """The test ran past the per-test time limit."""
    NOT_RUN = "not_run"
    """The program failed before the tests, or the run was killed before this test reported."""


@dataclass(frozen=True)
class TestOutcome:
    """One test's result, with the source of the test for feedback."""

    test: str
    """The test's source."""
    status: TestStatus
    """How it ended."""
    message: str = ""
    """The assertion or exception message."""
    traceback: str = ""
    """Traceback trimmed to the user's code."""


@dataclass(frozen=True)
class PythonTestReport:
    """The run's `ExecResult` and one `TestOutcome` per test, in order."""

    result: ExecResult
    """The sandbox's view of the whole run."""
    outcomes: tuple[TestOutcome, ...]
    """Per-test outcomes."""

    @property
    def passed(self) -> bool:
        """Every test passed and the process exited 0 within its limits."""
        return self.result.ok and all(o.status is TestStatus.PASSED for o in self.outcomes)

    @property
    def pass_count(self) -> int:
        """How many tests passed."""
        return sum(o.status is TestStatus.PASSED for o in self.outcomes)


def run_python_tests(
    sandbox: Sandbox,
    program: str,
    tests: Sequence[str],
    limits: Limits | None = None,
    per_test_seconds: float = 5.0,
) -> PythonTestReport:
    """Run `program` then each test snippet against its definitions; returns per-test outcomes."""
    marker = f"@@reflectgym-{secrets.token_hex(8)}@@"
    files = {SOLUTION_FILE: program.encode(), HARNESS_FILE: _HARNESS.encode()}
    for index, test in enumerate(tests):
        files[f"_test_{index}.py"] = test.encode()
    request = ExecRequest(
        command=("python3", HARNESS_FILE, marker, str(per_test_seconds), str(len(tests))),
        files=files,
        limits=limits or Limits(),
    )
    result = sandbox.run(request)
    return PythonTestReport(result=result, outcomes=tuple(_outcomes(result, marker, tests)))


def _outcomes(result: ExecResult, marker: str, tests: Sequence[str]) -> list[TestOutcome]:
    found: dict[int, TestOutcome] = {}
    for line in result.stdout_text.splitlines():
        if not line.startswith(marker):
            continue
        try:
            record = json.loads(line[len(marker) :])
            index = int(record["index"])
            status = TestStatus(record["status"])
        except (ValueError, KeyError, TypeError):
            continue
        if 0 <= index < len(tests) and index not in found:
            found[index] = TestOutcome(tests[index], status, str(record.get("message", "")), str(record.get("tb", "")))
    note = result.message or "the run ended before this test reported"
    return [found.get(i, TestOutcome(test, TestStatus.NOT_RUN, note)) for i, test in enumerate(tests)]
