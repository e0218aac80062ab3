"""`local`: a plain subprocess with rlimits, its own process group, a scrubbed environment and a temp dir.

Threat model (weaker than `bwrap`; choosing it for untrusted code warns):
- Covered: CPU time, memory per process, file size, output size and wall time (killed at the limit); environment
  variables (scrubbed); zombies/orphans in its process group (killed when the program exits). Started as root, each
  run gets its own unprivileged uid from a range no one else uses, so RLIMIT_NPROC binds (fork bombs stop), root's
  files (`/root`, `~/.ssh`, `/etc/shadow`) are unreadable, and every process left with that uid is killed after the
  run, even ones that left the process group, and reaped where a program made it a child of the caller's process
  (`clone` with CLONE_PARENT).
- Not covered: the network (the program shares the host's), world-readable host files (the project dir, `/etc`),
  world-writable dirs outside the work dir (`/tmp`, `/dev/shm`), signals to other processes of the same uid when
  not started as root, `/proc` of other processes. Use `bwrap` for untrusted code.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

from reflectgym.sandboxes.environment import default_python, program_env, resolve_python
from reflectgym.sandboxes.outcome import classify
from reflectgym.sandboxes.process import SpawnOptions, proc_stat, run_process
from reflectgym.sandboxes.rlimits import apply_rlimits, rlimit_table
from reflectgym.sandboxes.types import ClosedOnExit, ExecRequest, ExecResult, Isolation, SandboxError

UID_BASE = 1_700_000_000
"""First uid of the range `local` hands out to runs when started as root (no account uses it)."""
UID_SLOTS = 64
"""How many runs may hold a uid at once, across all processes on the machine."""


def outside_caller_level() -> int:
    """The `stacklevel` that makes a warning point at the first frame outside reflectgym: at the user's line,
    however many of the package's frames (a registry lookup, a code env opening its sandbox) lie between."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


class LocalSandboxWarning(UserWarning):
    """`local` was chosen for code that is not trusted."""


@dataclass(frozen=True)
class LocalConfig:
    """Settings of the `local` backend."""

    python: str = field(default_factory=default_python)
    """Interpreter that `python`/`python3` in a command means."""
    trusted_code: bool = False
    """Set when the code is your own; otherwise choosing `local` warns that it is not a security boundary."""


class LocalSandbox(ClosedOnExit):
    """Runs each request as a host subprocess under rlimits (see the module docstring for what that covers)."""

    name = "local"
    isolation = Isolation.PROCESS

    def __init__(self, config: LocalConfig | None = None) -> None:
        self.config = config or LocalConfig()
        if not self.config.trusted_code:
            warnings.warn(
                "the 'local' sandbox does not isolate network or world-readable files; use 'bwrap' for untrusted code",
                LocalSandboxWarning,
                stacklevel=outside_caller_level(),
            )

    def run(self, request: ExecRequest) -> ExecResult:
        """Run one request in a fresh temp dir, as a fresh uid when root."""
        with _uid_slot() as uid, tempfile.TemporaryDirectory(prefix="reflectgym-local-") as work:
            _write_files(work, request, uid)
            limits = request.limits
            table = rlimit_table(limits)
            options = SpawnOptions(
                cwd=work,
                env=program_env(work, work, request.env),
                user=uid,
                group=uid,
                preexec=lambda: apply_rlimits(table),
            )
            argv = resolve_python(request.command, self.config.python)
            try:
                raw, _ = run_process(argv, request.stdin, limits.wall_seconds, limits.max_output_bytes, options)
            finally:
                if uid is not None:
                    _kill_uid(uid)
            return classify(raw, limits)

    def close(self) -> None:
        """Nothing to release: each run cleans up after itself."""


def _write_files(work: str, request: ExecRequest, uid: int | None) -> None:
    for name, content in request.files.items():
        path = os.path.join(work, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
    if uid is not None:
        for root, dirs, files in os.walk(work):
            for entry in (root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)):
                os.chown(entry, uid, uid)
        os.chmod(work, 0o700)


@contextlib.contextmanager
def _uid_slot() -> Iterator[int | None]:
    """A uid no other run holds (a lock file per slot, so it works across processes); None when not root."""
    if os.geteuid() != 0:
        yield None
        return
    lock_dir = os.path.join(tempfile.gettempdir(), "reflectgym-local-uids")
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    for slot in range(UID_SLOTS):
        handle = open(os.path.join(lock_dir, f"{slot}.lock"), "w")  # noqa: SIM115 - held for the whole run
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        try:
            uid = UID_BASE + slot
            _kill_uid(uid)  # a crashed earlier holder may have left processes behind
            yield uid
        finally:
            handle.close()
        return
    raise SandboxError(f"all {UID_SLOTS} local sandbox uids are in use")


def _kill_uid(uid: int) -> None:
    """SIGKILL every process whose real uid is `uid`, until none is left, and reap those that are this process's
    own children: a program can make one so (`clone` with CLONE_PARENT), and its zombie would count against the
    uid's process limit in every later run given the uid (no one else here waits for it)."""
    for _ in range(50):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid != uid:
                    continue
                if _is_zombie(entry):
                    _reap_if_ours(int(entry))
                    continue
                found = True
                os.kill(int(entry), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError):
                continue
        if not found:
            return
        time.sleep(0.002)
    raise SandboxError(f"processes of uid {uid} kept coming back after SIGKILL")


def _reap_if_ours(pid: int) -> None:
    """Reap zombie `pid` if it is a child of this process (of the run's uid: no child of the caller's own)."""
    if proc_stat(pid)[1:2] == [str(os.getpid()).encode()]:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _is_zombie(pid: str) -> bool:
    return proc_stat(int(pid))[:1] == [b"Z"]
