"""Feedback text for web tasks at the three levels, from what a task's verifier found.

A verifier reports a `Problem`: which field (or button, link, checkbox) is wrong, what was expected *in kind*
("the username from the instruction, exactly"), and a hint (an actionable next step). None of them carries the
expected value itself, so no level can give the answer away.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reflectgym.core.types import FeedbackLevel


@dataclass(frozen=True)
class Problem:
    """The first thing a verifier found wrong."""

    field: str
    """What is wrong: a field label, "button", "link", "cart", ..."""
    kind: str
    """What was expected, in kind (never the value)."""
    hint: str = ""
    """An actionable next step that does not give the answer."""

    @classmethod
    def from_js(cls, raw: Mapping[str, Any]) -> Problem:
        """Builds a problem from a task page's `{field, kind, hint}`."""
        return cls(
            field=str(raw.get("field") or "task"), kind=str(raw.get("kind") or ""), hint=str(raw.get("hint") or "")
        )


def wrong_attempt(problem: Problem, level: FeedbackLevel) -> str:
    """Feedback for an attempt the page rejected (a wrong submission, a wrong click)."""
    if level == "binary":
        return "That was not right."
    text = f"Wrong {problem.field}: expected {problem.kind}."
    return _with_hint(text, problem, level)


def unfinished(problem: Problem, level: FeedbackLevel) -> str:
    """Feedback for `done` before the task was complete."""
    if level == "binary":
        return "You said done, but the task is not complete."
    text = f"You said done, but the task is not complete: the {problem.field} is not right (expected {problem.kind})."
    return _with_hint(text, problem, level)


def solved() -> str:
    """Feedback for a completed task."""
    return "Task complete."


def _with_hint(text: str, problem: Problem, level: FeedbackLevel) -> str:
    if level == "hint" and problem.hint:
        return f"{text} Hint: {problem.hint}"
    return text
