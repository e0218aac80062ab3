"""RLTF-FM: feedback modelling, a supervised target that teaches the policy to predict the env's critique c_0 of
its first attempt, given the question and that attempt (an auxiliary task: the paper finds that modelling the
feedback improves the policy's own answers).

The prompt is one user message, rendered fresh with the chat template (it carries no loss); the target is the
critique's text encoded on its own, as a reply sampled after the generation prompt would start, and the template's
end-of-turn token, with loss on exactly those tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from reflectgym.agents.chat import ChatFormat
from reflectgym.agents.policy import Message
from reflectgym.trainers.batching import TrainingSequence
from reflectgym.trainers.rltf.episodes import SecondTurn

CRITIQUE_INSTRUCTION = "You are given a question and your previous attempt at it. Write a critique of the attempt."
"""Heads the feedback-modelling prompt (the paper's wording, shortened)."""


def critique_messages(question: str, attempt: str) -> list[Message]:
    """The conversation whose reply is the critique: the instruction, the question and the attempt."""
    content = f"{CRITIQUE_INSTRUCTION}\n\nQuestion:\n{question}\n\nYour previous attempt:\n{attempt}\n\nCritique:"
    return [{"role": "user", "content": content}]


def critique_sequence(chat: ChatFormat, episode: SecondTurn) -> TrainingSequence | None:
    """The supervised sequence of one critique (None when the env gave no feedback text)."""
    if not episode.critique.strip():
        return None
    prompt = chat.prompt_ids(critique_messages(episode.question, episode.attempt))
    target = [*chat.encode(episode.critique), *chat.reply_tail_ids[:1]]  # (its end of turn: the model learns to stop)
    return TrainingSequence(
        input_ids=(*prompt, *target),
        loss_mask=(0,) * len(prompt) + (1,) * len(target),
        old_logprobs=(0.0,) * (len(prompt) + len(target)),
        group=episode.group,
        supervised=True,
    )


def feedback_sequences(
    chat: ChatFormat, episodes: Sequence[SecondTurn]
) -> tuple[list[TrainingSequence], dict[str, float]]:
    """One RLTF-FM sequence per critique that led to a second turn, and counts to log."""
    sequences = [sequence for episode in episodes if (sequence := critique_sequence(chat, episode)) is not None]
    counts = {
        "fm_sequences": float(len(sequences)),
        "fm_tokens": float(sum(sum(sequence.loss_mask) for sequence in sequences)),
    }
    return sequences, counts
