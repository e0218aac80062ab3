"""The Agent-R trainer: iterative self-training on revision data from the actor's own search trees.

Agent-R (Yuan et al., 2025; bytedance/Agent-R), TRAINERS.md §1. Each iteration searches the training tasks with
the current model (`tree`), turns every tree into revision and good conversations (`revision`), and fine-tunes on
them with the masked next-token loss; the next iteration searches with the fine-tuned model. An iteration is
`steps_per_iteration` optimiser steps, so a run of `steps` steps has steps / steps_per_iteration iterations.

Deviations from the paper:
- Fine-tuning runs a fixed number of steps per iteration over the iteration's data (the paper: 3 epochs); the
  metrics say how many sequences an iteration made, so `steps_per_iteration` can be set to 3 epochs' worth.
- No general chat data is mixed in (the paper's η); pass it through `SFTTrainer` separately if wanted.
- α rises by `alpha_step` per iteration (the spec's recommendation "from 0.5 upward"), from `alpha`.

Under `torchrun` every rank searches its share of the iteration's tasks (every size-th one) with the same weights
(DDP keeps them equal); the ranks then gather every task's conversations, so each holds the iteration's whole data
in task order, and each optimiser step is a one-process run's batch shared over the ranks, as `SFTTrainer` shares
it (the loss is the global mean: see `trainers.data_parallel`). A task's search, judgements and revision thoughts
are seeded by (seed, iteration, task) alone, so with an actor that honours `Sampling` seeds (`HFPolicy` does) N
ranks make exactly the data, and take the steps, that one process makes.

Each iteration's conversations are written to `output_dir/agent_r/iteration-K.jsonl` (one conversation a line,
each message with its `learn` flag; rank 0 writes every rank's) before training on them, and a resumed run reads
them back instead of searching again with weights that have since changed: it continues exactly, with any number
of ranks. A task whose search fails (an env or the actor raising) is left out of its iteration, with a warning.
The env must take the revision turn's `wait` (`wait_action=True`), as the trained model will write it.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.agents.policy import Policy, Sampling, derive_seed
from reflectgym.trainers.agent_r.revision import LearnMessage, revision_data, training_sequence
from reflectgym.trainers.agent_r.tree import SearchConfig, TreeSearch
from reflectgym.trainers.batching import Batch, TrainingSequence
from reflectgym.trainers.config import ConfigError
from reflectgym.trainers.data_parallel import all_gather
from reflectgym.trainers.demonstrations import env_system_prompt, opening_messages
from reflectgym.trainers.losses import sft_loss
from reflectgym.trainers.session import TrainerConfig, TrainingSession, close_env_factory, env_factory, load_policy
from reflectgym.trainers.sft import epoch_batches


@dataclass
class AgentRConfig(TrainerConfig):
    """Everything an Agent-R run needs (the shared `TrainerConfig` options first)."""

    output_dir: str = "runs/agent-r"
    """Where metrics, checkpoints, each iteration's data, the final model and the report go."""
    env_id: str = "reflectgym/Sokoban-6x6-1-v0"
    """The env to search and train on; it needs snapshots (every `TextEnv` has them)."""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Arguments for `gymnasium.make(env_id, ...)`."""
    tasks_per_iteration: int = 8
    """Training tasks (seeds first_seed ... first_seed + tasks_per_iteration - 1), searched every iteration."""
    first_seed: int = 0
    """First task seed; keep the seeds you evaluate on apart."""
    steps_per_iteration: int = 10
    """Optimiser steps on each iteration's data before the next search."""
    batch_size: int = 8
    """Conversations per optimiser step."""
    branching: int = 4
    """Replies sampled per expansion (N_GEN)."""
    max_depth: int = 10
    """Actions from the root at which a path ends."""
    walks: int = 20
    """Walks per task's tree."""
    exploration: float = 0.25
    """c of the tree's upper confidence bound."""
    temperature: float = 1.0
    """Sampling temperature of expansions."""
    max_new_tokens: int = 32
    """Tokens per sampled reply."""
    alpha: float = 0.5
    """A good path scores above alpha (in the first iteration)."""
    alpha_step: float = 0.0
    """Added to alpha each iteration."""
    beta: float = 0.2
    """A pair's good path scores more than beta above its bad one."""
    direct_revision: bool = False
    """Splice at the end of the bad path without the actor judging its steps (the paper's baseline)."""
    judge_max_new_tokens: int = 256
    """Tokens of the actor's judgement of a step (greedy)."""
    system_prompt: str | None = None
    """System prompt of the conversations (default: the env family's prompt; "" sends none)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("tasks_per_iteration", "steps_per_iteration", "batch_size", "judge_max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1; got {getattr(self, name)}")
        try:
            self.search_config()
        except ValueError as error:
            raise ConfigError(str(error)) from error
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0; got {self.beta}")

    def search_config(self) -> SearchConfig:
        """The tree search's part of the config."""
        return SearchConfig(
            branching=self.branching,
            max_depth=self.max_depth,
            walks=self.walks,
            exploration=self.exploration,
            temperature=self.temperature,
            max_new_tokens=self.max_new_tokens,
        )


