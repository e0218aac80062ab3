"""Claim: a batch (`WarmPool.map`, one thread driving every worker) costs the host far less per run than a thread
per request (`WarmPool.run` from as many threads as workers), so the host no longer bounds the pool on many cores.

The host's share of a run (encoding the request, reading and checking the answer, and with threads a GIL handover
at every system call and a wake-up of the waiting thread) is the same work whatever the workers are. Measured side
by side in one run, each row giving runs per second and the host process's CPU per run:
- against workers that answer at once (a small process per worker that speaks the pool's protocol and replies
  `ok` without running anything): the host alone, what it can feed at most, at `--workers` (default 15: the
  pool's default on 16 cores, where its host is busiest);
- against the real bubblewrap pool, with its default number of workers for this machine.
Each row is the median of `--rounds` alternating rounds.

Run: .venv/bin/python benchmarks/sandbox_pool_host.py [--runs N] [--rounds R] [--workers W]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from sandbox_warm_pool import REQUEST

from reflectgym.sandboxes import PoolConfig, WarmPool, bwrap_pool
from reflectgym.sandboxes.pool import PipeChannel
from reflectgym.sandboxes.types import Isolation
from reflectgym.sandboxes.worker_link import WORKER_SOURCE, WorkerChannel

INSTANT_WORKER = r"""
import marshal, os, sys
from reflectgym.sandboxes.worker_main import DONE, PREFIX, READY, RESULT
size = int(sys.argv[1])
while size:
    size -= len(os.read(0, size))
reply = RESULT.pack(DONE, 0, 0, 0.001, 0.001, 3, 0) + b"ok\n"
os.write(1, READY)
buffer = b""
def have(count):
    global buffer
    while len(buffer) < count:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            sys.exit(0)
        buffer += chunk
while True:
    have(PREFIX.size)
    (header_size,) = PREFIX.unpack_from(buffer)
    have(PREFIX.size + header_size)
    header = marshal.loads(buffer[PREFIX.size : PREFIX.size + header_size])
    end = PREFIX.size + header_size + header["child"] + header["stdin"] + sum(size for _, size in header["files"])
    have(end)
    buffer = buffer[end:]
    os.write(1, reply)
"""


class InstantLauncher:
    """Workers that answer every request at once with `ok` (they run nothing): the host's side alone."""

    name = "instant"
    isolation = Isolation.PROCESS  # (none: it runs nothing)
    sigkill_means_oom = False
    extra_processes = 0

    def start(self, cpu: int | None = None) -> WorkerChannel:
        command = [sys.executable, "-c", INSTANT_WORKER, str(len(WORKER_SOURCE))]
        return PipeChannel(subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE))

    def close(self) -> None:
        """Nothing beyond the workers."""


def batch(pool: WarmPool, runs: int) -> None:
    results = pool.map([REQUEST] * runs)
    assert all(result.stdout == b"ok\n" for result in results)


def threads(pool: WarmPool, runs: int) -> None:
    def run_one() -> None:
        assert pool.run(REQUEST).stdout == b"ok\n"

    with concurrent.futures.ThreadPoolExecutor(pool.config.workers) as executor:
        list(executor.map(lambda _: run_one(), range(runs)))


def measure(drive: Callable[[WarmPool, int], None], pool: WarmPool, runs: int) -> tuple[float, float]:
    """Runs per second and this process's CPU ms per run."""
    drive(pool, max(runs // 20, 20))  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    drive(pool, runs)
    return runs / (time.perf_counter() - wall), 1000 * (time.process_time() - cpu) / runs


def rows_for(pool: WarmPool, label: str, runs: int, rounds: int) -> list[tuple[str, str, float, float]]:
    found: dict[str, list[tuple[float, float]]] = {"one batch (map)": [], "a thread per worker (run)": []}
    for _ in range(rounds):
        found["one batch (map)"].append(measure(batch, pool, runs))
        found["a thread per worker (run)"].append(measure(threads, pool, runs))
    return [
        (
            label,
            how,
            statistics.median(rate for rate, _ in figures),
            statistics.median(cpu for _, cpu in figures),
        )
        for how, figures in found.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10000, help="runs per round against instant workers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=15, help="instant workers")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with WarmPool(InstantLauncher(), PoolConfig(workers=args.workers, pin_workers=False)).start() as pool:
        rows = rows_for(pool, f"{args.workers} instant workers", args.runs, args.rounds)
    real_runs = max(args.runs // 5, 200)
    with bwrap_pool() as pool:
        rows += rows_for(pool, f"bwrap pool, {pool.config.workers} workers", real_runs, args.rounds)
    print(
        f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; runs per round {args.runs} (real pool "
        f"{real_runs}), rounds {args.rounds}; load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    print(f"{'workers':28s} {'driven by':28s} {'runs/s':>9s} {'host CPU ms/run':>16s} {'rate vs threads':>16s}")
    for index, (label, how, rate, cpu) in enumerate(rows):
        versus = rate / rows[index - index % 2 + 1][2]
        print(f"{label:28s} {how:28s} {rate:9.0f} {cpu:16.3f} {versus:15.2f}x")


if __name__ == "__main__":
    main()
