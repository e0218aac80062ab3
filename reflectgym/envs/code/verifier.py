"""Runs a candidate program against its tests in a sandbox, each test individually, and reports every outcome.

`UnitTestVerifier` runs assert-style tests (one harness process, one outcome per test, see
`reflectgym.sandboxes.python_tests`); `IOVerifier` runs the program once per input/output case (concurrently on a
warm pool). Both return a `TestRun`: typed outcomes that `feedback.py` turns into words. An assert test is judged
outside the candidate's process wherever it can be split (see `reflectgym.sandboxes.python_tests` for what a
program can and cannot forge); a run passes only when every test passed and the harness exited cleanly.
"""

from __future__ import annotations

import enum
import re
import signal
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation

from reflectgym.envs.code.asserts import UnitTest
from reflectgym.sandboxes.pool import WarmPool
from reflectgym.sandboxes.python_tests import PythonTest, TestOutcome, TestStatus, crash_words, run_python_tests
from reflectgym.sandboxes.types import MIB, ExecRequest, ExecResult, ExecStatus, Limits, Sandbox

SOLUTION_FILE = "solution.py"
_LINE = re.compile(r'File "solution\.py", line (\d+)')
_FRAME_PATH = re.compile(r'File "[^"]*/solution\.py"')
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class VerifierConfig:
    """Limits and tolerances for running candidate programs."""

    per_test_seconds: float = 2.0
    """Time one test (or one I/O case) may take before it counts as timed out."""
    run_seconds: float = 8.0
    """Least wall-clock budget of a whole unit-test run (all tests of one attempt in one process): a run of many
    tests gets `per_test_seconds` for the program's start and each test, up to `max_run_seconds`."""
    max_run_seconds: float = 60.0
    """Most wall-clock budget of a whole unit-test run, however many tests it has."""
    max_timeouts: int | None = 1
    """Tests that may time out before the rest of the attempt is given up (not run, and feedback says why): a program
    that loops on every input costs one test's time limit, not one per test (as LiveCodeBench's grader stops at its
    first timeout). None runs every test."""
    memory_mib: int = 512
    """Address-space limit of the program, in MiB."""
    max_output_kib: int = 256
    """Output kept per stream, in KiB; past it the run ends as an output flood."""
    float_tolerance: float | None = 1e-6
    """I/O cases: numeric tokens this close (absolute or relative) count as equal; None for exact tokens."""

    def __post_init__(self) -> None:
        if self.per_test_seconds <= 0 or self.run_seconds <= 0 or self.max_run_seconds <= 0:
            raise ValueError("per_test_seconds, run_seconds and max_run_seconds must be positive")
        if self.max_timeouts is not None and (isinstance(self.max_timeouts, bool) or self.max_timeouts < 1):
            raise ValueError(f"max_timeouts must be a whole number >= 1 or None, not {self.max_timeouts!r}")
        if self.memory_mib < 32:
            raise ValueError(f"memory_mib ({self.memory_mib}) must be at least 32 for Python to start")

    def run_budget(self, tests: int) -> float:
        """Wall-clock budget of a unit-test run of `tests` tests: the per-test limit for the program's start and
        each test, at least `run_seconds` and at most `max_run_seconds` (or `run_seconds` where that is more)."""
        wanted = max(self.run_seconds, self.per_test_seconds * (tests + 1))
        return min(wanted, max(self.max_run_seconds, self.run_seconds))

    def limits(self, wall_seconds: float) -> Limits:
        """Sandbox limits for one run of `wall_seconds`."""
        return Limits(
            wall_seconds=wall_seconds,
            cpu_seconds=wall_seconds,
            memory_bytes=self.memory_mib * MIB,
            max_output_bytes=self.max_output_kib * 1024,
        )


class CaseStatus(enum.Enum):
    """How one test ended."""

    PASSED = "passed"
    WRONG = "wrong"
    """The assertion failed, or the output differs."""
    ERROR = "error"
    """The code raised an exception."""
    TIMEOUT = "timeout"
    MEMORY = "memory"
    OUTPUT_LIMIT = "output_limit"
    NOT_RUN = "not_run"
    """The program failed before the tests, or the run was stopped at an earlier test."""


@dataclass(frozen=True)
class Program:
    """What runs: `source` is the whole file; its first `offset` lines are task code (a prompt's preamble), after
    `lead` lines put in front of it (the candidate's `__future__` imports, which must open the file)."""

    source: str
    offset: int = 0
    lead: int = 0


