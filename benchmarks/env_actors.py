"""What envs in Ray actors (`env_actors`, `reflectgym.distributed.remote_env_factory`) cost and gain against the
same envs in threads of one process, on one machine. Their purpose is more machines than one, which this does not
measure; it says what moving the envs out costs where one machine would do.

Side by side in one run, the rollout engine plays the same episodes with a scripted policy (instant, so the figure
is the envs' time alone) on `num_envs` local envs (threads of this process) and on `num_envs` env actors:

* `math`: `reflectgym/Math-v0` on distinct factoring problems whose reply is the expanded polynomial, so every
  answer goes down the symbolic path (math-verify workers: a pool per process, so one per actor). Episodes per
  second.
* `sokoban` (the price of a call): `reflectgym/Sokoban-6x6-1-v0`, a scripted walk of 40 moves, a few microseconds
  each in process. Steps per second and the milliseconds a call through an actor adds.

Each setting runs once to warm up (actors started, SymPy loaded) and then `--rounds` times on fresh seeds, the two
settings alternating. Prints the medians and the ratios.

Run: .venv/bin/python benchmarks/env_actors.py [--envs 4] [--episodes 48] [--rounds 3] [--cpus 0.5]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import ray
from symbolic_answers import ExpandedAnswer, factoring_tasks  # (beside this script)

import reflectgym  # noqa: F401  (registers the envs)
from reflectgym.agents import Generation, RolloutConfig, RolloutEngine, Sampling
from reflectgym.distributed import EnvActorConfig, remote_env_factory

MATH = "reflectgym/Math-v0"
SOKOBAN = "reflectgym/Sokoban-6x6-1-v0"


class Walker:
    """Cycles through the four moves (episodes never solve, so each runs its 40 turns)."""

    name = "walker"

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        return [Generation(("up", "left", "down", "right")[len(c) % 4]) for c in conversations]


def timed_run(policy: Any, make_env: Callable[[], gym.Env[Any, Any]], env_id: str, rollout: RolloutConfig,
              seeds: Sequence[int]) -> tuple[float, int, int]:  # fmt: skip
    """Seconds, episodes and env steps of one engine run; the episodes must all have run."""
    started = time.perf_counter()
    trajectories = RolloutEngine(policy, make_env, env_id, rollout).collect(seeds)
    seconds = time.perf_counter() - started
    errors = [t.metadata["error"] for t in trajectories if "error" in t.metadata]
    if errors:
        raise RuntimeError(f"{len(errors)} episodes failed: {errors[0]}")
    return seconds, len(trajectories), sum(len(t.turns) for t in trajectories)


def compare(name: str, policy: Any, env_id: str, kwargs: dict[str, Any], rollout: RolloutConfig, episodes: int,
            rounds: int, config: EnvActorConfig) -> dict[str, list[tuple[float, int, int]]]:  # fmt: skip
    factories = {
        "threads": lambda: gym.make(env_id, **kwargs),
        "actors": remote_env_factory(env_id, kwargs, config, max_envs=rollout.num_envs),
    }
    results: dict[str, list[tuple[float, int, int]]] = {key: [] for key in factories}
    for round_ in range(rounds + 1):
        for key, make_env in factories.items():
            seeds = range(round_ * episodes, (round_ + 1) * episodes)
            result = timed_run(policy, make_env, env_id, rollout, seeds)
            if round_ > 0:  # (round 0 warms up)
                results[key].append(result)
                print(f"{name} {key:8s} round {round_}: {result[0]:.2f} s, {result[1]} episodes, {result[2]} steps")
    return results


def median_rate(results: list[tuple[float, int, int]], index: int) -> float:
    return statistics.median(result[index] / result[0] for result in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--envs", type=int, default=4, help="envs in flight (threads, or actors) (default: 4)")
    parser.add_argument("--episodes", type=int, default=48, help="math episodes per round (default: 48)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per setting (default: 3)")
    parser.add_argument("--cpus", type=float, default=0.5, help="CPUs Ray reserves per env actor (default: 0.5)")
    args = parser.parse_args()
    ray.init(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    config = EnvActorConfig(num_cpus=args.cpus)
    rollout = RolloutConfig(num_envs=args.envs, max_turns=1, system_prompt="")
    tasks = factoring_tasks(args.episodes * (args.rounds + 1), seed=0)
    kwargs = {"tasks": tasks, "max_attempts": 1}
    math_results = compare("math", ExpandedAnswer(), MATH, kwargs, rollout, args.episodes, args.rounds, config)
    walk = RolloutConfig(num_envs=args.envs, max_turns=40, system_prompt="")
    walk_results = compare("sokoban", Walker(), SOKOBAN, {}, walk, args.envs * 2, args.rounds, config)
    print()
    threads, actors = median_rate(math_results["threads"], 1), median_rate(math_results["actors"], 1)
    print(f"math, symbolic answers: threads {threads:.1f} episodes/s, actors {actors:.1f} episodes/s: "
          f"{actors / threads:.2f}x")  # fmt: skip
    threads, actors = median_rate(walk_results["threads"], 2), median_rate(walk_results["actors"], 2)
    added_ms = 1000 * args.envs * (1 / actors - 1 / threads)
    print(f"sokoban steps: threads {threads:.0f}/s, actors {actors:.0f}/s ({actors / threads:.2f}x; "
          f"about {added_ms:.1f} ms more per call through an actor with {args.envs} in flight)")  # fmt: skip
    ray.shutdown()


if __name__ == "__main__":
    main()
