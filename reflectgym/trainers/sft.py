"""Supervised fine-tuning (behaviour cloning) on demonstrations: the masked negative log-likelihood of the
demonstrator's replies in multi-turn conversations, on the shared trainer core.

Demonstrations come from the env's own solver (`OracleAgent`: the push-optimal plan in Sokoban, the reference
answer elsewhere) or from trajectory files written by `reflectgym eval` (any agent, any model: filter them to
the solved ones for rejection-sampling fine-tuning). Every episode is rendered as the rollout engine renders
it (one sequence, or one per turn with a history window), with the loss on reply tokens only (TRAINERS.md §0).

The data order is a pure function of the seed and the epoch, and the position in it is checkpointed, so an
interrupted run resumes on the very next batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.agents.scripted import OracleAgent
from reflectgym.core.trajectory import Trajectory
from reflectgym.trainers.batching import Batch, TrainingSequence
from reflectgym.trainers.config import ConfigError
from reflectgym.trainers.demonstrations import (
    demonstration_sequences,
    env_system_prompt,
    play_demonstrations,
    read_demonstrations,
)
from reflectgym.trainers.losses import sft_loss
from reflectgym.trainers.session import TrainerConfig, TrainingSession, close_env_factory, env_factory, load_policy

ORACLE = "oracle"
"""`SFTConfig.demonstrations` value: the env's solver plays fresh seeds."""


