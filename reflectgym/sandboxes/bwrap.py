"""`bwrap`: bubblewrap namespaces plus rlimits, one fresh sandbox per run. The default backend where it works.

Threat model:
- Covered: the network (a new, empty network namespace: no interface but a down loopback, unless
  `Limits.network`); the host filesystem (only `/usr` and the interpreter are visible, read-only; no `/etc`, no
  home, no project dir, no secrets); writes (only the private tmpfs `/work` and `/tmp`, sized by
  `Limits.disk_bytes`, gone after the run); processes (a new pid namespace: the program sees only its own, cannot
  signal the host's, and every process it started dies with the namespace when it exits); the uid (runs as
  `nobody` on the host inside a new user namespace, with no capabilities, no new user namespaces inside, so
  RLIMIT_NPROC binds per sandbox); ipc and hostname (new namespaces); memory, CPU, file size, processes and open
  files (rlimits set by `prlimit` inside the namespace); output and wall time (killed at the limit); environment
  (scrubbed).
  Writes: `/work`, `/tmp` and `/dev/shm` only (private tmpfs, each sized by `Limits.disk_bytes`; the rest of `/dev`
  is read-only). A seccomp filter (see `reflectgym.sandboxes.seccomp`) refuses what no namespace contains or no
  rlimit bounds: the key store, other processes' I/O priority, memory held outside the address space
  (`memfd_create`, `memfd_secret`, SysV shared memory, message queues and semaphores, extended attributes), and
  setting another process's limits, priority, scheduling or CPU affinity. `/proc/sys` is read-only.
- Not covered: kernel bugs reachable through the system calls that remain, CPU and memory-bandwidth side
  channels, the total memory of many processes (each is bounded by RLIMIT_AS and their count by RLIMIT_NPROC;
  the `docker` backend's cgroup bounds the sum).

Ending a sandbox early (timeout, output flood, a pool worker retired): the sandbox's init (bubblewrap's child, pid 1
of the namespace) is SIGKILLed, which takes the whole pid namespace with it; bubblewrap reaps it and exits, and the
host reaps bubblewrap. Killing bubblewrap first would orphan that init to the host's pid 1 as a `[bwrap]` zombie.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from reflectgym.sandboxes.environment import default_python, program_env, resolve_python
from reflectgym.sandboxes.outcome import RawOutcome, classify
from reflectgym.sandboxes.process import SpawnOptions, proc_stat, run_process
from reflectgym.sandboxes.rlimits import prlimit_argv, rlimit_table
from reflectgym.sandboxes.seccomp import bwrap_seccomp
from reflectgym.sandboxes.types import ClosedOnExit, ExecRequest, ExecResult, Isolation, SandboxError

WORK_DIR = "/work"
TMP_DIR = "/tmp"
NOBODY = 65534
SANDBOX_PROCESSES = 1
"""Processes of the sandbox itself that count against RLIMIT_NPROC inside the namespace (bwrap's init)."""
EXIT_GRACE_SECONDS = 5.0
"""How long bubblewrap gets to exit by itself once its sandbox's init is killed."""
_CHILD_PID = re.compile(rb'"child-pid"\s*:\s*(\d+)\D')


@dataclass(frozen=True)
class BwrapConfig:
    """Settings of the `bwrap` backend."""

    python: str = field(default_factory=default_python)
    """Interpreter that `python`/`python3` means; it must lie under one of the read-only binds."""
    read_only_binds: tuple[str, ...] = ("/usr",)
    """Host paths visible read-only at the same place (plus the merged-usr links /bin, /lib, /lib64, /sbin)."""
    bwrap: str = "bwrap"
    """The bubblewrap executable."""
    uid: int = NOBODY
    """Host uid that bubblewrap runs as when started as root (it must not be root for RLIMIT_NPROC to bind)."""


def namespace_args(config: BwrapConfig, network: bool, disk_bytes: int) -> list[str]:
    """bwrap options shared by one-shot runs and warm-pool workers: namespaces, binds, tmpfs dirs, no env.

    `/dev` is bubblewrap's minimal one, read-only (a program could otherwise fill its unbounded tmpfs or replace
    `/dev/stdin`), with `/dev/shm` a tmpfs sized like `/work` and `/dev/mqueue` this IPC namespace's message
    queues (so a warm worker can list and remove them). `/proc/sys` is read-only: the sandbox's user namespace
    owns its IPC namespace, so a program could otherwise rewrite its IPC limits for every later run of a worker."""
    args = [
        host_executable(config.bwrap),
        *("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"),
    ]
    if not network:
        args.append("--unshare-net")
    args += ["--disable-userns", "--die-with-parent", "--new-session", "--hostname", "sandbox", "--cap-drop", "ALL"]
    for path in config.read_only_binds:
        args += ["--ro-bind", path, path]
    for link in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link) and link not in config.read_only_binds:
            args += ["--ro-bind", link, link]
    args += ["--proc", "/proc", "--ro-bind", "/proc/sys", "/proc/sys", "--dev", "/dev", "--mqueue", "/dev/mqueue"]
    for directory in (WORK_DIR, TMP_DIR, "/dev/shm"):
        args += ["--size", str(disk_bytes), "--tmpfs", directory]
    args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", WORK_DIR, "--clearenv"]
    return args


