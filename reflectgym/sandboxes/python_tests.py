"""Runs a Python program plus test snippets in a sandbox and returns one outcome per test, for text feedback.

The harness (written into the work dir as `_harness.py`) is two processes. The *program's process* runs the
program as `solution.py`, then each test with a per-test time limit. The *judge*, the process it was forked from,
never runs the program's code: it takes the tests on stdin only after the fork, gives the program's process what it
needs of each test (its *share*) one test at a time, reads back what it sends, decides each test, and alone prints
the outcome lines (one JSON line per test behind a random marker; the program's own output reaches stdout through
the judge, and it never knows the marker). Tracebacks are trimmed to the frames in the user's code (`solution.py`
and the test itself, `<test N>` numbered from 1 as feedback numbers tests); a program killed by a signal fails the
test it was running with "crashed with SIGSEGV: ...".

A test that is one final `assert` over an expression is *split* (see `reflectgym.sandboxes.probes`): the program's
process evaluates only the calls into the program and sends their values as plain data (numbers, strings, bytes,
lists, tuples, dicts, sets; numpy values as lists and numbers); the judge evaluates the rest of the condition on
them. Other tests (a loop of asserts, a probe that needs a comprehension's variable) run whole in the program's
process, which reports their outcome itself.

Threat model: a split test passes only if the values the program sent satisfy the judge's condition, and its
expected values never reach the program's process; forged reports, a rewritten `assert` or `sys.exit`, an early
`os._exit(0)`, objects whose `__eq__` always says yes and builtins the program rebinds (`abs = lambda v: 0`; the
verdict's builtins are the judge's, except the names `under_test`) do not pass it. The judge sends the tests' shares
only after the program ran, and a hidden test's (`PythonTest.hidden`) only once every test before it that is not
hidden reported: the program's process never holds a hidden test while an outcome feedback may quote is still open
(callers put hidden tests last), and a "the program itself failed" report after a share was sent is not believed;
a test's share holds only what that test needs. The judge is
non-dumpable where `ctypes` can make it so (no ptrace, no `/proc/PID/mem` from the program, which runs as the same
user). A program *can* kill the judge (the run then fails) and forge the outcome of a test that runs whole in its
process, whose source it also sees (once it is that test's turn). `PythonTestReport.passed` also requires the
harness to have exited 0 (every test passed). The judge imports only from the interpreter's own folders (never from
the work dir, where the program can write modules), and only standard-library modules a test names; a test
importing anything else runs whole.
"""

from __future__ import annotations

import enum
import functools
import json
import marshal
import secrets
import signal
import sys
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from reflectgym.sandboxes.probes import split_test
from reflectgym.sandboxes.types import ExecRequest, ExecResult, Limits, Sandbox

SOLUTION_FILE = "solution.py"
HARNESS_FILE = "_harness.py"
HARNESS_SOURCE_FILE = "_harness_source.py"
HARNESS_CODE_FILE = "_harness.code"
ACTUAL_PREFIX = "\x00actual:"
"""Starts the message of a failed comparison test; what follows is `repr` of the value under test."""
CRASHED_PREFIX = "crashed with "
"""Starts the message of the test that was running when a signal killed the program's process ("crashed with
SIGSEGV: ...")."""
SIGNAL_HINTS = {
    "SIGSEGV": "often a recursion too deep for the C stack (a raised sys.setrecursionlimit)",
    "SIGABRT": "the interpreter or a C extension aborted",
    "SIGFPE": "an arithmetic fault in C code",
    "SIGBUS": "a bad memory access in C code",
    "SIGXCPU": "the run's CPU time limit ran out",
}
"""What usually sends a program each fatal signal, for feedback."""

