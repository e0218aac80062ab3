"""`Turn` and `Trajectory`: the record of an episode that every trainer and report consumes (JSONL on disk)."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reflectgym.core.types import Verdict


@dataclass(frozen=True)
class Turn:
    """One step of an episode, seen from the student's side.

    Attributes:
        observation: The text the agent saw before acting.
        action: The agent's raw text.
        reward: The reward the env returned.
        feedback: The verifier's text for this turn (`info["feedback"]`).
        terminated: Whether the episode ended by the task's rules after this turn.
        truncated: Whether the episode hit its turn limit after this turn.
        parse_error: What was wrong with the action, or `None` if it parsed.
        verdict: The structured verdict, when the env returned one.
        action_token_ids: The sampled token ids of `action`, when the policy reports them.
        action_logprobs: Their log-probabilities under the sampling policy, when reported.
    """

    observation: str
    action: str
    reward: float
    feedback: str = ""
    terminated: bool = False
    truncated: bool = False
    parse_error: str | None = None
    verdict: Verdict | None = None
    action_token_ids: tuple[int, ...] | None = None
    action_logprobs: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        data = asdict(self)
        data["verdict"] = self.verdict.to_dict() if self.verdict is not None else None
        for key in ("action_token_ids", "action_logprobs"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Turn:
        """Inverse of `to_dict`."""
        verdict = data.get("verdict")
        ids = data.get("action_token_ids")
        logprobs = data.get("action_logprobs")
        return cls(
            observation=data["observation"],
            action=data["action"],
            reward=float(data["reward"]),
            feedback=data.get("feedback", ""),
            terminated=bool(data.get("terminated", False)),
            truncated=bool(data.get("truncated", False)),
            parse_error=data.get("parse_error"),
            verdict=Verdict.from_dict(verdict) if verdict is not None else None,
            action_token_ids=tuple(ids) if ids is not None else None,
            action_logprobs=tuple(logprobs) if logprobs is not None else None,
        )


@dataclass
class Trajectory:
    """A whole episode.

    Attributes:
        env_id: The registered id the env was made from (or its class name).
        task_id: The task the episode played, when the env has task ids.
        seed: The reset seed.
        turns: The turns in order.
        final_observation: The observation after the last turn.
        privileged: Teacher-only text of the episode (reference solution, optimal plan); never shown to students.
        metadata: Free-form extras (policy name, sampling settings, timings).
    """

    env_id: str
    task_id: str | None
    seed: int | None
    turns: list[Turn] = field(default_factory=list)
    final_observation: str = ""
    privileged: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def total_reward(self) -> float:
        """Sum of the turn rewards."""
        return sum(turn.reward for turn in self.turns)

    @property
    def success(self) -> bool:
        """Whether any turn's verdict passed (the task was solved)."""
        return any(turn.verdict is not None and turn.verdict.passed for turn in self.turns)

    @property
    def done(self) -> bool:
        """Whether the episode ended (terminated or truncated)."""
        return bool(self.turns) and (self.turns[-1].terminated or self.turns[-1].truncated)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "env_id": self.env_id,
            "task_id": self.task_id,
            "seed": self.seed,
            "turns": [turn.to_dict() for turn in self.turns],
            "final_observation": self.final_observation,
            "privileged": self.privileged,
            "metadata": self.metadata,
            "total_reward": self.total_reward,
            "success": self.success,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trajectory:
        """Inverse of `to_dict` (derived fields are recomputed, not read)."""
        return cls(
            env_id=data["env_id"],
            task_id=data.get("task_id"),
            seed=data.get("seed"),
            turns=[Turn.from_dict(turn) for turn in data.get("turns", [])],
            final_observation=data.get("final_observation", ""),
            privileged=data.get("privileged"),
            metadata=dict(data.get("metadata") or {}),
        )

    def to_json(self) -> str:
        """One JSONL line (no trailing newline), lossless for any text.

        Non-ASCII is escaped, so a lone surrogate in a model's reply (which UTF-8 cannot encode) still writes and
        reads back unchanged. Values JSON has no type for (a numpy scalar in verdict details) are written as
        their `.item()` or, failing that, their `repr`, so one odd value cannot lose the episode.
        """
        return json.dumps(self.to_dict(), ensure_ascii=True, default=_json_fallback)

    @classmethod
    def from_json(cls, line: str) -> Trajectory:
        """Inverse of `to_json`."""
        return cls.from_dict(json.loads(line))


def _json_fallback(value: Any) -> Any:
    """A JSON-ready stand-in for a value `json` cannot write: numpy scalars and arrays, sets, else the repr."""
    for method in ("item", "tolist"):
        convert = getattr(value, method, None)
        if callable(convert):
            try:
                return convert()
            except (TypeError, ValueError):
                pass
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return repr(value)


def write_trajectories(path: str | os.PathLike[str], trajectories: Iterable[Trajectory], append: bool = False) -> int:
    """Writes trajectories as JSONL, one episode per line, flushing each line; returns how many were written."""
    count = 0
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a" if append else "w", encoding="utf-8") as handle:
        for trajectory in trajectories:
            handle.write(trajectory.to_json() + "\n")
            handle.flush()
            count += 1
    return count


def read_trajectories(path: str | os.PathLike[str]) -> Iterator[Trajectory]:
    """Reads a JSONL file of trajectories; a bad line raises `ValueError` naming the file and line.

    A last line cut short (invalid JSON without its newline: a run killed while writing it) is skipped with a
    warning, so the episodes before it can still be reported and replayed; a bad line anywhere else is an error.
    """
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                trajectory = Trajectory.from_json(line)
            except json.JSONDecodeError as error:
                if not line.endswith("\n"):  # the last line, never finished
                    warnings.warn(f"{path}:{number}: skipped the last line, cut short ({error})", stacklevel=2)
                    return
                raise ValueError(f"{path}:{number}: not a trajectory: {error}") from error
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{number}: not a trajectory: {error}") from error
            yield trajectory
