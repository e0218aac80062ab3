"""Values every env, policy and trainer shares: feedback levels, verdicts, transitions, parse errors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

FeedbackLevel = Literal["binary", "diagnostic", "hint"]
"""How much a verifier says: `binary` (right or wrong), `diagnostic` (what failed and where),
`hint` (an actionable next step, never the answer)."""

FEEDBACK_LEVELS: tuple[FeedbackLevel, ...] = get_args(FeedbackLevel)


def check_feedback_level(level: str) -> FeedbackLevel:
    """Returns `level` if it is a known feedback level, else raises a `ValueError` naming the choices."""
    if level not in FEEDBACK_LEVELS:
        raise ValueError(f"feedback must be one of {', '.join(map(repr, FEEDBACK_LEVELS))}; got {level!r}")
    return level  # type: ignore[return-value]


@dataclass(frozen=True)
class Verdict:
    """A verifier's judgement of one turn.

    Attributes:
        reward: Scalar reward for the turn.
        passed: Whether the task is solved (the episode's success signal).
        feedback: The text the student sees, at the env's feedback level.
        details: Structured extras (failing test, box position, ...) for logs and teachers; JSON-serialisable.
    """

    reward: float
    passed: bool
    feedback: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "reward": self.reward,
            "passed": self.passed,
            "feedback": self.feedback,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verdict:
        """Inverse of `to_dict`."""
        return cls(
            reward=float(data["reward"]),
            passed=bool(data["passed"]),
            feedback=str(data["feedback"]),
            details=dict(data.get("details") or {}),
        )


@dataclass(frozen=True)
class Transition:
    """What an env's `_apply` hook returns for one parsed action.

    Attributes:
        observation: The next observation text.
        verdict: The verifier's judgement (its `feedback` is shown to the student).
        terminated: Whether the episode ended by the task's own rules (solved, or lost for good).
    """

    observation: str
    verdict: Verdict
    terminated: bool


class ActionParseError(ValueError):
    """Raised by an env's `parse_action` when model text holds no valid action; the message says what was wrong.

    The env base catches it and plays a format-penalty turn; it never reaches the caller of `step()`.
    """