_HARNESS = r"""
import builtins, json, os, select, signal, sys, traceback
KEEP = ("solution.py", "<test ")
ACTUAL_PREFIX = "\x00actual:"
CRASHED_PREFIX = "crashed with "
SIGNAL_HINTS = {}  # (filled in from the module's own table when the harness is built)
MAX_DEPTH = 200
if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)

class TestTimeout(BaseException):
    pass

class Unplain(Exception):
    pass

def on_alarm(signum, frame):
    raise TestTimeout("took longer than %g s" % PER_TEST)

def timed(run, *args):
    signal.setitimer(signal.ITIMER_REAL, PER_TEST)
    try:
        return run(*args)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)

def trimmed(error):
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename.startswith(KEEP)]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    return "".join(lines + traceback.format_exception_only(type(error), error))

def plain(value, depth=0):
    # A value as tagged JSON data, read through the builtin types' own methods (a subclass cannot lie about it).
    if depth > MAX_DEPTH:
        raise Unplain("a value nested more than %d deep" % MAX_DEPTH)
    if value is None or value is True or value is False:
        return value
    kind = type(value)
    if kind.__module__ == "numpy" and hasattr(value, "tolist"):
        return plain(value.tolist(), depth + 1)
    if isinstance(value, int):
        return int.__index__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if kind is complex:
        return {"complex": [value.real, value.imag]}
    if isinstance(value, bytes | bytearray):
        return {"bytes": bytes.hex(value) if isinstance(value, bytes) else bytearray.hex(value)}
    if isinstance(value, list):
        return [plain(item, depth + 1) for item in list.__iter__(value)]
    if isinstance(value, tuple):
        return {"tuple": [plain(item, depth + 1) for item in tuple.__iter__(value)]}
    if isinstance(value, dict):
        return {"dict": [[plain(k, depth + 1), plain(v, depth + 1)] for k, v in dict.items(value)]}
    if isinstance(value, set | frozenset):
        items = set.__iter__(value) if isinstance(value, set) else frozenset.__iter__(value)
        return {kind is frozenset and "frozenset" or "set": [plain(item, depth + 1) for item in items]}
    for module, name in (("fractions", "Fraction"), ("decimal", "Decimal")):
        if kind is getattr(sys.modules.get(module), name, None):
            return {name.lower(): str(value)}
    raise Unplain(kind.__qualname__)

def plain_or_truth(value, truth_only):
    # A probe whose verdict reads only its truth (`assert check(s)` on a re.Match) travels as that truth when it is
    # not plain data: as in `assert`, its own __bool__ decides, which tells no more than returning a bool would.
    try:
        return plain(value)
    except Unplain:
        if not truth_only:
            raise
    return bool(value)

def unplain(data):
    if isinstance(data, list):
        return [unplain(item) for item in data]
    if not isinstance(data, dict):
        return data
    [(tag, content)] = data.items()
    if tag == "tuple":
        return tuple(unplain(item) for item in content)
    if tag in ("set", "frozenset"):
        items = [unplain(item) for item in content]
        return set(items) if tag == "set" else frozenset(items)
    if tag == "dict":
        return {unplain(k): unplain(v) for k, v in content}
    if tag == "bytes":
        return bytes.fromhex(content)
    if tag == "complex":
        return complex(*content)
    if tag == "fraction":
        from fractions import Fraction
        return Fraction(content)
    if tag == "decimal":
        from decimal import Decimal
        return Decimal(content)
    raise ValueError("unknown tag %r" % tag)

def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]

def program_side(task_r, results_w, out_w, err_w):
    # The program's process: runs the program and each test's share of it, and sends what it found on fd 4.
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.dup2(task_r, 3)
    os.dup2(results_w, 4)
    os.closerange(5, 1 << 16)
    shares = os.fdopen(3, "rb")
    header = json.loads(shares.readline())  # only the limits and the count: each test's share comes in its turn
    global PER_TEST
    PER_TEST = header["per_test"]
    signal.signal(signal.SIGALRM, on_alarm)

    def send(record):
        sys.stdout.flush()
        sys.stderr.flush()
        write_all(4, (json.dumps(record) + "\n").encode())

    namespace = {"__name__": "solution"}
    try:
        source = open("solution.py", encoding="utf-8").read()
        timed(exec, compile(source, "solution.py", "exec"), namespace)
    except BaseException as error:
        for index in range(header["count"]):
            message = "the program itself failed: " + repr(error)[:500]
            send({"index": index, "status": "not_run", "message": message, "tb": trimmed(error)})
        sys.stdout.flush()
        os._exit(1)
    send({"ready": True})
    for index in range(header["count"]):
        line = shares.readline()
        if not line:
            break
        test = json.loads(line)
        try:
            values = timed(run_share, index, test, dict(namespace))
            if values is None:
                send({"index": index, "status": "passed"})
                continue
            try:
                truths = test.get("truth") or [False] * len(values)
                send({"index": index, "values": [plain_or_truth(v, t) for v, t in zip(values, truths)]})
            except (Unplain, ValueError, RecursionError) as error:
                send({"index": index, "unplain": str(error)[:200]})
        except AssertionError as error:
            send({"index": index, "status": "failed", "message": str(error)[:2000], "tb": trimmed(error)})
        except TestTimeout as error:
            send({"index": index, "status": "timeout", "message": str(error)})
        except BaseException as error:
            send({"index": index, "status": "error", "message": repr(error)[:2000], "tb": trimmed(error)})
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

def test_name(index):
    # Tests are numbered from 1 in tracebacks, as feedback numbers them.
    return "<test %d>" % (index + 1)

def run_share(index, test, scope):
    # A whole test (None once it passed), or a split test's setup and then its probes' values.
    name = test_name(index)
    if "code" in test:
        exec(compile(test["code"], name, "exec"), scope)
        return None
    scope.update({key: unplain(value) for key, value in test["shared"].items()})  # the judge's data, as sent
    if test["setup"]:
        exec(compile(test["setup"], name, "exec"), scope)
    return eval(compile("(%s,)" % ", ".join(test["probes"]), name, "eval"), scope)

class Judge:
    # Decides each test from what the program's process sent, and prints the outcome lines. It hands the program's
    # process the shares only once the program ran (it said it is ready), and a hidden test's only once every test
    # before it that is not hidden reported: what the program can reach (its stack, its memory) never holds a hidden
    # test while a failure it makes up could still be quoted. (Shares of tests feedback may quote go at once: one
    # round trip per test would cost each a pair of wake-ups.)
    def __init__(self, marker, tests, max_timeouts=None):
        self.marker, self.tests, self.done, self.failed = marker, tests, set(), 0
        self.max_timeouts, self.timeouts = max_timeouts, 0
        self.line_start = True
        self.shares, self.sent, self.ready, self.outbox = [], 0, False, b""

    def release(self):
        # Queues the shares the program's process may have now; True once every share is queued.
        while self.ready and self.sent < len(self.shares) and self.may_send(self.sent):
            self.outbox += (json.dumps(self.shares[self.sent]) + "\n").encode()
            self.sent += 1
        return self.sent == len(self.shares)

    def gave_up(self):
        # Enough tests timed out that the rest would most likely time out too: they are not run.
        return self.max_timeouts is not None and self.timeouts >= self.max_timeouts

    def may_send(self, index):
        if not self.tests[index]["hidden"]:
            return True
        return all(earlier in self.done or self.tests[earlier]["hidden"] for earlier in range(index))

    def forward(self, fd, data):
        write_all(fd, data)
        if fd == 1:
            self.line_start = data.endswith(b"\n")

    def report(self, index, status, message="", tb=""):
        if index in self.done:
            return
        self.done.add(index)
        self.failed += status != "passed"
        self.timeouts += status == "timeout"
        record = json.dumps({"index": index, "status": status, "message": message, "tb": tb})
        self.forward(1, (("" if self.line_start else "\n") + self.marker + record + "\n").encode())

    def receive(self, line):
        try:
            record = json.loads(line)
            if record == {"ready": True}:
                self.ready = True
                return
            index = int(record["index"])
            test = self.tests[index]
        except (ValueError, KeyError, TypeError, IndexError, RecursionError):
            return
        if index < 0 or index in self.done:
            return
        split = test["split"]
        if "status" in record and (record["status"] != "passed" or split is None):
            status = record["status"] if record["status"] in STATUSES else "error"
            message, tb = str(record.get("message", ""))[:2000], str(record.get("tb", ""))
            if status == "not_run" and self.sent:  # (the program failing on import sends this before any share)
                message, tb = "the program's process gave up before this test", ""
            self.report(index, status, message, tb)
        elif "unplain" in record and split is not None:
            what = str(record["unplain"])
            self.report(index, "failed", "the value under test is %s, which the test cannot compare: return plain "
                        "data (numbers, strings, lists, tuples, dicts, sets)" % what)
        elif "values" in record and split is not None:
            self.decide(index, split, test["scope"], record["values"])

    def share(self, index):
        # What the program's process gets for a test: a split test's setup, probes and the judge's data it needs,
        # once the judge ran its own setup lines; else (or if those fail) the whole test.
        test = self.tests[index]
        split = test["split"]
        if split is not None:
            scope = {"__builtins__": builtins, "__name__": "judge"}
            try:
                if split["judge_setup"]:
                    timed(exec, compile(split["judge_setup"], test_name(index), "exec"), scope)
                shared = {name: plain(scope[name]) for name in split["shared"]}
                test["scope"] = scope
                return {"setup": split["setup"], "probes": split["probes"], "shared": shared, "truth": split["truth"]}
            except BaseException:
                test["split"] = None  # the test runs whole, as the interpreter would run it
        return {"code": test["whole"]}

    def decide(self, index, test, scope, values):
        try:
            values = [unplain(value) for value in values]
            if len(values) != len(test["probes"]):
                raise ValueError("expected %d values" % len(test["probes"]))
        except Exception as error:
            self.report(index, "error", "the program sent an unreadable value: %r" % error)
            return
        try:
            scope = dict(scope)
            scope["_probe"] = values
            holds = bool(timed(eval, compile(test["verdict"], test_name(index), "eval"), scope))
        except TestTimeout as error:
            self.report(index, "timeout", str(error))
            return
        except BaseException as error:
            self.report(index, "error", repr(error)[:2000], trimmed(error))
            return
        if holds:
            self.report(index, "passed")
        else:
            self.report(index, "failed", self.message(index, test, scope, values))

    def message(self, index, test, scope, values):
        # The assert's own message, as the interpreter would show it; else the value under test of a comparison.
        if test["message"] is not None:
            try:
                return str(timed(eval, compile(test["message"], test_name(index), "eval"), scope))[:2000]
            except BaseException as error:
                return "(the assert's message failed: %r)" % error
        return ACTUAL_PREFIX + repr(values[0])[:1000] if test["compared"] else ""

STATUSES = ("passed", "failed", "error", "timeout", "not_run")

def judge_side(child, task_w, results_r, out_r, err_r):
    spec = json.loads(sys.stdin.buffer.read())  # read only now: the program's process never had it
    global PER_TEST
    PER_TEST = spec["per_test"]
    tests = [{"whole": t["whole"], "split": t["split"], "hidden": t["hidden"], "scope": None} for t in spec["tests"]]
    judge = Judge(spec["marker"], tests, spec.get("max_timeouts"))
    judge.shares = [judge.share(index) for index in range(len(tests))]
    judge.outbox = (json.dumps({"per_test": PER_TEST, "count": len(tests)}) + "\n").encode()
    os.set_blocking(task_w, False)  # a program that reads no shares must not stall the judge
    pending, open_fds, exited, status = b"", {results_r: None, out_r: 1, err_r: 2}, False, 0
    while open_fds:
        writing = [task_w] if task_w is not None and judge.outbox else []
        ready, writable, _ = select.select(list(open_fds), writing, [], 0.05)
        if writable:
            try:
                judge.outbox = judge.outbox[os.write(task_w, judge.outbox[: 1 << 16]):]
            except BlockingIOError:
                pass
            except OSError:  # the program's process closed its end: it will read no more
                judge.outbox, judge.shares = b"", judge.shares[: judge.sent]
        for fd in sorted(ready, key=lambda fd: fd == results_r):  # the program's output first, then its records
            data = os.read(fd, 1 << 16)
            if not data:
                del open_fds[fd]
            elif fd == results_r:
                forward_waiting_output(judge, open_fds, results_r)  # what it printed before the record, in order
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    judge.receive(line)
            else:
                judge.forward(open_fds[fd], data)
        if task_w is not None and judge.release() and not judge.outbox:
            os.close(task_w)
            task_w = None
        if not ready and exited:
            break  # the program's process is gone; what still holds its pipes is a leftover of its own
        if judge.gave_up():
            if not exited:
                os.kill(child, signal.SIGKILL)
            break
        if not exited:
            pid, status = os.waitpid(child, os.WNOHANG)
            exited = pid != 0
    if exited is False:
        status = os.waitpid(child, 0)[1]
    crash = crashed(status)
    for index in range(len(tests)):
        if index in judge.done:
            continue
        if judge.gave_up():
            judge.report(index, "not_run", "not run: the run stopped after %d test%s timed out"
                         % (judge.timeouts, "" if judge.timeouts == 1 else "s"))
        elif crash and not judge.ready:  # on import: the program itself failed
            judge.report(index, "not_run", "the program itself failed: it " + crash)
        elif crash:  # the test it was running when the signal came
            judge.report(index, "timeout" if "SIGXCPU" in crash else "error", crash)
            crash = ""
        else:
            judge.report(index, "not_run", "the program's process ended before this test reported")
    sys.exit(1 if judge.failed else 0)

def forward_waiting_output(judge, open_fds, results_r):
    # The program flushes its output before it sends a record: whatever of it is still in the pipes comes first.
    for fd in [fd for fd in open_fds if fd != results_r]:
        for _ in range(16):  # (bounded: a process still writing must not keep the judge from its records)
            if fd not in open_fds or not select.select([fd], [], [], 0)[0]:
                break
            data = os.read(fd, 1 << 16)
            if not data:
                del open_fds[fd]
            else:
                judge.forward(open_fds[fd], data)

def crashed(status):
    # What killed the program's process, for the test it was running ("" when it exited normally or by SIGKILL,
    # which is a limit of the sandbox or the program's own doing, not a crash).
    if not os.WIFSIGNALED(status) or os.WTERMSIG(status) == signal.SIGKILL:
        return ""
    return crash_words(os.WTERMSIG(status))

def crash_words(number):
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = "signal %d" % number
    hint = SIGNAL_HINTS.get(name)
    return CRASHED_PREFIX + name + (": " + hint if hint else "")

def main():
    try:  # no ptrace and no /proc/PID/mem for the program's process, which runs as the same user
        import ctypes
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)
    except Exception:
        pass
    signal.signal(signal.SIGALRM, on_alarm)
    pipes = [os.pipe() for _ in range(4)]
    (task_r, task_w), (results_r, results_w), (out_r, out_w), (err_r, err_w) = pipes
    child = os.fork()
    if child == 0:
        try:
            program_side(task_r, results_w, out_w, err_w)
        finally:
            os._exit(1)
    for fd in (task_r, results_w, out_w, err_w):
        os.close(fd)
    trusted_imports()
    judge_side(child, task_w, results_r, out_r, err_r)

def trusted_imports():
    # The judge imports only from the interpreter's own folders and others the program cannot write: never the
    # work dir (the program's files); and it imports now what it may need later, before the program runs.
    here = os.path.realpath(os.getcwd())
    own = tuple(os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix))

    def trusted(path):
        real = os.path.realpath(path)
        inside = real == here or (here != os.sep and real.startswith(here + os.sep))
        return not inside and (real.startswith(own) or not os.access(path, os.W_OK))

    sys.path[:] = [path for path in sys.path if path and trusted(path)]
    sys.path_importer_cache.clear()
    os.chdir("/")
    import decimal, fractions

PER_TEST = 1.0
main()
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
    """The assertion or exception message (for a failed comparison without a message of its own: `actual: ...`)."""
    traceback: str = ""
    """Traceback trimmed to the user's code."""
    actual: str | None = None
    """For a failed comparison (`assert f(x) == y`), `repr` of the value under test (at most 1000 characters)."""


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


