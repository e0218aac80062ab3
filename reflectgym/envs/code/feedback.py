"""Turns a `TestRun` into a `Verdict` at a feedback level: `binary`, `diagnostic` (the first failing public test:
call, expected, actual; or the trimmed traceback; timeouts and memory said as such), `hint` (diagnostic, how many
tests pass, and where to look). Hidden tests count for the reward, but feedback only ever says how many failed."""

from __future__ import annotations

from reflectgym.core.types import FeedbackLevel, Verdict
from reflectgym.envs.code.verifier import CaseResult, CaseStatus, TestRun
from reflectgym.sandboxes.python_tests import CRASHED_PREFIX

MAX_SHOWN = 600
"""Characters kept of any input, output or traceback quoted in feedback."""

_NEXT_STEP = {
    CaseStatus.WRONG: "Trace the failing call by hand and compare each step with what the task asks.",
    CaseStatus.ERROR: "The last line of the traceback names the problem; check the line above it.",
    CaseStatus.TIMEOUT: "Look for a loop that never ends, or an algorithm too slow for the input size.",
    CaseStatus.MEMORY: "Avoid building huge lists or unbounded recursion; compute values as you go.",
    CaseStatus.OUTPUT_LIMIT: "Print only the answer; remove debugging output and loops that print.",
    CaseStatus.NOT_RUN: "Make the whole program run first: fix the error before the tests.",
}
_AFTER_CRASH = "Replace deep recursion with a loop or an explicit stack; check any C-level code the program calls."


def code_verdict(run: TestRun, level: FeedbackLevel, *, partial_credit: bool = False) -> Verdict:
    """The verdict on one attempt; reward 1 when every test passes, else 0 or (with `partial_credit`) the share."""
    total = len(run.results)
    hidden_failed = sum(result.hidden and not result.passed for result in run.results)
    details = {
        "passed_tests": run.pass_count,
        "total_tests": total,
        "hidden_failed": hidden_failed,
        "statuses": [result.status.value for result in run.results],
        "program_error": bool(run.program_error),
    }
    if run.passed:
        return Verdict(reward=1.0, passed=True, feedback=f"Correct: all {total} tests pass.", details=details)
    reward = run.fraction if partial_credit else 0.0
    if level == "binary":
        return Verdict(reward=reward, passed=False, feedback="Incorrect: some tests fail.", details=details)
    text, next_step = _diagnosis(run, hidden_failed)
    if level == "hint":
        text = f"{text}\n\n{run.pass_count} of {total} tests pass. {next_step}"
    return Verdict(reward=reward, passed=False, feedback=text, details=details)


def _diagnosis(run: TestRun, hidden_failed: int) -> tuple[str, str]:
    """What went wrong, and the next step a hint suggests."""
    if run.program_error:
        return f"Your code failed before any test ran:\n{clip_traceback(run.program_error)}", _next_step(None)
    failing = next((result for result in run.results if not result.passed and not result.hidden), None)
    if failing is not None:
        return describe(failing), _next_step(failing)
    public = sum(not result.hidden for result in run.results)
    if hidden_failed:
        first = next(result for result in run.results if result.hidden and not result.passed)
        return f"All {public} public tests pass, but {hidden_failed} hidden test(s) fail.", _next_step(first)
    return (
        "Every test reported passing, but the program did not exit cleanly (did it end the process itself?).",
        _next_step(None),
    )


def _next_step(result: CaseResult | None) -> str:
    """The hint for a failed test (None: for a program that did not run)."""
    if result is None:
        return _NEXT_STEP[CaseStatus.NOT_RUN]
    return _AFTER_CRASH if _crashed(result) else _NEXT_STEP[result.status]


def describe(result: CaseResult) -> str:
    """What went wrong in one (public) test, in words a model can act on."""
    head = f"Test {result.index + 1}"
    if result.call is None and result.expected is not None:  # an input/output case
        return _describe_io(head, result)
    test = f"\n  test: {clip(result.shown)}"
    if result.status is CaseStatus.WRONG:
        if result.actual is not None and result.call is not None:
            return (
                f"{head} failed.\n  call:     {clip(result.call)}\n  expected: {clip(result.expected or '')}\n"
                f"  actual:   {clip(result.actual)}"
            )
        message = f"\n  message: {clip(result.message)}" if result.message else ""
        return f"{head} failed: the assertion is false.{test}{message}"
    if _crashed(result):
        return f"{head} {result.message}{test}"
    if result.status is CaseStatus.ERROR:
        return f"{head} raised an exception.{test}\n{clip_traceback(result.traceback or result.message)}"
    return f"{head} {_breach_words(result)}{test}"


def _crashed(result: CaseResult) -> bool:
    """Whether a signal killed the program during this test (a segfault: no exception, no traceback)."""
    return result.status is CaseStatus.ERROR and not result.traceback and result.message.startswith(CRASHED_PREFIX)


def _describe_io(head: str, result: CaseResult) -> str:
    given = f"\n  input:\n{_block(result.shown)}"
    if result.status is CaseStatus.WRONG:
        return (
            f"{head} failed: wrong output.{given}\n  expected output:\n{_block(result.expected or '')}\n"
            f"  your output:\n{_block(result.actual or '')}"
        )
    if _crashed(result):
        return f"{head} {result.message}{given}"
    if result.status is CaseStatus.ERROR:
        return f"{head} raised an exception.{given}\n{clip_traceback(result.traceback or result.message)}"
    return f"{head} {_breach_words(result)}{given}"


def _breach_words(result: CaseResult) -> str:
    if result.over_budget:
        return f"did not finish: {result.message}; it was running then. Make the whole solution faster."
    if result.status is CaseStatus.TIMEOUT:
        return "timed out: time limit exceeded (an endless loop, or too slow)."
    if result.status is CaseStatus.MEMORY:
        return "ran out of memory: memory limit exceeded."
    if result.status is CaseStatus.OUTPUT_LIMIT:
        return "printed too much: output limit exceeded."
    return f"did not run: {clip(result.message)}"


def _block(text: str) -> str:
    body = clip(text.rstrip("\n")) or "(nothing)"
    return "\n".join(f"    {line}" for line in body.splitlines()) or "    (nothing)"


def clip(text: str, limit: int = MAX_SHOWN) -> str:
    """`text` cut to `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def clip_traceback(text: str, limit: int = MAX_SHOWN) -> str:
    """A traceback cut to about `limit` characters from its end: its last line (the exception's type and message)
    and the innermost frames before it are what a fix needs; whole earlier lines are dropped, saying how many."""
    if len(text) <= limit:
        return text
    lines = text.rstrip("\n").split("\n")
    kept = [clip(lines.pop(), limit)]
    size = len(kept[0])
    while lines and size + len(lines[-1]) + 1 <= limit:
        size += len(lines[-1]) + 1
        kept.insert(0, lines.pop())
    dropped = f"... ({len(lines)} earlier line{'s' if len(lines) != 1 else ''} cut)" if lines else ""
    return "\n".join([dropped, *kept] if dropped else kept)
