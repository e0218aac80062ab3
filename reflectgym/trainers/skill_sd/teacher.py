"""The Skill-SD teacher: the same network under a context that holds a skill, re-scoring the student's own tokens.

The teacher's context is the student's with the skill at the head of its first user message (the task, or the
oldest observation of a history window); everything from the student's first sampled token on (its replies and
the env's answers) is spliced in as the same ids, never re-tokenised, so both score identical tokens (`rescore`
checks it). The teacher never generates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from reflectgym.trainers.batching import TrainingSequence
from reflectgym.trainers.rescore import AlignmentError, rescore

SKILL_SEPARATOR = "\n\n"
"""Between the skill and the user message it heads."""


def teacher_prompt_ids(tokenizer: Any, prompt_ids: Sequence[int], user_opening: str, skill: str) -> list[int]:
    """The student's prompt ids with `skill` at the head of the first user message.

    The prompt is decoded (template tokens kept), the skill inserted after the first `user_opening` (the template
    text that opens a user message: `ChatFormat.user_opening`), and the text encoded again: the prompt carries no
    loss, so its re-tokenisation changes nothing the student learns.

    Raises:
        AlignmentError: The prompt holds no user message opening as the template renders it.
    """
    text = tokenizer.decode(list(prompt_ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)
    at = text.find(user_opening) if user_opening else -1
    if at < 0:
        raise AlignmentError(f"no user message opening ({user_opening!r}) in the student's prompt to put a skill in")
    end = at + len(user_opening)
    return list(tokenizer(text[:end] + skill + SKILL_SEPARATOR + text[end:], add_special_tokens=False)["input_ids"])


def with_teacher_logprobs(
    model: torch.nn.Module,
    tokenizer: Any,
    sequences: Sequence[TrainingSequence],
    skills: Sequence[str | None],
    *,
    user_opening: str,
    pad_id: int,
    batch_size: int,
    autocast_dtype: torch.dtype | None = None,
) -> list[TrainingSequence]:
    """`sequences` with the teacher's log-probs of their tokens, for those whose skill is not None (the others
    are returned as they are). `model` scores without gradient, as it is now: θ̄ is θ at the start of the step."""
    if len(skills) != len(sequences):
        raise ValueError(f"{len(skills)} skills for {len(sequences)} sequences")
    taught = [index for index, skill in enumerate(skills) if skill is not None]
    out = list(sequences)
    for begin in range(0, len(taught), batch_size):
        chunk = taught[begin : begin + batch_size]
        starts = [sequences[index].loss_mask.index(1) for index in chunk]
        contexts = [
            teacher_prompt_ids(tokenizer, sequences[index].input_ids[:start], user_opening, str(skills[index]))
            for index, start in zip(chunk, starts, strict=True)
        ]
        responses = [sequences[index].input_ids[start:] for index, start in zip(chunk, starts, strict=True)]
        scored = rescore(model, contexts, responses, pad_id=pad_id, autocast_dtype=autocast_dtype)
        for index, start, logprobs in zip(chunk, starts, scored, strict=True):
            sequence = sequences[index]
            masked = zip(logprobs.tolist(), sequence.loss_mask[start:], strict=True)
            values = tuple(float(value) if mask else 0.0 for value, mask in masked)
            out[index] = dataclasses.replace(sequence, teacher_logprobs=(0.0,) * start + values)
    return out