_BOOTSTRAP = f"""import marshal, sys
with open({HARNESS_CODE_FILE!r}, "rb") as handle:
    tag, _, code = handle.read().partition(b"\\n")
if tag == sys.implementation.cache_tag.encode():
    code = marshal.loads(code)
else:
    code = compile(open({HARNESS_SOURCE_FILE!r}, encoding="utf-8").read(), {HARNESS_FILE!r}, "exec")
exec(code)
"""
"""What the sandbox runs: the harness as this interpreter compiled it (compiling its source took most of a short
run's time), or its source where the sandbox's Python is another version."""


@functools.cache
def harness_files() -> dict[str, bytes]:
    """The harness's files: the bootstrap, the code compiled here (tagged with this interpreter's bytecode
    version) and the source."""
    source = _HARNESS.replace("SIGNAL_HINTS = {}", f"SIGNAL_HINTS = {SIGNAL_HINTS!r}", 1)
    code = marshal.dumps(compile(source, HARNESS_FILE, "exec", dont_inherit=True))  # (not this module's __future__)
    return {
        HARNESS_FILE: _BOOTSTRAP.encode(),
        HARNESS_CODE_FILE: sys.implementation.cache_tag.encode() + b"\n" + code,
        HARNESS_SOURCE_FILE: source.encode(),
    }


