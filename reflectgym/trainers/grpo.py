"""GRPO over multi-turn text environments (DeepSeekMath, Shao et al. 2024), on the shared trainer core.

config → collect (G rollouts per task instance with the rollout engine) → group-normalised advantages → clipped
surrogate (+ optional k3 KL) → one optimiser step → log / checkpoint, repeated.

Deviations from the paper, on purpose:
* By default one return per episode (the sum of its turn rewards, format penalties included), broadcast to every
  token the policy sampled in that episode. `returns: turn` is TRAINERS.md §0's per-turn option: each reply's
  tokens carry its turn's discounted return G_t = Σ_{k≥t} γ^(k−t) r_k (`gamma`), normalised by the mean and std of
  every turn's return in the group (the spec names the option, not its baseline: pooling the group's turns is this
  package's choice; with one turn per episode it is the default).
* One optimiser step per collected batch (π_old is the sampler), so the ratio is 1 up to numerics unless a
  separate engine (vLLM) samples; the clip still guards that case. For that ratio the update's passes run without
  dropout (as the sampler and the reference do; TRL's `disable_dropout`). Under bf16 autocast the ratio at the
  start of an update is not 1 but bf16's rounding: measured on SmolLM2-135M (CPU, about 140 tokens), the update's
  log-probs differ from a float32 sampler's by 0.023 nats per token on average and 0.15 at most, and by as much
  (0.022, 0.17) from a sampler run under the same autocast (its KV cache computes in another order). π_old is not
  recomputed with the update's own pass.
* The group std is the population std (see `losses.group_advantages`).
* With a history window (`history_turns`), each turn's context is its own sequence carrying the episode's
  advantage; the token mean runs over all of them.
* Under `torchrun`, each rank rolls out its share of the step's task instances (whole groups), so advantages
  never need another rank's returns; the update is the global mean (see `trainers.data_parallel`).
* Episodes that ended in an error (env, verifier or policy failure) are left out of their group, not scored 0.
* The policy trained is the model at the sampling `temperature`: the update, the KL's reference (and Skill-SD's
  teacher, RLTF's x_0 scores) take log-probs of softmax(logits / temperature), as the samplers report theirs (verl
  and TRL divide the logits by it too), so the ratio is 1 at the start of an update whatever the temperature. Top-p
  is not modelled (the trainers sample with top_p 1).
* The KL's reference is the initial model: a frozen copy in full fine-tuning; under LoRA the trained model itself
  with its adapters disabled (its base model, which never trains: TRL's way), so the weights are held once.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from reflectgym.agents.chat import TokenRecord
from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.agents.policy import Sampling
from reflectgym.agents.rollout import RolloutConfig, RolloutEngine
from reflectgym.core.trajectory import Trajectory
from reflectgym.trainers.batching import Batch, TrainingSequence, target_logprobs
from reflectgym.trainers.config import ConfigError
from reflectgym.trainers.data_parallel import global_means, global_sums
from reflectgym.trainers.losses import (
    Normalisation,
    discounted_turn_returns,
    group_advantages,
    grpo_loss,
    pooled_turn_advantages,
)
from reflectgym.trainers.samplers import SamplerOptions, build_sampler
from reflectgym.trainers.session import (
    TrainerConfig,
    TrainingSession,
    WeightSyncedSampler,
    close_env_factory,
    env_factory,
    is_lora,
    load_policy,
    trained_weights,
)


@dataclass
class GRPOOptions:
    """GRPO's options that ExIt shares: the env, the groups sampled each step and the clipped update on them (a base
    of both trainers' configs, before `TrainerConfig`; its checks run before the shared ones)."""

    env_id: str = "reflectgym/Sokoban-6x6-1-v0"
    """The env to train on (any registered id)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Arguments for `gymnasium.make(env_id, ...)`."""
    tasks_per_step: int = 4
    """Task instances per step (GRPO: fresh seeds; ExIt: batch slots, each a fresh task or one from the buffer)."""
    group_size: int = 4
    """Samples per task instance (G): rollouts, or ExIt's replies; advantages are normalised within the group."""
    clip_eps: float = 0.2
    """PPO clip range of the per-token ratio."""
    kl_coef: float = 0.0
    """β of the k3 KL to the initial model (0: no reference model is kept)."""
    drop_zero_variance_groups: bool = True
    """Skip groups whose returns are all equal: they carry no GRPO signal."""
    temperature: float = 1.0
    """Sampling temperature of rollouts and replies; the update's log-probs are taken at it too
    (`scoring_temperature`)."""
    max_new_tokens: int = 32
    """Tokens per reply at most."""
    num_envs: int = 8
    """Envs played at once, one thread each: GRPO's episodes in flight, or the envs stepping ExIt's replies (1: one
    env plays them in turn)."""
    system_prompt: str | None = None
    """System prompt of every episode or instance (default: the env family's prompt; "" sends none)."""
    first_seed: int = 0
    """The fresh-task seeds of step s are first_seed + seed * 1_000_003 + s * tasks_per_step + i."""

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        if not 0 < self.clip_eps < math.inf:
            raise ConfigError(f"clip_eps must be positive and finite; got {self.clip_eps}")
        if not 0 <= self.kl_coef < math.inf:
            raise ConfigError(f"kl_coef must be 0 (no reference model) or positive and finite; got {self.kl_coef}")
        if self.group_size < 2:
            raise ConfigError(f"group_size must be at least 2 for group-normalised advantages; got {self.group_size}")
        if not 0 <= self.temperature < math.inf:
            raise ConfigError(f"temperature must be 0 (greedy) or positive and finite; got {self.temperature}")
        for name in ("tasks_per_step", "max_new_tokens", "num_envs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1; got {getattr(self, name)}")

    @property
    def scoring_temperature(self) -> float:
        """The temperature the update's log-probs (and the reference's, and a teacher's) are taken at: the one the
        replies were sampled at, as the samplers report theirs (`Sampling.logprob_temperature`)."""
        return Sampling(temperature=self.temperature).logprob_temperature


