"""The symbolic path's worker pool: started as concurrent calls need it, capped, each pair under its own time limit,
and all of it stopped by `close()`."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

from reflectgym.envs.math.equivalence import AnswerChecker, EquivalenceConfig
from reflectgym.envs.math.symbolic import (
    MAX_DEFAULT_WORKERS,
    SymbolicVerifier,
    _Worker,
    default_workers,
    shared_verifier,
    symbolic_available,
)

needs_math_verify = pytest.mark.skipif(not symbolic_available(), reason="math-verify is not installed")
PATHOLOGICAL = ("9^{9^{9}} + x", "x + 1")  # SymPy works on this far past any time limit
T = TypeVar("T")


def cubic_pair(a: int, b: int, c: int, right: bool) -> tuple[str, str, bool]:
    """The expanded cubic (with its constant term off by one when not `right`) against its factored form."""
    p2, p1, p0 = -(a + b + c), a * b + b * c + a * c, -a * b * c + (0 if right else 1)
    return f"x^3 + ({p2})x^2 + ({p1})x + ({p0})", f"(x - ({a}))(x - ({b}))(x - ({c}))", right


def alive(pid: int) -> bool:
    """Whether a process with this id exists (a killed worker that was not reaped still does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def together(calls: list[Callable[[], T]]) -> list[T]:
    """Runs the calls in threads of their own, released at the same moment; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[T | None] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results  # type: ignore[return-value]


def in_background(call: Callable[[], T]) -> tuple[threading.Thread, list[T]]:
    """Starts `call` in a thread; the list gets its result."""
    result: list[T] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    return thread, result


@needs_math_verify
def test_pathological_expression_returns_could_not_verify_within_the_limit() -> None:
    verifier = SymbolicVerifier(timeout_s=1.0)
    try:
        assert verifier.equal("x+1", "1+x") is True  # starts the worker
        start = time.perf_counter()
        assert verifier.equal(*PATHOLOGICAL) is None
        assert time.perf_counter() - start < 3.0
        assert verifier.restarts == 1
        assert verifier.equal("(x+1)^2", "x^2+2x+1") is True  # a fresh worker answers again
    finally:
        verifier.close()


@needs_math_verify
def test_concurrent_calls_start_at_most_workers_processes_and_each_gets_its_own_answer() -> None:
    verifier = SymbolicVerifier(timeout_s=30.0, workers=3)
    pairs = [cubic_pair(index, -index - 2, 2 * index + 5, right=index % 3 != 1) for index in range(8)]
    try:
        calls = [lambda answer=answer, gold=gold: verifier.equal(answer, gold) for answer, gold, _ in pairs]
        assert together(calls) == [right for _, _, right in pairs]
        # the first three calls find no idle worker and start one each; the other five wait for them
        assert verifier.started == 3
        assert len(verifier.worker_pids) == 3
        assert verifier.restarts == 0
    finally:
        verifier.close()


@needs_math_verify
def test_one_thread_starts_exactly_one_worker() -> None:
    verifier = SymbolicVerifier(timeout_s=30.0, workers=4)
    try:
        for index in range(5):
            answer, gold, right = cubic_pair(index, index + 3, -index - 7, right=index % 2 == 0)
            assert verifier.equal(answer, gold) is right
        assert verifier.started == 1
        assert len(verifier.worker_pids) == 1
    finally:
        verifier.close()


@needs_math_verify
def test_a_pair_past_the_limit_kills_only_its_own_worker() -> None:
    verifier = SymbolicVerifier(timeout_s=3.0, workers=2)
    try:
        together([lambda: verifier.equal("x+1", "1+x")] * 2)
        pids = set(verifier.worker_pids)
        assert len(pids) == 2
        stuck, stuck_result = in_background(lambda: verifier.equal(*PATHOLOGICAL))
        time.sleep(0.5)  # (it has taken a worker)
        for index in range(3):  # on the other worker, while the stuck pair holds its own
            answer, gold, right = cubic_pair(index + 1, 2 * index, -5, right=True)
            assert verifier.equal(answer, gold) is right
        assert stuck.is_alive()
        stuck.join(timeout=30)
        assert stuck_result == [None]
        assert verifier.restarts == 1
        survivors = verifier.worker_pids
        assert len(survivors) == 1 and survivors[0] in pids and alive(survivors[0])
        assert not alive((pids - set(survivors)).pop())
        assert verifier.equal("(x+1)^2", "x^2+2x+1") is True
    finally:
        verifier.close()


@needs_math_verify
def test_close_stops_every_worker_idle_or_busy_and_the_busy_call_returns_at_once() -> None:
    verifier = SymbolicVerifier(timeout_s=60.0, workers=3)
    together([lambda: verifier.equal("x+1", "1+x")] * 3)
    pids = verifier.worker_pids
    assert len(pids) == 3
    stuck, stuck_result = in_background(lambda: verifier.equal(*PATHOLOGICAL))
    time.sleep(0.5)  # (it has taken a worker, for up to a minute)
    start = time.perf_counter()
    verifier.close()
    stuck.join(timeout=10)
    assert not stuck.is_alive() and stuck_result == [None]
    assert time.perf_counter() - start < 10
    assert not any(alive(pid) for pid in pids)
    assert verifier.worker_pids == []
    assert verifier.restarts == 0  # (stopping is not a restart)
    assert verifier.equal("x+1", "1+x") is True  # later calls start afresh
    pid = verifier.worker_pids[0]
    verifier.close()
    assert not alive(pid)


@needs_math_verify
def test_a_call_interrupted_midway_frees_its_place_and_its_worker_is_not_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = SymbolicVerifier(timeout_s=30.0, workers=1)
    try:
        assert verifier.equal("x+1", "1+x") is True
        first = verifier.worker_pids[0]

        def interrupted(*_args: object) -> str | None:
            raise KeyboardInterrupt

        with monkeypatch.context() as patch:
            patch.setattr(_Worker, "ask", interrupted)
            with pytest.raises(KeyboardInterrupt):
                verifier.equal("x+2", "2+x")
        assert not alive(first)  # (its reply might still have come: no other call may read it)
        after, result = in_background(lambda: verifier.equal("x+3", "3+x"))
        after.join(timeout=30)  # (with its place still taken, a pool of one would wait for ever)
        assert result == [True]
    finally:
        verifier.close()


def test_default_workers_is_one_per_core_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    for cores, expected in [(1, 1), (2, 2), (64, MAX_DEFAULT_WORKERS)]:
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, cores=cores: set(range(cores)), raising=False)
        assert default_workers() == expected
        assert SymbolicVerifier().workers == expected


def test_shared_verifier_is_one_per_time_limit_and_worker_cap() -> None:
    assert shared_verifier(7.0) is shared_verifier(7.0, default_workers())
    assert shared_verifier(7.0, 1) is not shared_verifier(7.0, MAX_DEFAULT_WORKERS + 1)
    assert shared_verifier(7.0, MAX_DEFAULT_WORKERS + 1).workers == MAX_DEFAULT_WORKERS + 1  # (never the default)


@needs_math_verify
def test_the_checker_uses_the_shared_pool_of_its_time_limit_and_worker_cap() -> None:
    match = AnswerChecker(EquivalenceConfig(timeout_s=2.5, symbolic_workers=1)).check("x+1", "1+x")
    assert (match.status, match.method) == ("equal", "symbolic")
    assert shared_verifier(2.5, 1).started == 1


def test_worker_cap_validation() -> None:
    with pytest.raises(ValueError, match="workers"):
        SymbolicVerifier(workers=0)
