"""Rollout engine overhead per env step, excluding generation and env time (target: <= 1 ms on CPU).

Baseline, in the same run: a plain sequential loop (`reset`, then policy call and `env.step` in the caller, as
`run_episode` does) over the same instant policy and the same env; its overhead is wall time less policy and env
seconds. The engine's envs step in worker threads that overlap it, so its overhead is the CPU time of the thread
running the engine less the policy's seconds: threads, futures, batching, trajectory and turn records.

Run: python benchmarks/agents_rollout_overhead.py [--episodes N] [--num-envs K]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym

import reflectgym  # noqa: F401  (registers the envs)
from reflectgym.agents import Generation, RolloutConfig, RolloutEngine, Sampling

ENV = "reflectgym/Sokoban-v0"
MOVES = ("up", "left", "down", "right")


class InstantPolicy:
    """Answers a fixed move at once, timing itself."""

    name = "instant"

    def __init__(self) -> None:
        self.seconds = 0.0
        self.turn = 0

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        start = time.perf_counter()
        out = []
        for _ in conversations:
            self.turn += 1
            out.append(Generation(MOVES[self.turn % 4]))
        self.seconds += time.perf_counter() - start
        return out


class TimedEnv(gym.Wrapper[str, str, str, str]):
    """Counts the seconds spent inside reset and step."""

    seconds = 0.0

    def reset(self, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.env.reset(**kwargs)
        finally:
            TimedEnv.seconds += time.perf_counter() - start

    def step(self, action: str) -> Any:
        start = time.perf_counter()
        try:
            return self.env.step(action)
        finally:
            TimedEnv.seconds += time.perf_counter() - start


def baseline(episodes: int, max_turns: int) -> tuple[float, int]:
    """Sequential loop: wall seconds minus policy and env seconds, and the steps played."""
    policy, env = InstantPolicy(), TimedEnv(gym.make(ENV))
    TimedEnv.seconds = 0.0
    steps = 0
    start = time.perf_counter()
    for seed in range(episodes):
        observation, _ = env.reset(seed=seed)
        messages = [{"role": "user", "content": observation}]
        for _ in range(max_turns):
            [reply] = policy.generate([messages], Sampling())
            observation, _, terminated, truncated, _ = env.step(reply.text)
            messages += [{"role": "assistant", "content": reply.text}, {"role": "user", "content": observation}]
            steps += 1
            if terminated or truncated:
                break
    wall = time.perf_counter() - start
    return wall - policy.seconds - TimedEnv.seconds, steps


def engine(episodes: int, max_turns: int, num_envs: int) -> tuple[float, int]:
    """The rollout engine: CPU seconds of the engine's thread minus policy seconds, and the steps played."""
    policy = InstantPolicy()
    TimedEnv.seconds = 0.0
    config = RolloutConfig(num_envs=num_envs, max_turns=max_turns)
    rollout = RolloutEngine(policy, lambda: TimedEnv(gym.make(ENV)), ENV, config)
    cpu = time.thread_time()
    trajectories = rollout.collect(range(episodes))
    cpu = time.thread_time() - cpu
    steps = sum(len(t.turns) for t in trajectories)
    # Env calls run in worker threads and overlap the engine, so wall time minus env time is not meaningful;
    # the engine's own cost is the CPU time of the thread that runs it, less the policy's.
    return cpu - policy.seconds, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=64, help="episodes per side (default: 64)")
    parser.add_argument("--max-turns", type=int, default=40, help="turns per episode (default: 40)")
    parser.add_argument("--num-envs", type=int, default=8, help="engine envs in flight (default: 8)")
    args = parser.parse_args()
    engine(4, 4, 2)  # warm-up: imports, first env
    base_seconds, base_steps = baseline(args.episodes, args.max_turns)
    engine_seconds, engine_steps = engine(args.episodes, args.max_turns, args.num_envs)
    base_ms = 1000 * base_seconds / base_steps
    engine_ms = 1000 * engine_seconds / engine_steps
    print(f"env {ENV}, {args.episodes} episodes x {args.max_turns} turns, engine with {args.num_envs} envs")
    print(f"sequential loop (baseline): {base_ms:.3f} ms overhead per step over {base_steps} steps")
    print(f"rollout engine:             {engine_ms:.3f} ms overhead per step over {engine_steps} steps")
    print(f"engine / baseline overhead: {engine_ms / max(base_ms, 1e-9):.1f}x   target: engine <= 1 ms per step")
    print("PASS" if engine_ms <= 1.0 else "FAIL")


if __name__ == "__main__":
    main()
