"""Scripted agents: an oracle that plays an env's privileged solution, a random agent, and file replay.

They see the env itself (through Gymnasium's `env.unwrapped`), not just the conversation, which is what makes
them scripted: they are baselines, demo players and test drivers, never students.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from reflectgym.core.spaces import FreeText
from reflectgym.core.trajectory import Trajectory, read_trajectories


class ScriptedAgent(Protocol):
    """An agent that may look at the env to choose its action text."""

    name: str

    def begin(self, env: gym.Env[Any, Any], observation: str, info: dict[str, Any]) -> None:
        """Called after each reset."""
        ...

    def act(self, env: gym.Env[Any, Any], observation: str) -> str:
        """The next action text."""
        ...


class OracleAgent:
    """Plays `env.unwrapped.oracle_action()`: the solver's move, the reference answer."""

    name = "oracle"

    def begin(self, env: gym.Env[Any, Any], observation: str, info: dict[str, Any]) -> None:
        if not callable(getattr(env.unwrapped, "oracle_action", None)):
            raise TypeError(
                f"{type(env.unwrapped).__name__} has no oracle_action(); the oracle agent cannot play it "
                "(use --agent random, a --policy, or give the env an oracle_action())"
            )

    def act(self, env: gym.Env[Any, Any], observation: str) -> str:
        return str(env.unwrapped.oracle_action())  # type: ignore[attr-defined]


class RandomAgent:
    """Picks uniformly among the env's `action_examples`, or random text when it declares none.

    Args:
        seed: Seed for the agent's own generator (independent of the env's).
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)
        self._text = FreeText(sample_max_length=40, seed=seed)

    def begin(self, env: gym.Env[Any, Any], observation: str, info: dict[str, Any]) -> None:
        return None

    def act(self, env: gym.Env[Any, Any], observation: str) -> str:
        examples = tuple(getattr(env.unwrapped, "action_examples", ()))
        if examples:
            return str(examples[int(self._rng.integers(len(examples)))])
        return self._text.sample()


class ReplayAgent:
    """Replays the actions of recorded trajectories (JSONL), episode by episode, per task id when known.

    Args:
        trajectories: A JSONL file written by `reflectgym eval` (or an eval `--out` folder of one env), or
            trajectories in memory.
    """

    name = "replay"

    def __init__(self, trajectories: str | Path | Iterable[Trajectory]) -> None:
        if isinstance(trajectories, (str, Path)):
            trajectories = read_trajectories(recorded_file(Path(trajectories)))
        episodes = trajectories
        self._by_task: defaultdict[str | None, deque[list[str]]] = defaultdict(deque)
        for episode in episodes:
            self._by_task[episode.task_id].append([turn.action for turn in episode.turns])
        self._current: deque[str] = deque()

    def begin(self, env: gym.Env[Any, Any], observation: str, info: dict[str, Any]) -> None:
        queue = self._by_task.get(info.get("task_id")) or self._by_task.get(None)
        if not queue:
            raise LookupError(f"no recorded episode left for task {info.get('task_id')!r}")
        self._current = deque(queue.popleft())

    def act(self, env: gym.Env[Any, Any], observation: str) -> str:
        if not self._current:
            raise LookupError("the recorded episode has no actions left")
        return self._current.popleft()


def recorded_file(path: Path) -> Path:
    """The trajectories file `path` names: itself, or the one `trajectories.jsonl` of an eval `--out` folder (a
    folder of several envs' runs is a `ValueError` naming their files: episodes are replayed into one env)."""
    if not path.is_dir():
        return path
    files = sorted(path.rglob("trajectories.jsonl"))
    if len(files) == 1:
        return files[0]
    found = ", ".join(str(file) for file in files[:4]) + (", ..." if len(files) > 4 else "")
    raise ValueError(f"replay: {path} holds {len(files)} trajectories.jsonl files ({found or 'none'}): name one")


def scripted_agent(spec: str, seed: int = 0) -> ScriptedAgent:
    """Builds an agent from a CLI spec: `oracle`, `random` or `replay:PATH`."""
    if spec == "oracle":
        return OracleAgent()
    if spec == "random":
        return RandomAgent(seed)
    if spec.startswith("replay:"):
        return ReplayAgent(spec.removeprefix("replay:"))
    raise ValueError(f"unknown agent {spec!r}: use oracle, random or replay:PATH")
