"""`pool`: a warm pool of long-lived sandboxed workers that fork one child per request (see `worker_main`).

A fresh interpreter per run costs ~10 ms; a fork of an already-started one costs ~1 ms. The pool keeps up to one
worker per core, each inside its own isolation (bubblewrap here, a container for `docker`), hands requests to idle
workers from a queue, and offers `run` (blocking), `run_async` (asyncio) and `map` (a batch, concurrently).

Threat model: each worker has the isolation of its launcher (`bwrap`: see `reflectgym.sandboxes.bwrap`); within
it, every run is a fresh forked child with the request's rlimits, and after each run the worker kills every other
process of its pid namespace and wipes `/work`, `/tmp`, `/dev/shm` and SysV IPC objects. What one run shares with
the next run on the same worker is only the worker's pre-fork state (its preloaded modules, read-only to the
child) and the namespaces themselves; see `worker_main` for the list. A program that kills its own worker gets
`sandbox_error` for that run and the worker is replaced. Per-pool, not per-request: the network setting and the
work dir size (`Limits.network`, `Limits.disk_bytes` of `PoolConfig.limits`).

The host treats everything a worker says as untrusted: replies are JSON and raw bytes with bounded sizes, never
pickle.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import queue
import select
import struct
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from reflectgym.sandboxes.bwrap import (
    SANDBOX_PROCESSES,
    TMP_DIR,
    WORK_DIR,
    BwrapConfig,
    bwrap_unavailable_reason,
    namespace_args,
    spawn_identity,
)
from reflectgym.sandboxes.environment import PYTHON_NAMES, program_env, resolve_python
from reflectgym.sandboxes.outcome import RawOutcome, classify
from reflectgym.sandboxes.rlimits import rlimit_table
from reflectgym.sandboxes.types import ExecRequest, ExecResult, ExecStatus, Isolation, Limits, SandboxError

WORKER_SOURCE = (Path(__file__).parent / "worker_main.py").read_text(encoding="utf-8")
REPLY_GRACE_SECONDS = 10.0
"""How long past the wall limit the host waits for a worker's reply before it declares the worker lost."""
MAX_HEADER_BYTES = 1 << 20
BREACHES = frozenset({ExecStatus.TIMEOUT, ExecStatus.MEMORY_LIMIT, ExecStatus.OUTPUT_LIMIT})
DEFAULT_PRELOAD = ("collections", "math", "re", "itertools", "functools", "heapq", "string", "typing", "bisect")


class WorkerLostError(Exception):
    """The worker died, hung or broke the protocol during a request."""


class WorkerChannel(Protocol):
    """A byte pipe to one running worker."""

    def send(self, data: bytes) -> None:
        """Write all of `data` to the worker."""
        ...

    def receive(self, count: int, deadline: float) -> bytes:
        """Read exactly `count` bytes before `deadline` (perf_counter) or raise WorkerLostError."""
        ...

    def kill(self) -> None:
        """End the worker and everything in its sandbox; idempotent."""
        ...


class WorkerLauncher(Protocol):
    """Starts workers inside one kind of isolation."""

    name: str
    isolation: Isolation
    sigkill_means_oom: bool
    """A SIGKILL the worker did not send comes from the OOM killer (cgroup memory limit)."""
    extra_processes: int
    """Processes of the sandbox itself counted by RLIMIT_NPROC beside the program."""

    def start(self) -> WorkerChannel:
        """Start one worker and return its channel (before its ready message)."""
        ...

    def close(self) -> None:
        """Release what the launcher holds beyond its workers."""
        ...


