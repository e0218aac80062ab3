"""Log-probabilities of target tokens from a model's logits, without a float32 copy of the whole vocabulary.

`log_softmax(logits.float()).gather(targets)` holds two float32 (B, T, V) tensors at its peak beside the model's
own bfloat16 logits, and keeps one of them for the backward pass: on a 150k vocabulary, 2 sequences of 4,096
tokens, 5 GB each. `token_logprobs` computes the same values (float32) a slice of positions at a time: the forward
keeps the logits (which the model has made anyway) and one float per token (the log-normaliser), and the backward
rebuilds each slice's softmax from them. Its peak is the logits plus one slice; its values and gradients are the
`log_softmax` ones (tested). TRL's `selective_log_softmax` and Liger's fused losses answer the same problem.

`temperature` scores the tokens under softmax(logits / temperature), the distribution a sampler at that temperature
draws from, without a scaled copy of the logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

SLICE_ELEMENTS = 1 << 24
"""Float32 elements of logits handled at once (64 MB): positions per slice = this // vocabulary size."""


def token_logprobs(logits: Tensor, target_ids: Tensor, temperature: float = 1.0) -> Tensor:
    """(B, T, V) logits and (B, T) targets → (B, T) log-probabilities of the targets under softmax(logits /
    `temperature`), computed in float32 (float64 for float64 logits)."""
    if logits.dim() != 3 or target_ids.shape != logits.shape[:2]:
        raise ValueError(
            f"expected (B, T, V) logits and (B, T) targets; got {tuple(logits.shape)}, {tuple(target_ids.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    result: Tensor = _TargetLogprobs.apply(logits, target_ids, temperature)
    return result


def _slices(logits: Tensor) -> list[tuple[int, slice]]:
    """(row, positions) pieces of (B, T, V) logits, each at most `SLICE_ELEMENTS` elements (at least a position)."""
    rows, steps, vocabulary = logits.shape
    span = max(1, SLICE_ELEMENTS // max(vocabulary, 1))
    return [(row, slice(start, start + span)) for row in range(rows) for start in range(0, steps, span)]


def _exact(logits: Tensor) -> torch.dtype:
    """The precision the log-probs are computed in: float32, or float64 for float64 logits."""
    return torch.promote_types(logits.dtype, torch.float32)


def _scaled(values: Tensor, temperature: float) -> Tensor:
    """`values` / `temperature` in place (untouched at temperature 1, so that case is bit for bit the plain one)."""
    return values if temperature == 1.0 else values.div_(temperature)


class _TargetLogprobs(torch.autograd.Function):
    """log p(target) = z[target] − logsumexp(z) with z = logits / temperature, in float32, with a backward of
    (onehot − softmax(z)) / temperature."""

    @staticmethod
    def forward(ctx: Any, logits: Tensor, target_ids: Tensor, temperature: float) -> Tensor:
        exact = _exact(logits)
        normaliser = torch.empty(logits.shape[:2], dtype=exact, device=logits.device)
        for row, positions in _slices(logits):
            piece = _scaled(logits[row, positions].to(exact, copy=temperature != 1.0), temperature)
            normaliser[row, positions] = torch.logsumexp(piece, dim=-1)
        picked = _scaled(logits.gather(-1, target_ids.unsqueeze(-1)).squeeze(-1).to(exact), temperature)
        ctx.save_for_backward(logits, target_ids, normaliser)
        ctx.temperature = temperature
        return picked - normaliser

    @staticmethod
    def backward(ctx: Any, *grad_outputs: Tensor) -> tuple[Tensor, None, None]:
        (grad,) = grad_outputs
        logits, target_ids, normaliser = ctx.saved_tensors
        temperature: float = ctx.temperature
        grad_logits = torch.empty_like(logits)
        for row, positions in _slices(logits):
            upstream = _scaled(grad[row, positions].to(normaliser.dtype, copy=True), temperature).unsqueeze(-1)
            piece = _scaled(logits[row, positions].to(normaliser.dtype, copy=True), temperature)  # in place:
            piece.sub_(normaliser[row, positions].unsqueeze(-1)).exp_().mul_(-upstream)  # softmax · −upstream
            piece.scatter_add_(-1, target_ids[row, positions].unsqueeze(-1), upstream)
            grad_logits[row, positions] = piece
        return grad_logits, None, None
