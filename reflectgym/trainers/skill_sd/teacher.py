"""The Skill-SD teacher: the same network under a context that holds a skill, re-scoring the student's own tokens.

Every context the student sampled in is rendered again from the episode's messages with the skill at the head of
the first user message (the task, or the oldest observation of a history window), through the same chat template;
the student's own rendering of those messages must give back exactly the prompt ids it sampled after, or the
context gets no teacher. Everything from the student's first sampled token on (its replies and the env's answers)
is spliced in as the same ids, never re-tokenised, so both score identical tokens. The teacher never generates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from reflectgym.agents.chat import ChatFormat, recent_turns
from reflectgym.agents.policy import Message
from reflectgym.core.trajectory import Trajectory
from reflectgym.trainers.batching import TrainingSequence
from reflectgym.trainers.rescore import rescore_frozen

SKILL_SEPARATOR = "\n\n"
"""Between the skill and the user message it heads."""


def episode_contexts(trajectory: Trajectory, system: str, history_turns: int | None) -> list[list[Message]]:
    """The messages of every context the rollout engine let the policy sample in, in order: the opening (system
    prompt and first observation) for a whole-episode context, or one window of recent turns per turn."""
    opening: list[Message] = [{"role": "system", "content": system}] if system else []
    opening.append({"role": "user", "content": trajectory.turns[0].observation if trajectory.turns else ""})
    if history_turns is None:
        return [opening]
    contexts, messages = [], list(opening)
    for index, turn in enumerate(trajectory.turns):
        contexts.append(messages)
        if index + 1 < len(trajectory.turns):
            following = trajectory.turns[index + 1].observation
            history = [*messages, {"role": "assistant", "content": turn.action}, {"role": "user", "content": following}]
            messages = recent_turns(history, history_turns)
    return contexts


def with_skill(messages: Sequence[Message], skill: str) -> list[Message]:
    """`messages` with `skill` at the head of the first user message."""
    out = [dict(message) for message in messages]
    first = next(index for index, message in enumerate(out) if message["role"] == "user")
    out[first]["content"] = skill + SKILL_SEPARATOR + out[first]["content"]
    return out  # type: ignore[return-value]


def teacher_prompts(
    trajectory: Trajectory, chat: ChatFormat, system: str, history_turns: int | None, skill: str
) -> dict[tuple[int, ...], list[int]]:
    """Student prompt ids → the teacher's, for every context of `trajectory` (the student's rendered as the engine
    renders them, so they match the prompts its token records begin with)."""
    prompts: dict[tuple[int, ...], list[int]] = {}
    for messages in episode_contexts(trajectory, system, history_turns):
        prompts[tuple(chat.prompt_ids(messages))] = chat.prompt_ids(with_skill(messages, skill))
    return prompts


def prompt_of(sequence: TrainingSequence) -> tuple[int, ...]:
    """The ids before a sequence's first sampled token: the prompt the policy sampled its first reply after."""
    return sequence.input_ids[: sequence.loss_mask.index(1)]


def with_teacher_logprobs(
    model: torch.nn.Module,
    sequences: Sequence[TrainingSequence],
    teacher_prompt_ids: Sequence[Sequence[int] | None],
    *,
    pad_id: int,
    batch_size: int,
    autocast_dtype: torch.dtype | None = None,
    temperature: float = 1.0,
) -> list[TrainingSequence]:
    """`sequences` with the teacher's log-probs of their tokens, for those with a teacher prompt (the others are
    returned as they are): each sequence from its first sampled token on, after its teacher prompt. `model` scores
    without gradient and without dropout, as it is now (θ̄ is θ at the start of the step), at the student's
    `temperature`."""
    if len(teacher_prompt_ids) != len(sequences):
        raise ValueError(f"{len(teacher_prompt_ids)} teacher prompts for {len(sequences)} sequences")
    taught = [index for index, prompt in enumerate(teacher_prompt_ids) if prompt is not None]
    starts = [sequences[index].loss_mask.index(1) for index in taught]
    scored = rescore_frozen(
        model,
        [list(teacher_prompt_ids[index] or ()) for index in taught],
        [sequences[index].input_ids[start:] for index, start in zip(taught, starts, strict=True)],
        pad_id=pad_id,
        batch_size=batch_size,
        autocast_dtype=autocast_dtype,
        temperature=temperature,
    )
    out = list(sequences)
    for index, start, logprobs in zip(taught, starts, scored, strict=True):
        sequence = sequences[index]
        masked = zip(logprobs.tolist(), sequence.loss_mask[start:], strict=True)
        values = tuple(float(value) if mask else 0.0 for value, mask in masked)
        out[index] = dataclasses.replace(sequence, teacher_logprobs=(0.0,) * start + values)
    return out
