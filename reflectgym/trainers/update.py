"""One optimisation step over a list of `TrainingSequence`s: minibatches, gradient accumulation, clipping.

Shared by every trainer: GRPO passes its clipped-surrogate loss, SFT its masked NLL, Skill-SD the sum of
GRPO and the self-distillation term. The loss function sees a padded `Batch` and the current log-probs of its
target tokens, and returns a scalar mean over its minibatch: over its valid tokens (`token` normalisation) or over
its sequences that carry loss (`sequence`). Accumulation weights each minibatch by its share of those units in the
whole step (over every rank under DDP), so the step equals one big batch's mean no matter how it is split.
A step whose gradient is not finite is skipped (the weights stay as they were) and says so.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributed.tensor import DTensor

from reflectgym.trainers.batching import Batch, TrainingSequence, collate, target_logprobs
from reflectgym.trainers.data_parallel import global_max, global_sum, global_sums
from reflectgym.trainers.losses import Normalisation
from reflectgym.trainers.sharding import is_sharded

LossFn = Callable[[Batch, Tensor], tuple[Tensor, dict[str, float]]]
"""(batch, current target log-probs (B, T-1)) → (scalar loss, metrics to log)."""


@dataclass(frozen=True)
class UpdateResult:
    """What one optimiser step did.

    Attributes:
        loss: Mean loss over the whole step (over its tokens or its sequences, as normalised).
        grad_norm: Gradient norm before clipping (not finite: the step was skipped).
        tokens: Valid (loss-carrying) tokens in the step.
        metrics: Means of the loss function's extra metrics, weighted as the loss is.
        applied: False when the gradient was not finite and the optimiser step was skipped.
    """

    loss: float
    grad_norm: float
    tokens: int
    metrics: dict[str, float]
    applied: bool = True


def idle_sequence(pad_id: int) -> TrainingSequence:
    """A two-token sequence run with weight 0: keeps a rank that has fewer minibatches in step with DDP."""
    return TrainingSequence((pad_id, pad_id), (0, 1), (0.0, 0.0))


def world_size_of(model: torch.nn.Module) -> int:
    """Ranks training `model` together: the process group's size for a DDP or fully sharded model, else 1."""
    if (hasattr(model, "join") or is_sharded(model)) and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def gradient_sync(model: torch.nn.Module, last: bool) -> contextlib.AbstractContextManager[object]:
    """Where a pass of a step runs: a DistributedDataParallel `model`'s passes before the step's `last` under
    `no_sync()` (their gradients accumulate on each rank, and the last pass all-reduces the sum: one all-reduce per
    step rather than one per minibatch), every other pass as it is (a fully sharded model reduce-scatters each
    pass's gradients into its shards: whole gradients are never kept)."""
    no_sync: Any = getattr(model, "no_sync", None)
    return no_sync() if no_sync is not None and not last else contextlib.nullcontext()


def optimizer_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    sequences: Sequence[TrainingSequence],
    loss_fn: LossFn,
    *,
    pad_id: int,
    minibatch_size: int,
    max_grad_norm: float | None = 1.0,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    autocast_dtype: torch.dtype | None = None,
    normalisation: Normalisation = "token",
    dropout: bool = True,
    temperature: float = 1.0,
) -> UpdateResult:
    """Accumulates gradients over minibatches of `sequences` and takes one optimiser step.

    `normalisation` must be the one `loss_fn` averages by: it decides each minibatch's weight. `dropout=False` runs
    the passes with dropout off (`model.eval()`), as a sampler and a reference model run: a ratio to their log-probs
    is then 1 before the update. `temperature` is the one the log-probs `loss_fn` receives are taken at (the
    sampler's, for a ratio to its log-probs). With a DistributedDataParallel or fully sharded `model`, `sequences`
    are this rank's share: the counts, the loss and the metrics are global over every rank (see
    `reflectgym.trainers.data_parallel`), a rank may hold no sequence, and every rank runs as many passes; DDP
    all-reduces gradients once, in the step's last pass (`gradient_sync`).
    """
    device = next(model.parameters()).device
    ranks = world_size_of(model)
    local_tokens = sum(sum(sequence.loss_mask) for sequence in sequences)
    total_tokens = int(global_sum(local_tokens, device)) if ranks > 1 else local_tokens
    if total_tokens == 0:
        raise ValueError("no token carries loss in this step (every loss mask is empty)")
    model.train(dropout)
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    metric_sums: dict[str, float] = {}
    chunks = [sequences[start : start + minibatch_size] for start in range(0, len(sequences), minibatch_size)]
    units = [averaged_units(chunk, normalisation) for chunk in chunks]
    total_units = int(global_sum(sum(units), device)) if ranks > 1 else sum(units)
    weights = [count / total_units for count in units]
    if ranks > 1:  # DDP all-reduces in the step's last pass: every rank runs as many (idle ones: zero-weight) passes
        idle = int(global_max(len(chunks), device)) - len(chunks)
        chunks += [[idle_sequence(pad_id)]] * idle
        weights += [0.0] * idle
    passes = [(chunk, weight) for chunk, weight in zip(chunks, weights, strict=True) if weight or ranks > 1]
    for index, (chunk, weight) in enumerate(passes):
        with gradient_sync(model, last=index == len(passes) - 1):
            batch = collate(chunk, pad_id).to(device)
            logprobs = target_logprobs(model, batch.input_ids, batch.attention_mask, autocast_dtype, temperature)
            loss, metrics = loss_fn(batch, logprobs)
            (loss * weight * ranks).backward()  # DDP averages gradients over ranks; the weights already sum to 1
        loss_sum += loss.item() * weight
        for key, value in metrics.items():
            metric_sums[key] = metric_sums.get(key, 0.0) + value * weight
    if ranks > 1:
        loss_sum = global_sum(loss_sum, device)
        metric_sums = global_sums(metric_sums, device)
    parameters = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm if max_grad_norm else float("inf"))
    grad_norm = float(norm.full_tensor() if isinstance(norm, DTensor) else norm)  # (sharded: over every shard)
    applied = math.isfinite(grad_norm)  # the same on every rank: DDP's gradients are already averaged
    if applied:
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    else:  # a NaN or inf would be written into the weights (and every later checkpoint): skip this step
        warnings.warn(f"gradient norm is {grad_norm}: optimiser step skipped", stacklevel=2)
    return UpdateResult(loss_sum, grad_norm, total_tokens, metric_sums, applied)


def averaged_units(sequences: Sequence[TrainingSequence], normalisation: Normalisation) -> int:
    """What a loss normalised by `normalisation` averages over in `sequences`: valid tokens, or sequences with at
    least one valid token."""
    if normalisation == "token":
        return sum(sum(sequence.loss_mask) for sequence in sequences)
    return sum(1 for sequence in sequences if any(sequence.loss_mask))
