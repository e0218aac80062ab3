"""`pool`: a warm pool of long-lived sandboxed workers that run each request in a fresh forked child (`worker_main`).

A fresh interpreter per run costs ~10-20 ms; a child forked from an already-started, already-warm one about 1 ms of
CPU. The pool keeps up to one worker per core, each inside its own isolation (bubblewrap here, a container for
`docker`), hands requests to idle workers from a queue, and offers `run` (blocking, on the caller's thread),
`run_async` (asyncio) and `map` (a batch, concurrently). Inside, a worker is pid 1 of its sandbox; a zygote forked
from it at start-up forks each run's child *before* the request arrives (while the previous run executes), and the
worker answers as soon as the program has reported, cleaning up before it reads the next request.

Threat model: each worker has the isolation of its launcher (`bwrap`: see `reflectgym.sandboxes.bwrap`); within it,
every run is a fresh forked child with the request's rlimits, and after each run every process of the run is killed
and reaped and `/work`, `/tmp`, `/dev/shm`, SysV IPC objects and POSIX message queues are wiped (and the output
pipes' sizes restored; each run's stdio are open files of its own) before the next request is read. What one run
shares with the next on the same worker is only the zygote's start-up state (preloaded modules, read-only to a
child) and the namespaces themselves; see `worker_main` for the list, and for what a program can do to the sandbox's
own processes (kill, stop or re-limit them: a changed standby is replaced; a broken zygote or worker ends the
worker, the run gets `sandbox_error`, and a request it turned away is resent once to a fresh one). Processes: the
worker, the zygote and the next run's standby count against `Limits.max_processes` beside the program (RLIMIT_NPROC
is per uid). Per-pool, not per-request: the network setting and the work dir size (`Limits.network`,
`Limits.disk_bytes` of `PoolConfig.limits`).

The host treats everything a worker says as untrusted: replies are fixed structs and raw bytes with bounded sizes,
never pickle. Every bubblewrap process the pool starts is reaped by the pool: workers are retired by killing their
sandbox's init (not bubblewrap, whose orphaned init would become a zombie of the host's pid 1), workers are started
from one long-lived thread (bubblewrap's `--die-with-parent` follows the starting *thread*), and pools still open
when the interpreter exits are closed then.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import functools
import marshal
import math
import os
import queue
import select
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from reflectgym.sandboxes import worker_main as wire
from reflectgym.sandboxes.bwrap import (
    TMP_DIR,
    WORK_DIR,
    BwrapConfig,
    bwrap_unavailable_reason,
    child_pid_from,
    end_sandbox,
    namespace_args,
    read_report,
    spawn_identity,
)
from reflectgym.sandboxes.environment import PYTHON_NAMES, program_env, resolve_python
from reflectgym.sandboxes.outcome import RawOutcome, classify
from reflectgym.sandboxes.rlimits import rlimit_table
from reflectgym.sandboxes.seccomp import bwrap_seccomp
from reflectgym.sandboxes.types import (
    ClosedOnExit,
    ExecRequest,
    ExecResult,
    ExecStatus,
    Isolation,
    Limits,
    SandboxError,
)

WORKER_SOURCE = (Path(__file__).parent / "worker_main.py").read_bytes()
BOOTSTRAP = (
    "import os, sys\n"
    "_size, _source = int(sys.argv[2]), b''\n"
    "while len(_source) < _size:\n"
    "    _chunk = os.read(0, _size - len(_source))\n"
    "    if not _chunk:\n"
    "        raise SystemExit('the host sent no worker source')\n"
    "    _source += _chunk\n"
    "exec(compile(_source, 'worker_main.py', 'exec'))\n"
)
"""`python3 -c BOOTSTRAP PRELOAD SIZE` reads `worker_main`'s source from stdin (the host sends it first), so every
process of the sandbox has a short command line."""
REPLY_GRACE_SECONDS = 10.0
"""How long past the wall limit the host waits for a worker's reply before it declares the worker lost."""
MAX_ERROR_BYTES = 1 << 16
READ_CHUNK = 1 << 16
INFO_TIMEOUT_SECONDS = 2.0
"""How long a retiring worker's bubblewrap may still take to report its sandbox's init."""
BREACHES = frozenset({ExecStatus.TIMEOUT, ExecStatus.MEMORY_LIMIT, ExecStatus.OUTPUT_LIMIT})
DEFAULT_PRELOAD = ("collections", "math", "re", "itertools", "functools", "heapq", "string", "typing", "bisect", "json")
MARSHAL_VERSION = 4
"""Request headers are `marshal`ed at this version (plain dicts, lists, strings and numbers: every Python 3 since
3.4 reads it), so the sandbox's interpreter may differ from the host's."""
T = TypeVar("T")


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


