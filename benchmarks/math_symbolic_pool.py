"""Claim: a pool of math-verify workers (`SymbolicVerifier(workers=...)`, by default one per core up to 4) plays
episodes of math envs stepped from threads of one process faster than one worker (the baseline: every symbolic
check of the process waits for the one before it).

Side by side in one run, the rollout engine plays the same episodes of `reflectgym/Math-v0` with a scripted policy
(instant, so the figure is the envs' time alone) on `num_envs` local envs (threads of this process), first with
`symbolic_workers=1`, then with the pool. The problems are distinct cubics to factor and every reply is the
expanded polynomial, so every answer goes down the symbolic path (math-verify in a SymPy worker) and is right.

Each setting runs once to warm up (its workers started, SymPy loaded) and then `--rounds` times on fresh seeds,
the two settings alternating (and taking turns going first). Prints the medians and the ratio.

Run: .venv/bin/python benchmarks/math_symbolic_pool.py [--envs 8] [--workers N] [--episodes 48] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Sequence

import gymnasium as gym
from symbolic_answers import ExpandedAnswer, factoring_tasks  # (beside this script)

import reflectgym  # noqa: F401  (registers the envs)
from reflectgym.agents import RolloutConfig, RolloutEngine
from reflectgym.envs.math.symbolic import default_workers, shared_verifier

MATH = "reflectgym/Math-v0"
TIMEOUT_S = 3.0  # (MathEnv's default)


def timed_run(workers: int, tasks: list[dict[str, str]], rollout: RolloutConfig, seeds: Sequence[int]) -> float:
    """Episodes per second of one engine run; every episode must have run and been judged right."""
    kwargs = {"tasks": tasks, "max_attempts": 1, "timeout_s": TIMEOUT_S, "symbolic_workers": workers}
    make_env = lambda: gym.make(MATH, **kwargs)  # noqa: E731
    started = time.perf_counter()
    trajectories = RolloutEngine(ExpandedAnswer(), make_env, MATH, rollout).collect(seeds)
    seconds = time.perf_counter() - started
    errors = [t.metadata["error"] for t in trajectories if "error" in t.metadata]
    if errors:
        raise RuntimeError(f"{len(errors)} episodes failed: {errors[0]}")
    wrong = sum(t.total_reward != 1.0 for t in trajectories)
    if wrong:
        raise RuntimeError(f"{wrong} answers not verified (a symbolic check timed out?)")
    return len(trajectories) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--envs", type=int, default=8, help="envs in flight (the rollout engine's default: 8)")
    parser.add_argument(
        "--workers", type=int, default=default_workers(), help="pool size (default: a core each, up to 4)"
    )
    parser.add_argument("--episodes", type=int, default=48, help="episodes per round (default: 48)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per setting (default: 3)")
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; {args.envs} envs in threads")
    rollout = RolloutConfig(num_envs=args.envs, max_turns=1, system_prompt="")
    tasks = factoring_tasks(args.episodes * (args.rounds + 1), seed=0)
    settings = {"1 worker": 1, f"{args.workers} workers": args.workers}
    rates: dict[str, list[float]] = {name: [] for name in settings}
    for round_ in range(args.rounds + 1):
        seeds = range(round_ * args.episodes, (round_ + 1) * args.episodes)
        order = list(settings.items())
        for name, workers in order if round_ % 2 == 0 else order[::-1]:
            rate = timed_run(workers, tasks, rollout, seeds)
            if round_ > 0:  # (round 0 warms up)
                rates[name].append(rate)
                print(f"{name:10s} round {round_}: {rate:.1f} episodes/s")
    for name, workers in settings.items():
        verifier = shared_verifier(TIMEOUT_S, workers)
        print(f"{name}: {verifier.started} started, {verifier.restarts} restarts")
    baseline, pool = (statistics.median(rates[name]) for name in settings)
    print(f"\nmath, symbolic answers, {args.envs} envs in threads: 1 worker {baseline:.1f} episodes/s, "
          f"{args.workers} workers {pool:.1f} episodes/s: {pool / baseline:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
