"""RLTF-SD: the second answer y_1, written after the critique, re-attached to the original prompt x_0 and trained
as an answer to it with advantage A = (r_1 − mean over the group of r_0)·coef.

π_old of a re-attached token is the model's own log-prob of it *under x_0* (scored by `rescore` with the step's
weights before the update, without gradient, under the session's autocast), not the sampler's log-prob under x_1:
y_1 was never sampled from π(·|x_0), so the sampler's ratio π_θ(y_t|x_0,·)/π(y_t|x_1,·) would compare two
contexts, not two policies — far from 1 for most tokens, it would either scale the gradient by a near-zero
weight or be clipped to none. With π_old under x_0 the ratio starts at 1 and the term is an advantage-weighted
likelihood of the revised answer (as in the official code, which overwrites the sampler's log-probs with x_0's).
Tokens that x_0's policy finds implausible (log-prob below −5) are left out instead: there the revised answer
leans on what only x_1 holds (the critique), and log π's gradient is largest.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from reflectgym.core.trajectory import Trajectory
from reflectgym.trainers.batching import TrainingSequence
from reflectgym.trainers.rescore import rescore_frozen
from reflectgym.trainers.rltf.episodes import SecondTurn, first_turn_baseline, second_turns

LOGPROB_FLOOR = -5.0
"""Re-attached tokens whose log-prob under x_0 is below this carry no loss (the paper's threshold)."""


def sd_advantage(second_reward: float, baseline: float, coef: float) -> float:
    """A = (r_1 − mean r_0)·coef: the revised answer against what the group managed at its first turn."""
    return (second_reward - baseline) * coef


def reattached_sequence(
    prompt_ids: Sequence[int],
    reply_ids: Sequence[int],
    x0_logprobs: Sequence[float],
    advantage: float,
    *,
    floor: float = LOGPROB_FLOOR,
    group: int = 0,
) -> tuple[TrainingSequence | None, int]:
    """x_0 followed by y_1's ids, loss on y_1's tokens whose log-prob under x_0 is at least `floor`, π_old their
    log-prob under x_0; and how many tokens the floor masked. None when it masked them all."""
    if len(x0_logprobs) != len(reply_ids):
        raise ValueError(f"{len(x0_logprobs)} log-probs for {len(reply_ids)} reply tokens")
    keep = [logprob >= floor for logprob in x0_logprobs]
    masked = len(keep) - sum(keep)
    if not any(keep):
        return None, masked
    prompt = len(prompt_ids)
    old = tuple(float(logprob) if kept else 0.0 for logprob, kept in zip(x0_logprobs, keep, strict=True))
    sequence = TrainingSequence(
        input_ids=(*prompt_ids, *reply_ids),
        loss_mask=(0,) * prompt + tuple(int(kept) for kept in keep),
        old_logprobs=(0.0,) * prompt + old,
        advantage=advantage,
        group=group,
    )
    return sequence, masked


def logprobs_under_first_prompt(
    model: torch.nn.Module,
    episodes: Sequence[SecondTurn],
    *,
    pad_id: int,
    batch_size: int,
    autocast_dtype: torch.dtype | None = None,
    temperature: float = 1.0,
) -> list[list[float]]:
    """log π(y_1 | x_0) per token of each episode's second answer: `model` as it is now, without gradient, in eval
    mode (no dropout, as the update's passes run), at the update's `temperature`, `batch_size` episodes per pass."""
    scored = rescore_frozen(
        model,
        [episode.prompt_ids for episode in episodes],
        [episode.reply_ids for episode in episodes],
        pad_id=pad_id,
        batch_size=batch_size,
        autocast_dtype=autocast_dtype,
        temperature=temperature,
    )
    return [logprobs.tolist() for logprobs in scored]


def self_distillation_sequences(
    model: torch.nn.Module,
    groups: Sequence[Sequence[Trajectory]],
    *,
    coef: float,
    pad_id: int,
    batch_size: int,
    floor: float = LOGPROB_FLOOR,
    autocast_dtype: torch.dtype | None = None,
    temperature: float = 1.0,
) -> tuple[list[TrainingSequence], dict[str, float]]:
    """The step's RLTF-SD sequences (one per episode with a second turn whose advantage is not 0) and counts to
    log; `model` scores x_0 as it is before the update, at the update's `temperature`."""
    baselines = [first_turn_baseline(group) for group in groups]
    episodes: list[SecondTurn] = []
    advantages: list[float] = []
    for episode in second_turns(groups):
        baseline = baselines[episode.group]
        advantage = sd_advantage(episode.second_reward, baseline, coef) if baseline is not None else 0.0
        if advantage != 0.0:  # no gradient, only tokens diluting the step's mean
            episodes.append(episode)
            advantages.append(advantage)
    scored = logprobs_under_first_prompt(
        model, episodes, pad_id=pad_id, batch_size=batch_size, autocast_dtype=autocast_dtype, temperature=temperature
    )
    sequences: list[TrainingSequence] = []
    masked = 0
    for episode, advantage, logprobs in zip(episodes, advantages, scored, strict=True):
        sequence, dropped = reattached_sequence(
            episode.prompt_ids, episode.reply_ids, logprobs, advantage, floor=floor, group=episode.group
        )
        masked += dropped
        if sequence is not None:
            sequences.append(sequence)
    counts = {
        "sd_sequences": float(len(sequences)),
        "sd_tokens": float(sum(sum(sequence.loss_mask) for sequence in sequences)),
        "sd_tokens_masked": float(masked),
    }
    return sequences, counts