CALLER_CORE_ABOVE = 8
"""With more CPUs than this, the default pool leaves one to its caller (see `default_workers`)."""


def default_workers() -> int:
    """One worker per CPU this process may use, less one left to the caller on machines of more than
    `CALLER_CORE_ABOVE` CPUs.

    Every run also costs the caller's threads about 0.2 ms (encoding the request, reading the reply): with all
    cores running workers, that work lands on a core whose worker is then late. Measured on 16 cores, 15 workers
    ran 18 % more requests per second than 16; on 2 cores, 2 workers ran 70 % more than 1 (BENCHMARKS.md)."""
    cpus = len(os.sched_getaffinity(0))
    return cpus - 1 if cpus > CALLER_CORE_ABOVE else cpus


@dataclass(frozen=True)
class PoolConfig:
    """Settings of a warm pool."""

    workers: int = field(default_factory=default_workers)
    """Workers running at once; default: `default_workers()` (one per core is the most that helps)."""
    max_runs_per_worker: int = 1000
    """Runs before a worker is replaced by a fresh one."""
    recycle_on_breach: bool = False
    """Replace a worker after any run that hit a limit (timeout, memory, output)."""
    preload: tuple[str, ...] = DEFAULT_PRELOAD
    """Modules each worker imports once, so runs find them already imported."""
    limits: Limits = field(default_factory=Limits)
    """Pool-wide limits: `network` and `disk_bytes` are fixed per worker; requests set the rest."""
    start_timeout_seconds: float = 60.0
    """How long a worker may take to say it is ready."""
    pin_workers: bool = True
    """With more than one worker, keep each worker's sandbox (worker, zygote, every child) on a CPU of its own
    (round robin over the CPUs this process may use). Its processes hand each other work in turn; on one core that
    costs no cross-core wake-ups (about 15 % more runs per second with every worker busy)."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers ({self.workers}) must be at least 1")
        if self.max_runs_per_worker < 1:
            raise ValueError("max_runs_per_worker must be at least 1")


class PipeChannel:
    """A worker started as a host subprocess, spoken to over its stdin/stdout (replies read in large chunks)."""

    def __init__(self, proc: subprocess.Popen[bytes], info_fd: int | None = None) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self._proc = proc
        self._in = proc.stdin.fileno()
        self._out = proc.stdout.fileno()
        self._poll = select.poll()
        self._poll.register(self._out, select.POLLIN)
        self._buffer = bytearray()
        self._info_fd = info_fd

    def send(self, data: bytes) -> None:
        """Write all of `data` (the worker reads whole requests before acting)."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._in, view) :]
        except OSError as error:
            raise WorkerLostError(f"worker stopped reading: {error}") from error

    def receive(self, count: int, deadline: float) -> bytes:
        """Read exactly `count` bytes before `deadline`."""
        buffer = self._buffer
        while len(buffer) < count:
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or not self._poll.poll(math.ceil(remaining * 1000)):
                raise WorkerLostError("worker did not answer in time")
            chunk = os.read(self._out, max(count - len(buffer), READ_CHUNK))
            if not chunk:
                raise WorkerLostError("worker exited")
            buffer += chunk
        data = bytes(buffer[:count])
        del buffer[:count]
        return data

    def kill(self) -> None:
        """Kill the sandbox's init (the namespace dies with it), then reap bubblewrap once it has exited."""
        init_pid = None
        if self._info_fd is not None:
            report = bytearray()
            if self._proc.poll() is None:
                read_report(self._info_fd, report, INFO_TIMEOUT_SECONDS)
            os.close(self._info_fd)
            self._info_fd = None
            init_pid = child_pid_from(bytes(report))
        end_sandbox(self._proc, init_pid)
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()


