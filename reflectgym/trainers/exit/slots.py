"""A step's slots in ExIt: what the step's generator drew for each, what was played there, and what every rank
gathers of them for the buffer update and the metrics (so a data-parallel step equals one process's)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from reflectgym.agents.policy import Generation, Message
from reflectgym.trainers.data_parallel import all_gather
from reflectgym.trainers.exit.buffer import BufferEntry
from reflectgym.trainers.exit.instances import Instance, Mode, Outcome


@dataclass
class Slot:
    """One batch slot of a step: the instance played, how it is prompted, and where it came from.

    Attributes:
        instance: The instance (with its snapshot).
        mode: solve (k = 0), improve or diverge.
        messages: The prompt.
        entry: The buffer entry it was drawn from (its serial), or None for a new task.
        prompt_ids: The prompt's token ids.
    """

    instance: Instance
    mode: Mode
    messages: list[Message]
    entry: int | None = None
    prompt_ids: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Reply:
    """One of a slot's G replies and what came of it.

    Attributes:
        generation: The sampled ids, log-probs and text.
        outcome: What the env answered (None: an error; the reply leaves its group).
        ret: The reply's return (quality or improvement); 0 for an error.
    """

    generation: Generation
    outcome: Outcome | None
    ret: float = 0.0


Problem = Literal["lost", "failed", "too_long"]
"""What went wrong with a slot: its buffer instance could not be restored (the slot plays its new task instead),
its new task's reset failed, or its prompt leaves no room for a reply (the last two: the slot is not played)."""

PROBLEM_COUNTS: dict[Problem, str] = {
    "lost": "instances_lost",
    "failed": "tasks_failed",
    "too_long": "prompts_too_long",
}
"""The metric that counts each problem."""


@dataclass(frozen=True)
class Draw:
    """A slot as the step's generator chose it, before any env work (the same on every rank).

    Attributes:
        index: The slot's position in the step.
        seed: Its new task's seed (played unless an instance drawn from the buffer is).
        entry: The buffer entry drawn (None: the new task).
        mode: How the drawn instance is prompted (improve or diverge; solve for a new task).
    """

    index: int
    seed: int
    entry: BufferEntry | None = None
    mode: Mode = "solve"


@dataclass(frozen=True)
class SlotResult:
    """One slot's part in the step's buffer update and metrics: made by the rank that played the slot, then
    gathered on every rank, so that every rank applies the same results in the same (slot) order.

    Attributes:
        index: The slot's position in the step.
        slot: The slot played (None: it was not, see `problems`).
        replies: Its replies with the env's answers (children carry their snapshots).
        score: The group's learnability S.
        sequences: The training sequences the group gave (0: dropped).
        problems: What went wrong on the way, counted in the metrics.
        discard: A buffer entry to drop: it could not be restored, or its prompt is too long.
    """

    index: int
    slot: Slot | None
    replies: tuple[Reply, ...] = ()
    score: float = 0.0
    sequences: int = 0
    problems: tuple[Problem, ...] = ()
    discard: int | None = None

    def portable(self) -> SlotResult:
        """This result without what only the rank that trained on it needs (the prompt's ids and messages, the
        replies' log-probs): lighter to gather."""
        slot = None if self.slot is None else dataclasses.replace(self.slot, messages=[], prompt_ids=[])
        replies = tuple(
            dataclasses.replace(reply, generation=dataclasses.replace(reply.generation, logprobs=None))
            for reply in self.replies
        )
        return dataclasses.replace(self, slot=slot, replies=replies)


def every_ranks_results(own: Sequence[SlotResult]) -> list[SlotResult]:
    """Every rank's slot results on every rank, in slot order (a collective): the same metrics and buffer update
    everywhere, and the same as one process playing every slot."""
    gathered = all_gather([result.portable() for result in own])
    return sorted((result for rank in gathered for result in rank), key=lambda result: result.index)


def problem_counts(results: Sequence[SlotResult]) -> dict[str, float]:
    """How many of the step's slots had each problem (lost instances, failed resets, prompts too long)."""
    problems = [problem for result in results for problem in result.problems]
    return {name: float(problems.count(problem)) for problem, name in PROBLEM_COUNTS.items()}


def result_metrics(results: Sequence[SlotResult]) -> dict[str, float]:
    """The step's metrics before its update, from every slot's result: problems, `step_metrics`, groups dropped,
    sequences and the mean learnability of the groups played."""
    played = [result for result in results if result.slot is not None]
    slots = [result.slot for result in played if result.slot is not None]
    metrics = {**problem_counts(results), **step_metrics(slots, [result.replies for result in played])}
    metrics.update(
        groups_dropped=float(sum(result.sequences == 0 for result in played)),
        sequences=float(sum(result.sequences for result in played)),
        learnability=float(np.mean([result.score for result in played])) if played else 0.0,
    )
    return metrics


def step_metrics(slots: Sequence[Slot], groups: Sequence[Sequence[Reply]]) -> dict[str, float]:
    """What a step's instances and replies were like: reward (env reward of the attempts), success, returns,
    failures, mean k, the share drawn from the buffer and the share prompted to diverge."""
    played = [reply for group in groups for reply in group if reply.outcome is not None]
    replies = sum(len(group) for group in groups)
    outcomes = [reply.outcome for reply in played if reply.outcome is not None]

    def mean(values: Sequence[float]) -> float:
        return float(np.mean(values)) if len(values) else 0.0

    return {
        "reward": mean([outcome.attempt.reward for outcome in outcomes]),
        "success": mean([float(outcome.passed) for outcome in outcomes]),
        "return": mean([reply.ret for reply in played]),
        "replies_failed": float(replies - len(played)),
        "mean_k": mean([float(slot.instance.k) for slot in slots]),
        "from_buffer": mean([float(slot.entry is not None) for slot in slots]),
        "diverge": mean([float(slot.mode == "diverge") for slot in slots]),
        "reply_tokens": mean([float(len(reply.generation.token_ids or ())) for group in groups for reply in group]),
    }