def crash_words(signal_number: int) -> str:
    """How feedback says that a signal killed a program ("crashed with SIGSEGV: often ..."), as the harness does."""
    try:
        name = signal.Signals(signal_number).name
    except ValueError:
        name = f"signal {signal_number}"
    hint = SIGNAL_HINTS.get(name)
    return CRASHED_PREFIX + name + (f": {hint}" if hint else "")


@dataclass(frozen=True)
class PythonTest:
    """One test for `run_python_tests`."""

    source: str
    """The test as written; split between the program's process and the judge when it can be."""
    whole: str | None = None
    """What the program's process runs when the test cannot be split (default: `source`), e.g. a version
    instrumented to report the value under test."""
    hidden: bool = False
    """Whether the program may not learn this test (feedback stays silent about it): its share reaches the program's
    process only once every earlier test that is not hidden reported. Put hidden tests last."""


def run_python_tests(
    sandbox: Sandbox,
    program: str,
    tests: Sequence[str | PythonTest],
    limits: Limits | None = None,
    per_test_seconds: float = 5.0,
    under_test: Collection[str] = (),
    max_timeouts: int | None = None,
) -> PythonTestReport:
    """Run `program` then each test snippet against its definitions; returns per-test outcomes.

    Once `max_timeouts` tests timed out, the program's process is killed and the tests left are not run (a program
    that loops on every input costs one test's time, not one per test); None runs every test.

    `under_test` names the program's functions the tests call (a task's entry point): where one is named like a
    builtin, a split test calls the program's; every other builtin a test calls is the judge's own, even when the
    program rebinds it (see `reflectgym.sandboxes.probes`).
    """
    marker = f"@@reflectgym-{secrets.token_hex(8)}@@"
    cases = [test if isinstance(test, PythonTest) else PythonTest(test) for test in tests]
    names = frozenset(under_test)
    if max_timeouts is not None and max_timeouts < 1:
        raise ValueError(f"max_timeouts must be at least 1 or None, not {max_timeouts}")
    spec = {
        "marker": marker,
        "per_test": per_test_seconds,
        "max_timeouts": max_timeouts,
        "tests": [_judged(case, names) for case in cases],
    }
    request = ExecRequest(
        command=("python3", HARNESS_FILE),
        files={SOLUTION_FILE: program.encode("utf-8", "surrogatepass"), **harness_files()},
        stdin=json.dumps(spec).encode(),
        limits=limits or Limits(),
    )
    result = sandbox.run(request)
    return PythonTestReport(result=result, outcomes=tuple(_outcomes(result, marker, [c.source for c in cases])))


def _judged(test: PythonTest, under_test: frozenset[str]) -> dict[str, object]:
    """What the harness gets for one test: the source its program's process runs whole, and its split if any."""
    split = split_test(test.source, under_test=under_test)
    whole = test.whole if test.whole is not None else test.source
    if split is None:
        return {"whole": whole, "split": None, "hidden": test.hidden}
    return {
        "whole": whole,
        "hidden": test.hidden,
        "split": {
            "setup": split.setup,
            "shared": list(split.shared),
            "probes": list(split.probes),
            "verdict": split.verdict,
            "judge_setup": split.judge_setup,
            "compared": split.compared,
            "message": split.message,
            "truth": list(split.truth_only),
        },
    }


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
            message, trace = str(record.get("message", "")), str(record.get("tb", ""))
            actual = (
                message[len(ACTUAL_PREFIX) :]
                if status is TestStatus.FAILED and message.startswith(ACTUAL_PREFIX)
                else None
            )
            shown = message if actual is None else f"actual: {actual}"
            found[index] = TestOutcome(tests[index], status, shown, trace, actual)
    note = result.message or "the run ended before this test reported"
    return [found.get(i, TestOutcome(test, TestStatus.NOT_RUN, note)) for i, test in enumerate(tests)]