class BwrapLauncher:
    """Starts each worker in its own bubblewrap sandbox (namespaces of the `bwrap` backend)."""

    name = "pool"
    isolation = Isolation.NAMESPACES
    sigkill_means_oom = False
    extra_processes = 3  # the worker (pid 1: no bubblewrap init), its zygote and the next run's standby

    def __init__(self, config: BwrapConfig, limits: Limits, preload: Sequence[str]) -> None:
        reason = bwrap_unavailable_reason(config.bwrap)
        if reason is not None:
            raise SandboxError(reason)
        self.config = config
        self.limits = limits
        self.preload = tuple(preload)

    def start(self, cpu: int | None = None) -> WorkerChannel:
        """bwrap ... --as-pid-1 --info-fd N -- python3 -I -c BOOTSTRAP preload size cpu (the source follows)."""
        args = [*namespace_args(self.config, self.limits.network, self.limits.disk_bytes), "--as-pid-1"]
        for key, value in program_env(WORK_DIR, TMP_DIR, {}).items():
            args += ["--setenv", key, value]
        info_read, info_write = os.pipe()
        args += ["--info-fd", str(info_write)]
        with bwrap_seccomp() as (seccomp_args, seccomp_fds):  # bubblewrap reads it before it starts the worker
            argv = [*args, *seccomp_args, "--", *worker_command(self.config.python, self.preload, cpu)]
            return self._spawn(argv, info_read, info_write, (info_write, *seccomp_fds))

    def _spawn(self, argv: list[str], info_read: int, info_write: int, pass_fds: tuple[int, ...]) -> PipeChannel:
        uid, gid = spawn_identity(self.config)
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd="/",
                env={},
                start_new_session=True,
                pass_fds=pass_fds,
                user=uid,
                group=gid,
                extra_groups=[] if uid is not None else None,
            )
        except OSError as error:
            os.close(info_read)
            raise SandboxError(f"could not start a bubblewrap worker: {error}") from error
        finally:
            os.close(info_write)
        return PipeChannel(proc, info_read)

    def close(self) -> None:
        """Nothing beyond the workers."""


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
        limits = request.limits
        self.runs += 1
        self.channel.send(encode_request(request, self.python, self.launcher.extra_processes))
        deadline = time.perf_counter() + limits.wall_seconds + REPLY_GRACE_SECONDS
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
    ceiling = wall_seconds * (os.cpu_count() or 1)
    return min(max(reported, 0.0), ceiling) if math.isfinite(reported) else 0.0


def worker_command(python: str, preload: Sequence[str], cpu: int | None = None) -> list[str]:
    """The command that starts `worker_main` in a sandbox (its source follows on stdin), kept on `cpu` if given.

    The last argument is the programs' default environment (marshalled, in hex): the worker makes it its own, so
    that a child asked for it inherits it as it is, whatever the launcher added (bubblewrap's `PWD`, Docker's
    `HOSTNAME`)."""
    environment = marshal.dumps(program_env(WORK_DIR, TMP_DIR, {}), MARSHAL_VERSION).hex()
    cpu_text = "" if cpu is None else str(cpu)
    return [python, "-I", "-c", BOOTSTRAP, ",".join(preload), str(len(WORKER_SOURCE)), cpu_text, environment]


def worker_cpus(config: PoolConfig) -> list[int | None]:
    """The CPU each slot's worker is kept on (see `PoolConfig.pin_workers`); None where workers are not pinned."""
    cpus = sorted(os.sched_getaffinity(0))
    if not config.pin_workers or config.workers < 2 or len(cpus) < 2:
        return [None] * config.workers
    return [cpus[index % len(cpus)] for index in range(config.workers)]


def encode_request(request: ExecRequest, python: str, extra_processes: int) -> bytes:
    """The request frame `worker_main` reads: prefix, worker header, child header, stdin, file contents."""
    limits = request.limits
    command = request.command
    child = {
        "argv": resolve_python(command, python),
        "env": program_env(WORK_DIR, TMP_DIR, request.env) if request.env else None,  # None: the worker's own
        "rlimits": _rlimits(limits, extra_processes),
        "inline": command[0] in PYTHON_NAMES and len(command) >= 2 and _is_plain_python(command[1:]),
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


def _is_plain_python(args: Sequence[str]) -> bool:
    """`FILE ARGS...` or `-c CODE ARGS...`: forms the worker runs in its own interpreter."""
    if args[0] == "-c":
        return len(args) >= 2
    return not args[0].startswith("-")


class _Spawner:
    """Runs worker start-ups on one long-lived daemon thread of this process.

    bubblewrap's `--die-with-parent` kills a worker when the *thread* that started it ends; starting them all here
    keeps a worker alive after the caller's thread is gone, and still ends it when this process dies.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], object], concurrent.futures.Future[object]]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` on the spawner thread and return (or raise) what it does."""
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="reflectgym-spawner", daemon=True)
                self._thread.start()
            self._jobs.put((function, future))
        return future.result()  # type: ignore[return-value]

    def _serve(self) -> None:
        while True:
            function, future = self._jobs.get()
            try:
                future.set_result(function())
            except BaseException as error:  # handed to the caller
                future.set_exception(error)


