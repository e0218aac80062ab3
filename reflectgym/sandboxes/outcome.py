"""Turns the raw facts of a finished run (exit code, who killed it, output sizes) into an `ExecResult`.

Threat model: the program can print anything, so the classification trusts only what the sandbox itself saw
(its own kill for wall time or output, the signal number, CPU time) plus one heuristic for memory: a Python
`MemoryError` (or C++ `bad_alloc`) as the last line of stderr under RLIMIT_AS, and Python's `File too large`
(it ignores SIGXFSZ) under RLIMIT_FSIZE. A program that fakes that line only
changes its own status between two failures; it can never turn a failure into `ok`.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from reflectgym.sandboxes.types import ExecResult, ExecStatus, Limits

_MEMORY_MARKERS = (b"MemoryError", b"std::bad_alloc", b"Cannot allocate memory")
_FILE_SIZE_MARKERS = (b"[Errno 27] File too large",)


@dataclass(frozen=True)
class RawOutcome:
    """What the sandbox observed about one run, before classification."""

    returncode: int
    """Exit code, or minus the signal number that killed the program."""
    stdout: bytes
    """Captured stdout (already cut at the limit)."""
    stderr: bytes
    """Captured stderr (already cut at the limit)."""
    stdout_truncated: bool
    """stdout went past the limit."""
    stderr_truncated: bool
    """stderr went past the limit."""
    wall_seconds: float
    """Wall-clock time from start to exit."""
    cpu_seconds: float
    """User + system CPU time."""
    killed_for_wall: bool = False
    """The sandbox killed the run at the wall-clock limit."""
    oom_suspected: bool = False
    """The backend knows a SIGKILL it did not send came from the OOM killer (cgroup memory limit)."""


def classify(raw: RawOutcome, limits: Limits) -> ExecResult:
    """Map raw facts to a status and a short message; the order puts the sandbox's own observations first."""
    status, message = _status(raw, limits)
    return ExecResult(
        status=status,
        exit_code=raw.returncode,
        stdout=raw.stdout,
        stderr=raw.stderr,
        stdout_truncated=raw.stdout_truncated,
        stderr_truncated=raw.stderr_truncated,
        wall_seconds=raw.wall_seconds,
        cpu_seconds=raw.cpu_seconds,
        message=message,
    )


def _status(raw: RawOutcome, limits: Limits) -> tuple[ExecStatus, str]:
    if raw.killed_for_wall:
        return ExecStatus.TIMEOUT, f"killed after the wall-clock limit of {limits.wall_seconds:g} s"
    if raw.stdout_truncated or raw.stderr_truncated:
        return ExecStatus.OUTPUT_LIMIT, f"output went past {limits.max_output_bytes} bytes; the run was killed"
    code = raw.returncode
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL and raw.cpu_seconds >= limits.cpu_seconds - 0.05):
        return ExecStatus.TIMEOUT, f"killed after the CPU-time limit of {limits.cpu_seconds:g} s"
    if code == -signal.SIGXFSZ:
        return ExecStatus.OUTPUT_LIMIT, f"wrote a file past the file-size limit of {limits.max_file_bytes} bytes"
    if code == -signal.SIGKILL and raw.oom_suspected:
        return ExecStatus.MEMORY_LIMIT, f"killed by the out-of-memory killer at {limits.memory_bytes} bytes"
    if code != 0 and _last_line_has(raw.stderr, _MEMORY_MARKERS):
        return ExecStatus.MEMORY_LIMIT, f"ran out of memory under the limit of {limits.memory_bytes} bytes"
    if code != 0 and _last_line_has(raw.stderr, _FILE_SIZE_MARKERS):
        return ExecStatus.OUTPUT_LIMIT, f"wrote a file past the file-size limit of {limits.max_file_bytes} bytes"
    if code == 0:
        return ExecStatus.OK, ""
    if code < 0:
        return ExecStatus.RUNTIME_ERROR, f"killed by signal {_signal_name(-code)}"
    return ExecStatus.RUNTIME_ERROR, f"exited with code {code}"


def _last_line_has(stderr: bytes, markers: tuple[bytes, ...]) -> bool:
    lines = [line for line in stderr.strip().splitlines()[-3:] if line.strip()]
    return bool(lines) and any(marker in lines[-1] for marker in markers)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
