"""The symbolic path of answer checking: Hugging Face `math-verify` (SymPy underneath) in a worker process with a
hard wall-clock limit.

Why a process: SymPy can spend minutes (or all memory) on a pathological expression such as `9^{9^{9}}`, a
thread cannot be stopped, and math-verify's own limit is `signal.alarm` — whole seconds, main thread only, and
it replaces the caller's SIGALRM handler. So the work runs in one long-lived worker (`python -m
reflectgym.envs.math.symbolic`, started on first use, memory capped, talking JSON lines over pipes — no
multiprocessing, so user scripts need no `__main__` guard). A pair that overruns `timeout_s` gets the worker
killed and restarted, and the answer is `None`: "could not verify", never a hang. Per pair this costs one pipe
round trip (tens of microseconds) on top of math-verify's milliseconds, and only for pairs the fast path could
not decide.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import select
import subprocess
import sys
import threading
from typing import IO, Any

INSTALL_HINT = "symbolic answer checking needs math-verify: pip install 'reflectgym[math]'"
_WORKER_MEMORY_BYTES = 4 * 1024**3
_STARTUP_TIMEOUT_S = 60.0


def symbolic_available() -> bool:
    """Whether math-verify is installed."""
    return importlib.util.find_spec("math_verify") is not None


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


class SymbolicVerifier:
    """Checks answer equivalence with math-verify in a worker process, within `timeout_s` per pair.

    Args:
        timeout_s: Wall-clock seconds a pair may take; past it the worker is killed and the result is `None`.
    """

    def __init__(self, timeout_s: float = 3.0) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive; got {timeout_s}")
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self.restarts = 0
        """How many times a worker was killed (time limit) or died (memory cap) and was replaced."""

    def equal(self, answer: str, gold: str) -> bool | None:
        """True/False when math-verify decided in time, `None` when it could not (timeout, parse failure)."""
        if not symbolic_available():
            raise ImportError(INSTALL_HINT)
        with self._lock:
            process = self._ensure_worker()
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(json.dumps([answer, gold]) + "\n")
                process.stdin.flush()
                reply = _read_line(process.stdout, self.timeout_s)
                if reply:
                    result = json.loads(reply)
                    return result if isinstance(result, bool) else None
            except (OSError, ValueError):  # the worker died (memory cap): replaced below
                pass
            self._stop_worker()
            self.restarts += 1
            return None

    def close(self) -> None:
        """Stops the worker (it also stops when the interpreter exits)."""
        with self._lock:
            self._stop_worker()

    def _ensure_worker(self) -> subprocess.Popen[str]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._stop_worker()
        process = subprocess.Popen(
            [sys.executable, "-m", "reflectgym.envs.math.symbolic"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._process = process
        assert process.stdout is not None
        if _read_line(process.stdout, _STARTUP_TIMEOUT_S) != '"ready"':
            self._stop_worker()
            raise RuntimeError(f"the math-verify worker did not start within {_STARTUP_TIMEOUT_S:.0f} s")
        return process

    def _stop_worker(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


def _read_line(stream: IO[str], timeout_s: float) -> str | None:
    """One reply line, or None when none arrives within `timeout_s` (the worker writes whole lines)."""
    ready, _, _ = select.select([stream], [], [], timeout_s)
    if not ready:
        return None
    line = stream.readline()
    return line.strip() or None


_SHARED: dict[float, SymbolicVerifier] = {}
_SHARED_LOCK = threading.Lock()


def shared_verifier(timeout_s: float) -> SymbolicVerifier:
    """One worker per time limit per process, shared by every env and checker in it."""
    with _SHARED_LOCK:
        if timeout_s not in _SHARED:
            _SHARED[timeout_s] = SymbolicVerifier(timeout_s)
        return _SHARED[timeout_s]


@atexit.register
def _close_shared() -> None:
    for verifier in _SHARED.values():
        verifier.close()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
