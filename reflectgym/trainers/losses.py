"""Pure loss functions of the trainer core, each unit-tested against hand-computed values.

Shapes: `B` sequences, `T` response tokens (padded); `mask` is 1.0 on tokens that carry loss (assistant tokens
the policy sampled) and 0.0 on prompt, environment and padding tokens.

* `group_advantages`: GRPO's group-normalised returns (DeepSeekMath, Shao et al. 2024). Deviation noted: the
  group std is the population std (TRL uses the sample std); with it a 2-rollout group gets advantages ±1.
* `discounted_turn_returns`, `pooled_turn_advantages`: the per-turn option of TRAINERS.md §0, each turn's
  discounted return normalised by the mean and std of every turn's return in its group (a choice of this package:
  the spec names the option, not its baseline).
* `grpo_loss`: PPO-clip surrogate on per-token ratios plus an optional k3 KL to a reference (Schulman's k3).
* `sft_loss`: next-token negative log-likelihood on masked tokens.
* `self_distillation_loss`: Skill-SD's importance-weighted reverse-KL term, ρ_t·(exp(−ℓ_t) − 1 + ℓ_t) with
  ℓ_t = log π_θ − stopgrad(log π_teacher) and ρ_t = π_θ / stopgrad(π_old); see TRAINERS.md §2 for why ρ keeps
  its gradient (it makes this the true reverse-KL gradient, not the forward one).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Normalisation = Literal["token", "sequence"]


def masked_mean(values: Tensor, mask: Tensor, normalisation: Normalisation = "token") -> Tensor:
    """Mean over valid tokens: over all of them (`token`) or per sequence, then over sequences (`sequence`)."""
    mask = mask.to(values.dtype)
    if normalisation == "token":
        return (values * mask).sum() / mask.sum().clamp_min(1.0)
    per_sequence = (values * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)  # (B,)
    has_tokens = (mask.sum(-1) > 0).to(values.dtype)
    return (per_sequence * has_tokens).sum() / has_tokens.sum().clamp_min(1.0)


def group_advantages(returns: Tensor, group_size: int, eps: float = 1e-6) -> Tensor:
    """A_i = (R_i − mean R) / (std R + eps) within consecutive groups of `group_size` rollouts.

    Args:
        returns: (B,) one return per rollout, groups contiguous.
        group_size: G, rollouts per task instance; B must be a multiple of it.
        eps: Keeps zero-variance groups at advantage 0 instead of NaN.
    """
    if returns.ndim != 1 or returns.numel() % group_size:
        raise ValueError(
            f"returns must be 1-D with a multiple of group_size={group_size} entries; got {tuple(returns.shape)}"
        )
    groups = returns.view(-1, group_size)  # (B/G, G)
    mean = groups.mean(-1, keepdim=True)
    std = groups.std(-1, unbiased=False, keepdim=True)
    return ((groups - mean) / (std + eps)).view(-1)


def discounted_turn_returns(rewards: Sequence[float], gamma: float) -> list[float]:
    """G_t = Σ_{k ≥ t} γ^(k−t) r_k for each turn t of one episode (TRAINERS.md §0's per-turn option)."""
    returns: list[float] = []
    running = 0.0
    for reward in reversed(rewards):
        running = float(reward) + gamma * running
        returns.append(running)
    return returns[::-1]


def pooled_turn_advantages(group: Sequence[Sequence[float]], eps: float = 1e-6) -> list[list[float]]:
    """A_{i,t} = (G_{i,t} − mean G) / (std G + eps), the mean and (population) std over every turn of every
    rollout of one group. With one turn per episode this is `group_advantages` of the episode returns."""
    pooled = torch.tensor([value for returns in group for value in returns], dtype=torch.float32)
    if pooled.numel() == 0:
        return [[] for _ in group]
    advantages = group_advantages(pooled, pooled.numel(), eps).tolist()  # (the same arithmetic, bit for bit)
    ends = list(itertools.accumulate(len(returns) for returns in group))
    return [advantages[end - len(returns) : end] for returns, end in zip(group, ends, strict=True)]


def zero_variance_groups(returns: Tensor, group_size: int) -> Tensor:
    """(B/G,) True for groups whose returns are all equal: they carry no GRPO signal."""
    groups = returns.view(-1, group_size)
    return (groups == groups[:, :1]).all(-1)


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(π_θ ‖ π_ref): exp(r) − r − 1 with r = log π_ref − log π_θ (≥ 0)."""
    log_ratio = ref_logprobs - logprobs
    return torch.exp(log_ratio) - log_ratio - 1.0


@dataclass(frozen=True)
class GRPOLossOutput:
    """The GRPO loss and what to log about it.

    Attributes:
        loss: Scalar to minimise.
        policy_loss: The clipped-surrogate part.
        kl: Mean k3 KL to the reference (0 when there is no reference).
        clip_fraction: Fraction of valid tokens whose ratio was clipped.
        ratio_mean: Mean per-token ratio π_θ/π_old over valid tokens.
    """

    loss: Tensor
    policy_loss: Tensor
    kl: Tensor
    clip_fraction: Tensor
    ratio_mean: Tensor


def grpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_eps: float = 0.2,
    ref_logprobs: Tensor | None = None,
    kl_coef: float = 0.0,
    normalisation: Normalisation = "token",
) -> GRPOLossOutput:
    """−mean(min(ρA, clip(ρ, 1−ε, 1+ε)A)) + β·k3, over valid tokens.

    Args:
        logprobs: (B, T) log π_θ of the sampled tokens (with grad).
        old_logprobs: (B, T) log π_old from the sampler (no grad).
        advantages: (B,) one advantage per rollout, broadcast to its tokens, or (B, T) one per token.
        mask: (B, T) 1 on tokens that carry loss.
        clip_eps: ε of the clip range.
        ref_logprobs: (B, T) log π_ref, needed when `kl_coef` > 0.
        kl_coef: β; 0 means no reference model.
        normalisation: `token` (mean over all valid tokens) or `sequence` (per sequence, then over sequences).
    """
    if kl_coef > 0 and ref_logprobs is None:
        raise ValueError("kl_coef > 0 needs ref_logprobs (log-probs under the reference model)")
    ratio = torch.exp(logprobs - old_logprobs.detach())  # (B, T)
    adv = advantages.detach() if advantages.dim() == 2 else advantages.detach()[:, None]  # (B, T) or (B, 1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    per_token = -torch.minimum(unclipped, clipped)  # (B, T)
    kl = torch.zeros_like(per_token)
    if ref_logprobs is not None:
        kl = k3_kl(logprobs, ref_logprobs.detach())
    policy_loss = masked_mean(per_token, mask, normalisation)
    kl_mean = masked_mean(kl, mask, normalisation)
    loss = policy_loss + kl_coef * kl_mean if kl_coef > 0 else policy_loss
    with torch.no_grad():
        was_clipped = ((ratio < 1.0 - clip_eps) | (ratio > 1.0 + clip_eps)).to(per_token.dtype)
        clip_fraction = masked_mean(was_clipped, mask)
        ratio_mean = masked_mean(ratio, mask)
    return GRPOLossOutput(loss, policy_loss, kl_mean.detach(), clip_fraction, ratio_mean)


def sft_loss(logprobs: Tensor, mask: Tensor, normalisation: Normalisation = "token") -> Tensor:
    """Negative log-likelihood of the target tokens where `mask` is on. `logprobs`: (B, T) of the targets."""
    return masked_mean(-logprobs, mask, normalisation)


def self_distillation_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    teacher_logprobs: Tensor,
    mask: Tensor,
    *,
    teacher_mask: Tensor | None = None,
    normalisation: Normalisation = "token",
) -> Tensor:
    """Skill-SD's L_SD = (1/N) Σ ρ_t·(exp(−ℓ_t) − 1 + ℓ_t) over valid tokens.

    Args:
        logprobs: (B, T) log π_θ of the student's sampled tokens under the student context (with grad).
        old_logprobs: (B, T) log π_old of the same tokens from the sampler (no grad).
        teacher_logprobs: (B, T) log π_θ̄ of the same tokens under the teacher context (no grad).
        mask: (B, T) 1 on the student's assistant tokens: N counts them.
        teacher_mask: (B, T) 1 where a teacher scored the token; elsewhere the term is 0, as for a teacher that
            equals the student (ℓ = 0), and the token still counts in N. Default: everywhere.
        normalisation: `token` (N = all valid tokens) or `sequence` (per sequence, then over sequences).
    """
    log_ratio_teacher = logprobs - teacher_logprobs.detach()  # ℓ_t
    if teacher_mask is not None:  # (a masked-out ℓ is 0 before exp: a 0.0 placeholder must not overflow)
        log_ratio_teacher = log_ratio_teacher * teacher_mask
    rho = torch.exp(logprobs - old_logprobs.detach())  # keeps its gradient on purpose
    k3 = torch.exp(-log_ratio_teacher) - 1.0 + log_ratio_teacher
    return masked_mean(rho * k3, mask, normalisation)