@dataclass(frozen=True)
class IOCase:
    """One stdin/stdout case."""

    input: str
    output: str
    hidden: bool = False


@dataclass(frozen=True)
class CaseResult:
    """One test's outcome, with what feedback may quote.

    Attributes:
        index: Position among the task's tests.
        hidden: Whether feedback must stay silent about it.
        status: How it ended.
        shown: The test as a person reads it (an assert, or the input given).
        call: The expression under test (unit tests that compare a call with a value), else None.
        expected: The expected value or output, when known.
        actual: What the program returned or printed, when known.
        message: The error or assertion message.
        traceback: Traceback trimmed to the candidate's lines, numbered as the candidate wrote them.
        over_budget: The whole run went past its total time budget at this test.
    """

    index: int
    hidden: bool
    status: CaseStatus
    shown: str
    call: str | None = None
    expected: str | None = None
    actual: str | None = None
    message: str = ""
    traceback: str = ""
    over_budget: bool = False
    """The whole run went past its total time budget at this test (a TIMEOUT that is not this test's own limit)."""

    @property
    def passed(self) -> bool:
        """Whether the test passed."""
        return self.status is CaseStatus.PASSED


@dataclass(frozen=True)
class TestRun:
    """Every test's outcome for one attempt.

    Attributes:
        results: One per test, in order.
        program_error: Why the program failed before any test (syntax error, crash on import), else "".
        clean_exit: Whether the sandbox saw the run(s) end cleanly (guards against forged outcomes).
    """

    results: tuple[CaseResult, ...]
    program_error: str = ""
    clean_exit: bool = True

    @property
    def passed(self) -> bool:
        """All tests passed and the program exited cleanly."""
        return self.clean_exit and not self.program_error and all(result.passed for result in self.results)

    @property
    def pass_count(self) -> int:
        """How many tests passed."""
        return sum(result.passed for result in self.results)

    @property
    def fraction(self) -> float:
        """Share of tests passed (0 when the program failed before them)."""
        if not self.results or self.program_error:
            return 0.0
        return self.pass_count / len(self.results)


def syntax_error(program: Program) -> str:
    """The compile error of a program, numbered as the candidate wrote it, or "" when it compiles."""
    try:
        compile(program.source, SOLUTION_FILE, "exec")
    except SyntaxError as error:
        if error.lineno is not None:
            error.lineno = max(1, error.lineno - program.offset)
        if error.end_lineno is not None:
            error.end_lineno = max(1, error.end_lineno - program.offset)
        return "".join(traceback.format_exception_only(type(error), error)).rstrip()
    except (ValueError, RecursionError, MemoryError, OverflowError) as error:
        return f"{type(error).__name__}: the code could not be compiled ({error})"
    return ""


def renumber(text: str, offset: int, lead: int = 0) -> str:
    """Shifts `solution.py` line numbers in a traceback back to the candidate's own numbering (lines up to `offset`
    are the prompt's, numbered from after the `lead` lines put in front of it)."""
    if not offset:
        return text

    def shift(match: re.Match[str]) -> str:
        line = int(match.group(1))
        if line > offset:
            return f'File "solution.py", line {line - offset}'
        return f'File "<prompt>", line {max(1, line - lead)}'

    return _LINE.sub(shift, text)