@functools.cache
def host_executable(name: str) -> str:
    """`name` as a path found on this process's PATH (else unchanged).

    Sandboxes start with an empty environment, where a bare name is looked up on `os.defpath` alone: a bubblewrap
    in `/usr/local/bin`, a conda env or `~/bin` would not be found although `shutil.which` finds it."""
    return shutil.which(name) or name


def spawn_identity(config: BwrapConfig) -> tuple[int | None, int | None]:
    """(uid, gid) to start bubblewrap as: `config.uid` when we are root, else ourselves."""
    return (config.uid, config.uid) if os.geteuid() == 0 else (None, None)


def child_pid_from(report: bytes) -> int | None:
    """The sandbox init's host pid from bubblewrap's `--info-fd` or `--json-status-fd` output, when complete."""
    match = _CHILD_PID.search(report)
    return int(match.group(1)) if match else None


def read_report(fd: int, report: bytearray, timeout: float) -> None:
    """Append what bubblewrap wrote on `fd` until it has written the child pid, closed it, or `timeout` passed."""
    deadline = time.perf_counter() + timeout
    while child_pid_from(bytes(report)) is None:
        remaining = deadline - time.perf_counter()
        if remaining < 0 or not select.select([fd], [], [], max(remaining, 0))[0]:
            return
        chunk = os.read(fd, 4096)
        if not chunk:
            return
        report += chunk


