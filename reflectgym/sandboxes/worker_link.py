"""The host's side of one warm worker: the channel it is spoken to over, the request frame and the reply.

`worker_main` runs inside the sandbox; this module encodes what it reads and decodes (and bounds) what it answers.
A `Worker` sends a request (`submit`) and reads its answer (`collect`) separately, so one thread can keep many
workers busy (`pool._Batch`); `execute` does both, for a caller that waits on one worker.
"""

from __future__ import annotations

import functools
import marshal
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from reflectgym.sandboxes import worker_main as wire
from reflectgym.sandboxes.bwrap import TMP_DIR, WORK_DIR
from reflectgym.sandboxes.environment import PYTHON_NAMES, program_env, resolve_python
from reflectgym.sandboxes.outcome import RawOutcome, classify
from reflectgym.sandboxes.rlimits import rlimit_table
from reflectgym.sandboxes.types import ExecRequest, ExecResult, Isolation, Limits, SandboxError

WORKER_SOURCE = (Path(__file__).parent / "worker_main.py").read_bytes()
REPLY_GRACE_SECONDS = 10.0
"""How long past the wall limit the host waits for a worker's reply before it declares the worker lost."""
MAX_ERROR_BYTES = 1 << 16
MARSHAL_VERSION = 4
"""Request headers are `marshal`ed at this version (plain dicts, lists, strings and numbers: every Python 3 since
3.4 reads it), so the sandbox's interpreter may differ from the host's."""
CPU_COUNT = os.cpu_count() or 1
"""CPUs of this machine (read once: `os.cpu_count` reads `/sys` on every call)."""


class WorkerLostError(Exception):
    """The worker died, hung or broke the protocol during a request."""


class WorkerRetiredError(Exception):
    """The worker turned the request away unrun (a previous run broke its zygote): resend it to a fresh worker."""


class WorkerChannel(Protocol):
    """A byte pipe to one running worker."""

    def send(self, data: bytes) -> None:
        """Write all of `data` to the worker."""
        ...

    def receive(self, count: int, deadline: float) -> bytes:
        """Read exactly `count` bytes before `deadline` (perf_counter) or raise WorkerLostError."""
        ...

    def kill(self) -> None:
        """End the worker and everything in its sandbox, and reap what the host started; idempotent."""
        ...

    def fileno(self) -> int:
        """The descriptor that turns readable when the worker answers (to wait on many workers at once)."""
        ...

    def has_buffered(self) -> bool:
        """Whether bytes of an answer were already read into the channel (waiting on `fileno` would miss them)."""
        ...


class WorkerLauncher(Protocol):
    """Starts workers inside one kind of isolation."""

    name: str
    isolation: Isolation
    sigkill_means_oom: bool
    """A SIGKILL the worker did not send comes from the OOM killer (cgroup memory limit)."""
    extra_processes: int
    """Processes of the sandbox itself counted by RLIMIT_NPROC beside the program."""

    def start(self, cpu: int | None = None) -> WorkerChannel:
        """Start one worker, kept on `cpu` when given, and return its channel (before its ready message)."""
        ...

    def close(self) -> None:
        """Release what the launcher holds beyond its workers."""
        ...


class Worker:
    """One started worker: encodes requests, decodes (and bounds) replies."""

    def __init__(self, channel: WorkerChannel, launcher: WorkerLauncher, python: str, start_timeout: float) -> None:
        self.channel = channel
        self.launcher = launcher
        self.python = python
        self.runs = 0
        deadline = time.perf_counter() + start_timeout
        try:
            channel.send(WORKER_SOURCE)
            kind = channel.receive(1, deadline)
            if kind != wire.READY:
                raise WorkerLostError(self._error_text(kind, deadline))
        except WorkerLostError as error:
            channel.kill()
            raise SandboxError(f"a {launcher.name} worker did not start: {error}") from error

    def execute(self, request: ExecRequest) -> ExecResult:
        """Run one request; raises WorkerLostError when the worker breaks during it."""
        return self.collect(request, self.submit(request))

    def submit(self, request: ExecRequest) -> float:
        """Send one request; returns the deadline (`perf_counter`) for its answer, which `collect` reads."""
        self.runs += 1
        self.channel.send(encode_request(request, self.python, self.launcher.extra_processes))
        return time.perf_counter() + request.limits.wall_seconds + REPLY_GRACE_SECONDS

    def collect(self, request: ExecRequest, deadline: float) -> ExecResult:
        """Read the answer to `request` (sent by `submit`); raises WorkerLostError when the worker broke, and
        WorkerRetiredError when it turned the request away unrun."""
        limits = request.limits
        kind = self.channel.receive(1, deadline)
        if kind == wire.RETIRED:
            raise WorkerRetiredError("the worker retired before running the request")
        if kind != wire.DONE:
            raise WorkerLostError(f"worker failed: {self._error_text(kind, deadline)}")
        _, returncode, flags, wall, cpu, out_size, err_size = wire.RESULT.unpack(
            kind + self.channel.receive(wire.RESULT.size - 1, deadline)
        )
        if max(out_size, err_size) > limits.max_output_bytes:
            raise WorkerLostError("reply announces output past the output limit")
        raw = RawOutcome(
            returncode=returncode,
            stdout=self.channel.receive(out_size, deadline) if out_size else b"",
            stderr=self.channel.receive(err_size, deadline) if err_size else b"",
            stdout_truncated=bool(flags & wire.STDOUT_TRUNCATED),
            stderr_truncated=bool(flags & wire.STDERR_TRUNCATED),
            wall_seconds=wall,
            cpu_seconds=plausible_cpu(cpu, wall),
            killed_for_wall=bool(flags & wire.KILLED_FOR_WALL),
            oom_suspected=self.launcher.sigkill_means_oom and returncode == -9,
        )
        return classify(raw, limits)

    def _error_text(self, kind: bytes, deadline: float) -> str:
        """The text of an error reply (kind already read), or what was wrong with the reply."""
        if kind != wire.FAILED:
            return f"unexpected reply {kind!r}"
        (size,) = wire.ERROR.unpack(kind + self.channel.receive(wire.ERROR.size - 1, deadline))[1:]
        if size > MAX_ERROR_BYTES:
            return f"error reply of {size} bytes"
        return self.channel.receive(size, deadline).decode(errors="replace")[-500:]