class UnitTestVerifier:
    """Runs assert-style tests one by one against a program in a sandbox."""

    def __init__(self, sandbox: Sandbox, config: VerifierConfig | None = None) -> None:
        self.sandbox = sandbox
        self.config = config or VerifierConfig()

    def verify(self, program: Program, tests: Sequence[UnitTest], under_test: Sequence[str] = ()) -> TestRun:
        """Every test's outcome; a program that does not compile runs nothing. `under_test` names the functions
        under test (the task's entry point): a test's call of one is the program's even where it is named like a
        builtin; any other builtin the tests call is the judge's own, however the program rebinds it."""
        error = syntax_error(program)
        if error:
            return not_run(tests, error)
        budget = self.config.run_budget(len(tests))
        report = run_python_tests(
            self.sandbox,
            program.source,
            [PythonTest(test.source, whole=test.code, hidden=test.hidden) for test in tests],
            limits=self.config.limits(budget),
            per_test_seconds=self.config.per_test_seconds,
            under_test=under_test,
            max_timeouts=self.config.max_timeouts,
        )
        program_error = ""
        results: list[CaseResult] = []
        stopped = False
        for index, (test, outcome) in enumerate(zip(tests, report.outcomes, strict=True)):
            message = renumber(outcome.message, program.offset, program.lead)
            trace = renumber(outcome.traceback, program.offset, program.lead)
            if outcome.status is TestStatus.NOT_RUN and message.startswith("the program itself failed"):
                program_error = trace or message
            status, actual = _unit_status(outcome, report.result, stopped)
            over_budget = outcome.status is TestStatus.NOT_RUN and status is CaseStatus.TIMEOUT
            if over_budget:
                message = (
                    f"the run went past its total time budget ({budget:g} s for the program and all {len(tests)} "
                    "tests together)"
                )
            if stopped and not program_error and not message.startswith("not run:"):
                message = "not run: the run was stopped at an earlier test"
            stopped = stopped or outcome.status is TestStatus.NOT_RUN
            results.append(
                CaseResult(
                    index=index,
                    hidden=test.hidden,
                    status=status,
                    shown=test.shown,
                    call=test.call,
                    expected=test.expected,
                    actual=actual,
                    message="" if actual is not None else message,
                    traceback=trace,
                    over_budget=over_budget,
                )
            )
        return TestRun(tuple(results), program_error=program_error, clean_exit=report.result.ok)


def _unit_status(outcome: TestOutcome, run: ExecResult, stopped: bool) -> tuple[CaseStatus, str | None]:
    status = outcome.status
    if status is TestStatus.PASSED:
        return CaseStatus.PASSED, None
    if status is TestStatus.FAILED:
        return CaseStatus.WRONG, outcome.actual
    if status is TestStatus.TIMEOUT:
        return CaseStatus.TIMEOUT, None
    if status is TestStatus.ERROR:
        return (CaseStatus.MEMORY if outcome.message.startswith("MemoryError") else CaseStatus.ERROR), None
    if not stopped:  # the first test the run did not reach: the run's own end explains it
        return _breach(run.status), None
    return CaseStatus.NOT_RUN, None


def _breach(status: ExecStatus) -> CaseStatus:
    return {
        ExecStatus.TIMEOUT: CaseStatus.TIMEOUT,
        ExecStatus.MEMORY_LIMIT: CaseStatus.MEMORY,
        ExecStatus.OUTPUT_LIMIT: CaseStatus.OUTPUT_LIMIT,
    }.get(status, CaseStatus.NOT_RUN)


def not_run(tests: Sequence[UnitTest] | Sequence[IOCase], error: str) -> TestRun:
    """The run of a program that failed before any test (`error` says why): every test not run."""
    results = tuple(
        CaseResult(index=index, hidden=test.hidden, status=CaseStatus.NOT_RUN, shown="", message=error)
        for index, test in enumerate(tests)
    )
    return TestRun(results, program_error=error, clean_exit=False)


