"""The numbers ExIt computes for a group besides GRPO's advantages (TRAINERS.md §3): the improvement reward, the
learnability score that prioritises instances, and the diversity weights of the optional bonus."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def improvement_reward(quality: float, previous: float) -> float:
    """max(0, (q_new − q_prev) / (1 − q_prev)): the share of the remaining gap the new attempt closed, with q_prev
    taken as 0 when it was a penalty. 0 when the previous attempt already scored 1 or more (nothing was left to
    close). A new attempt's penalty (q_new < 0: a format penalty) stays its return."""
    if quality < 0.0:
        return quality
    previous = max(previous, 0.0)
    if previous >= 1.0:
        return 0.0
    return max(0.0, (quality - previous) / (1.0 - previous))


def learnability(returns: Sequence[float], low: float = 0.0, high: float = 1.0) -> float:
    """S: the population variance of the returns once clipped to [low, high] and scaled to [0, 1]; p(1 − p) for
    0/1 returns with success rate p, 0 for a uniform group (and for fewer than two returns)."""
    if len(returns) < 2:
        return 0.0
    scaled = np.clip((np.asarray(returns, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
    if (scaled == scaled[0]).all():  # exactly 0: the mean of equal floats can round off them
        return 0.0
    return float(scaled.var())


@torch.no_grad()
def reply_embeddings(model: torch.nn.Module, replies: Sequence[Sequence[int]]) -> Tensor:
    """(G, D): each reply's mean input embedding of its sampled tokens (a zero vector for a reply without any). The
    model's own token embeddings, so no second model is needed; a bag of its tokens, blind to their order."""
    table = model.get_input_embeddings().weight  # type: ignore[operator, union-attr]  # (V, D)
    rows = [
        table[torch.tensor(list(ids), dtype=torch.long, device=table.device)].float().mean(0)
        if len(ids)
        else torch.zeros(table.shape[1], device=table.device)
        for ids in replies
    ]
    return torch.stack(rows).cpu()


def diversity_weights(embeddings: Tensor, eps: float = 1e-12) -> Tensor:
    """(G,) d_i ∈ [0, 1]: each embedding's Euclidean distance to the group mean, min-max normalised over the
    group. A group whose distances are all equal (identical embeddings) carries no diversity signal: every d_i is
    1, so the bonus leaves its advantages as they are (and no 0/0 makes a NaN)."""
    distances = (embeddings - embeddings.mean(0, keepdim=True)).norm(dim=-1)  # (G,)
    span = distances.max() - distances.min()
    if not torch.isfinite(span) or span <= eps:
        return torch.ones_like(distances)
    return (distances - distances.min()) / span


def with_diversity_bonus(advantages: Tensor, weights: Tensor) -> Tensor:
    """A_i·d_i where A_i > 0, A_i elsewhere: among the better-than-average replies, the ones unlike the rest of
    the group are reinforced more."""
    return torch.where(advantages > 0, advantages * weights, advantages)
