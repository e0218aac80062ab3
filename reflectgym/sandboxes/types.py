"""The sandbox vocabulary: what a run asks for, what it gets back, and the `Sandbox` role.

Threat model: this module holds values only. Every backend fills them in the same way, so a caller never parses
strings to learn how a run ended: `ExecResult.status` says it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, Self, runtime_checkable

MIB = 1024 * 1024


class SandboxError(RuntimeError):
    """The sandbox itself failed (could not start, lost its worker): never a verdict on the program."""


class ExecStatus(enum.Enum):
    """How a run ended, from the sandbox's point of view."""

    OK = "ok"
    """Exit code 0 within every limit."""
    RUNTIME_ERROR = "runtime_error"
    """Non-zero exit code or killed by a signal the sandbox did not send."""
    TIMEOUT = "timeout"
    """Ran past the wall-clock or the CPU-time limit."""
    MEMORY_LIMIT = "memory_limit"
    """Ran out of the memory it was allowed (MemoryError under RLIMIT_AS, or killed by the OOM killer)."""
    OUTPUT_LIMIT = "output_limit"
    """Wrote more than the output limit to stdout/stderr, or a file past the file-size limit."""
    SANDBOX_ERROR = "sandbox_error"
    """The sandbox broke during the run (e.g. its worker was killed); not the program's verdict."""


class Isolation(enum.Enum):
    """How strongly a backend separates the program from the host."""

    PROCESS = "process"
    """rlimits, own process group, scrubbed environment, temp dir, unprivileged uid when started as root."""
    NAMESPACES = "namespaces"
    """Linux user/pid/net/ipc/uts/mount namespaces (bubblewrap) plus rlimits."""
    CONTAINER = "container"
    """A Docker container: namespaces, cgroup memory/CPU/pids limits, no capabilities, read-only root."""


@dataclass(frozen=True)
class Limits:
    """Resource limits for one run; every backend enforces all of them (see each backend for how)."""

    wall_seconds: float = 10.0
    """Wall-clock time before the run is killed (status `timeout`)."""
    cpu_seconds: float = 10.0
    """CPU time before the run is killed (RLIMIT_CPU; status `timeout`)."""
    memory_bytes: int = 512 * MIB
    """Address-space limit per process (RLIMIT_AS), and the container memory limit under Docker."""
    max_processes: int = 16
    """Processes and threads the program may have at once, itself included."""
    max_output_bytes: int = 1 * MIB
    """Bytes kept of stdout and of stderr each; past it the run is killed (status `output_limit`)."""
    max_file_bytes: int = 16 * MIB
    """Largest file the program may write (RLIMIT_FSIZE)."""
    disk_bytes: int = 64 * MIB
    """Size of the private writable work dir (tmpfs) where the backend provides one."""
    network: bool = False
    """Whether the program may reach any network; off by default (a namespace with no interfaces)."""

    def __post_init__(self) -> None:
        if self.wall_seconds <= 0 or self.cpu_seconds <= 0:
            raise ValueError("wall_seconds and cpu_seconds must be positive")
        if self.memory_bytes < 16 * MIB:
            raise ValueError(f"memory_bytes ({self.memory_bytes}) must be at least 16 MiB for an interpreter to start")
        if self.max_processes < 1:
            raise ValueError("max_processes must be at least 1 (the program itself)")
        if self.max_output_bytes < 0 or self.max_file_bytes < 0 or self.disk_bytes < MIB:
            raise ValueError("output and file limits must be >= 0 and disk_bytes >= 1 MiB")


@dataclass(frozen=True)
class ExecRequest:
    """One program run: files written into a fresh work dir, then `command` run there with `stdin`."""

    command: tuple[str, ...]
    """argv; `python3`/`python` as argv[0] means the sandbox's own interpreter."""
    files: Mapping[str, bytes] = field(default_factory=dict)
    """Relative path -> content, written into the work dir before the run."""
    stdin: bytes = b""
    """Bytes fed to the program's standard input."""
    limits: Limits = field(default_factory=Limits)
    """Resource limits for this run."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment variables; the rest of the environment is scrubbed to a fixed minimum."""

    def __post_init__(self) -> None:
        if isinstance(self.command, (str, bytes)):
            raise TypeError(f"command is an argv, a sequence of strings: ({self.command!r},) or shlex.split(...)")
        if not self.command:
            raise ValueError("command must name a program")
        object.__setattr__(self, "command", tuple(self.command))
        if not all(isinstance(part, str) for part in self.command):
            raise TypeError(f"every item of command must be a str; got {self.command!r}")
        if not isinstance(self.stdin, (bytes, bytearray, memoryview)):
            raise TypeError(f"stdin must be bytes (encode text first); got {type(self.stdin).__name__}")
        for name, content in self.files.items():
            if not isinstance(content, (bytes, bytearray, memoryview)):
                raise TypeError(f"the content of file {name!r} must be bytes (encode text first)")
        for name in self.files:
            parts = name.split("/")
            if name.startswith("/") or ".." in parts or not name or "" in parts or "\0" in name:
                raise ValueError(f"file name {name!r} must be a relative path inside the work dir")


@dataclass(frozen=True)
class ExecResult:
    """What a run produced; a timeout or a memory blow-up is a result, never an exception."""

    status: ExecStatus
    """How the run ended."""
    exit_code: int | None
    """Exit code, or minus the signal number that killed it, or None when it never ran (sandbox error)."""
    stdout: bytes = b""
    """Standard output, truncated at the output limit."""
    stderr: bytes = b""
    """Standard error, truncated at the output limit."""
    stdout_truncated: bool = False
    """Whether stdout was cut at the limit."""
    stderr_truncated: bool = False
    """Whether stderr was cut at the limit."""
    wall_seconds: float = 0.0
    """Wall-clock time of the run as the backend saw it."""
    cpu_seconds: float = 0.0
    """User + system CPU time of the program and its waited-for children."""
    message: str = ""
    """The sandbox's own note on how it ended (which limit, what broke), empty when OK."""

    @property
    def ok(self) -> bool:
        """True when the program exited 0 within every limit."""
        return self.status is ExecStatus.OK

    @property
    def stdout_text(self) -> str:
        """stdout decoded as UTF-8, undecodable bytes replaced."""
        return self.stdout.decode("utf-8", "replace")

    @property
    def stderr_text(self) -> str:
        """stderr decoded as UTF-8, undecodable bytes replaced."""
        return self.stderr.decode("utf-8", "replace")


@runtime_checkable
class Sandbox(Protocol):
    """Runs untrusted programs under limits; a backend states its isolation level.

    The built-in backends are also context managers (`ManagedSandbox`); `contextlib.closing` makes any `Sandbox` one.
    """

    name: str
    isolation: Isolation

    def run(self, request: ExecRequest) -> ExecResult:
        """Run one request to completion.

        Raises:
            SandboxError: the sandbox could not run it at all.
        """
        ...

    def close(self) -> None:
        """Release whatever the backend holds (workers, containers); idempotent."""
        ...


class ManagedSandbox(Sandbox, Protocol):
    """A `Sandbox` that is also a context manager: `with get_sandbox("bwrap") as sandbox:` closes it at the end."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...


class _Closable(Protocol):
    def close(self) -> None: ...


class ClosedOnExit:
    """Makes a backend a `ManagedSandbox`: the `with` block ends with `close()`."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self: _Closable, *exc_info: object) -> None:
        self.close()
