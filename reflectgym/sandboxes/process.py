"""Runs one host process to completion under a wall-clock deadline, with capped stdout/stderr capture.

Threat model: covers a program that floods its output (capture stops at the limit and its process group is
killed), one that never exits (killed at the deadline), one that keeps the pipes open from a grandchild (the
process group is killed as soon as the main process exits). It does not cover processes that leave the process
group (`setsid`): the namespaced backends end those with their pid namespace; `local` cannot.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from reflectgym.sandboxes.outcome import RawOutcome
from reflectgym.sandboxes.types import SandboxError

_CHUNK = 65536
_DRAIN_GRACE_SECONDS = 0.5
_EXIT_GRACE_SECONDS = 5.0


@dataclass(frozen=True)
class SpawnOptions:
    """How to start the host process; every field maps to a `subprocess.Popen` argument."""

    cwd: str | None = None
    """Working directory."""
    env: Mapping[str, str] | None = None
    """The whole environment (nothing is inherited)."""
    user: int | None = None
    """uid to switch to before exec (when started as root)."""
    group: int | None = None
    """gid to switch to before exec."""
    pass_fds: Sequence[int] = ()
    """File descriptors the child keeps open."""
    preexec: Callable[[], None] | None = None
    """Runs in the child before exec (rlimits); None keeps Popen's fast spawn path."""
    terminate: Callable[[int], bool] | None = None
    """Ends a run early given the started pid, instead of SIGKILL to its process group (bubblewrap: kill the
    sandbox's init and let bubblewrap exit by itself); returns False when it could not, and the group is killed."""


def proc_stat(pid: int) -> list[bytes]:
    """The fields of `/proc/PID/stat` after the command name (state, parent pid, ...); [] once `pid` is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []


def run_process(
    argv: Sequence[str], stdin: bytes, wall_seconds: float, max_output_bytes: int, options: SpawnOptions
) -> tuple[RawOutcome, int]:
    """Run `argv` and return what was seen plus its raw wait status.

    Raises:
        SandboxError: the process could not be started.
    """
    started = time.perf_counter()
    deadline = started + wall_seconds
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=options.cwd,
            env=dict(options.env) if options.env is not None else None,
            start_new_session=True,
            pass_fds=tuple(options.pass_fds),
            user=options.user,
            group=options.group,
            extra_groups=[] if options.user is not None else None,
            preexec_fn=options.preexec,
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise SandboxError(f"could not start {argv[0]!r}: {error}") from error
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    pidfd = os.pidfd_open(proc.pid)
    capture = _Capture(max_output_bytes)
    killed_for_wall = False

    def stop() -> None:
        if options.terminate is None or not options.terminate(proc.pid):
            _kill_group(proc.pid)

    try:
        killed_for_wall = _pump(proc, pidfd, stdin, deadline, capture, stop)
    finally:
        if not select.select([pidfd], [], [], 0)[0]:  # still running (e.g. we were interrupted): end it first
            stop()
            select.select([pidfd], [], [], _EXIT_GRACE_SECONDS)
        _kill_group(proc.pid)
        os.close(pidfd)
        _, wait_status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(wait_status)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()
    raw = RawOutcome(
        returncode=proc.returncode,
        stdout=bytes(capture.out[1]),
        stderr=bytes(capture.out[2]),
        stdout_truncated=capture.truncated[1],
        stderr_truncated=capture.truncated[2],
        wall_seconds=time.perf_counter() - started,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        killed_for_wall=killed_for_wall,
    )
    return raw, wait_status


class _Capture:
    """Keeps up to `limit` bytes per stream and remembers which stream went past it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.out: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
        self.truncated = {1: False, 2: False}

    def add(self, stream: int, data: bytes) -> bool:
        """Store `data`; returns False once the stream went past the limit."""
        buffer = self.out[stream]
        room = self.limit - len(buffer)
        if len(data) > room:
            buffer += data[: max(room, 0)]
            self.truncated[stream] = True
            return False
        buffer += data
        return True


def _pump(
    proc: subprocess.Popen[bytes],
    pidfd: int,
    stdin: bytes,
    deadline: float,
    capture: _Capture,
    stop: Callable[[], None],
) -> bool:
    """Feed stdin, collect output, watch the deadline; returns True when the deadline killed the run."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    selector = selectors.DefaultSelector()
    streams = {proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}
    for fd in streams:
        os.set_blocking(fd, False)
        selector.register(fd, selectors.EVENT_READ)
    selector.register(pidfd, selectors.EVENT_READ)
    pending = memoryview(stdin)
    stdin_fd = proc.stdin.fileno()
    if pending:
        os.set_blocking(stdin_fd, False)
        selector.register(stdin_fd, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    open_streams = set(streams)
    exited_at: float | None = None
    try:
        while open_streams or exited_at is None:
            now = time.perf_counter()
            if now >= deadline:
                stop()
                return exited_at is None
            if exited_at is not None and now - exited_at > _DRAIN_GRACE_SECONDS:
                return False  # a process outside the group still holds the pipes; stop listening
            timeout = deadline - now if exited_at is None else min(deadline - now, _DRAIN_GRACE_SECONDS)
            for key, _ in selector.select(timeout):
                fd = key.fd
                if fd == pidfd:
                    selector.unregister(pidfd)
                    exited_at = time.perf_counter()
                    _kill_group(proc.pid)  # leftovers in the group would hold the pipes open
                elif fd == stdin_fd:
                    pending = _write_some(stdin_fd, pending)
                    if not pending:
                        selector.unregister(stdin_fd)
                        proc.stdin.close()
                else:
                    data = _read_some(fd)
                    if data is None:
                        continue
                    if not data:
                        selector.unregister(fd)
                        open_streams.discard(fd)
                    elif not capture.add(streams[fd], data):
                        stop()
                        selector.unregister(fd)
                        open_streams.discard(fd)
        return False
    finally:
        selector.close()


def _write_some(fd: int, pending: memoryview) -> memoryview:
    try:
        written = os.write(fd, pending[:_CHUNK])
    except BlockingIOError:
        return pending
    except (BrokenPipeError, OSError):
        return memoryview(b"")
    return pending[written:]


def _read_some(fd: int) -> bytes | None:
    """Up to one chunk; b"" at end of stream, None when nothing is ready after all."""
    try:
        return os.read(fd, _CHUNK)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