@dataclass
class GRPOConfig(SamplerOptions, GRPOOptions, TrainerConfig):
    """Everything a GRPO run needs (the shared `TrainerConfig` options first); loadable from YAML with
    command-line overrides."""

    output_dir: str = "runs/grpo"
    """Where metrics, checkpoints, the final model and the report go."""
    max_turns: int = 40
    """Turns per episode at most: an episode still running then ends, truncated (on top of the env's own limit)."""
    history_turns: int | None = None
    """Earlier exchanges the policy sees each turn (`RolloutConfig.history_turns`; None: the whole episode)."""
    returns: Literal["episode", "turn"] = "episode"
    """What a reply is credited with: its episode's return (the sum of its rewards), or its turn's discounted return
    from that turn on (`gamma`), normalised over every turn of the group (TRAINERS.md §0's per-turn option)."""
    gamma: float = 1.0
    """Discount of per-turn returns (`returns: turn`); 1 counts every later reward in full."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.gamma <= 1:
            raise ConfigError(f"gamma must be in [0, 1]; got {self.gamma}")

    @property
    def turn_gamma(self) -> float | None:
        """γ when replies are credited per turn (`returns: turn`), else None (one return per episode)."""
        return self.gamma if self.returns == "turn" else None


def step_seeds(first_seed: int, seed: int, step: int, tasks_per_step: int) -> list[int]:
    """The fresh task seeds of a step: first_seed + seed * 1_000_003 + step * tasks_per_step + i (a pure function
    of the run seed and the step, so a resumed run plays the same tasks)."""
    base = first_seed + seed * 1_000_003 + step * tasks_per_step
    return [base + i for i in range(tasks_per_step)]


def finished_episodes(group: Sequence[Trajectory]) -> list[Trajectory]:
    """The episodes of a group that did not end in an error (the env, its verifier or the policy failed:
    `metadata["error"]`): only they say anything about their replies."""
    return [trajectory for trajectory in group if "error" not in trajectory.metadata]


def sequences_from_groups(
    groups: list[list[Trajectory]],
    drop_zero_variance: bool,
    keep: Collection[int] = (),
    turn_gamma: float | None = None,
) -> tuple[list[TrainingSequence], dict[str, float]]:
    """Advantages per group, then one `TrainingSequence` per token-recorded episode.

    An episode that ended in an error (the env, its verifier or the policy failed: `metadata["error"]`) says
    nothing about its replies, so it is left out and the group's advantages are taken over the rest; a group with
    fewer than two episodes left is dropped. Groups whose index is in `keep` stay even when their returns are all
    equal (advantages 0: a loss term other than GRPO's may still learn from them). With `turn_gamma`, each reply is
    credited with its turn's discounted return instead (`GRPOConfig.returns`), normalised over the group's turns."""
    sequences: list[TrainingSequence] = []
    dropped = failed = 0
    for index, group in enumerate(groups):
        finished = finished_episodes(group)
        failed += len(group) - len(finished)
        returns = [
            [trajectory.total_reward]
            if turn_gamma is None
            else discounted_turn_returns([turn.reward for turn in trajectory.turns], turn_gamma)
            for trajectory in finished
        ]
        values = {value for episode in returns for value in episode}
        if len(finished) < 2 or (drop_zero_variance and index not in keep and len(values) <= 1):
            dropped += 1
            continue
        if turn_gamma is None:
            advantages = group_advantages(torch.tensor([row[0] for row in returns]), len(finished)).tolist()
            credited = [[advantage] for advantage in advantages]
        else:
            credited = pooled_turn_advantages(returns)
        for trajectory, turn_advantages in zip(finished, credited, strict=True):
            sequences += _credited_sequences(trajectory, turn_advantages, index, per_turn=turn_gamma is not None)
    counts = {"groups_dropped": float(dropped), "episodes_failed": float(failed), "sequences": float(len(sequences))}
    return sequences, counts


def _credited_sequences(
    trajectory: Trajectory, advantages: Sequence[float], group: int, per_turn: bool
) -> list[TrainingSequence]:
    """The episode's training sequences (one context, or one per turn with a history window), its advantage on
    every sampled token, or (`per_turn`) each reply's turn's advantage on that reply's tokens."""
    records = TokenRecord.segments_of(trajectory)
    sequences = []
    for position, record in enumerate(records):
        if not any(record.loss_mask):
            continue
        if not per_turn:
            sequences.append(TrainingSequence.from_record(record, advantages[0], group=group))
            continue
        # a whole-episode record numbers its turns; with a window, context k holds turn k's reply alone
        turns = record.turns if len(records) == 1 else (position,) * len(record)
        if max(turn for turn, mask in zip(turns, record.loss_mask, strict=True) if mask) >= len(advantages):
            raise ValueError(f"episode {trajectory.task_id!r} holds a reply past its {len(advantages)} turns")
        per_token = tuple(advantages[turn] if mask else 0.0 for turn, mask in zip(turns, record.loss_mask, strict=True))
        plain = TrainingSequence.from_record(record, advantages[0], group=group)
        sequences.append(dataclasses.replace(plain, token_advantages=per_token))
    return sequences


def grpo_objective(
    batch: Batch,
    logprobs: torch.Tensor,
    *,
    clip_eps: float,
    kl_coef: float,
    normalisation: Normalisation,
    reference: torch.nn.Module | None = None,
    autocast_dtype: torch.dtype | None = None,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's loss of a minibatch and what to log about it, the `LossFn` every GRPO-based trainer passes to its
    update; `reference` (`kl_reference`, when `kl_coef` > 0) scores the batch without gradient, under the policy's
    precision and at its `temperature` (the update's), so the KL measures drift, not rounding or temperature."""
    ref_logprobs = None
    if reference is not None:
        with torch.no_grad(), as_reference(reference):
            ref_logprobs = target_logprobs(
                reference, batch.input_ids, batch.attention_mask, autocast_dtype, temperature
            )
    out = grpo_loss(
        logprobs,
        batch.old_logprobs,
        batch.advantages,
        batch.loss_mask,
        clip_eps=clip_eps,
        ref_logprobs=ref_logprobs,
        kl_coef=kl_coef,
        normalisation=normalisation,
    )
    return out.loss, {"kl": float(out.kl), "clip_fraction": float(out.clip_fraction), "ratio": float(out.ratio_mean)}


def kl_reference(model: torch.nn.Module, kl_coef: float) -> torch.nn.Module | None:
    """What the KL to the initial model scores with (None when `kl_coef` is 0): under LoRA the trained model itself,
    run as its base model by `as_reference` (its base weights never train; a copy of them would double the GPU memory
    the weights take), else a frozen copy of `model` as it is now."""
    if kl_coef == 0:
        return None
    if is_lora(model):
        return model
    return copy.deepcopy(model).eval().requires_grad_(False)


@contextlib.contextmanager
def as_reference(reference: torch.nn.Module) -> Iterator[None]:
    """While open, a LoRA `reference` runs as its base model, the initial policy: adapters disabled (peft's
    `disable_adapter`, which TRL scores its reference with) and no dropout; its mode comes back after. A frozen copy
    runs as it is."""
    if not is_lora(reference):
        yield
        return
    training = reference.training
    reference.eval()
    try:
        with reference.disable_adapter():  # type: ignore[operator]
            yield
    finally:
        reference.train(training)


class GRPOTrainer:
    """Trains a transformers policy with GRPO on one env.

    Args:
        config: The run's settings.
        policy: The `HFPolicy` whose model is trained in place; default: loaded from `config.model`.
        sampler: Generates the rollouts instead of `policy` (e.g. a `VLLMPolicy` on GPU); it is sent the new
            weights after every step that changed them. Default: `policy` samples its own rollouts.
    """

    name = "grpo"
    """The registered name recorded with the run (a trainer built on this one records its own)."""
    title = "GRPO"
    """How the progress bar and the report name the method."""

    def __init__(self, config: GRPOConfig, policy: HFPolicy | None = None, sampler: WeightSyncedSampler | None = None):
        self.config = config
        self.policy = policy if policy is not None else load_policy(config)
        sampler = build_sampler(config, self.policy, config.output_dir, config.seed, sampler)  # (before LoRA)
        self.session = TrainingSession(config, self.policy, describe=config, trainer=self.name)
        self.sampler = sampler
        self.reference = kl_reference(self.session.model, config.kl_coef)
        rollout = RolloutConfig(
            num_envs=config.num_envs,
            group_size=config.group_size,
            max_turns=config.max_turns,
            system_prompt=config.system_prompt,
            history_turns=config.history_turns,
            sampling=Sampling(temperature=config.temperature, max_new_tokens=config.max_new_tokens),
            lockstep=True,  # batches independent of thread timing: same seed, same run, exact resume
            env_timeout=config.env_timeout,
        )
        env_id, env_kwargs = config.env_id, dict(config.env_kwargs)
        self._env_factory = env_factory(env_id, env_kwargs, config, max_envs=config.num_envs + 1)
        """What makes the run's envs (released at the end of `train`; the engine may wrap it)."""
        self.engine = RolloutEngine(sampler or self.policy, self._env_factory, env_id, rollout)

    @property
    def model(self) -> torch.nn.Module:
        """The model being trained (with LoRA, the adapted model)."""
        return self.session.model

    @property
    def step(self) -> int:
        """Optimiser steps taken so far."""
        return self.session.step

    def _loss(self, batch: Batch, logprobs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        config = self.config
        return grpo_objective(
            batch,
            logprobs,
            clip_eps=config.clip_eps,
            kl_coef=config.kl_coef,
            normalisation=config.normalisation,
            reference=self.reference,
            autocast_dtype=self.session.autocast_dtype,
            temperature=config.scoring_temperature,
        )

    def seeds_for(self, step: int) -> list[int]:
        """The task-instance seeds of a step (a pure function of the run seed and the step: resumable)."""
        return step_seeds(self.config.first_seed, self.config.seed, step, self.config.tasks_per_step)

    def train(self) -> list[dict[str, float]]:
        """Runs the configured steps; returns the logged metrics of each step run here."""
        try:
            return self.session.run(
                f"{self.title} {self.config.env_id}", self._step, state=self._state, restore=self._restore
            )
        finally:
            self._close()

    def _close(self) -> None:
        """Releases what the run holds beyond the model (the env actors `env_factory` keeps)."""
        close_env_factory(self._env_factory)

    def _state(self) -> dict[str, Any]:
        """The trainer's own state a checkpoint keeps beside the model's (none for GRPO)."""
        return {}

    def _restore(self, state: Mapping[str, Any]) -> None:
        """After a resume, the sampler generates with the checkpoint's weights, as the run it continues did."""
        if state and self.sampler is not None:
            self.sampler.update_weights(trained_weights(self.session.model))

    def _step(self) -> dict[str, float]:
        started = time.perf_counter()
        session = self.session
        groups = list(self.engine.run(session.world.share(self.seeds_for(session.step))))  # this rank's tasks
        episodes = [trajectory for group in groups for trajectory in group]
        device = session.policy.device
        metrics = global_means(
            {
                "reward": float(np.mean([t.total_reward for t in episodes])) if episodes else 0.0,
                "success": float(np.mean([t.success for t in episodes])) if episodes else 0.0,
                "turns": float(np.mean([len(t.turns) for t in episodes])) if episodes else 0.0,
            },
            weight=len(episodes),
            device=device,
        )
        metrics["rollout_seconds"] = time.perf_counter() - started
        sequences, counts = self._training_sequences(groups)
        metrics.update(global_sums(counts, device))
        if metrics["sequences"] > 0:  # over all ranks: a rank without sequences of its own still takes part
            result = session.update(sequences, self._loss, dropout=False, temperature=self.config.scoring_temperature)
            metrics.update({"loss": result.loss, "grad_norm": result.grad_norm, **result.metrics})
            if self.sampler is not None:  # weights changed: the sampler must generate with them from now on
                self.sampler.update_weights(trained_weights(self.session.model))
        metrics.update(self._after_update(groups))
        metrics["step_seconds"] = time.perf_counter() - started
        return metrics

    def _training_sequences(self, groups: list[list[Trajectory]]) -> tuple[list[TrainingSequence], dict[str, float]]:
        """The step's sequences with their advantages, and counts to log (summed over ranks)."""
        return sequences_from_groups(groups, self.config.drop_zero_variance_groups, turn_gamma=self.config.turn_gamma)

    def _after_update(self, groups: list[list[Trajectory]]) -> dict[str, float]:
        """Work after the step's update (a trainer built on this one adds its own); returns metrics to log."""
        return {}