@dataclass(frozen=True)
class TaskData:
    """What one task's search gave: its revision and good conversations, whether its tree solved it, and whether
    its search failed (then it gave nothing)."""

    seed: int
    revisions: list[list[LearnMessage]] = field(default_factory=list)
    good: list[list[LearnMessage]] = field(default_factory=list)
    solved: bool = False
    failed: bool = False


class AgentRTrainer:
    """Trains a transformers policy with Agent-R on one env.

    Args:
        config: The run's settings.
        policy: The `HFPolicy` whose model is trained in place; default: loaded from `config.model`.
        actor: Searches the trees and judges the steps instead of `policy` (a scripted or served actor); default:
            `policy`, so each iteration searches with the model trained so far, as the paper does.
    """

    def __init__(self, config: AgentRConfig, policy: HFPolicy | None = None, actor: Policy | None = None) -> None:
        self.config = config
        env_id, env_kwargs = config.env_id, dict(config.env_kwargs)
        self.make_env = env_factory(env_id, env_kwargs, config, max_envs=1)  # (before the run begins)
        self.policy = policy if policy is not None else load_policy(config)
        self.session = TrainingSession(config, self.policy, describe=config, trainer="agent_r")
        self.actor: Policy = actor if actor is not None else self.policy
        env = self.make_env()
        try:
            check_searchable(env_id, env.unwrapped)
            self.system = env_system_prompt(env_id, env, config.system_prompt)
        finally:
            env.close()
        self.data_dir = Path(config.output_dir) / "agent_r"
        self.iteration = -1
        """The iteration whose data `sequences` holds (-1: none yet)."""
        self.sequences: list[TrainingSequence] = []
        self.resumed = False
        """Whether this run continues a checkpoint (only then is an iteration's written data read back)."""

    @property
    def model(self) -> torch.nn.Module:
        """The model being trained (with LoRA, the adapted model)."""
        return self.session.model

    def train(self) -> list[dict[str, float]]:
        """Runs the configured steps; returns the logged metrics of each step run here."""
        try:
            return self.session.run(f"Agent-R {self.config.env_id}", self._step, restore=self._restore)
        finally:
            close_env_factory(self.make_env)

    def _restore(self, state: Mapping[str, Any]) -> None:
        """A resumed run reads back the data its iterations wrote; a fresh one drops what an earlier run left (one
        that failed before its first checkpoint, or that `overwrite_output_dir` replaces)."""
        self.resumed = bool(state)
        if not self.resumed and self.session.world.is_main and self.data_dir.is_dir():
            shutil.rmtree(self.data_dir)

    def collect(self, iteration: int) -> tuple[list[list[LearnMessage]], dict[str, float]]:
        """Iteration `iteration`'s conversations: read back when a run before this one wrote them, else searched
        with the actor as it is now, each rank its share of the tasks, gathered in task order (and written)."""
        path = self.data_dir / f"iteration-{iteration}.jsonl"
        if all(all_gather(self.resumed and path.is_file())):  # (every rank reads back, or every rank searches)
            return read_conversations(path), {"searched_tasks": 0.0}
        config, world = self.config, self.session.world
        seeds = [config.first_seed + index for index in range(config.tasks_per_iteration)]
        mine = [self._task_data(iteration, seed) for seed in world.share(seeds)]  # this rank's tasks
        tasks = sorted((task for share in all_gather(mine) for task in share), key=lambda task: task.seed)
        conversations = [conversation for task in tasks for conversation in task.revisions + task.good]
        if world.is_main:
            write_conversations(path, conversations)
        return conversations, {
            "searched_tasks": float(len(tasks)),
            "tasks_solved_in_search": float(sum(task.solved for task in tasks)),
            "revision_conversations": float(sum(len(task.revisions) for task in tasks)),
            "tasks_failed": float(sum(task.failed for task in tasks)),
        }

    def _task_data(self, iteration: int, task_seed: int) -> TaskData:
        """One task's tree searched and turned into revision and good conversations. Seeded by (seed, iteration,
        task) only, so the data is the same whichever rank, and after whichever other tasks, makes it."""
        config = self.config
        seed = derive_seed(config.seed, iteration)  # each iteration samples afresh
        search = TreeSearch(
            self.actor, self.make_env, self.system, config.search_config(), seed=seed, env_timeout=config.env_timeout
        )
        rng = np.random.default_rng([config.seed, iteration, task_seed])  # (the revision thoughts)
        alpha = config.alpha + iteration * config.alpha_step
        judge = Sampling(temperature=0.0, max_new_tokens=config.judge_max_new_tokens)
        try:
            root = search.search(task_seed)
            opening = opening_messages(self.system, root.observation)
            revised, good = revision_data(
                self.actor, root, opening, alpha=alpha, beta=config.beta, rng=rng,
                direct_revision=config.direct_revision, judge_sampling=judge,
            )  # fmt: skip
        except Exception as error:  # an env or the actor failed: this task gives nothing, the others go on
            warnings.warn(f"Agent-R: task seed {task_seed} left out: {error!r}", stacklevel=2)
            return TaskData(task_seed, failed=True)
        return TaskData(task_seed, revised, good, solved=root.value > 0)

    def _step(self) -> dict[str, float]:
        started = time.perf_counter()
        config, session = self.config, self.session
        iteration, position = divmod(session.step, config.steps_per_iteration)
        metrics: dict[str, float] = {"iteration": float(iteration)}
        if iteration != self.iteration:
            conversations, counts = self.collect(iteration)
            stop_id = int(self.policy.tokenizer.eos_token_id)
            self.sequences = [training_sequence(self.policy.chat, c, stop_id) for c in conversations]
            self.iteration = iteration
            metrics.update(counts)
            metrics["search_seconds"] = time.perf_counter() - started
        metrics["sequences"] = float(len(self.sequences))
        if self.sequences:  # an iteration whose trees solved nothing has nothing to learn from (on every rank)
            batch = session.world.share(self._batch(iteration, position))  # this rank's part of the global batch
            result = session.update(batch, self._loss)
            metrics.update({"loss": result.loss, "grad_norm": result.grad_norm, "tokens": float(result.tokens)})
        metrics["step_seconds"] = time.perf_counter() - started
        return metrics

    def _batch(self, iteration: int, position: int) -> list[TrainingSequence]:
        """Batch `position` of the iteration: epochs over its sequences in an order seeded by (seed, iteration,
        epoch), so a resumed run takes the same batches."""
        per_epoch = -(-len(self.sequences) // self.config.batch_size)
        epoch, index = divmod(position, per_epoch)
        rng = np.random.default_rng([self.config.seed, iteration, epoch])
        batches = epoch_batches(len(self.sequences), self.config.batch_size, rng)
        return [self.sequences[i] for i in batches[index]]

    def _loss(self, batch: Batch, logprobs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        return sft_loss(logprobs, batch.loss_mask, self.config.normalisation), {}


def check_searchable(env_id: str, env: Any) -> None:
    """Raises `ConfigError` for an env Agent-R cannot search (no snapshots) or whose trained models' revision turn
    it would not take (`wait_action`)."""
    if not (callable(getattr(env, "snapshot", None)) and callable(getattr(env, "restore", None))):
        raise ConfigError(f"{env_id}: Agent-R branches from env snapshots; this env has no snapshot()/restore()")
    if not getattr(env, "wait_action", False):
        raise ConfigError(
            f"{env_id}: Agent-R teaches the revision turn 'Action: wait'; give env_kwargs {{wait_action: true}} "
            "(the env then takes it as a no-op step and answers 'ok.')"
        )


def write_conversations(path: Path, conversations: Sequence[Sequence[LearnMessage]]) -> None:
    """One conversation a line: its messages with their roles, contents and `learn` flags (written whole, then
    moved into place, so a run killed meanwhile leaves no half file to read back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    lines = [json.dumps([asdict(message) for message in conversation]) + "\n" for conversation in conversations]
    partial.write_text("".join(lines), encoding="utf-8")
    partial.replace(path)


def read_conversations(path: Path) -> list[list[LearnMessage]]:
    """What `write_conversations` wrote."""
    rows: list[Mapping[str, Any]] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [[LearnMessage(**message) for message in row] for row in rows]  # type: ignore[arg-type]
