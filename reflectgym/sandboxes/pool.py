"""`pool`: a warm pool of long-lived sandboxed workers that run each request in a fresh forked child (`worker_main`).

A fresh interpreter per run costs ~10-20 ms; a child forked from an already-started, already-warm one about 1 ms of
CPU. The pool keeps up to one worker per core, each inside its own isolation (bubblewrap here, a container for
`docker`), hands requests to idle workers from a queue, and offers `run` (blocking, on the caller's thread),
`run_async` (asyncio) and `map` / `map_async` (a batch, concurrently, driven by one thread: see `_Batch`). Inside,
a worker is pid 1 of its sandbox; a zygote forked from it at start-up forks each run's child *before* the request
arrives (while the previous run executes), and the worker answers as soon as the program has reported, cleaning up
before it reads the next request.

Threat model: each worker has the isolation of its launcher (`bwrap`: see `reflectgym.sandboxes.bwrap`); within it,
every run is a fresh forked child with the request's rlimits, and after each run every process of the run is killed
and reaped and `/work`, `/tmp`, `/dev/shm`, SysV IPC objects and POSIX message queues are wiped (and the output
pipes' sizes restored; each run's stdio are open files of its own) before the next request is read. What one run
shares with the next on the same worker is only the zygote's start-up state (preloaded modules, read-only to a
child) and the namespaces themselves; see `worker_main` for the list, and for what a program can do to the sandbox's
own processes (kill or stop them, and re-limit them where no seccomp filter refuses it: a changed standby is
replaced; a broken zygote or worker ends the worker, the run gets `sandbox_error`, and a request it turned away is
resent once to a fresh one). Processes: the
worker, the zygote and the next run's standby count against `Limits.max_processes` beside the program (RLIMIT_NPROC
is per uid). Per-pool, not per-request: the network setting and the work dir size (`Limits.network`,
`Limits.disk_bytes` of `PoolConfig.limits`).

Known gaps. Shared with later runs on the same worker: the namespaces' counters (the last pid given out, tmpfs
inode numbers), so a run learns how many processes and files earlier runs made, and two colluding runs have a
covert channel; the zygote's hash seed, object ids and addresses (fixed per worker, random per fresh interpreter);
what `/proc` shows of the worker and the zygote (the CPU time and faults of the runs the zygote reaped, the worker's
memory, grown to the largest request and output so far).
Not bounded by `Limits.memory_bytes` (kernel memory): inodes of empty files (`disk_bytes` bounds bytes, not files;
a run leaving more than `worker_main.WIPE_BUDGET` of them retires its worker; a Docker pool's tmpfs also caps
their number) and socket buffers (bounded by the open-files limit; a Docker pool's cgroup bounds them). Outside a
run's limits and wall clock: the worker's compiler compiling its program (up to `worker_main.COMPILE_SECONDS` and
`COMPILE_MEMORY_BYTES`; what does not compile cleanly within them the child compiles, within the run's limits).
Where a
program could tell it is not a fresh `python3` (differential tests against `BwrapSandbox` cover the rest): the
preloaded modules are in `sys.modules`; the worker's frames are on the stack; the stdin is a regular file; with
several workers each run keeps to one CPU (`pin_workers`). What changes how an interpreter starts (PYTHON*
variables but the stream ones, a non-UTF-8 locale, another HOME or files in the user site directory), a directory
or zip file to run, and a file beside the program named like a preloaded module (`json.py`, `numbers.py`) make a
run exec a fresh interpreter in the sandbox instead.

The host treats everything a worker says as untrusted: replies are fixed structs and raw bytes with bounded sizes,
never pickle. Every bubblewrap process the pool starts is reaped by the pool: workers are retired by killing their
sandbox's init (not bubblewrap, whose orphaned init would become a zombie of the host's pid 1), workers are started
from one long-lived thread (bubblewrap's `--die-with-parent` follows the starting *thread*), and pools still open
when the interpreter exits are closed then.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
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
from typing import TypeVar

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
from reflectgym.sandboxes.environment import program_env
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
from reflectgym.sandboxes.worker_link import (
    MARSHAL_VERSION,
    WORKER_SOURCE,
    Worker,
    WorkerChannel,
    WorkerLauncher,
    WorkerLostError,
    WorkerRetiredError,
)

BOOTSTRAP = (
    "import os, sys\n"
    "sys.path[:] = [entry for entry in sys.path if entry]\n"
    "_STARTUP_MODULES = frozenset(sys.modules)\n"
    "_size, _source = int(sys.argv[2]), b''\n"
    "while len(_source) < _size:\n"
    "    _chunk = os.read(0, _size - len(_source))\n"
    "    if not _chunk:\n"
    "        raise SystemExit('the host sent no worker source')\n"
    "    _source += _chunk\n"
    "exec(compile(_source, 'worker_main.py', 'exec'))\n"
)
"""`python3 -c BOOTSTRAP PRELOAD SIZE` reads `worker_main`'s source from stdin (the host sends it first), so every
process of the sandbox has a short command line. The worker starts as `python3 main.py` would, with the programs'
default environment and no `-I` (a program then sees the flags of a fresh interpreter, and so do the interpreters
it starts: `subprocess` and `multiprocessing` pass them on), but first drops the current directory (`/work`, the
programs' own) from its import path: nothing a program leaves there can be imported by the worker."""
READ_CHUNK = 1 << 16
INFO_TIMEOUT_SECONDS = 2.0
"""How long a retiring worker's bubblewrap may still take to report its sandbox's init."""
BREACHES = frozenset({ExecStatus.TIMEOUT, ExecStatus.MEMORY_LIMIT, ExecStatus.OUTPUT_LIMIT})
DEFAULT_PRELOAD = (
    *("collections", "math", "re", "itertools", "functools", "heapq", "string", "typing", "bisect", "json"),
    *("decimal", "fractions"),  # (the test harness's judge imports them: 4 ms a run otherwise, 0.2 MB preloaded)
)
T = TypeVar("T")


CALLER_CORE_ABOVE = 8
"""With more CPUs than this, the default pool leaves one to its caller (see `default_workers`)."""


def default_workers() -> int:
    """One worker per CPU this process may use, less one left to the caller on machines of more than
    `CALLER_CORE_ABOVE` CPUs.

    Every run also costs the caller some CPU (encoding the request, reading the reply: about 0.2 ms from a thread
    per request, 0.03-0.15 ms in a batch): with all cores running workers, that work lands on a core whose worker
    is then late. Measured on 16 cores with a thread per request, 15 workers ran 18 % more requests per second than
    16; on 2 cores, 2 workers ran 70 % more than 1 (BENCHMARKS.md)."""
    cpus = len(os.sched_getaffinity(0))
    return cpus - 1 if cpus > CALLER_CORE_ABOVE else cpus


@dataclass(frozen=True)
class PoolConfig:
    """Settings of a warm pool."""

    workers: int = field(default_factory=default_workers)
    """Workers running at once; default: `default_workers()` (one per core is the most that helps)."""
    max_runs_per_worker: int = 10_000
    """Runs before a worker is replaced by a fresh one. Every run is a fresh child and leaves nothing behind, so this
    bounds only how long one worker and zygote live; a bubblewrap worker's start costs 60-70 ms of CPU, about
    0.007 ms per run here (2-3 % of a run at 1000)."""
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

    def fileno(self) -> int:
        return self._out

    def has_buffered(self) -> bool:
        return bool(self._buffer)

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
    extra_processes = 4  # the worker (pid 1: no bubblewrap init), its compiler, its zygote and the next standby

    def __init__(self, config: BwrapConfig, limits: Limits, preload: Sequence[str]) -> None:
        reason = bwrap_unavailable_reason(config.bwrap)
        if reason is not None:
            raise SandboxError(reason)
        self.config = config
        self.limits = limits
        self.preload = tuple(preload)

    def start(self, cpu: int | None = None) -> WorkerChannel:
        """bwrap ... --as-pid-1 --info-fd N -- python3 -c BOOTSTRAP preload size cpu (the source follows)."""
        args = [*namespace_args(self.config, self.limits.network, self.limits.disk_bytes), "--as-pid-1"]
        for key, value in program_env(WORK_DIR, TMP_DIR, {}).items():
            args += ["--setenv", key, value]
        info_read, info_write = os.pipe()
        args += ["--info-fd", str(info_write)]
        with bwrap_seccomp() as (seccomp_args, seccomp_fds):  # bubblewrap reads it before it starts the worker
            command = worker_command(self.config.python, self.preload, cpu, sealed=bool(seccomp_args))
            argv = [*args, *seccomp_args, "--", *command]
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


def worker_command(python: str, preload: Sequence[str], cpu: int | None = None, sealed: bool = False) -> list[str]:
    """The command that starts `worker_main` in a sandbox (its source follows on stdin), kept on `cpu` if given.

    Then comes the programs' default environment (marshalled, in hex): the worker makes it its own, so that a child
    asked for it inherits it as it is, whatever the launcher added (bubblewrap's `PWD`, Docker's `HOSTNAME`). Last,
    `sealed` says that the sandbox runs under `seccomp.filter_program`: no process in it can change another's
    limits, priority or scheduling, nor make extended attributes or SysV IPC objects, so the worker need not look
    for any of them after a run."""
    environment = marshal.dumps(program_env(WORK_DIR, TMP_DIR, {}), MARSHAL_VERSION).hex()
    cpu_text = "" if cpu is None else str(cpu)
    return [
        *(python, "-c", BOOTSTRAP, ",".join(preload), str(len(WORKER_SOURCE)), cpu_text, environment),
        "sealed" if sealed else "",
    ]


def worker_cpus(config: PoolConfig) -> list[int | None]:
    """The CPU each slot's worker is kept on (see `PoolConfig.pin_workers`); None where workers are not pinned."""
    cpus = sorted(os.sched_getaffinity(0))
    if not config.pin_workers or config.workers < 2 or len(cpus) < 2:
        return [None] * config.workers
    return [cpus[index % len(cpus)] for index in range(config.workers)]


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
        self._idle: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._slots = [_Slot(cpu) for cpu in worker_cpus(self.config)]
        self._executor = concurrent.futures.ThreadPoolExecutor(self.config.workers, thread_name_prefix="warm-pool")
        """Runs `run_async`'s calls (each waits for a worker)."""
        self._starter = concurrent.futures.ThreadPoolExecutor(self.config.workers, thread_name_prefix="warm-start")
        """Starts workers: at `start`, and when a batch replaces one (never behind callers waiting for a worker)."""
        self._closed = False
        self._lock = threading.Lock()
        self._owner_pid = os.getpid()
        for slot in self._slots:
            self._idle.put(slot)
        _OPEN_POOLS.add(self)

    def start(self) -> WarmPool:
        """Start every worker now (in parallel) instead of on first use; returns the pool."""
        list(self._starter.map(self._ensure_started, self._slots))
        return self

    def run(self, request: ExecRequest) -> ExecResult:
        """Run one request on the next idle worker (waits for one when all are busy)."""
        self._check(request)
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
            if self._spent(worker, result):
                self._retire(slot)
            return result
        except BaseException:  # interrupted (Ctrl-C) mid-request: its answer must not reach the next caller
            self._retire(slot)
            raise
        finally:
            self._idle.put(slot)

    async def run_async(self, request: ExecRequest) -> ExecResult:
        """`run` without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.run, request)

    async def map_async(self, requests: Iterable[ExecRequest]) -> list[ExecResult]:
        """`map` without blocking the event loop: one thread of the loop's default executor drives the batch (a task
        cancelled meanwhile stops waiting; the batch still runs to its end)."""
        batch = list(requests)
        return await asyncio.get_running_loop().run_in_executor(None, self.map, batch)

    def map(self, requests: Iterable[ExecRequest]) -> list[ExecResult]:
        """Run a batch concurrently on all workers; results in the order of the requests.

        The caller's thread alone drives the batch (see `_Batch`): far less of the host's CPU per run than a
        thread per request, which on many cores is what bounds the pool."""
        batch = list(requests)
        for request in batch:
            self._check(request)
        return _Batch(self, batch).run() if batch else []

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
        self._starter.shutdown(wait=True)
        for slot in self._slots:
            self._retire(slot)
        self.launcher.close()

    def _check(self, request: ExecRequest) -> None:
        if request.limits.network != self.config.limits.network:
            raise SandboxError(f"this pool was started with network={self.config.limits.network}; start another")
        if self._closed:
            raise SandboxError("the pool is closed")

    def _spent(self, worker: Worker, result: ExecResult) -> bool:
        """Whether `worker` is to be replaced after `result`: it ran its share, or the run breached a limit and the
        pool recycles on breaches."""
        return worker.runs >= self.config.max_runs_per_worker or (
            self.config.recycle_on_breach and result.status in BREACHES
        )

    def _renew(self, slot: _Slot) -> None:
        """Retire the slot's worker, if any, and start a fresh one."""
        self._retire(slot)
        self._ensure_started(slot)

    def _ensure_started(self, slot: _Slot) -> Worker:
        if slot.worker is None:
            channel = _SPAWNER.call(functools.partial(self.launcher.start, slot.cpu))
            slot.worker = Worker(channel, self.launcher, self.python, self.config.start_timeout_seconds)
        return slot.worker

    def _retire(self, slot: _Slot) -> None:
        if slot.worker is not None:
            slot.worker.channel.kill()
            slot.worker = None


