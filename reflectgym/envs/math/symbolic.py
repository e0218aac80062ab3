"""The symbolic path of answer checking: Hugging Face `math-verify` (SymPy underneath) in a small pool of worker
processes, each pair under a hard wall-clock limit.

Why processes: SymPy can spend minutes (or all memory) on a pathological expression such as `9^{9^{9}}`, a
thread cannot be stopped, and math-verify's own limit is `signal.alarm` — whole seconds, main thread only, and
it replaces the caller's SIGALRM handler. So the work runs in long-lived workers (`python -m
reflectgym.envs.math.symbolic`, memory capped, talking JSON lines over pipes — no multiprocessing, so user
scripts need no `__main__` guard). A pair that overruns `timeout_s` gets its worker killed (the others carry on),
and the answer is `None`: "could not verify", never a hang. Per pair this costs one pipe round trip (tens of
microseconds) on top of math-verify's milliseconds, and only for pairs the fast path could not decide.

Why a pool: the rollout engine and the trainers step many envs from threads of one process, and SymPy holds its
worker for the whole check, so with one worker every symbolic answer waits for the others'. Each call takes an
idle worker; a new one is started (about 1.3 s, about 85 MB resident) only when none is idle and fewer than
`workers` run, else the call waits for one. A single-threaded user, or an env in its own Ray actor, so starts
exactly one. The default cap, `default_workers()`, is one per core up to 4: SymPy is CPU-bound and
single-threaded, so workers beyond the cores only share them (and a starved worker overruns its wall-clock
limit on a pair it would have decided), and the memory cap is per worker, so the cap bounds the worst case the
pool may hold (4 x 4 GiB).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import os
import select
import subprocess
import sys
import threading
from typing import IO, Any

INSTALL_HINT = "symbolic answer checking needs math-verify: pip install 'reflectgym[math]'"
MAX_DEFAULT_WORKERS = 4
"""The most workers `default_workers()` gives, however many cores (see the module docstring)."""
_WORKER_MEMORY_BYTES = 4 * 1024**3
_STARTUP_TIMEOUT_S = 60.0
_REPLIES: dict[str, bool | None] = {"true": True, "false": False, "null": None}


def symbolic_available() -> bool:
    """Whether math-verify is installed."""
    return importlib.util.find_spec("math_verify") is not None


def default_workers() -> int:
    """One worker per core this process may run on, at most `MAX_DEFAULT_WORKERS`."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_WORKERS))


def serve(requests: IO[str], replies: IO[str]) -> None:
    """The worker loop: one JSON `[answer, gold]` per line in, `true`/`false`/`null` per line out."""
    import logging
    import resource

    with contextlib.suppress(ValueError, OSError):  # a lower hard limit may already be in force
        resource.setrlimit(resource.RLIMIT_AS, (_WORKER_MEMORY_BYTES, _WORKER_MEMORY_BYTES))
    logging.disable(logging.WARNING)
    from math_verify import parse, verify

    replies.write('"ready"\n')
    replies.flush()
    for line in requests:
        result: Any = None
        try:
            answer, gold = json.loads(line)
            gold_parsed = parse(f"\\boxed{{{gold}}}", parsing_timeout=None)  # type: ignore[arg-type]
            answer_parsed = parse(f"\\boxed{{{answer}}}", parsing_timeout=None)  # type: ignore[arg-type]
            if gold_parsed and answer_parsed:
                result = bool(verify(gold_parsed, answer_parsed, timeout_seconds=None))  # type: ignore[arg-type]
        except (Exception, MemoryError, RecursionError):
            result = None
        replies.write(json.dumps(result) + "\n")
        replies.flush()


class _Worker:
    """One math-verify process. Only the thread holding it reads and writes its pipes and closes them."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reflectgym.envs.math.symbolic"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )

    def ready(self) -> bool:
        """Whether the worker said it is ready (math-verify imported) within the startup timeout."""
        assert self.process.stdout is not None
        return _read_line(self.process.stdout, _STARTUP_TIMEOUT_S) == '"ready"'

    def ask(self, answer: str, gold: str, timeout_s: float) -> str | None:
        """The worker's reply line, or None when none came within `timeout_s` or the worker died."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps([answer, gold]) + "\n")
            self.process.stdin.flush()
            return _read_line(self.process.stdout, timeout_s)
        except (OSError, ValueError):  # died (memory cap, or killed by close()) before the request got through
            return None

    def kill(self) -> None:
        """Kills and reaps the process, leaving its pipes alone: safe from any thread."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Kills and reaps the process and closes its pipes (by the thread holding it, or with none holding it)."""
        self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