@dataclass(frozen=True)
class PoolConfig:
    """Settings of a warm pool."""

    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Workers running at once (one per core is the most that helps)."""
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

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers ({self.workers}) must be at least 1")
        if self.max_runs_per_worker < 1:
            raise ValueError("max_runs_per_worker must be at least 1")


class PipeChannel:
    """A worker started as a host subprocess, spoken to over its stdin/stdout."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        self._proc = proc
        self._in = proc.stdin.fileno()
        self._out = proc.stdout.fileno()

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
        chunks: list[bytes] = []
        while count:
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or not select.select([self._out], [], [], remaining)[0]:
                raise WorkerLostError("worker did not answer in time")
            chunk = os.read(self._out, min(count, 1 << 20))
            if not chunk:
                raise WorkerLostError("worker exited")
            chunks.append(chunk)
            count -= len(chunk)
        return b"".join(chunks)

    def kill(self) -> None:
        """SIGKILL bubblewrap; its --die-with-parent and pid namespace take everything inside along."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()


class BwrapLauncher:
    """Starts each worker in its own bubblewrap sandbox (namespaces of the `bwrap` backend)."""

    name = "pool"
    isolation = Isolation.NAMESPACES
    sigkill_means_oom = False
    extra_processes = SANDBOX_PROCESSES + 1  # the worker beside bwrap's init

    def __init__(self, config: BwrapConfig, limits: Limits, preload: Sequence[str]) -> None:
        reason = bwrap_unavailable_reason(config.bwrap)
        if reason is not None:
            raise SandboxError(reason)
        self.config = config
        self.limits = limits
        self.preload = tuple(preload)

    def start(self) -> WorkerChannel:
        """bwrap ... -- python3 -I -c WORKER_SOURCE preload."""
        args = namespace_args(self.config, self.limits.network, self.limits.disk_bytes)
        for key, value in program_env(WORK_DIR, TMP_DIR, {}).items():
            args += ["--setenv", key, value]
        argv = [*args, "--", self.config.python, "-I", "-c", WORKER_SOURCE, ",".join(self.preload)]
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
                user=uid,
                group=gid,
                extra_groups=[] if uid is not None else None,
            )
        except OSError as error:
            raise SandboxError(f"could not start a bubblewrap worker: {error}") from error
        return PipeChannel(proc)

    def close(self) -> None:
        """Nothing beyond the workers."""


class Worker:
    """One started worker: encodes requests, decodes (and bounds) replies."""

    def __init__(self, channel: WorkerChannel, launcher: WorkerLauncher, python: str, start_timeout: float) -> None:
        self.channel = channel
        self.launcher = launcher
        self.python = python
        self.runs = 0
        try:
            header, _ = self._receive(time.perf_counter() + start_timeout, max_blob=0)
        except WorkerLostError as error:
            channel.kill()
            raise SandboxError(f"a {launcher.name} worker did not start: {error}") from error
        if not header.get("ready"):
            channel.kill()
            raise SandboxError(f"a {launcher.name} worker did not start: {header.get('error', header)!r:.500}")

    def execute(self, request: ExecRequest) -> ExecResult:
        """Run one request; raises WorkerLostError when the worker breaks during it."""
        limits = request.limits
        command = list(request.command)
        inline = command[0] in PYTHON_NAMES and len(command) >= 2 and _is_plain_python(command[1:])
        header = {
            "argv": resolve_python(command, self.python),
            "files": list(request.files),
            "env": program_env(WORK_DIR, TMP_DIR, request.env),
            "rlimits": [[k, s, h] for k, (s, h) in rlimit_table(limits, self.launcher.extra_processes).items()],
            "wall": limits.wall_seconds,
            "max_output": limits.max_output_bytes,
            "inline": inline,
        }
        self.runs += 1
        self._send(header, [request.stdin, *request.files.values()])
        reply, blobs = self._receive(
            time.perf_counter() + limits.wall_seconds + REPLY_GRACE_SECONDS, max_blob=limits.max_output_bytes
        )
        if "error" in reply or len(blobs) != 2:
            raise WorkerLostError(f"worker failed: {str(reply.get('error'))[-500:]}")
        try:
            returncode = int(reply["returncode"])
            raw = RawOutcome(
                returncode=returncode,
                stdout=blobs[0],
                stderr=blobs[1],
                stdout_truncated=bool(reply["stdout_truncated"]),
                stderr_truncated=bool(reply["stderr_truncated"]),
                wall_seconds=float(reply["wall"]),
                cpu_seconds=float(reply["cpu"]),
                killed_for_wall=bool(reply["killed_for_wall"]),
                oom_suspected=self.launcher.sigkill_means_oom and returncode == -9,
            )
        except (KeyError, TypeError, ValueError) as error:
            raise WorkerLostError(f"malformed reply: {error}") from error
        return classify(raw, limits)

    def _send(self, header: dict[str, object], blobs: list[bytes]) -> None:
        header["blobs"] = [len(blob) for blob in blobs]
        raw = json.dumps(header).encode()
        self.channel.send(b"".join([struct.pack(">I", len(raw)), raw, *blobs]))

    def _receive(self, deadline: float, max_blob: int) -> tuple[dict[str, Any], list[bytes]]:
        (size,) = struct.unpack(">I", self.channel.receive(4, deadline))
        if size > MAX_HEADER_BYTES:
            raise WorkerLostError(f"reply header of {size} bytes")
        try:
            header = json.loads(self.channel.receive(size, deadline))
        except ValueError as error:
            raise WorkerLostError(f"reply is not JSON: {error}") from error
        lengths = header.get("blobs") if isinstance(header, dict) else None
        if not isinstance(lengths, list) or not all(isinstance(n, int) and 0 <= n <= max_blob for n in lengths):
            raise WorkerLostError("reply announces blobs past the output limit")
        blobs = [self.channel.receive(n, deadline) if n else b"" for n in lengths]
        return header, blobs


def _is_plain_python(args: Sequence[str]) -> bool:
    """`FILE ARGS...` or `-c CODE ARGS...`: forms the worker runs in its own interpreter."""
    if args[0] == "-c":
        return len(args) >= 2
    return not args[0].startswith("-")


class _Slot:
    """A place in the pool; holds a worker once one has been started."""

    def __init__(self) -> None:
        self.worker: Worker | None = None


class WarmPool:
    """Runs requests on warm sandboxed workers, up to `PoolConfig.workers` at once."""

    def __init__(self, launcher: WorkerLauncher, config: PoolConfig | None = None, python: str = "python3") -> None:
        self.launcher = launcher
        self.config = config or PoolConfig()
        self.name = launcher.name
        self.isolation = launcher.isolation
        self.python = python
        self._idle: queue.Queue[_Slot] = queue.Queue()
        self._slots = [_Slot() for _ in range(self.config.workers)]
        self._executor = concurrent.futures.ThreadPoolExecutor(self.config.workers, thread_name_prefix="warm-pool")
        self._closed = False
        self._lock = threading.Lock()
        for slot in self._slots:
            self._idle.put(slot)

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
                result = worker.execute(request)
            except WorkerLostError as error:
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
        """Kill every worker and release the launcher; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._executor.shutdown(wait=True)
        for slot in self._slots:
            self._retire(slot)
        self.launcher.close()

    def __enter__(self) -> WarmPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _ensure_started(self, slot: _Slot) -> Worker:
        if slot.worker is None:
            channel = self.launcher.start()
            slot.worker = Worker(channel, self.launcher, self.python, self.config.start_timeout_seconds)
        return slot.worker

    def _retire(self, slot: _Slot) -> None:
        if slot.worker is not None:
            slot.worker.channel.kill()
            slot.worker = None


def bwrap_pool(pool: PoolConfig | None = None, bwrap: BwrapConfig | None = None, *, start: bool = True) -> WarmPool:
    """A warm pool of bubblewrap workers, started unless `start=False`."""
    pool = pool or PoolConfig()
    bwrap = bwrap or BwrapConfig()
    warm = WarmPool(BwrapLauncher(bwrap, pool.limits, pool.preload), pool, python=bwrap.python)
    return warm.start() if start else warm
