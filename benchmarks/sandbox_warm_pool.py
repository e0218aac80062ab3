"""Claim: the warm pool runs short Python programs >= 10x faster than one fresh `python -I` subprocess per run.

Side by side in one run, on a HumanEval-style program (a function plus its asserts), made distinct for every run by
a last comment line, as an RL batch's samples are (a pool's worker keeps its latest programs compiled: one program
repeated would flatter it):
- baseline: a fresh `python3 -I main.py` subprocess per run (no isolation at all), serial and one per core;
- `bwrap`: a fresh bubblewrap sandbox per run;
- `pool`: the bubblewrap warm pool: one worker called serially (`run`), then with every core busy the default number
  of workers for the machine (one per core, less one left to this process on more than 8 cores) given the runs as
  one batch (`map`, which one thread drives), and beside it the same workers called from as many threads (`run`);
- `docker`: the Docker warm pool, sized and driven the same way, when an engine answers.
The baseline and the pool alternate for `--rounds` rounds at each concurrency, so a change in the machine's speed
(another job starting) hits both; each row reports the median round, and the pool's ratio in each round (to the
baseline of the same round) follows the table. Prints the load average before and after, runs per second and each
row's ratio to the baseline at the same concurrency.

Run: .venv/bin/python benchmarks/sandbox_warm_pool.py [--runs N] [--rounds R]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from reflectgym.sandboxes import BwrapSandbox, ExecRequest, PoolConfig, WarmPool, bwrap_pool

PROGRAM = """
from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2 and abs(elem - elem2) < threshold:
                return True
    return False


assert has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) is True
assert has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) is False
assert has_close_elements([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) is True
assert has_close_elements([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) is True
print("ok")
"""
REQUEST = ExecRequest(command=("python3", "main.py"), files={"main.py": PROGRAM.encode()})
"""The program alone, the same every time."""
SAMPLES = itertools.count()


def sample_request() -> ExecRequest:
    """The program with a last comment line no other run of this process had."""
    source = f"{PROGRAM}# sample {next(SAMPLES)}\n"
    return ExecRequest(command=("python3", "main.py"), files={"main.py": source.encode()})


PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
WARM_UP_RUNS = 20
"""Runs before each measurement (a pool is meant to be warm; the baseline gets the same)."""
BASELINE = "fresh python -I subprocess (baseline)"
POOL = "pool (bwrap warm workers)"
POOL_BATCH = "pool (bwrap warm workers), one batch"
POOL_THREADS = "pool, run from a thread per worker"


def fresh_subprocess(work: Path) -> None:
    """The baseline: a new interpreter per run, in a temp dir, no isolation."""
    done = subprocess.run([PYTHON, "-I", "main.py"], cwd=work, capture_output=True, timeout=30, check=False)
    assert done.stdout == b"ok\n", done.stderr


def pool_workers(concurrency: int, cores: int) -> int:
    """Workers of a pool row: one alone, else the pool's default for this machine when every core is to be busy
    (it may leave a core to this process, which feeds the workers: see `default_workers`)."""
    return 1 if concurrency == 1 else PoolConfig().workers if concurrency == cores else concurrency


def rate(run_one: Callable[[], object], runs: int, concurrency: int) -> float:
    """Runs per second of `run_one`, `concurrency` at a time, after a warm-up."""
    for _ in range(WARM_UP_RUNS):
        run_one()
    started = time.perf_counter()
    if concurrency == 1:
        for _ in range(runs):
            run_one()
    else:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as executor:
            list(executor.map(lambda _: run_one(), range(runs)))
    return runs / (time.perf_counter() - started)


def batch_rate(pool: WarmPool, runs: int) -> float:
    """Runs per second of the pool given `runs` requests as one batch (`map`), after a warm-up."""
    for _ in range(WARM_UP_RUNS):
        checked(pool.run)()
    requests = [sample_request() for _ in range(runs)]
    started = time.perf_counter()
    results = pool.map(requests)
    elapsed = time.perf_counter() - started
    assert all(result.stdout == b"ok\n" for result in results), next(r for r in results if r.stdout != b"ok\n")
    return runs / elapsed


def pool_rate(pool: WarmPool, runs: int, concurrency: int) -> float:
    """The pool's headline rate: serial `run` calls alone, a batch with every core busy."""
    return rate(checked(pool.run), runs, 1) if concurrency == 1 else batch_rate(pool, runs)


def checked(sandbox_run: Callable[[ExecRequest], object]) -> Callable[[], None]:
    def run_one() -> None:
        result = sandbox_run(sample_request())
        assert getattr(result, "stdout", None) == b"ok\n", result

    return run_one


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=400, help="pool runs per round (a quarter of it for the baseline)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating baseline/pool rounds per concurrency")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()
    rows: list[tuple[str, int, float]] = []
    round_ratios: dict[int, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "main.py").write_text(PROGRAM)
        for concurrency in sorted({1, cores}):
            workers = pool_workers(concurrency, cores)
            baseline, pooled, threaded = [], [], []
            with bwrap_pool(PoolConfig(workers=workers)) as pool:
                for _ in range(args.rounds):
                    baseline.append(rate(lambda: fresh_subprocess(work), args.runs // 4, concurrency))
                    pooled.append(pool_rate(pool, args.runs, concurrency))
                    if concurrency > 1:
                        threaded.append(rate(checked(pool.run), args.runs, workers))
            round_ratios[concurrency] = [pool / base for pool, base in zip(pooled, baseline, strict=True)]
            rows += [
                (BASELINE, concurrency, statistics.median(baseline)),
                (POOL if concurrency == 1 else POOL_BATCH, concurrency, statistics.median(pooled)),
            ]
            if threaded:
                rows.append((POOL_THREADS, concurrency, statistics.median(threaded)))
    bwrap = BwrapSandbox()
    for concurrency in sorted({1, cores}):
        rows.append(
            ("bwrap, fresh sandbox per run", concurrency, rate(checked(bwrap.run), args.runs // 4, concurrency))
        )
    try:
        from reflectgym.sandboxes.docker_pool import docker_pool

        for concurrency in sorted({1, cores}):
            workers = pool_workers(concurrency, cores)
            with docker_pool(PoolConfig(workers=workers)) as pool:
                rows.append(("docker (warm containers)", concurrency, pool_rate(pool, args.runs, concurrency)))
    except Exception as error:  # no engine: say so and report the rest
        print(f"docker: skipped ({error})")
    baseline_rate = {c: r for name, c, r in rows if name == BASELINE}
    print(
        f"machine: {os.cpu_count()} cores, {sys.platform}, python {sys.version.split()[0]}; pool runs per round "
        f"{args.runs}, rounds {args.rounds}; load average before {load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}"
    )
    print(f"pools with every core busy: {pool_workers(cores, cores)} workers (the default here)")
    print(f"{'backend':44s} {'conc':>4s} {'runs/s':>9s} {'ms/run':>8s} {'vs baseline':>12s}")
    headline = (BASELINE, POOL, POOL_BATCH)
    for name, concurrency, per_second in sorted(
        rows, key=lambda row: headline.index(row[0]) if row[0] in headline else 3
    ):
        ratio = per_second / baseline_rate[concurrency]
        print(f"{name:44s} {concurrency:4d} {per_second:9.1f} {1000 / per_second:8.2f} {ratio:11.2f}x")
    for concurrency, ratios in round_ratios.items():
        print(
            f"pool against the baseline, round by round, concurrency {concurrency}: "
            + " ".join(f"{r:.2f}x" for r in ratios)
        )


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    main()