class SymbolicVerifier:
    """Checks answer equivalence with math-verify in up to `workers` worker processes, within `timeout_s` per pair.

    Thread-safe: concurrent calls run on different workers, started as they are needed.

    Args:
        timeout_s: Wall-clock seconds a pair may take; past it its worker is killed and the result is `None`.
        workers: The most worker processes run at once (None: `default_workers()`, one per core up to 4).
    """

    def __init__(self, timeout_s: float = 3.0, workers: int | None = None) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive; got {timeout_s}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1 (or None for one per core, up to 4); got {workers}")
        self.timeout_s = timeout_s
        self.workers = default_workers() if workers is None else workers
        self._pool = threading.Condition()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()  # (a worker that close() took leaves this set while its caller holds it)
        self.started = 0
        """How many worker processes were started, replacements included."""
        self.restarts = 0
        """How many times a worker was killed (time limit) or died (memory cap) and was replaced."""

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the workers running now, idle or busy."""
        with self._pool:
            return [worker.process.pid for worker in [*self._idle, *self._busy]]

    def equal(self, answer: str, gold: str) -> bool | None:
        """True/False when math-verify decided in time, `None` when it could not (timeout, parse failure) or when
        `close()` stopped the worker meanwhile."""
        if not symbolic_available():
            raise ImportError(INSTALL_HINT)
        worker = self._acquire()
        if worker is None:
            return None
        try:
            reply = worker.ask(answer, gold, self.timeout_s)
        except BaseException:  # (KeyboardInterrupt: its reply may still come, so no other call may have it)
            self._discard(worker, failed=False)
            raise
        if reply is not None and reply in _REPLIES:
            self._put_back(worker)
            return _REPLIES[reply]
        self._discard(worker, failed=True)
        return None

    def close(self) -> None:
        """Stops every worker (they also stop when the interpreter exits); later calls start fresh ones.

        A call in flight in another thread returns None at once: its worker is killed and reaped here, and that
        thread, the only one reading its pipes, closes them.
        """
        with self._pool:
            idle, busy = self._idle, list(self._busy)
            self._idle, self._busy = [], set()
            self._pool.notify_all()
        for worker in idle:
            worker.stop()
        for worker in busy:
            worker.kill()

    def _acquire(self) -> _Worker | None:
        """An idle worker, or a new one while fewer than `workers` run, else the next one freed; None when
        `close()` stopped the new one as it started."""
        with self._pool:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.process.poll() is None:
                        self._busy.add(worker)
                        return worker
                    worker.stop()  # died while idle (killed from outside): start another in its place
                if len(self._busy) < self.workers:
                    break
                self._pool.wait()
            # started under the lock (a few milliseconds), so that close() always finds it; its imports are waited
            # for outside the lock
            worker = _Worker()
            self._busy.add(worker)
            self.started += 1
        try:
            ready = worker.ready()
        except BaseException:  # (KeyboardInterrupt: free its place, or a pool of one would wait for ever)
            self._discard(worker, failed=False)
            raise
        if ready:
            return worker
        if not self._discard(worker, failed=False):
            return None
        raise RuntimeError(f"the math-verify worker did not start within {_STARTUP_TIMEOUT_S:.0f} s")

    def _put_back(self, worker: _Worker) -> None:
        with self._pool:
            if worker in self._busy:
                self._busy.remove(worker)
                self._idle.append(worker)
                self._pool.notify()
                return
        worker.stop()  # close() took it meanwhile

    def _discard(self, worker: _Worker, *, failed: bool) -> bool:
        """Stops `worker` and frees its place (counting a restart if its call `failed`); False when `close()` had
        already taken it."""
        with self._pool:
            ours = worker in self._busy
            if ours:
                self._busy.remove(worker)
                if failed:
                    self.restarts += 1
                self._pool.notify()
        worker.stop()
        return ours


def _read_line(stream: IO[str], timeout_s: float) -> str | None:
    """One reply line, or None when none arrives within `timeout_s` (the worker writes whole lines)."""
    ready, _, _ = select.select([stream], [], [], timeout_s)
    if not ready:
        return None
    line = stream.readline()
    return line.strip() or None


_SHARED: dict[tuple[float, int], SymbolicVerifier] = {}
_SHARED_LOCK = threading.Lock()


def shared_verifier(timeout_s: float, workers: int | None = None) -> SymbolicVerifier:
    """One pool per time limit and worker cap per process, shared by every env and checker in it."""
    key = (timeout_s, default_workers() if workers is None else workers)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = SymbolicVerifier(*key)
        return _SHARED[key]


@atexit.register
def _close_shared() -> None:
    for verifier in _SHARED.values():
        verifier.close()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
