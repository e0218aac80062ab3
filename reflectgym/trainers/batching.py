"""From token records to padded tensors, and log-probabilities of given tokens under a causal LM.

A `TrainingSequence` is one whole conversation as the model saw it (prompt, assistant turns, environment
turns), with a loss mask that is on only for tokens the policy sampled, and the sampler's log-probs for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from reflectgym.agents.chat import TokenRecord
from reflectgym.trainers.logprobs import token_logprobs


@dataclass(frozen=True)
class TrainingSequence:
    """One conversation's tokens with what the losses need.

    Attributes:
        input_ids: Every token of the conversation, in order.
        loss_mask: 1 where the policy sampled the token (assistant turns), 0 for prompt and environment tokens.
        old_logprobs: The sampler's log-prob of each token (0.0 where `loss_mask` is 0).
        advantage: The rollout's advantage (GRPO) or weight (SFT: 1.0), broadcast to its tokens.
        group: Index of the task-instance group the rollout belongs to.
        teacher_logprobs: A teacher's log-prob of each token under its own context (self-distillation: Skill-SD's
            skill-conditioned teacher), 0.0 where `loss_mask` is 0; None when no teacher scored the sequence.
        supervised: The loss-carrying tokens are a supervised target, not tokens the policy sampled (RLTF's
            feedback modelling: the env's critique); a trainer that mixes both gives them a likelihood loss.
        token_advantages: An advantage per token (per-turn returns: each reply's tokens carry its turn's),
            overriding `advantage`; None: `advantage` on every token.
    """

    input_ids: tuple[int, ...]
    loss_mask: tuple[int, ...]
    old_logprobs: tuple[float, ...]
    advantage: float = 1.0
    group: int = 0
    teacher_logprobs: tuple[float, ...] | None = None
    supervised: bool = False
    token_advantages: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        lengths = [len(self.input_ids), len(self.loss_mask), len(self.old_logprobs)]
        lengths += [len(values) for values in (self.teacher_logprobs, self.token_advantages) if values is not None]
        if len(set(lengths)) != 1:
            raise ValueError(
                "input_ids, loss_mask, old_logprobs (and teacher_logprobs, token_advantages) must align; got lengths "
                + ", ".join(map(str, lengths))
            )
        if self.loss_mask and self.loss_mask[0]:
            raise ValueError("the first token has no context to be predicted from; it cannot carry loss")

    @classmethod
    def from_record(cls, record: TokenRecord, advantage: float = 1.0, group: int = 0) -> TrainingSequence:
        """The sequence of a token record (what a policy sampled, or a rendered demonstration)."""
        return cls(record.input_ids, record.loss_mask, record.logprobs, advantage, group)


@dataclass(frozen=True)
class Batch:
    """Right-padded tensors of a minibatch; position t of the targets is predicted from positions < t.

    Attributes:
        input_ids: (B, T) token ids, padded with `pad_id`.
        attention_mask: (B, T) 1 on real tokens.
        loss_mask: (B, T-1) loss mask of the *target* tokens input_ids[:, 1:].
        old_logprobs: (B, T-1) sampler log-probs of the target tokens.
        advantages: (B, T-1) the advantage of each target token (its sequence's, or its own per-turn one).
        teacher_logprobs: (B, T-1) teacher log-probs of the target tokens (0.0 where no teacher scored them).
        teacher_mask: (B, T-1) 1 on target tokens of sequences a teacher scored.
        supervised: (B,) 1.0 for sequences whose target is supervised (`TrainingSequence.supervised`).
    """

    input_ids: Tensor
    attention_mask: Tensor
    loss_mask: Tensor
    old_logprobs: Tensor
    advantages: Tensor
    teacher_logprobs: Tensor
    teacher_mask: Tensor
    supervised: Tensor

    def to(self, device: torch.device | str) -> Batch:
        """The same batch on `device`."""
        return Batch(*(getattr(self, field.name).to(device) for field in dataclasses.fields(self)))


def collate(sequences: Sequence[TrainingSequence], pad_id: int) -> Batch:
    """Pads sequences on the right into a `Batch`."""
    if not sequences:
        raise ValueError("cannot collate an empty list of sequences")
    length = max(len(sequence.input_ids) for sequence in sequences)
    count = len(sequences)
    input_ids = torch.full((count, length), pad_id, dtype=torch.long)
    attention = torch.zeros((count, length), dtype=torch.long)
    mask = torch.zeros((count, length), dtype=torch.float32)
    old = torch.zeros((count, length), dtype=torch.float32)
    teacher = torch.zeros((count, length), dtype=torch.float32)
    taught = torch.zeros((count, length), dtype=torch.float32)
    advantages = torch.zeros((count, length), dtype=torch.float32)
    for row, sequence in enumerate(sequences):
        size = len(sequence.input_ids)
        input_ids[row, :size] = torch.tensor(sequence.input_ids)
        attention[row, :size] = 1
        mask[row, :size] = torch.tensor(sequence.loss_mask, dtype=torch.float32)
        old[row, :size] = torch.tensor(sequence.old_logprobs, dtype=torch.float32)
        if sequence.teacher_logprobs is not None:
            teacher[row, :size] = torch.tensor(sequence.teacher_logprobs, dtype=torch.float32)
            taught[row, :size] = 1.0
        if sequence.token_advantages is not None:
            advantages[row, :size] = torch.tensor(sequence.token_advantages, dtype=torch.float32)
        else:
            advantages[row, :size] = sequence.advantage
    supervised = torch.tensor([float(sequence.supervised) for sequence in sequences])
    targets = slice(1, None)
    return Batch(
        input_ids,
        attention,
        mask[:, targets],
        old[:, targets],
        advantages[:, targets],
        teacher[:, targets],
        taught[:, targets],
        supervised,
    )


def target_logprobs(
    model: torch.nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    autocast_dtype: torch.dtype | None = None,
    temperature: float = 1.0,
) -> Tensor:
    """(B, T-1) log π(input_ids[:, t] | input_ids[:, :t]) for t ≥ 1, in float32, π the model's softmax at
    `temperature`; the forward pass under `autocast_dtype` autocast when given (every model a loss compares must run
    under the same precision, and be scored at the same temperature)."""
    with torch.autocast(input_ids.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, T, V)
    return token_logprobs(logits[:, :-1], input_ids[:, 1:], temperature)
