"""Sokoban speed: level generation, one env step, and the solver on Boxoban levels, against recorded baselines.

Baselines (recorded in issue 3, measured on this kind of machine — 2 cores, Debian 12 — with gym-sokoban 0.0.6
and GEM's Sokoban, whose generator is a fork of it): gym-sokoban `reset` of a 10x10 room with 3 boxes, median
452 ms (max 8.9 s); 10x10 with 4 boxes, median 2.78 s (max 23 s); GEM: 10x10/4 reset 2.64 s, a text step 22-31 µs.
They are stated here, not re-run: gym-sokoban needs an old gym and takes minutes per sample at these sizes.

Targets (issue 3): 10x10/3 level <= 5 ms median, 10x10/4 <= 10 ms median, no multi-second tail; a step <= 12 µs
median; the solver solves >= 95 % of Boxoban `unfiltered` levels within 10 s each.

Usage: python benchmarks/sokoban_speed.py [--levels N] [--boxoban-levels N] [--boxoban FILE] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from reflectgym.envs.sokoban.env import SokobanEnv
from reflectgym.envs.sokoban.generator import generate_level
from reflectgym.envs.sokoban.level import load_levels
from reflectgym.envs.sokoban.solver import SokobanSolver

BOXOBAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "boxoban" / "unfiltered" / "train" / "000.txt"
GYM_SOKOBAN_MEDIAN_MS = {3: 452.0, 4: 2780.0}
GEM_STEP_US = 22.0


def bench_generator(count: int) -> None:
    print("## Level generation (generate + solver check), ms per level")
    for boxes, min_pushes in ((3, None), (4, None), (4, 12)):
        rng = np.random.default_rng(0)
        times = []
        for _ in range(count):
            start = time.perf_counter()
            generate_level(rng, (10, 10), boxes, min_pushes=min_pushes, max_moves=120)
            times.append((time.perf_counter() - start) * 1000)
        median = statistics.median(times)
        baseline = GYM_SOKOBAN_MEDIAN_MS[boxes]
        label = f"10x10, {boxes} boxes, min pushes {min_pushes or 2 * boxes}"
        print(
            f"{label:38s} median {median:6.2f}  p99 {np.percentile(times, 99):6.2f}  max {max(times):6.2f}"
            f"   gym-sokoban median {baseline:.0f} ms -> {baseline / median:,.0f}x"
        )


def bench_step(count: int) -> None:
    print("## One step (parse + move + feedback + observation text + info), µs")
    for size, boxes, feedback in (((6, 6), 2, "diagnostic"), ((6, 6), 2, "binary"), ((10, 10), 4, "diagnostic")):
        env = SokobanEnv(size=size, num_boxes=boxes, max_steps=None, feedback=feedback)
        env.reset(seed=0)
        moves = ["up", "left", "down", "right", "Action: up", "<answer>left</answer>", "wait", "down"]
        times = []
        for index in range(count):
            action = moves[index % len(moves)]
            start = time.perf_counter_ns()
            *_, terminated, _, _ = env.step(action)
            times.append((time.perf_counter_ns() - start) / 1000)
            if terminated:
                env.reset(seed=index)
        median = statistics.median(times)
        print(
            f"{size[0]}x{size[1]}, {boxes} boxes, {feedback:10s} median {median:5.1f}  p99 "
            f"{np.percentile(times, 99):5.1f}   GEM {GEM_STEP_US:.0f} µs -> {GEM_STEP_US / median:.1f}x"
        )


def bench_solver(count: int, boxoban: Path) -> None:
    print(f"## Solver on Boxoban {boxoban.name}, 10 s per level")
    if not boxoban.is_file():
        print(f"skipped: {boxoban} is absent (boxoban-levels: unfiltered/train/000.txt; give it with --boxoban FILE)")
        return
    levels = load_levels(boxoban)[:count]
    if not levels:
        return
    times, solved, expanded = [], 0, []
    for level in levels:
        solution = SokobanSolver(level).solve(time_limit=10.0)
        times.append(solution.seconds)
        expanded.append(solution.expanded)
        solved += solution.solved
    share = 100 * solved / len(levels)
    median_ms = statistics.median(times) * 1000
    print(
        f"{solved}/{len(levels)} solved ({share:.1f} %), median {median_ms:.1f} ms, "
        f"p99 {np.percentile(times, 99) * 1000:.0f} ms, max {max(times):.2f} s, "
        f"median expanded {statistics.median(expanded):.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, default=500, help="generated levels per setting")
    parser.add_argument("--steps", type=int, default=20_000, help="steps per step setting")
    parser.add_argument("--boxoban-levels", type=int, default=1000, help="Boxoban levels to solve")
    parser.add_argument("--boxoban", type=Path, default=BOXOBAN, help="a Boxoban level file (default: shared data's)")
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.steps, args.boxoban_levels = 20, 500, 10
    bench_generator(args.levels)
    bench_step(args.steps)
    bench_solver(args.boxoban_levels, args.boxoban)


if __name__ == "__main__":
    main()