class _Batch:
    """Drives one `WarmPool.map` from the caller's thread alone.

    `run` keeps a thread blocked per request: with a worker per core, the host's share of each run (a GIL handover
    at every system call, waking the waiting thread) grows with the number of workers, and on many cores it is the
    host, not the workers, that bounds the pool. A batch instead sends a request to every idle worker it holds,
    waits on all their channels at once (`select.poll`), reads each answer as it arrives and hands that worker the
    next request. Replacing a worker (it ran its share, it breached a limit, it was lost) takes a fresh sandbox's
    start-up, about 0.1 s: that runs on the pool's start-up threads while the other workers stay busy. A worker
    that turned a request away unrun (`WorkerRetiredError`) gets it resent once, to the fresh worker that replaces
    it, as `run` does (sent to another worker, it could meet one retiring too).
    """

    RENEWAL_POLL_MS = 5
    """How often the batch looks whether a worker being replaced is ready (only while one is)."""

    def __init__(self, pool: WarmPool, requests: list[ExecRequest]) -> None:
        self.pool = pool
        self.requests = requests
        self.results: list[ExecResult | None] = [None] * len(requests)
        self.unsent = collections.deque(range(len(requests)))
        self.resent: set[int] = set()
        self.wanted = min(pool.config.workers, len(requests))
        self.held: list[_Slot] = []
        """Every slot the batch took from the pool; all go back at the end."""
        self.idle: list[_Slot] = []
        self.busy: dict[int, tuple[_Slot, Worker, int, float]] = {}
        """Channel descriptor -> (slot, worker, request index, deadline) of every request in flight."""
        self.renewing: dict[concurrent.futures.Future[None], tuple[_Slot, int | None]] = {}
        """Worker start-ups in progress -> the slot, and the request kept for its fresh worker."""
        self.poller = select.poll()
        self.left = len(requests)

    def run(self) -> list[ExecResult]:
        try:
            self._take(self.pool._idle.get())
            while self.left:
                self._take_idle_slots()
                while self.idle and self.unsent:
                    self._send(self.idle.pop(), self.unsent.popleft())
                self._wait()
        finally:
            for busy_slot, _, _, _ in self.busy.values():  # interrupted (Ctrl-C): no answer may reach the next caller
                self.pool._retire(busy_slot)
            for future, (slot, _) in self.renewing.items():  # back to the pool once ready (or failed), not waited for
                self.held.remove(slot)
                future.add_done_callback(lambda _, slot=slot: self.pool._idle.put(slot))
            for slot in self.held:
                self.pool._idle.put(slot)
        done = [result for result in self.results if result is not None]
        assert len(done) == len(self.results), "a request of the batch got no result"
        return done

    def _take(self, slot: _Slot) -> None:
        self.held.append(slot)
        if slot.worker is None:
            self._renew(slot)
        else:
            self.idle.append(slot)

    def _take_idle_slots(self) -> None:
        """Take more of the pool's idle slots, up to one per request (`run` from other threads may hold some)."""
        while len(self.held) < self.wanted and self.unsent:
            try:
                self._take(self.pool._idle.get_nowait())
            except queue.Empty:
                return

    def _renew(self, slot: _Slot, kept: int | None = None) -> None:
        """Replace the slot's worker on one of the pool's start-up threads; request `kept`, if any, goes to the
        fresh one."""
        try:
            self.renewing[self.pool._starter.submit(self.pool._renew, slot)] = (slot, kept)
        except RuntimeError as error:  # the executor was shut down
            raise SandboxError("the pool is closed") from error

    def _send(self, slot: _Slot, index: int) -> None:
        assert slot.worker is not None
        worker = slot.worker
        try:
            deadline = worker.submit(self.requests[index])
        except WorkerLostError as error:
            self._lost(slot, index, error)
            return
        fd = worker.channel.fileno()
        self.busy[fd] = (slot, worker, index, deadline)
        self.poller.register(fd, select.POLLIN)

    def _wait(self) -> None:
        """Wait for answers (or the first deadline, or a replaced worker) and take in what arrived."""
        now = time.perf_counter()
        buffered = [fd for fd, (_, worker, _, _) in self.busy.items() if worker.channel.has_buffered()]
        timeout_ms = 0 if buffered else self._timeout_ms(now)
        ready = buffered + [fd for fd, _ in self.poller.poll(timeout_ms)] if self.busy else []
        if not self.busy and timeout_ms:
            time.sleep(timeout_ms / 1000)
        for fd in dict.fromkeys(ready):
            self._collect(fd)
        now = time.perf_counter()
        for fd in [fd for fd, (_, _, _, deadline) in self.busy.items() if deadline <= now]:
            slot, _, index, _ = self._release(fd)
            self._lost(slot, index, WorkerLostError("worker did not answer in time"))
        for future in [future for future in self.renewing if future.done()]:
            slot, kept = self.renewing.pop(future)
            future.result()  # a worker that cannot start: raise, as `run` would
            if kept is None:
                self.idle.append(slot)
            else:
                self._send(slot, kept)

    def _timeout_ms(self, now: float) -> int:
        waits = [deadline - now for _, _, _, deadline in self.busy.values()]
        if self.renewing:
            waits.append(self.RENEWAL_POLL_MS / 1000)
        return max(0, math.ceil(1000 * min(waits))) if waits else 0

    def _release(self, fd: int) -> tuple[_Slot, Worker, int, float]:
        self.poller.unregister(fd)
        return self.busy.pop(fd)

    def _collect(self, fd: int) -> None:
        slot, worker, index, deadline = self._release(fd)
        request = self.requests[index]
        try:
            result = worker.collect(request, deadline)
        except WorkerRetiredError as error:
            if index in self.resent:
                self._lost(slot, index, error)
                return
            self.resent.add(index)
            self._renew(slot, kept=index)
            return
        except WorkerLostError as error:
            self._lost(slot, index, error)
            return
        self._done(index, result)
        if self.pool._spent(worker, result):
            self._renew(slot)
        else:
            self.idle.append(slot)

    def _lost(self, slot: _Slot, index: int, error: Exception) -> None:
        self._done(index, ExecResult(status=ExecStatus.SANDBOX_ERROR, exit_code=None, message=f"worker lost: {error}"))
        self._renew(slot)

    def _done(self, index: int, result: ExecResult) -> None:
        self.results[index] = result
        self.left -= 1


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
