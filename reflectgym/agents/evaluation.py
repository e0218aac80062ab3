"""Evaluation: play episodes of an env with a scripted agent or a model policy, record trajectories, summarise.

An env that raises mid-episode (a bug, a dead browser) loses that episode only: it is recorded with the error
and the run goes on with a fresh env. Success rates come with a 95 % Wilson interval.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
from tqdm import tqdm

from reflectgym.agents.policy import Policy
from reflectgym.agents.rollout import RolloutConfig, RolloutEngine, Rollouts
from reflectgym.agents.scripted import ScriptedAgent
from reflectgym.core.trajectory import Trajectory, Turn


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
        ci_low: Lower end of the 95 % Wilson interval of the success rate.
        ci_high: Upper end of that interval.
        mean_tokens: Mean sampled tokens per episode (0 for scripted agents and text-only policies).
    """

    env_id: str
    agent: str
    episodes: int
    success_rate: float
    mean_reward: float
    mean_turns: float
    errors: int
    seconds: float
    ci_low: float = 0.0
    ci_high: float = 1.0
    mean_tokens: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def run_episode(
    env: gym.Env[Any, Any],
    agent: ScriptedAgent,
    seed: int,
    env_id: str,
    max_turns: int = 1000,
    task_id: str | None = None,
) -> Trajectory:
    """Plays one episode (of task `task_id` when given); `max_turns` guards against envs without their own limit."""
    observation, info = env.reset(seed=seed, options=None if task_id is None else {"task_id": task_id})
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
    task_ids: Sequence[str] | None = None,
) -> tuple[EvalSummary, list[Trajectory]]:
    """Plays `episodes` episodes (seeds `seed`, `seed+1`, ...), writing JSONL as it goes when `out_dir` is set.
    With `task_ids` (e.g. `env.unwrapped.task_ids()`), plays each of those tasks once instead, in order: a full
    pass over a benchmark, where seeded draws would repeat some tasks and miss others."""
    episodes = len(task_ids) if task_ids is not None else episodes
    start = time.perf_counter()
    trajectories: list[Trajectory] = []
    path = Path(out_dir) / "trajectories.jsonl" if out_dir is not None else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")
    env = make_env()
    bar = tqdm(total=episodes, desc=f"{env_id} [{agent.name}]", disable=not progress, leave=False)
    try:
        for episode in range(episodes):
            task_id = None if task_ids is None else task_ids[episode]
            try:
                trajectory = run_episode(env, agent, seed + episode, env_id, task_id=task_id)
            except Exception as error:  # one broken episode must not end the run
                trajectory = Trajectory(
                    env_id=env_id,
                    task_id=task_id,
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
                append_trajectories(path, [trajectory])
            bar.set_postfix(success=f"{sum(t.success for t in trajectories) / len(trajectories):.2f}", refresh=False)
            bar.update(1)  # (counted by hand: an iterated bar shows a stale count when the postfix refreshes it)
    finally:
        bar.close()
        env.close()
    summary = summarize(trajectories, env_id=env_id, agent=agent.name, seconds=time.perf_counter() - start)
    if out_dir is not None:
        (Path(out_dir) / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return summary, trajectories


def evaluate_policy(
    policy: Policy,
    make_env: Callable[[], gym.Env[Any, Any]],
    *,
    env_id: str,
    episodes: int = 10,
    seed: int = 0,
    out_dir: str | Path | None = None,
    config: RolloutConfig | None = None,
    progress: bool = True,
    task_ids: Sequence[str] | None = None,
) -> tuple[EvalSummary, list[Trajectory]]:
    """Plays `episodes` episodes (seeds `seed`, `seed+1`, ...) with the rollout engine, writing JSONL as groups end;
    with `task_ids`, each of those tasks once instead (see `evaluate`)."""
    engine = RolloutEngine(policy, make_env, env_id, config)
    return evaluate_rollouts(
        engine, env_id=env_id, agent=policy.name, group_size=engine.config.group_size, episodes=episodes, seed=seed,
        out_dir=out_dir, progress=progress, task_ids=task_ids,
    )  # fmt: skip


def evaluate_rollouts(
    rollouts: Rollouts,
    *,
    env_id: str,
    agent: str,
    group_size: int = 1,
    episodes: int = 10,
    seed: int = 0,
    out_dir: str | Path | None = None,
    progress: bool = True,
    task_ids: Sequence[str] | None = None,
) -> tuple[EvalSummary, list[Trajectory]]:
    """`evaluate_policy` for any `Rollouts` (a local engine, a Ray pool) that plays `group_size` episodes per seed
    with the policy named `agent`."""
    episodes = len(task_ids) if task_ids is not None else episodes
    start = time.perf_counter()
    path = Path(out_dir) / "trajectories.jsonl" if out_dir is not None else None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")
    trajectories: list[Trajectory] = []
    bar = tqdm(total=episodes * group_size, desc=f"{env_id} [{agent}]", disable=not progress, leave=False)
    for group in rollouts.run(range(seed, seed + episodes), task_ids=task_ids):
        trajectories.extend(group)
        if path is not None:
            append_trajectories(path, group)
        bar.update(len(group))
        bar.set_postfix(success=f"{sum(t.success for t in trajectories) / len(trajectories):.2f}")
    bar.close()
    trajectories.sort(key=lambda t: (t.metadata["group"], t.metadata["index"]))
    summary = summarize(trajectories, env_id=env_id, agent=agent, seconds=time.perf_counter() - start)
    if out_dir is not None:
        (Path(out_dir) / "summary.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    return summary, trajectories


def append_trajectories(path: Path, trajectories: list[Trajectory]) -> None:
    """Appends trajectories to a JSONL file, one line each; one that cannot be serialised is written as a stub
    naming the error (its turns are lost, the others and the run are not)."""
    for trajectory in trajectories:
        try:
            line = trajectory.to_json()
        except (TypeError, ValueError, RecursionError) as error:
            line = _unwritable_stub(trajectory, error).to_json()
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def _unwritable_stub(trajectory: Trajectory, error: Exception) -> Trajectory:
    """A record of an episode whose trajectory could not be written: what it was and why it is missing."""
    return Trajectory(
        env_id=str(trajectory.env_id),
        task_id=None if trajectory.task_id is None else str(trajectory.task_id),
        seed=trajectory.seed,
        metadata={
            "error": f"the trajectory could not be written: {type(error).__name__}: {error}",
            "turns": len(trajectory.turns),
            "total_reward": repr(trajectory.total_reward),
        },
    )


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95 % for z = 1.96); `(0, 1)` with no trials."""
    if trials == 0:
        return 0.0, 1.0
    rate = successes / trials
    centre = (rate + z * z / (2 * trials)) / (1 + z * z / trials)
    spread = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - spread), min(1.0, centre + spread)


def summarize(trajectories: list[Trajectory], *, env_id: str, agent: str, seconds: float) -> EvalSummary:
    """Aggregates trajectories of one env and agent into an `EvalSummary`."""
    count = max(len(trajectories), 1)
    successes = sum(t.success for t in trajectories)
    low, high = wilson_interval(successes, len(trajectories))
    return EvalSummary(
        env_id=env_id,
        agent=agent,
        episodes=len(trajectories),
        success_rate=successes / count,
        mean_reward=sum(t.total_reward for t in trajectories) / count,
        mean_turns=sum(len(t.turns) for t in trajectories) / count,
        errors=sum("error" in t.metadata for t in trajectories),
        seconds=seconds,
        ci_low=low,
        ci_high=high,
        mean_tokens=sum(int(t.metadata.get("sampled_tokens", 0)) for t in trajectories) / count,
    )


def format_table(summaries: list[EvalSummary]) -> str:
    """A plain-text results table, one row per (env, agent)."""
    header = (
        f"{'env':<34} {'agent':<12} {'episodes':>8} {'success':>8} {'95% CI':>11} {'reward':>8} {'turns':>7} "
        f"{'tokens':>7} {'errors':>6}"
    )
    rows = [
        f"{s.env_id:<34} {s.agent[:12]:<12} {s.episodes:>8} {s.success_rate:>8.2f} "
        f"{f'{s.ci_low:.2f}-{s.ci_high:.2f}':>11} {s.mean_reward:>8.2f} {s.mean_turns:>7.1f} {s.mean_tokens:>7.0f} "
        f"{s.errors:>6}"
        for s in summaries
    ]
    return "\n".join([header, "-" * len(header), *rows])