class IOVerifier:
    """Runs a stdin/stdout program once per case (concurrently where the sandbox is a warm pool)."""

    def __init__(self, sandbox: Sandbox, config: VerifierConfig | None = None) -> None:
        self.sandbox = sandbox
        self.config = config or VerifierConfig()

    def verify(self, program: Program, cases: Sequence[IOCase]) -> TestRun:
        """Every case's outcome; a program that does not compile runs nothing."""
        error = syntax_error(program)
        if error:
            return not_run(cases, error)
        limits = self.config.limits(self.config.per_test_seconds)
        files = {SOLUTION_FILE: program.source.encode()}
        requests = [
            ExecRequest(command=("python3", SOLUTION_FILE), files=files, stdin=case.input.encode(), limits=limits)
            for case in cases
        ]
        runs = _run_all(self.sandbox, requests, self.config.max_timeouts)
        timeouts = sum(run is not None and run.status is ExecStatus.TIMEOUT for run in runs)
        results = tuple(
            self._judge(index, case, run, program.offset)
            if run is not None
            else CaseResult(index, case.hidden, CaseStatus.NOT_RUN, case.input, message=_stopped_after(timeouts))
            for index, (case, run) in enumerate(zip(cases, runs, strict=True))
        )
        return TestRun(
            results, clean_exit=all(run is None or run.status is not ExecStatus.SANDBOX_ERROR for run in runs)
        )

    def _judge(self, index: int, case: IOCase, run: ExecResult, offset: int) -> CaseResult:
        base = CaseResult(
            index=index, hidden=case.hidden, status=CaseStatus.PASSED, shown=case.input, expected=case.output
        )
        if run.status is ExecStatus.OK:
            if outputs_match(run.stdout_text, case.output, self.config.float_tolerance):
                return base
            return replace(base, status=CaseStatus.WRONG, actual=run.stdout_text)
        if run.status is ExecStatus.RUNTIME_ERROR:
            if run.exit_code is not None and run.exit_code < 0 and -run.exit_code != signal.SIGKILL:
                # a crash (SIGSEGV...): no traceback to show. (SIGKILL is a limit's or the program's own doing, as
                # the unit-test harness also has it: it reads as its exit code below.)
                return replace(base, status=CaseStatus.ERROR, message=crash_words(-run.exit_code))
            trace = renumber(trim_traceback(run.stderr_text), offset)
            last = trace.strip().splitlines()[-1] if trace.strip() else f"exit code {run.exit_code}"
            status = CaseStatus.MEMORY if last.startswith("MemoryError") else CaseStatus.ERROR
            return replace(base, status=status, message=last, traceback=trace)
        if run.status is ExecStatus.SANDBOX_ERROR:
            return replace(base, status=CaseStatus.ERROR, message=f"the sandbox lost the run: {run.message}")
        return replace(base, status=_breach(run.status), message=run.message)


def _run_all(sandbox: Sandbox, requests: list[ExecRequest], max_timeouts: int | None) -> list[ExecResult | None]:
    """Runs requests concurrently where the sandbox can (a warm pool's `map`, one request per worker at a time when
    timeouts are counted), else one after another. Every case after the `max_timeouts`-th to time out is not run
    (None), as in a run one case at a time, however many ran beside it."""
    pool = sandbox if isinstance(sandbox, WarmPool) else None
    if max_timeouts is None:
        return list(pool.map(requests)) if pool else [sandbox.run(request) for request in requests]
    wave = pool.config.workers if pool else 1
    runs: list[ExecResult | None] = []
    for start in range(0, len(requests), wave):
        chunk = requests[start : start + wave]
        runs.extend(pool.map(chunk) if pool else [sandbox.run(request) for request in chunk])
        timed_out = [index for index, run in enumerate(runs) if run is not None and run.status is ExecStatus.TIMEOUT]
        if len(timed_out) >= max_timeouts:
            last = timed_out[max_timeouts - 1]
            return runs[: last + 1] + [None] * (len(requests) - last - 1)
    return runs


def _stopped_after(timeouts: int) -> str:
    return f"not run: the run stopped after {timeouts} test{'' if timeouts == 1 else 's'} timed out"


def outputs_match(actual: str, expected: str, float_tolerance: float | None = 1e-6) -> bool:
    """Token-by-token comparison (whitespace and line breaks are separators). An expected integer must come back as
    exactly that integer (`7` or `7.0`; 1000000000001 is not 1000000000000); an expected float within a relative
    tolerance."""
    got, want = actual.split(), expected.split()
    if len(got) != len(want):
        return False
    return all(a == b or _close(a, b, float_tolerance) for a, b in zip(got, want, strict=True))


def _close(a: str, b: str, tolerance: float | None) -> bool:
    if tolerance is None:
        return False
    if _INTEGER.fullmatch(b):
        try:
            return Decimal(a) == int(b)
        except (InvalidOperation, ValueError):
            return False
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return abs(x - y) <= tolerance * max(1.0, abs(y))


def trim_traceback(stderr: str) -> str:
    """A Python traceback from stderr, with only the frames in `solution.py` (and the error line)."""
    lines = _FRAME_PATH.sub('File "solution.py"', stderr).rstrip().splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")), default=-1)
    if start < 0:
        return "\n".join(lines[-8:])
    kept = [lines[start]]
    keep_frame = False
    for line in lines[start + 1 :]:
        if line.startswith("  File "):
            keep_frame = '"solution.py"' in line
            if keep_frame:
                kept.append(line)
        elif line.startswith("    "):
            if keep_frame:
                kept.append(line)
        else:
            kept.append(line)
    return "\n".join(kept)
