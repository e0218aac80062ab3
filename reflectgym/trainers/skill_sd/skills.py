"""Skills and the per-task skill bank of Skill-SD (TRAINERS.md §2).

A skill is what a summariser wrote about one episode of a task, as JSON with `success_analysis`,
`mistake_analysis` and `golden_workflow`. The bank keeps a few per task and picks one for the teacher by an upper
confidence bound on the mean return of the task's next visit after an update it shaped; untried skills go first.
The bank holds at most `max_tasks` tasks and drops the least recently visited one (with its pending skill) to make
room: where task keys never repeat (procedurally generated levels) it would otherwise grow for ever, in memory and
in every checkpoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SKILL_FIELDS = ("success_analysis", "mistake_analysis", "golden_workflow")
"""The keys a summariser's JSON answers with."""

MAX_FIELD_CHARS = 1000
"""Characters kept of each field: a summariser that ignores its token limit cannot flood the teacher's context."""

_FIELD_TITLES = {
    "success_analysis": "What worked",
    "mistake_analysis": "Mistakes to avoid",
    "golden_workflow": "Workflow",
}


@dataclass
class Skill:
    """One skill of a task and how the episodes scored with it went.

    Attributes:
        success_analysis: What worked.
        mistake_analysis: What went wrong and how to avoid it.
        golden_workflow: The steps to follow next time.
        uses: Episodes whose teacher context held this skill.
        reward_sum: The sum of their returns.
    """

    success_analysis: str = ""
    mistake_analysis: str = ""
    golden_workflow: str = ""
    uses: int = 0
    reward_sum: float = 0.0

    @property
    def mean_reward(self) -> float:
        """Mean return of the episodes scored with it (0 when untried)."""
        return self.reward_sum / self.uses if self.uses else 0.0

    def text(self) -> str:
        """The block the teacher's system prompt gets."""
        lines = ["A skill for this task, learnt from earlier attempts:"]
        for name in SKILL_FIELDS:
            value = getattr(self, name).strip()
            if value:
                lines.append(f"- {_FIELD_TITLES[name]}: {value}")
        return "\n".join(lines)