_SPAWNER = _Spawner()
_OPEN_POOLS: weakref.WeakSet[WarmPool] = weakref.WeakSet()


class _Slot:
    """A place in the pool, kept on `cpu` (None: not pinned); holds a worker once one has been started."""

    def __init__(self, cpu: int | None) -> None:
        self.cpu = cpu
        self.worker: Worker | None = None


class WarmPool(ClosedOnExit):
    """Runs requests on warm sandboxed workers, up to `PoolConfig.workers` at once."""

    def __init__(self, launcher: WorkerLauncher, config: PoolConfig | None = None, python: str = "python3") -> None:
        self.launcher = launcher
        self.config = config or PoolConfig()
        self.name = launcher.name
        self.isolation = launcher.isolation
        self.python = python
        self._idle: queue.Queue[_Slot] = queue.Queue()
        self._slots = [_Slot(cpu) for cpu in worker_cpus(self.config)]
        self._executor = concurrent.futures.ThreadPoolExecutor(self.config.workers, thread_name_prefix="warm-pool")
        self._closed = False
        self._lock = threading.Lock()
        self._owner_pid = os.getpid()
        for slot in self._slots:
            self._idle.put(slot)
        _OPEN_POOLS.add(self)

    def start(self) -> WarmPool:
        """Start every worker now (in parallel) instead of on first use; returns the pool."""
        list(self._executor.map(self._ensure_started, self._slots))
        return self

    def run(self, request: ExecRequest) -> ExecResult:
        """Run one request on the next idle worker (waits for one when all are busy)."""
        if request.limits.network != self.config.limits.network:
            raise SandboxError(f"this pool was started with network={self.config.limits.network}; start another")
        if self._closed:
            raise SandboxError("the pool is closed")
        slot = self._idle.get()
        try:
            worker = self._ensure_started(slot)
            try:
                try:
                    result = worker.execute(request)
                except WorkerRetiredError:
                    self._retire(slot)
                    worker = self._ensure_started(slot)
                    result = worker.execute(request)
            except (WorkerLostError, WorkerRetiredError) as error:
                self._retire(slot)
                return ExecResult(status=ExecStatus.SANDBOX_ERROR, exit_code=None, message=f"worker lost: {error}")
            if worker.runs >= self.config.max_runs_per_worker or (
                self.config.recycle_on_breach and result.status in BREACHES
            ):
                self._retire(slot)
            return result
        finally:
            self._idle.put(slot)

    async def run_async(self, request: ExecRequest) -> ExecResult:
        """`run` without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.run, request)

    def map(self, requests: Iterable[ExecRequest]) -> list[ExecResult]:
        """Run a batch concurrently on all workers; results in the order of the requests."""
        return list(self._executor.map(self.run, requests))

    def close(self) -> None:
        """Kill every worker, reap its processes and release the launcher; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _OPEN_POOLS.discard(self)
        if os.getpid() != self._owner_pid:
            return  # a forked copy of this process: the workers belong to the parent
        self._executor.shutdown(wait=True)
        for slot in self._slots:
            self._retire(slot)
        self.launcher.close()

    def _ensure_started(self, slot: _Slot) -> Worker:
        if slot.worker is None:
            channel = _SPAWNER.call(functools.partial(self.launcher.start, slot.cpu))
            slot.worker = Worker(channel, self.launcher, self.python, self.config.start_timeout_seconds)
        return slot.worker

    def _retire(self, slot: _Slot) -> None:
        if slot.worker is not None:
            slot.worker.channel.kill()
            slot.worker = None


@atexit.register
def _close_open_pools() -> None:
    """Pools nobody closed: end and reap their workers before the interpreter goes away."""
    for pool in list(_OPEN_POOLS):
        pool.close()


def bwrap_pool(pool: PoolConfig | None = None, bwrap: BwrapConfig | None = None, *, start: bool = True) -> WarmPool:
    """A warm pool of bubblewrap workers, started unless `start=False`."""
    pool = pool or PoolConfig()
    bwrap = bwrap or BwrapConfig()
    warm = WarmPool(BwrapLauncher(bwrap, pool.limits, pool.preload), pool, python=bwrap.python)
    return warm.start() if start else warm
