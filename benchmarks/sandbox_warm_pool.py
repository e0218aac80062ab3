"""Claim: the warm pool runs short Python programs >= 10x faster than one fresh `python -I` subprocess per run.

Side by side in one run, on the same HumanEval-style program (a function plus its asserts):
- baseline: a fresh `python3 -I main.py` subprocess per run (no isolation at all), serial and one per core;
- `bwrap`: a fresh bubblewrap sandbox per run;
- `pool`: the bubblewrap warm pool (one worker, then one per core);
- `docker`: the Docker warm pool, when an engine answers.
Prints runs per second and each one's ratio to the baseline at the same concurrency.

Run: .venv/bin/python benchmarks/sandbox_warm_pool.py [--runs N]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from reflectgym.sandboxes import BwrapSandbox, ExecRequest, PoolConfig, bwrap_pool

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
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def fresh_subprocess(work: Path) -> None:
    """The baseline: a new interpreter per run, in a temp dir, no isolation."""
    done = subprocess.run([PYTHON, "-I", "main.py"], cwd=work, capture_output=True, timeout=30, check=False)
    assert done.stdout == b"ok\n", done.stderr


def rate(run_one: Callable[[], object], runs: int, concurrency: int) -> float:
    """Runs per second of `run_one`, `concurrency` at a time, after a short warm-up."""
    for _ in range(3):
        run_one()
    started = time.perf_counter()
    if concurrency == 1:
        for _ in range(runs):
            run_one()
    else:
        with concurrent.futures.ThreadPoolExecutor(concurrency) as executor:
            list(executor.map(lambda _: run_one(), range(runs)))
    return runs / (time.perf_counter() - started)


def checked(sandbox_run: Callable[[ExecRequest], object]) -> Callable[[], None]:
    def run_one() -> None:
        result = sandbox_run(REQUEST)
        assert getattr(result, "stdout", None) == b"ok\n", result

    return run_one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400, help="runs per measurement")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "main.py").write_text(PROGRAM)
        for concurrency in sorted({1, cores}):
            rows.append(
                (
                    "fresh python -I subprocess (baseline)",
                    concurrency,
                    rate(lambda: fresh_subprocess(work), args.runs // 2, concurrency),
                )
            )
    bwrap = BwrapSandbox()
    for concurrency in sorted({1, cores}):
        rows.append(
            ("bwrap, fresh sandbox per run", concurrency, rate(checked(bwrap.run), args.runs // 4, concurrency))
        )
    for workers in sorted({1, cores}):
        with bwrap_pool(PoolConfig(workers=workers)) as pool:
            rows.append(("pool (bwrap warm workers)", workers, rate(checked(pool.run), args.runs, workers)))
    try:
        from reflectgym.sandboxes.docker_pool import docker_pool

        for workers in sorted({1, cores}):
            with docker_pool(PoolConfig(workers=workers)) as pool:
                rows.append(("docker (warm containers)", workers, rate(checked(pool.run), args.runs, workers)))
    except Exception as error:  # no engine: say so and report the rest
        print(f"docker: skipped ({error})")
    baseline = {c: r for name, c, r in rows if name.startswith("fresh")}
    print(
        f"machine: {os.cpu_count()} cores, {sys.platform}, python {sys.version.split()[0]}; runs per row ~{args.runs}"
    )
    print(f"{'backend':40s} {'conc':>4s} {'runs/s':>9s} {'ms/run':>8s} {'vs baseline':>12s}")
    for name, concurrency, per_second in rows:
        ratio = per_second / baseline[concurrency]
        print(f"{name:40s} {concurrency:4d} {per_second:9.1f} {1000 / per_second:8.2f} {ratio:11.2f}x")


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    main()
