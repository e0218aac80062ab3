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
- A skill is written from a group's best episode (highest return, the first on ties); the write-ups summarise "the
  trajectory" without saying which. A task gets a new skill only when none of its skills is untried, while its
  bank has room, and once full only when the visit's mean return beats every skill's mean (then the credited
  skill with the lowest mean makes way). With a skill after every visit, untried-first would always pick the
  newest and UCB would never choose.
- A skill is credited with the returns of its task's next visit: those episodes were sampled by the policy its
  teacher helped update (the episodes of the visit it was chosen at were sampled before the teacher saw it).
- A skill written in step s is first used in step s + 1; a task seen for the first time has none, and its
  sequences get no SD term.
- A group whose returns are all equal carries no GRPO signal but does carry the SD term when its task has a skill:
  it is kept (advantage 0), and the GRPO term is rescaled so that its mean still runs over the groups with signal
  only (the k3 KL to a reference, when on, rides with it).
- The skill heads the teacher's first user message (the task, or the oldest observation of a history window;
  before the system text for templates that merge it there).
- `sd_coef: 0` is plain GRPO: no skills, no teacher pass.
- The bank holds at most `max_banked_tasks` tasks (least recently visited out first, with a pending skill's
  credit): with `train_tasks: None` on procedurally generated levels no task comes back, and an unbounded bank
  would grow with every step in memory and in every checkpoint. The write-ups' fixed task sets need no bound.
- Under `torchrun`, each rank plays its share of the step's tasks (whole groups, as GRPO) and every rank keeps
  the same bank: each group's task and returns are gathered (`all_gather`), and every rank credits and chooses
  for all of the step's tasks in the order of the step's seeds, with the same generator; the rank that played a
  task asks for its skill, and the step's summaries are gathered once every rank's are done (a background
  summariser is waited for at the end of the step, before the bank changes) and join every rank's bank in that
  order. The GRPO rescaling sums its units over every rank; bank metrics are computed from the gathered visits
  and summaries. Rank 0 checkpoints the bank, every rank restores it. A summariser sampling a rank's share
  writes other skills than one sampling the whole step (another batch): ranks still agree, since each skill is
  written once and gathered.
- A reply of the summariser with no JSON object makes no skill (`skills_unparsed` counts them). The default
  summariser (the trained policy) samples with its generator state saved and put back (the CPU's and that of every
  GPU the policy or its sampler samples on), so rollouts do not depend on it; a background summariser sampling with
  torch in this process (`hf:`) shares torch's global generator, and such a run is not bit-reproducible (an
  `openai:` one is).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.agents.policy import Policy, Sampling, derive_seed
from reflectgym.agents.specs import make_policy
from reflectgym.core.trajectory import Trajectory
from reflectgym.trainers.batching import Batch, TrainingSequence
from reflectgym.trainers.config import ConfigError
from reflectgym.trainers.data_parallel import World, all_gather, global_sums
from reflectgym.trainers.demonstrations import env_system_prompt
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer, finished_episodes, sequences_from_groups
from reflectgym.trainers.losses import self_distillation_loss
from reflectgym.trainers.session import WeightSyncedSampler
from reflectgym.trainers.skill_sd.skills import Skill, SkillBank
from reflectgym.trainers.skill_sd.summariser import Summariser, Summary
from reflectgym.trainers.skill_sd.teacher import prompt_of, teacher_prompts, with_teacher_logprobs
from reflectgym.trainers.update import averaged_units


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
    max_banked_tasks: int | None = 4096
    """Tasks the skill bank keeps at most; a new one evicts the least recently visited task's skills (and drops its
    uncredited pending skill), so memory and checkpoints stay bounded when tasks never come back (`train_tasks:
    None` with procedurally generated levels). At least `train_tasks` when that is set; None: no bound."""
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
        bound = self.max_banked_tasks
        if bound is not None and bound < 1:
            raise ConfigError(f"max_banked_tasks must be None or at least 1; got {bound}")
        if bound is not None and self.train_tasks is not None and bound < self.train_tasks:
            raise ConfigError(
                f"max_banked_tasks ({bound}) must be at least train_tasks ({self.train_tasks}): a smaller bank "
                "evicts tasks before they come back; raise it or set it to None"
            )
        if self.skill_exploration < 0 or self.summary_temperature < 0:
            raise ConfigError("skill_exploration and summary_temperature must be 0 or positive")