def end_sandbox(proc: subprocess.Popen[bytes], init_pid: int | None) -> None:
    """Kill the sandbox's init (and so its pid namespace), let bubblewrap exit, and reap it.

    bubblewrap itself is killed only when its init is unknown or already gone (nothing is left to orphan then),
    or when it does not exit within `EXIT_GRACE_SECONDS`.
    """
    if proc.poll() is None and (init_pid is None or not _kill_child(proc.pid, init_pid)):
        proc.kill()
    try:
        proc.wait(timeout=EXIT_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _kill_child(parent: int, pid: int) -> bool:
    """SIGKILL `pid` if it is (still) a child of `parent`; False when it is not (gone, or the pid was reused)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if proc_stat(pid)[1:2] != [str(parent).encode()]:
            return False
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        return True
    except (OSError, ValueError, IndexError):
        return False
    finally:
        os.close(pidfd)


@functools.cache
def bwrap_unavailable_reason(bwrap: str = "bwrap") -> str | None:
    """Why bubblewrap cannot run sandboxes here, or None when it can (tried once per process)."""
    if shutil.which(bwrap) is None:
        return "bubblewrap is not installed (Debian: apt-get install bubblewrap)"
    config = BwrapConfig(bwrap=bwrap)
    uid, gid = spawn_identity(config)
    try:
        done = subprocess.run(
            [*namespace_args(config, False, 1 << 20), "--as-pid-1", "--", "/bin/true"],  # no init left to orphan
            capture_output=True,
            timeout=20,
            user=uid,
            group=gid,
            extra_groups=[] if uid is not None else None,
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"bubblewrap could not start: {error}"
    if done.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {done.stderr.decode(errors='replace').strip()}"
    return None


class BwrapSandbox(ClosedOnExit):
    """Runs each request in a fresh bubblewrap sandbox (see the module docstring for what that covers)."""

    name = "bwrap"
    isolation = Isolation.NAMESPACES

    def __init__(self, config: BwrapConfig | None = None) -> None:
        self.config = config or BwrapConfig()
        reason = bwrap_unavailable_reason(self.config.bwrap)
        if reason is not None:
            raise SandboxError(reason)

    def run(self, request: ExecRequest) -> ExecResult:
        """Run one request in its own namespaces with a private tmpfs work dir holding its files."""
        limits = request.limits
        status_read, status_write = os.pipe()
        report = bytearray()

        def end_early(pid: int) -> bool:
            read_report(status_read, report, timeout=1.0)
            init_pid = child_pid_from(bytes(report))
            return init_pid is not None and _kill_child(pid, init_pid)

        with _file_descriptors(request) as placed, contextlib.ExitStack() as stack:
            stack.callback(os.close, status_read)
            write_end = [status_write]
            stack.callback(lambda: write_end and os.close(write_end.pop()))
            args = namespace_args(self.config, limits.network, limits.disk_bytes)
            seccomp_args, seccomp_fds = stack.enter_context(bwrap_seccomp())
            args += seccomp_args
            for directory in _parent_dirs(request.files):
                args += ["--dir", f"{WORK_DIR}/{directory}"]
            for fd, name in placed:
                args += ["--file", str(fd), f"{WORK_DIR}/{name}"]
            for key, value in program_env(WORK_DIR, TMP_DIR, request.env).items():
                args += ["--setenv", key, value]
            args += ["--json-status-fd", str(status_write)]
            table = rlimit_table(limits, extra_processes=SANDBOX_PROCESSES)
            argv = [*args, "--", *prlimit_argv(table), *resolve_python(request.command, self.config.python)]
            uid, gid = spawn_identity(self.config)
            fds = [status_write, *(fd for fd, _ in placed), *seccomp_fds]
            options = SpawnOptions(cwd="/", env={}, user=uid, group=gid, pass_fds=fds, terminate=end_early)
            raw, _ = run_process(argv, request.stdin, limits.wall_seconds, limits.max_output_bytes, options)
            os.close(write_end.pop())
            report += _read_all(status_read)
        status = bytes(report)
        if b'"child-pid"' not in status and not raw.killed_for_wall:
            raise SandboxError(f"bubblewrap failed to set up the sandbox: {raw.stderr.decode(errors='replace')[:500]}")
        return classify(_signal_from_exit_code(raw, _exit_code(status)), limits)

    def close(self) -> None:
        """Nothing to release: each run's namespaces end with it."""


@contextlib.contextmanager
def _file_descriptors(request: ExecRequest) -> Iterator[list[tuple[int, str]]]:
    """One memfd per request file, for bubblewrap's `--file FD DEST` (nothing touches the host disk)."""
    placed: list[tuple[int, str]] = []
    try:
        for name, content in request.files.items():
            fd = os.memfd_create("reflectgym-file", 0)
            placed.append((fd, name))
            _write_all(fd, content)
            os.lseek(fd, 0, os.SEEK_SET)
        yield placed
    finally:
        for fd, _ in placed:
            os.close(fd)


def _write_all(fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view) :]


def _parent_dirs(names: Iterable[str]) -> list[str]:
    """Every directory that must exist under the work dir for the request's files, parents first."""
    dirs: set[str] = set()
    for name in names:
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:depth]))
    return sorted(dirs, key=lambda d: (d.count("/"), d))


def _signal_from_exit_code(raw: RawOutcome, exit_code: int | None) -> RawOutcome:
    """bubblewrap reports a program killed by signal N as exit code 128 + N; turn it back into -N."""
    if exit_code is not None and 128 < exit_code < 128 + 65 and raw.returncode == exit_code:
        return dataclasses.replace(raw, returncode=128 - exit_code)
    return raw


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _exit_code(status: bytes) -> int | None:
    """The program's exit code as bubblewrap reported it on the status fd."""
    for line in status.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and "exit-code" in record:
                return int(record["exit-code"])
    return None