@dataclass
class SFTConfig(TrainerConfig):
    """Everything a supervised fine-tuning run needs (the shared `TrainerConfig` options first)."""

    output_dir: str = "runs/sft"
    """Where metrics, checkpoints, the final model and the report go."""
    lr: float = 1e-4
    """AdamW learning rate."""
    env_id: str = "reflectgym/Sokoban-6x6-1-v0"
    """The env whose conversations are learnt (its system prompt and, for "oracle", its solver)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Arguments for `gymnasium.make(env_id, ...)`."""
    demonstrations: str = ORACLE
    """"oracle" (the env's solver plays seeds first_seed...), a trajectories JSONL file, or a `reflectgym eval --out`
    folder (every trajectories.jsonl in it)."""
    num_demonstrations: int = 1000
    """Episodes the oracle plays (ignored for a file)."""
    first_seed: int = 100_000
    """First seed the oracle plays; keep it apart from the seeds you evaluate on."""
    successful_only: bool = True
    """Learn only from solved episodes."""
    system_prompt: str | None = None
    """System prompt of every conversation (default: the env family's prompt, as in rollouts; "" sends none)."""
    history_turns: int | None = None
    """Earlier exchanges in each context, as the rollout engine's `history_turns` (None: the whole episode)."""
    batch_size: int = 32
    """Sequences per optimiser step (split into `minibatch_size` chunks for gradient accumulation)."""
    group_by_length: bool = False
    """Batch sequences of similar length together (less padding, as Hugging Face's `group_by_length`: sorted
    within random mega-batches of 50 batches). Off by default: in multi-turn data, length often tracks the
    previous turn's outcome, and such batches bias each step."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.demonstrations == ORACLE and self.num_demonstrations < 1:
            raise ConfigError(f"num_demonstrations must be at least 1; got {self.num_demonstrations}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1; got {self.batch_size}")


def no_demonstration_message(read: int, kept: int, skipped: Sequence[str], successful_only: bool) -> str:
    """Why no demonstration is left to learn from: none read, none solved, or every one unusable."""
    why = f" ({'; '.join(skipped[:3])})" if skipped else ""
    if read == 0:
        return f"no demonstration: 0 episodes read{why}"
    if kept == 0 and successful_only:
        return f"no demonstration: {read} episodes read, none solved (successful_only: true){why}"
    return f"no usable demonstration among {kept} episodes{why}"


def epoch_batches(
    count: int, batch_size: int, rng: np.random.Generator, lengths: list[int] | None = None
) -> list[list[int]]:
    """Indices of one epoch's batches: a random permutation cut into batches; with `lengths`, sorted by length
    inside random mega-batches of 50 batches first, then the batches shuffled (less padding, still random)."""
    order = rng.permutation(count).tolist()
    if lengths is not None:
        mega = 50 * batch_size
        order = [
            i for start in range(0, count, mega) for i in sorted(order[start : start + mega], key=lengths.__getitem__)
        ]
    batches = [order[start : start + batch_size] for start in range(0, count, batch_size)]
    if lengths is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class SFTTrainer:
    """Behaviour cloning of a transformers policy on demonstrations.

    Args:
        config: The run's settings.
        policy: The `HFPolicy` whose model is trained in place; default: loaded from `config.model`.
        trajectories: Demonstrations in memory; default: what `config.demonstrations` names.
    """

    def __init__(
        self, config: SFTConfig, policy: HFPolicy | None = None, trajectories: list[Trajectory] | None = None
    ) -> None:
        self.config = config
        self.make_env = env_factory(config.env_id, config.env_kwargs, config, max_envs=1)
        self.policy = policy if policy is not None else load_policy(config)
        self.session = TrainingSession(config, self.policy, describe=config, trainer="sft")
        unreadable: list[str] = []
        if trajectories is not None:
            episodes = trajectories
        elif config.demonstrations != ORACLE:
            episodes, unreadable = read_demonstrations(config.demonstrations)
        else:
            episodes = self._play_demonstrations()
        env = self.make_env()
        try:
            system = env_system_prompt(config.env_id, env, config.system_prompt)
        finally:
            env.close()
            close_env_factory(self.make_env)  # (the envs' last use)
        read = len(episodes)
        if config.successful_only:
            episodes = [episode for episode in episodes if episode.success]
        stop_id = int(self.policy.tokenizer.eos_token_id)
        self.sequences, self.skipped = demonstration_sequences(
            episodes, self.policy.chat, system, stop_id, config.history_turns
        )
        self.skipped = unreadable + self.skipped
        """The training sequences, and why each unreadable row or unusable episode was left out."""
        if not self.sequences:
            raise ValueError(no_demonstration_message(read, len(episodes), self.skipped, config.successful_only))
        self.batches_per_epoch = -(-len(self.sequences) // config.batch_size)
        self._epoch_batches: tuple[int, list[list[int]]] | None = None
        self.position = 0
        """Batches consumed so far (epoch = position // batches_per_epoch)."""

    @property
    def model(self) -> torch.nn.Module:
        """The model being trained (with LoRA, the adapted model)."""
        return self.session.model

    def _play_demonstrations(self) -> list[Trajectory]:
        config = self.config
        seeds = range(config.first_seed, config.first_seed + config.num_demonstrations)
        return play_demonstrations(
            self.make_env,
            OracleAgent(),
            seeds,
            env_id=config.env_id,
            successful_only=config.successful_only,
        )

    def batch_at(self, position: int) -> list[TrainingSequence]:
        """The batch at a global position: each epoch visits every sequence once, in an order seeded by
        (seed, epoch), so the data order survives a resume."""
        epoch, index = divmod(position, self.batches_per_epoch)
        if self._epoch_batches is None or self._epoch_batches[0] != epoch:
            rng = np.random.default_rng([self.config.seed, epoch])
            batches = epoch_batches(len(self.sequences), self.config.batch_size, rng, self._lengths())
            self._epoch_batches = (epoch, batches)
        return [self.sequences[i] for i in self._epoch_batches[1][index]]

    def _lengths(self) -> list[int] | None:
        return [len(sequence.input_ids) for sequence in self.sequences] if self.config.group_by_length else None

    def _loss(self, batch: Batch, logprobs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return sft_loss(logprobs, batch.loss_mask, self.config.normalisation), {}

    def train(self) -> list[dict[str, float]]:
        """Runs the configured steps; returns the logged metrics of each step run here."""
        return self.session.run(
            f"SFT {self.config.env_id}",
            self._step,
            state=lambda: {"position": self.position},
            restore=lambda state: setattr(self, "position", int(state.get("position", 0))),
        )

    def _step(self) -> dict[str, float]:
        started = time.perf_counter()
        session = self.session
        batch = session.world.share(self.batch_at(self.position))  # this rank's part of the batch
        result = session.update(batch, self._loss)
        self.position += 1
        return {
            "loss": result.loss,
            "grad_norm": result.grad_norm,
            "tokens": float(result.tokens),
            "epoch": self.position / self.batches_per_epoch,
            "step_seconds": time.perf_counter() - started,
        }