def visit_of(group: list[Trajectory]) -> tuple[str, list[float]]:
    """A group's task (the bank's key, from its first episode that did not fail) and the returns of those
    episodes."""
    finished = finished_episodes(group)
    return task_key(finished[0] if finished else group[0]), [trajectory.total_reward for trajectory in finished]


def task_key(trajectory: Trajectory) -> str:
    """The skill bank's key of an episode's task: its task id, else its seed (procedurally generated levels)."""
    return trajectory.task_id if trajectory.task_id is not None else f"seed-{trajectory.seed}"


def best_episode(group: list[Trajectory]) -> Trajectory | None:
    """The episode a group's skill is written from: the highest return among those that did not fail."""
    finished = [trajectory for trajectory in finished_episodes(group) if trajectory.turns]
    return max(finished, key=lambda trajectory: trajectory.total_reward) if finished else None


T = TypeVar("T")


@dataclass(frozen=True)
class Visit:
    """What the bank needs of one group, on every rank: its task, the returns of its finished episodes, and whether
    it has an episode to write a skill from."""

    task: str
    returns: tuple[float, ...]
    summarisable: bool


def visit(group: list[Trajectory]) -> Visit:
    """A group's `Visit`."""
    task, returns = visit_of(group)
    return Visit(task, tuple(returns), best_episode(group) is not None)


def step_positions(world: World, groups: list[list[Trajectory]], tasks: int) -> list[int]:
    """Each of this rank's groups' place among the step's `tasks` task seeds (the order every rank updates the bank
    in, whatever order the groups finished in): the rank's share of the places, at the group's own index in the
    seeds it played (`metadata["group"]`; its index in `groups` where that is missing)."""
    places = world.share(list(range(tasks)))
    return [places[group[0].metadata.get("group", index) if group else index] for index, group in enumerate(groups)]


def in_step_order(own: Sequence[tuple[int, T]]) -> list[tuple[int, T]]:
    """Every rank's (place in the step, item) pairs on every rank, sorted by place (a collective: every rank calls
    it): the same list everywhere, and the same as one process holding the whole step."""
    gathered = all_gather(list(own))
    return sorted((pair for rank in gathered for pair in rank), key=lambda pair: pair[0])


def sampling_gpus(*policies: object) -> list[int]:
    """The GPUs `policies` sample on (each one's `device`; "cuda" alone: the current GPU), once each: the generators a
    seeded summary must leave as they were (its `torch.manual_seed` reseeds every GPU's, an `hf` sampler's on its
    own GPU too). Not every visible GPU: saving a generator's state starts CUDA on its GPU."""
    indices: set[int] = set()
    for policy in policies:
        device = getattr(policy, "device", None)
        if isinstance(device, torch.device) and device.type == "cuda":
            indices.add(device.index if device.index is not None else torch.cuda.current_device())
    return sorted(indices)


