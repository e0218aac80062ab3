"""Claim: the warm pool's cost per run is within about 2x of a bare fork server, the floor of fork-per-run in Python.

Where the pool's time goes is mostly forking a warm interpreter and the pages the child then copies, not the
isolation. This measures, side by side in one run and on the same programs as `sandbox_warm_pool.py` (a distinct
variant every run, for the fork servers too):
- baseline: a fresh `python3 -I main.py` subprocess per run;
- fork server: the same interpreter, preloaded and rehearsed like a pool worker, that forks a standby ahead of
  each request and runs the program in it. No namespaces, no limits, no clean-up, no checks: a lower bound;
- fork server in bubblewrap: the same server as pid 1 of a sandbox with the pool's namespaces, mounts and seccomp
  filter (still no limits, clean-up or checks): what the isolation itself costs a fork server;
- pool: the bubblewrap warm pool (the rlimits, the checks, the kill-and-reap and the wipe after every run), with
  its default number of workers when every core is to be busy.
Each at concurrency 1 and one per core (fork servers then kept on a CPU each, like the pool's workers). Rows report
wall ms per run and CPU ms per run over the whole machine (`/proc/stat`: every process, the host's included).

Run: .venv/bin/python benchmarks/sandbox_fork_floor.py [--runs N]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import signal
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sandbox_warm_pool import PROGRAM, PYTHON, checked, pool_workers, sample_request

from reflectgym.sandboxes import Limits, PoolConfig, bwrap_pool
from reflectgym.sandboxes.bwrap import BwrapConfig, namespace_args, spawn_identity
from reflectgym.sandboxes.pool import DEFAULT_PRELOAD
from reflectgym.sandboxes.seccomp import bwrap_seccomp

LENGTH = struct.Struct("<I")
BASELINE = "fresh python -I subprocess (baseline)"
FORK_SERVER = r"""
import gc, io, os, struct, sys
LENGTH = struct.Struct("<I")
for name in sys.argv[1].split(","):
    __import__(name)
if sys.argv[2]:
    os.sched_setaffinity(0, {int(sys.argv[2])})

def read_exactly(count):
    data = b""
    while len(data) < count:
        chunk = os.read(0, count - len(data))
        if not chunk:
            os._exit(0)
        data += chunk
    return data

def run(source):
    sys.stdout = io.StringIO()
    exec(compile(source, "/tmp/main.py", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    output, sys.stdout = sys.stdout.getvalue().encode(), sys.__stdout__
    return output

def standby(taken):
    (size,) = LENGTH.unpack(read_exactly(LENGTH.size))
    source = read_exactly(size)
    os.write(taken, b"T")
    output = run(source)
    os.write(1, LENGTH.pack(len(output)) + output)
    os._exit(0)

rehearsal = read_exactly(LENGTH.unpack(read_exactly(LENGTH.size))[0])
for _ in range(40):
    run(rehearsal)
gc.collect()
gc.freeze()
taken_r, taken = os.pipe()
following = 0
while True:
    pid = os.fork()
    if pid == 0:
        standby(taken)
    if following:
        os.waitpid(following, 0)
    following = pid
    if os.read(taken_r, 1) != b"T":
        break
"""
"""A warm fork server (standard library only): pre-forks a standby that reads one request from stdin, runs it and
answers on stdout itself; the server forks the next standby as soon as one has taken its request."""


class ForkServer:
    """The host side of one fork server subprocess, optionally pid 1 of a bubblewrap sandbox like a pool worker's."""

    def __init__(self, cpu: int | None, sandboxed: bool = False) -> None:
        server = [PYTHON, "-I", "-c", FORK_SERVER, ",".join(DEFAULT_PRELOAD), "" if cpu is None else str(cpu)]
        config = BwrapConfig(python=PYTHON)
        uid, gid = spawn_identity(config) if sandboxed else (None, None)
        with bwrap_seccomp() as (seccomp_args, seccomp_fds):
            if sandboxed:
                isolation = namespace_args(config, network=False, disk_bytes=Limits().disk_bytes)
                server = [*isolation, "--as-pid-1", *seccomp_args, "--", *server]
            self.proc = subprocess.Popen(
                server,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                start_new_session=True,
                pass_fds=seccomp_fds if sandboxed else (),
                user=uid,
                group=gid,
                extra_groups=[] if uid is not None else None,
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self.lock = threading.Lock()
        os.write(self.stdin, LENGTH.pack(len(PROGRAM)) + PROGRAM.encode())

    def run(self, source: bytes) -> bytes:
        with self.lock:
            os.write(self.stdin, LENGTH.pack(len(source)) + source)
            (size,) = LENGTH.unpack(self._read(LENGTH.size))
            return self._read(size)

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = os.read(self.stdout, count - len(data))
            if not chunk:
                raise RuntimeError("the fork server exited")
            data += chunk
        return data

    def close(self) -> None:
        """Kill the server and its standby (its process group)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot."""
    with open("/proc/stat") as handle:
        fields = [int(value) for value in handle.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def measure(run_one: Callable[[int], object], runs: int, concurrency: int) -> tuple[float, float]:
    """(wall ms per run, machine CPU ms per run) of `run_one(slot)`, `concurrency` slots at a time."""
    for index in range(20):
        run_one(index % concurrency)
    started, cpu = time.perf_counter(), busy_seconds()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as executor:
        list(executor.map(lambda index: run_one(index % concurrency), range(runs)))
    return 1000 * (time.perf_counter() - started) / runs, 1000 * (busy_seconds() - cpu) / runs


def rows_at(concurrency: int, work: Path, runs: int) -> list[tuple[str, int, float, float]]:
    """The baseline, fork server and pool rows at one concurrency."""

    def fresh(_slot: int) -> None:
        done = subprocess.run([PYTHON, "-I", "main.py"], cwd=work, capture_output=True, check=False)
        assert done.stdout == b"ok\n", done.stderr

    rows = [(BASELINE, concurrency, *measure(fresh, runs // 10, concurrency))]
    for name, sandboxed in (("fork server, no isolation (floor)", False), ("fork server in bubblewrap", True)):
        servers = [ForkServer(slot if concurrency > 1 else None, sandboxed) for slot in range(concurrency)]
        try:

            def forked(slot: int, servers: list[ForkServer] = servers) -> None:
                assert servers[slot].run(sample_request().files["main.py"]) == b"ok\n"

            rows.append((name, concurrency, *measure(forked, runs, concurrency)))
        finally:
            for server in servers:
                server.close()
    workers = pool_workers(concurrency, os.cpu_count() or 1)
    with bwrap_pool(PoolConfig(workers=workers)) as pool:
        run_pooled = checked(pool.run)
        rows.append(("pool (bwrap warm workers)", concurrency, *measure(lambda _slot: run_pooled(), runs, workers)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="runs per row (a tenth of it for the baseline)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "main.py").write_text(PROGRAM)
        rows = [row for concurrency in sorted({1, cores}) for row in rows_at(concurrency, Path(tmp), args.runs)]
    print(
        f"machine: {cores} cores, {PYTHON}; runs per row {args.runs} (baseline {args.runs // 10}); "
        f"load average before {load_before:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    print(f"{'backend':40s} {'conc':>4s} {'ms/run':>8s} {'cpu ms/run':>11s} {'vs baseline':>12s}")
    baseline = {concurrency: wall for name, concurrency, wall, _ in rows if name == BASELINE}
    for name, concurrency, wall, cpu in rows:
        print(f"{name:40s} {concurrency:4d} {wall:8.2f} {cpu:11.2f} {baseline[concurrency] / wall:11.2f}x")


if __name__ == "__main__":
    main()