def plausible_cpu(reported: float, wall_seconds: float) -> float:
    """CPU seconds as a number the run could have used: between 0 and its wall time on every CPU (0 for NaN).

    A run that ends on its own reports its CPU time itself (the worker answers before reaping it), so a program can
    forge it, as it can its exit code; this keeps a forged NaN, negative or absurd figure out of what callers
    aggregate. Its limits do not depend on it: the kernel enforces RLIMIT_CPU."""
    ceiling = wall_seconds * CPU_COUNT
    return min(max(reported, 0.0), ceiling) if math.isfinite(reported) else 0.0


def encode_request(request: ExecRequest, python: str, extra_processes: int) -> bytes:
    """The request frame `worker_main` reads: prefix, worker header, child header, stdin, file contents."""
    limits = request.limits
    command = request.command
    child = {
        "argv": resolve_python(command, python),
        "env": program_env(WORK_DIR, TMP_DIR, request.env) if request.env else None,  # None: the worker's own
        "rlimits": _rlimits(limits, extra_processes),
        "inline": command[0] in PYTHON_NAMES
        and len(command) >= 2
        and _is_plain_python(command[1:])
        and _starts_as_the_worker(request),
    }
    child_header = marshal.dumps(child, MARSHAL_VERSION)
    header = {
        "files": [[name, len(content)] for name, content in request.files.items()],
        "stdin": len(request.stdin),
        "wall": limits.wall_seconds,
        "max_output": limits.max_output_bytes,
        "child": len(child_header),
    }
    worker_header = marshal.dumps(header, MARSHAL_VERSION)
    return b"".join(
        [wire.PREFIX.pack(len(worker_header)), worker_header, child_header, request.stdin, *request.files.values()]
    )


@functools.lru_cache(maxsize=64)
def _rlimits(limits: Limits, extra_processes: int) -> list[list[int]]:
    return [[which, soft, hard] for which, (soft, hard) in rlimit_table(limits, extra_processes).items()]


INLINE_PYTHON_VARIABLES = frozenset({"PYTHONIOENCODING", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"})
"""The PYTHON* variables a worker applies to a program it runs in its own interpreter (its standard streams)."""
LOCALE_VARIABLES = ("LC_ALL", "LC_CTYPE", "LANG")
UTF8_LOCALES = frozenset({"C.UTF-8", "C.utf8"})


def _starts_as_the_worker(request: ExecRequest) -> bool:
    """Whether a fresh interpreter for this request would start as the worker's did, so that the program may run in
    it. Any other PYTHON* variable (import path, hash seed, warnings, optimisation, UTF-8 mode...), a locale other
    than the default UTF-8 one (the C locale's coercion), another HOME or files in the user's site directory
    (`.local/`, whose `.pth` files an interpreter's start processes) change that: such a program is exec'd instead,
    in the same sandbox, paying an interpreter's start."""
    if "HOME" in request.env or any(name.startswith(".local/") for name in request.files):
        return False
    for name, value in request.env.items():
        if name.startswith("PYTHON") and name not in INLINE_PYTHON_VARIABLES:
            return False
        if name in LOCALE_VARIABLES and value not in UTF8_LOCALES:
            return False
    return True


def _is_plain_python(args: Sequence[str]) -> bool:
    """`FILE ARGS...` or `-c CODE ARGS...`: forms the worker runs in its own interpreter."""
    if args[0] == "-c":
        return len(args) >= 2
    return not args[0].startswith("-")
