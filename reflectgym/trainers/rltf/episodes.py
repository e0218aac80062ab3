"""What RLTF reads from a two-turn episode: x_0's ids, y_1's sampled ids, the turn rewards and the critique.

x_0 is the episode's first prompt exactly as the policy continued it (the token record's ids before the first
sampled token), y_1 the ids sampled at the second turn, taken from the same record (and checked against the turn's
own `action_token_ids`), so a re-attached sequence holds the sampled tokens, never a re-tokenisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reflectgym.agents.chat import TokenRecord
from reflectgym.core.trajectory import Trajectory
from reflectgym.trainers.grpo import finished_episodes
from reflectgym.trainers.rescore import check_same_response


@dataclass(frozen=True)
class SecondTurn:
    """An episode that went to a second turn, as RLTF-SD and RLTF-FM use it.

    Attributes:
        group: Index of its task-instance group in the step.
        prompt_ids: x_0, the first prompt's ids (system prompt and question, ending in the generation prompt).
        reply_ids: y_1, the ids the policy sampled at the second turn.
        first_reward: r_0, the env's reward of the first attempt (format penalty included).
        second_reward: r_1, the env's reward of the second attempt.
        question: The first observation (the env's instructions and the problem).
        attempt: y_0's text.
        critique: c_0, the env's feedback on y_0.
    """

    group: int
    prompt_ids: tuple[int, ...]
    reply_ids: tuple[int, ...]
    first_reward: float
    second_reward: float
    question: str
    attempt: str
    critique: str


def finished(group: Sequence[Trajectory]) -> list[Trajectory]:
    """The episodes of a group that did not end in an error (as GRPO keeps them) and played a turn."""
    return [trajectory for trajectory in finished_episodes(group) if trajectory.turns]


def first_turn_baseline(group: Sequence[Trajectory]) -> float | None:
    """Mean first-turn reward r_0 over the group's finished episodes (None: none finished)."""
    episodes = finished(group)
    return sum(trajectory.turns[0].reward for trajectory in episodes) / len(episodes) if episodes else None


def second_turn(trajectory: Trajectory, group: int) -> SecondTurn | None:
    """The episode's second-turn view, or None when it has none (solved at the first turn, failed, or played
    without a whole-episode token record: text-only policies, a history window)."""
    if "error" in trajectory.metadata or len(trajectory.turns) < 2:
        return None
    record = TokenRecord.from_trajectory(trajectory)
    if record is None:
        return None
    tokens = zip(record.input_ids, record.loss_mask, record.turns, strict=True)
    reply = tuple(token for token, mask, turn in tokens if mask and turn == 1)
    start = next((index for index, mask in enumerate(record.loss_mask) if mask), None)
    if start is None or record.turns[start] != 0 or not reply:
        return None
    first, second = trajectory.turns[0], trajectory.turns[1]
    if second.action_token_ids is not None:
        check_same_response(second.action_token_ids, reply)
    return SecondTurn(
        group=group,
        prompt_ids=record.input_ids[:start],
        reply_ids=reply,
        first_reward=first.reward,
        second_reward=second.reward,
        question=first.observation,
        attempt=first.action,
        critique=first.feedback,
    )


def second_turns(groups: Sequence[Sequence[Trajectory]]) -> list[SecondTurn]:
    """Every episode of the step that went to a second turn, groups in order."""
    views = (second_turn(trajectory, index) for index, group in enumerate(groups) for trajectory in group)
    return [view for view in views if view is not None]
