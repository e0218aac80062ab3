"""The Skill-SD trainer: GRPO plus on-policy self-distillation from a skill-conditioned teacher.

Skill-SD (skill-conditioned self-distillation; TRAINERS.md §2, from write-ups of the paper: no official code).
The student always sees the plain task and samples every rollout. After a step's rollouts, a summariser turns
one episode per task into a skill (`skills`, `summariser`); a per-task bank picks a skill for each task by UCB;
the teacher, the same network with θ̄ = θ of the step's start, re-scores the student's own tokens with that skill
at the head of its context (`teacher`). The loss is L_GRPO + λ·L_SD, L_SD the importance-weighted reverse-KL term
of `losses.self_distillation_loss`, λ = `sd_coef` (paper: 0.001).

Deviations from the paper (and choices the write-ups leave open):
- θ̄ is θ at the start of each step, and a step takes one optimiser step, so the teacher's log-probs are computed
  before the update with the model as it is: no copy of the weights is kept.
- One skill per task and step, from the group's best episode (highest return, the first on ties); the write-ups
  summarise "the trajectory" without saying which.
- A skill written in step s is first used in step s + 1 (the teacher scores a task with a skill from its bank;
  a task seen for the first time has none, and its sequences get no SD term).
- A skill's UCB statistics count the returns of every episode its teacher scored.
- A group whose returns are all equal carries no GRPO signal but does carry the SD term when its task has a skill:
  with λ > 0 it is kept (advantage 0), and its tokens count in the GRPO term's token mean. λ = 0 is plain GRPO.
- The skill heads the teacher's first user message (the task, or the oldest observation of a history window).
- A single process (no `torchrun` data parallelism: each rank would keep its own bank).
- A reply of the summariser with no JSON object makes no skill (`skills_unparsed` counts them).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.agents.policy import Policy, Sampling, derive_seed
from reflectgym.agents.specs import make_policy
from reflectgym.core.trajectory import Trajectory
from reflectgym.trainers.batching import Batch, TrainingSequence
from reflectgym.trainers.config import ConfigError
from reflectgym.trainers.data_parallel import current_world
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer, sequences_from_groups
from reflectgym.trainers.losses import self_distillation_loss
from reflectgym.trainers.session import WeightSyncedSampler
from reflectgym.trainers.skill_sd.skills import SkillBank
from reflectgym.trainers.skill_sd.summariser import Summariser, Summary
from reflectgym.trainers.skill_sd.teacher import with_teacher_logprobs


@dataclass
class SkillSDConfig(GRPOConfig):
    """Everything a Skill-SD run needs: GRPO's options, then the skills' and the distillation's."""

    output_dir: str = "runs/skill-sd"
    """Where metrics, checkpoints, the final model and the report go."""
    sd_coef: float = 0.001
    """λ of the self-distillation term (paper: 0.001; 0.01 over-regularises, 0.0005 is too weak; 0: plain GRPO)."""
    train_tasks: int | None = 96
    """Training tasks: seeds first_seed ... first_seed + train_tasks - 1, each step taking the next
    `tasks_per_step` of a shuffled pass over them (skills need tasks that come back; paper: 96 Sokoban levels).
    None: GRPO's fresh seeds every step (for envs whose seeds pick among a fixed task list)."""
    skills_per_task: int = 4
    """Skills kept per task; a new one evicts the tried skill with the lowest mean return."""
    skill_exploration: float = 1.0
    """c of the skill bank's UCB, mean return + c·sqrt(ln N / n)."""
    summariser: str | None = None
    """The policy that writes skills, as a policy spec (`openai:URL`, `hf:PATH`, ...), run in a background thread;
    default: the policy being trained, between rollouts and update."""
    summariser_model: str | None = None
    """The model name for an `openai:` summariser."""
    summary_max_new_tokens: int = 256
    """Tokens per summary at most."""
    summary_temperature: float = 0.7
    """Sampling temperature of summaries."""
    summary_turns: int = 40
    """Turns of an episode the summariser sees at most (the last ones)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.sd_coef < float("inf"):
            raise ConfigError(f"sd_coef must be 0 (plain GRPO) or positive and finite; got {self.sd_coef}")
        if self.train_tasks is not None and self.train_tasks < 1:
            raise ConfigError(f"train_tasks must be None or at least 1; got {self.train_tasks}")
        for name in ("skills_per_task", "summary_max_new_tokens", "summary_turns"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.skill_exploration < 0 or self.summary_temperature < 0:
            raise ConfigError("skill_exploration and summary_temperature must be 0 or positive")


def task_key(trajectory: Trajectory) -> str:
    """The skill bank's key of an episode's task: its task id, else its seed (procedurally generated levels)."""
    return trajectory.task_id if trajectory.task_id is not None else f"seed-{trajectory.seed}"


def best_episode(group: list[Trajectory]) -> Trajectory | None:
    """The episode a group's skill is written from: the highest return among those that did not fail."""
    finished = [trajectory for trajectory in group if "error" not in trajectory.metadata and trajectory.turns]
    return max(finished, key=lambda trajectory: trajectory.total_reward) if finished else None