def _as_text(value: Any) -> str:
    """A JSON value as skill text: strings as they are, lists one item a line, anything else as JSON."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return "\n".join(_as_text(item) for item in value)
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _field(value: Any) -> str:
    return _as_text(value)[:MAX_FIELD_CHARS]


def _skill_fields(data: Any, depth: int = 2) -> dict[str, Any] | None:
    """The object that holds skill fields: `data` itself, else one nested in it (small models often wrap their
    answer: `{"skill": {...}}`), searched `depth` levels down."""
    if not isinstance(data, dict):
        return None
    if any(name in data for name in SKILL_FIELDS):
        return data
    if depth == 0:
        return None
    for value in data.values():
        found = _skill_fields(value, depth - 1)
        if found is not None:
            return found
    return None


def parse_skill(reply: str, max_tries: int = 32) -> Skill | None:
    """The skill in a summariser's reply: the first JSON object in it (also inside a ```json fence, or followed by
    more text) that holds, or nests, at least one of `SKILL_FIELDS` not empty; JSON is tried from each of the
    first `max_tries` opening braces. None for a reply with no such object: it makes no skill."""
    decoder = json.JSONDecoder()
    start = reply.find("{")
    for _ in range(max_tries):
        if start < 0:
            return None
        try:
            data, _end = decoder.raw_decode(reply, start)
        except json.JSONDecodeError:
            data = None
        fields = _skill_fields(data)
        if fields is not None:
            success, mistakes, workflow = (_field(fields.get(name)) for name in SKILL_FIELDS)
            skill = Skill(success_analysis=success, mistake_analysis=mistakes, golden_workflow=workflow)
            if any(getattr(skill, name) for name in SKILL_FIELDS):
                return skill
        start = reply.find("{", start + 1)
    return None


class SkillBank:
    """Skills per task, at most `capacity` each, chosen by UCB; at most `max_tasks` tasks, least recently visited
    out first.

    A skill's teacher shapes the update of the step it is chosen in; the returns of the task's next visit, sampled
    by the updated policy, are what it is credited with (`credit`). Until then it is the task's pending skill.

    Args:
        capacity: Skills kept per task; a new one evicts the credited skill with the lowest mean return.
        exploration: c of the bound mean + c·sqrt(ln N / n), N the task's episodes credited to any of its skills.
        max_tasks: Tasks kept at most; a new task beyond it evicts the least recently visited task's skills and
            pending skill (a visit: `choose` or `add`). None: no bound.
    """

    def __init__(self, capacity: int = 4, exploration: float = 1.0, max_tasks: int | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1; got {capacity}")
        if max_tasks is not None and max_tasks < 1:
            raise ValueError(f"max_tasks must be None or at least 1; got {max_tasks}")
        self.capacity = capacity
        self.exploration = exploration
        self.max_tasks = max_tasks
        self.skills: dict[str, list[Skill]] = {}
        """Per task, its skills; the tasks in the order of their last visit, least recent first."""
        self.pending: dict[str, Skill] = {}
        """Per task, the skill chosen at its last visit, not credited yet."""

    def __len__(self) -> int:
        return sum(len(skills) for skills in self.skills.values())

    def credit(self, task: str, returns: Sequence[float]) -> bool:
        """Credits `returns` (a visit's episodes) to the skill chosen at the task's previous visit, if any; returns
        whether a skill was credited."""
        skill = self.pending.pop(task, None)
        if skill is None or not returns:
            return False
        skill.uses += len(returns)
        skill.reward_sum += float(sum(returns))
        return True

    def choose(self, task: str, rng: np.random.Generator) -> Skill | None:
        """The skill the teacher uses for `task` (then pending), or None when the task has none yet: an untried one
        first (at random), else the highest upper confidence bound (ties at random)."""
        skills = self.skills.get(task)
        if not skills:
            return None
        self._touch(task)
        untried = [skill for skill in skills if skill.uses == 0]
        if untried:
            chosen = untried[int(rng.integers(len(untried)))]
        else:
            total = sum(skill.uses for skill in skills)
            bounds = np.array(
                [skill.mean_reward + self.exploration * math.sqrt(math.log(total) / skill.uses) for skill in skills]
            )
            best = np.flatnonzero(np.isclose(bounds, bounds.max(), rtol=0.0, atol=1e-12))
            chosen = skills[int(rng.choice(best))]
        self.pending[task] = chosen
        return chosen

    def wants_skill(self, task: str, mean_return: float) -> bool:
        """Whether a new skill for `task` is worth writing: not while an untried one waits its turn; while the task
        has room; once full, only when the visit's `mean_return` beats every credited skill's mean (the policy has
        outgrown them)."""
        skills = self.skills.get(task, [])
        pending = self.pending.get(task)
        if any(skill.uses == 0 and skill is not pending for skill in skills):
            return False
        if len(skills) < self.capacity:
            return True
        credited = [skill.mean_reward for skill in skills if skill.uses > 0]
        return bool(credited) and mean_return > max(credited)

    def add(self, task: str, skill: Skill) -> None:
        """Adds a new skill to `task`; a full task first evicts its credited skill with the lowest mean return
        (the oldest on ties; never the pending one)."""
        skills = self.skills.setdefault(task, [])
        self._touch(task)
        self._evict_beyond_bound()
        if len(skills) >= self.capacity:
            pending = self.pending.get(task)
            others = [index for index, old in enumerate(skills) if old is not pending] or [0]
            credited = [index for index in others if skills[index].uses > 0] or others
            del skills[min(credited, key=lambda index: skills[index].mean_reward)]
        skills.append(skill)

    def _touch(self, task: str) -> None:
        """Marks `task` (banked) as the most recently visited: it moves to the end of the order."""
        self.skills[task] = self.skills.pop(task)

    def _evict_beyond_bound(self) -> None:
        """Drops the least recently visited tasks, skills and pending skill, while there are more than `max_tasks`
        (the one just visited is the most recent: never dropped)."""
        while self.max_tasks is not None and len(self.skills) > self.max_tasks:
            oldest = next(iter(self.skills))
            del self.skills[oldest]
            self.pending.pop(oldest, None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state, for checkpoints; `order` keeps the tasks' recency (least recent first) explicitly, so that
        it survives a writer that sorts keys and a resumed run evicts as an uninterrupted one would."""
        return {
            "skills": {task: [asdict(skill) for skill in skills] for task, skills in self.skills.items()},
            "pending": {task: self.skills[task].index(skill) for task, skill in self.pending.items()},
            "order": list(self.skills),
        }

    def load(self, state: Mapping[str, Any]) -> None:
        """Puts back what `to_dict` saved (a state without `order`, from before the bound, in its keys' order); a
        bank over `max_tasks` keeps its most recently visited tasks."""
        saved = state["skills"]
        order = state.get("order", list(saved))
        if sorted(order) != sorted(saved):
            raise ValueError("the skill bank's saved order does not list its tasks exactly once each")
        self.skills = {task: [Skill(**skill) for skill in saved[task]] for task in order}
        self.pending = {task: self.skills[task][index] for task, index in state["pending"].items()}
        self._evict_beyond_bound()