class SkillSDTrainer(GRPOTrainer):
    """Trains a transformers policy with Skill-SD on one env.

    Args:
        config: The run's settings.
        policy: The `HFPolicy` trained in place; default: loaded from `config.model`.
        sampler: Generates the rollouts instead of `policy` (see `GRPOTrainer`).
        summariser: The policy that writes skills, instead of `config.summariser`; it runs in a background thread.
    """

    name = "skill_sd"
    title = "Skill-SD"

    def __init__(
        self,
        config: SkillSDConfig,
        policy: HFPolicy | None = None,
        sampler: WeightSyncedSampler | None = None,
        summariser: Policy | None = None,
    ) -> None:
        super().__init__(config, policy, sampler)
        self.config: SkillSDConfig = config
        self.bank = SkillBank(config.skills_per_task, config.skill_exploration, config.max_banked_tasks)
        if summariser is None and config.summariser is not None:
            summariser = make_policy(config.summariser, model=config.summariser_model)
        sampling = Sampling(temperature=config.summary_temperature, max_new_tokens=config.summary_max_new_tokens)
        background = summariser is not None and summariser is not self.policy  # (never the trained model's twin)
        self.summariser = Summariser(
            summariser or self.policy, sampling, background=background, max_turns=config.summary_turns
        )
        env = self.engine.make_env()
        try:
            self._system = env_system_prompt(config.env_id, env, config.system_prompt)
        finally:
            env.close()
        self._summaries: Future[list[Summary]] | None = None
        self._summary_places: list[int] = []
        """The step places of the groups this rank asked skills for, in the order of `_summaries`."""
        self._bank_counts: dict[str, float] = {}
        """The step's skills chosen and credited (over every rank), logged with its bank metrics."""
        self._grpo_scale = 1.0
        self._warned_unplaced = False

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

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self.summariser.close()

    def _state(self) -> dict[str, Any]:
        return {"skills": self.bank.to_dict()}

    def _restore(self, state: Mapping[str, Any]) -> None:
        super()._restore(state)
        if "skills" in state:
            self.bank.load(state["skills"])

    def _training_sequences(self, groups: list[list[Trajectory]]) -> tuple[list[TrainingSequence], dict[str, float]]:
        """GRPO's sequences, those of tasks with a skill scored by the teacher; then the step's summaries start."""
        config, session = self.config, self.session
        self._grpo_scale = 1.0
        if config.sd_coef == 0:
            return super()._training_sequences(groups)
        places = step_positions(session.world, groups, len(self.seeds_for(session.step)))
        visits = in_step_order([(place, visit(group)) for place, group in zip(places, groups, strict=True)])
        by_place = self._visit_bank(visits)  # (every rank: the same bank changes and choices)
        # group position (here) -> the skill its teacher uses
        chosen = {position: by_place[place] for position, place in enumerate(places) if place in by_place}
        sequences, counts = sequences_from_groups(
            groups, config.drop_zero_variance_groups, chosen.keys(), turn_gamma=config.turn_gamma
        )
        prompts = {
            (position, student): teacher
            for position, skill in chosen.items()
            for trajectory in finished_episodes(groups[position])
            for student, teacher in teacher_prompts(
                trajectory, self.policy.chat, self._system, config.history_turns, skill.text()
            ).items()
        }
        teachers = [prompts.get((sequence.group, prompt_of(sequence))) for sequence in sequences]
        sequences = with_teacher_logprobs(
            session.model,
            sequences,
            teachers,
            pad_id=session.pad_id,
            batch_size=config.minibatch_size,
            autocast_dtype=session.autocast_dtype,
            temperature=config.scoring_temperature,
        )
        counts["taught_sequences"] = float(sum(teacher is not None for teacher in teachers))
        pairs = zip(sequences, teachers, strict=True)
        counts["teacher_unplaced"] = float(
            sum(teacher is None and sequence.group in chosen for sequence, teacher in pairs)
        )
        if counts["teacher_unplaced"] and not self._warned_unplaced:
            warnings.warn(
                "skill_sd: the chat template did not render some prompts again as they were sampled; those sequences "
                "get no SD term (metric teacher_unplaced)",
                stacklevel=2,
            )
            self._warned_unplaced = True
        self._grpo_scale = self._grpo_rescale(groups, sequences, chosen.keys())
        self._start_summaries(groups, places)
        return sequences, counts

    def _visit_bank(self, visits: Sequence[tuple[int, Visit]]) -> dict[int, Skill]:
        """Credits and chooses for every visit of the step, in step order with the step's generator (the same
        changes and choices on every rank); returns the chosen skill per step place."""
        rng = np.random.default_rng([self.config.seed, self.session.step])
        chosen: dict[int, Skill] = {}
        credited = 0
        for place, each in visits:
            credited += int(self.bank.credit(each.task, each.returns))
            skill = self.bank.choose(each.task, rng)
            if skill is not None:
                chosen[place] = skill
        self._bank_counts = {"skills_chosen": float(len(chosen)), "skills_credited": float(credited)}
        return chosen

    def _grpo_rescale(
        self, groups: list[list[Trajectory]], sequences: list[TrainingSequence], kept: Collection[int]
    ) -> float:
        """What the GRPO term is multiplied by so that its mean runs over the groups with GRPO signal only, not
        over the all-equal groups kept for the SD term; from the units of every rank (the same factor everywhere, as
        the loss's mean runs over the whole step)."""
        if not self.config.drop_zero_variance_groups:
            return 1.0
        uniform = {position for position in kept if len(set(visit_of(groups[position])[1])) <= 1}
        signal = [sequence for sequence in sequences if sequence.group not in uniform]
        normalisation = self.config.normalisation
        units = {
            "all": float(averaged_units(sequences, normalisation)),
            "signal": float(averaged_units(signal, normalisation)),
        }
        units = global_sums(units, self.policy.device)  # (a collective: the step's units, over every rank)
        return units["all"] / units["signal"] if units["signal"] else 1.0

    def _start_summaries(self, groups: list[list[Trajectory]], places: Sequence[int]) -> None:
        """Asks for a skill for each of this rank's tasks that wants one, from its group's best episode (the bank is
        the same on every rank, so every rank agrees on which tasks want one)."""
        episodes, self._summary_places = [], []
        for group, place in zip(groups, places, strict=True):
            task, returns = visit_of(group)
            best = best_episode(group)
            if best is not None and self.bank.wants_skill(task, float(np.mean(returns))):
                episodes.append((task, best))
                self._summary_places.append(place)
        seed = derive_seed(self.config.seed, self.session.step, 0x5C111)  # reproducible summaries: exact resume
        sampling = dataclasses.replace(self.summariser.sampling, seed=seed)
        if self.summariser.background:
            self._summaries = self.summariser.submit(episodes, sampling)
            return
        with torch.random.fork_rng(devices=sampling_gpus(self.policy, self.sampler)):  # the rollouts' generators
            self._summaries = self.summariser.submit(episodes, sampling)  # stay as they were

    def _after_update(self, groups: list[list[Trajectory]]) -> dict[str, float]:
        """The step's skills join the bank: every rank waits for its own summaries (a background summariser's
        too), then all of them, gathered, join every rank's bank in step order."""
        added = unparsed = failed = 0
        if self.config.sd_coef > 0:  # (the same on every rank: each takes part in the gather)
            for _, summary in in_step_order(self._own_summaries()):
                if summary.skill is not None:
                    self.bank.add(summary.task, summary.skill)
                    added += 1
                elif summary.failed:
                    failed += 1
                else:
                    unparsed += 1
        return {
            "skills_added": float(added),
            "skills_unparsed": float(unparsed),
            "skills_failed": float(failed),
            "skills_chosen": self._bank_counts.get("skills_chosen", 0.0),
            "skills_credited": self._bank_counts.get("skills_credited", 0.0),
            "skill_bank": float(len(self.bank)),
            "skill_bank_tasks": float(len(self.bank.skills)),
        }

    def _own_summaries(self) -> list[tuple[int, Summary]]:
        """This rank's summaries of the step with their step places, once its summariser is done (none when it
        failed: that costs the rank's skills of this step, not the run)."""
        future, self._summaries = self._summaries, None
        if future is None:
            return []
        try:
            summaries = future.result()
        except Exception as error:
            warnings.warn(f"skill_sd: the summariser failed, no skills this step: {error}", stacklevel=2)
            return []
        return list(zip(self._summary_places, summaries, strict=True))

    def _loss(self, batch: Batch, logprobs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics = super()._loss(batch, logprobs)
        loss = loss * self._grpo_scale
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