class SkillSDTrainer(GRPOTrainer):
    """Trains a transformers policy with Skill-SD on one env.

    Args:
        config: The run's settings.
        policy: The `HFPolicy` trained in place; default: loaded from `config.model`.
        sampler: Generates the rollouts instead of `policy` (see `GRPOTrainer`).
        summariser: The policy that writes skills, instead of `config.summariser`; it runs in a background thread.
    """

    name = "skill_sd"

    def __init__(
        self,
        config: SkillSDConfig,
        policy: HFPolicy | None = None,
        sampler: WeightSyncedSampler | None = None,
        summariser: Policy | None = None,
    ) -> None:
        if current_world().distributed:
            raise ConfigError("skill_sd runs in one process (each torchrun rank would keep its own skill bank)")
        super().__init__(config, policy, sampler)
        self.config: SkillSDConfig = config
        self.bank = SkillBank(config.skills_per_task, config.skill_exploration)
        if summariser is None and config.summariser is not None:
            summariser = make_policy(config.summariser, model=config.summariser_model)
        sampling = Sampling(temperature=config.summary_temperature, max_new_tokens=config.summary_max_new_tokens)
        self.summariser = Summariser(
            summariser or self.policy, sampling, background=summariser is not None, max_turns=config.summary_turns
        )
        self._user_opening = self.policy.chat.user_opening()
        self._summaries: Future[list[Summary]] | None = None

    def seeds_for(self, step: int) -> list[int]:
        """The step's task seeds: the next `tasks_per_step` of a shuffled pass over the training tasks (a pure
        function of the run seed and the step: resumable)."""
        config = self.config
        if config.train_tasks is None:
            return super().seeds_for(step)
        seeds = []
        for position in range(step * config.tasks_per_step, (step + 1) * config.tasks_per_step):
            epoch, offset = divmod(position, config.train_tasks)
            order = np.random.default_rng([config.seed, epoch]).permutation(config.train_tasks)
            seeds.append(config.first_seed + int(order[offset]))
        return seeds

    def train(self) -> list[dict[str, float]]:
        """Runs the configured steps; returns the logged metrics of each step run here."""
        try:
            return self.session.run(
                f"Skill-SD {self.config.env_id}", self._step, state=self._state, restore=self._restore
            )
        finally:
            self.summariser.close()

    def _state(self) -> dict[str, Any]:
        return {"skills": self.bank.to_dict()}

    def _restore(self, state: Mapping[str, Any]) -> None:
        super()._restore(state)
        self.bank.load(state.get("skills", {}))

    def _training_sequences(self, groups: list[list[Trajectory]]) -> tuple[list[TrainingSequence], dict[str, float]]:
        """GRPO's sequences, those of tasks with a skill scored by the teacher; then the step's summaries start."""
        config, session = self.config, self.session
        rng = np.random.default_rng([config.seed, session.step])
        chosen: dict[int, tuple[str, int]] = {}  # group position -> (task, skill index)
        for position, group in enumerate(groups):
            task = task_key(group[0])
            index = self.bank.select(task, rng)
            if index is not None:
                chosen[position] = (task, index)
        keep = chosen.keys() if config.sd_coef > 0 else ()
        sequences, counts = sequences_from_groups(groups, config.drop_zero_variance_groups, keep)
        skills = [self.bank.get(*chosen[s.group]).text() if s.group in chosen else None for s in sequences]
        sequences = with_teacher_logprobs(
            session.model,
            self.policy.tokenizer,
            sequences,
            skills,
            user_opening=self._user_opening,
            pad_id=session.pad_id,
            batch_size=config.minibatch_size,
            autocast_dtype=session.autocast_dtype,
        )
        for position, (task, index) in chosen.items():
            returns = [t.total_reward for t in groups[position] if "error" not in t.metadata]
            self.bank.record(task, index, returns)
        counts["taught_sequences"] = float(sum(skill is not None for skill in skills))
        episodes = [(task_key(group[0]), best) for group in groups if (best := best_episode(group)) is not None]
        seed = derive_seed(config.seed, session.step, 0x5C111)  # summaries are reproducible: exact resume
        sampling = Sampling(
            temperature=config.summary_temperature, max_new_tokens=config.summary_max_new_tokens, seed=seed
        )
        self._summaries = self.summariser.submit(episodes, sampling)
        return sequences, counts

    def _after_update(self, groups: list[list[Trajectory]]) -> dict[str, float]:
        """The step's skills join the bank (after a background summariser finished them)."""
        future, self._summaries = self._summaries, None
        added = unparsed = 0
        if future is not None:
            try:
                summaries = future.result()
            except Exception as error:  # a summariser that failed costs this step's skills, not the run
                warnings.warn(f"skill_sd: the summariser failed, no skills this step: {error}", stacklevel=2)
                summaries = []
            for summary in summaries:
                if summary.skill is None:
                    unparsed += 1
                    continue
                self.bank.add(summary.task, summary.skill)
                added += 1
        return {"skills_added": float(added), "skills_unparsed": float(unparsed), "skill_bank": float(len(self.bank))}

    def _loss(self, batch: Batch, logprobs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics = super()._loss(batch, logprobs)
        distillation = self_distillation_loss(
            logprobs,
            batch.old_logprobs,
            batch.teacher_logprobs,
            batch.loss_mask,
            teacher_mask=batch.teacher_mask,
            normalisation=self.config.normalisation,
        )
        metrics["sd_loss"] = float(distillation.detach())
        if self.config.sd_coef > 0:
            loss = loss + self.config.sd_coef * distillation
        return loss, metrics
