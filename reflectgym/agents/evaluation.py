"""Evaluation: play episodes of an env with an agent, record trajectories, summarise.

An env that raises mid-episode (a bug, a dead browser) loses that episode only: it is recorded with the error
and the run goes on with a fresh env.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
from tqdm import tqdm

from reflectgym.agents.scripted import ScriptedAgent
from reflectgym.core.trajectory import Trajectory, Turn, write_trajectories


@dataclass(frozen=True)
class EvalSummary:
    """Aggregate results of an evaluation.

    Attributes:
        env_id: The env evaluated.
        agent: The agent's name.
        episodes: Episodes played (errored ones included).
        success_rate: Fraction of episodes whose task was solved.
        mean_reward: Mean total reward per episode.
        mean_turns: Mean turns per episode.
        errors: Episodes lost to an exception in the env or agent.
        seconds: Wall time of the whole evaluation.
    """

    env_id: str
    agent: str
    episodes: int
    success_rate: float
    mean_reward: float
    mean_turns: float
    errors: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def run_episode(
    env: gym.Env[Any, Any], agent: ScriptedAgent, seed: int, env_id: str, max_turns: int = 1000
) -> Trajectory:
    """Plays one episode; `max_turns` guards against envs without their own limit."""
    observation, info = env.reset(seed=seed)
    trajectory = Trajectory(
        env_id=env_id,
        task_id=info.get("task_id"),
        seed=seed,
        privileged=info.get("privileged"),
        metadata={"agent": agent.name},
    )
    agent.begin(env, observation, info)
    for _ in range(max_turns):
        action = agent.act(env, observation)
        next_observation, reward, terminated, truncated, info = env.step(action)
        trajectory.turns.append(
            Turn(
                observation=observation,
                action=action,
                reward=float(reward),
                feedback=info.get("feedback", ""),
                terminated=terminated,
                truncated=truncated,
                parse_error=info.get("parse_error"),
                verdict=info.get("verdict"),
            )
        )
        observation = next_observation
        if terminated or truncated:
            break
    trajectory.final_observation = observation
    return trajectory


def evaluate(
    make_env: Callable[[], gym.Env[Any, Any]],
    agent: ScriptedAgent,
    *,
    env_id: str,
    episodes: int = 10,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[EvalSummary, list[Trajectory]]:
    """Plays `episodes` episodes (seeds `seed`, `seed+1`, ...), writing JSONL as it goes when `out_dir` is set."""
    start = time.perf_counter()
    trajectories: list[Trajectory] = []
    errors = 0
    path = Path(out_dir) / "trajectories.jsonl" if out_dir is not None else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")
    env = make_env()
    bar = tqdm(range(episodes), desc=f"{env_id} [{agent.name}]", disable=not progress, leave=False)
    try:
        for episode in bar:
            try:
                trajectory = run_episode(env, agent, seed + episode, env_id)
            except Exception as error:  # one broken episode must not end the run
                errors += 1
                trajectory = Trajectory(
                    env_id=env_id,
                    task_id=None,
                    seed=seed + episode,
                    metadata={
                        "agent": agent.name,
                        "error": f"{type(error).__name__}: {error}",
                        "traceback": traceback.format_exc(limit=5),
                    },
                )
                env.close()
                env = make_env()
            trajectories.append(trajectory)
            if path is not None:
                write_trajectories(path, [trajectory], append=True)
            bar.set_postfix(success=f"{sum(t.success for t in trajectories) / len(trajectories):.2f}")
    finally:
        env.close()
    count = max(len(trajectories), 1)
    summary = EvalSummary(
        env_id=env_id,
        agent=agent.name,
        episodes=len(trajectories),
        success_rate=sum(t.success for t in trajectories) / count,
        mean_reward=sum(t.total_reward for t in trajectories) / count,
        mean_turns=sum(len(t.turns) for t in trajectories) / count,
        errors=errors,
        seconds=time.perf_counter() - start,
    )
    if out_dir is not None:
        (Path(out_dir) / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return summary, trajectories


def format_table(summaries: list[EvalSummary]) -> str:
    """A plain-text results table, one row per (env, agent)."""
    header = f"{'env':<34} {'agent':<8} {'episodes':>8} {'success':>8} {'reward':>8} {'turns':>7} {'errors':>6}"
    rows = [
        f"{s.env_id:<34} {s.agent:<8} {s.episodes:>8} {s.success_rate:>8.2f} {s.mean_reward:>8.2f} "
        f"{s.mean_turns:>7.1f} {s.errors:>6}"
        for s in summaries
    ]
    return "\n".join([header, "-" * len(header), *rows])
