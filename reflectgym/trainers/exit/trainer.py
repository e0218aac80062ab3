"""ExIt: exploratory-iteration autocurriculum, GRPO on single steps of self-improvement (Jiang et al. 2025,
"Bootstrapping Task Spaces for Self-Improvement"), TRAINERS.md §3, on the shared GRPO core.

config → choose each slot's instance (a new task, or one drawn from the buffer by priority) and its mode (solve,
improve, diverge) → G replies each → each reply played as one attempt from the instance's env snapshot → GRPO
advantages (+ optional diversity bonus) → clipped surrogate (+ optional k3 KL) → one optimiser step → learnability
scores: the parent's rescored, the replies whose episode goes on enter the buffer as children → log / checkpoint,
repeated. The model only ever trains single steps, but the instances it trains on grow from its own attempts, so
at inference it can iterate for many.

Deviations from the paper, on purpose:
* Instances are points of the env's own self-correction episode (a single-answer env with `max_attempts`): the
  verifier's feedback is what the env shows after an attempt (its feedback and attempt count), the mode's
  instruction is appended to that last user message, and the depth is bounded by the env's attempts (and
  `max_depth`). Improve/diverge prompts show the task and the latest `history_attempts` attempts.
* The return is the attempt's env reward (format penalties included), or with `reward: improvement`
  max(0, (q_new − q_prev)/(1 − q_prev)); a fresh task (k = 0) has nothing to improve on and gets its quality.
* Learnability S is the population variance of the group's returns clipped to `reward_range` and scaled to [0, 1].
  Only children (k ≥ 1) enter the buffer, each with its group's S; a fresh task's own score is not kept, and a
  drawn instance stays in the buffer with its score replaced by the new group's. An instance already held is not
  added twice. Slots draw from the buffer independently (with replacement), all from the buffer as it stood at
  the step's start: an instance that could not be restored (its slot plays its new task instead) or whose prompt
  is too long leaves the buffer with the step's buffer update, which applies the slots' results in slot order.
* Slot i of step s plays the new task of seed first_seed + seed·1_000_003 + s·tasks_per_step + i (GRPO's rule)
  whenever it does not draw from the buffer, so with p_select = p_div = 0 the run is GRPO's with `max_turns: 1`,
  token for token.
  The curriculum's draws (select, mode, which instance) come from a generator seeded by (seed, step), so a
  resumed run makes the same choices; the buffer is in the checkpoint's trainer state, its instances replayed
  from their seed and replies when drawn after a resume.
* Prompts are rendered from text (an earlier reply is re-tokenised as context); only the new reply carries loss,
  trained on the very ids that were sampled.
* The diversity bonus embeds a reply as the mean of the policy's own input embeddings of its tokens (a bag of
  tokens, no separate embedding model); identical embeddings leave the advantages unchanged.
* As in `trainers.grpo`: one optimiser step per batch (π_old is the sampler), no dropout in the update, population
  std, errors left out of their group (a reply whose env step raised, or whose generation failed), groups with
  fewer than two replies left (or, by default, all returns equal) give no sequences, and the KL's reference is a
  frozen copy, or under LoRA the trained model with its adapters disabled.
* Under `torchrun`, every rank draws the step's slots alike (the same buffer, the same generator) and plays its
  share of them (`World.share`: whole groups, so advantages need no other rank's returns); the slots' results
  (scores, replies with their env answers, children with their snapshots) are then gathered on every rank, which
  applies the same buffer update in slot order, so the buffer stays identical everywhere. Metrics come from the
  gathered results, the update is the global mean (see `trainers.data_parallel`); rank 0 checkpoints the buffer,
  every rank restores it. Each rank samples its replies with its own generator, as GRPO's ranks do.
* Replies may come from a separate sampler (`sampler: vllm`, or a `VLLMPolicy` from a script). Attempts are stepped
  in the trainer's process (or in env actors) by `num_envs` envs, each in a thread of its own whose calls past
  `env_timeout` abandon it (the reply is an error, a fresh env takes its place), as in the rollout engine.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from queue import Empty, SimpleQueue
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

from reflectgym.agents.chat import TokenLedger
from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.agents.policy import Generation, Sampling, derive_seed
from reflectgym.agents.rollout import TimedEnv, context_limit
from reflectgym.trainers.batching import Batch, TrainingSequence
from reflectgym.trainers.config import ConfigError
from reflectgym.trainers.demonstrations import env_system_prompt
from reflectgym.trainers.exit.buffer import InstanceBuffer, Priority
from reflectgym.trainers.exit.instances import Instance, Mode, Outcome, ReplayMismatchError, play, restore, start
from reflectgym.trainers.exit.scoring import (
    diversity_weights,
    improvement_reward,
    learnability,
    reply_embeddings,
    with_diversity_bonus,
)
from reflectgym.trainers.exit.slots import (
    Draw,
    Problem,
    Reply,
    Slot,
    SlotResult,
    every_ranks_results,
    problem_counts,
    result_metrics,
)
from reflectgym.trainers.grpo import GRPOOptions, grpo_objective, kl_reference, step_seeds
from reflectgym.trainers.losses import group_advantages
from reflectgym.trainers.samplers import SamplerOptions, build_sampler
from reflectgym.trainers.session import (
    TrainerConfig,
    TrainingSession,
    WeightSyncedSampler,
    check_attempts,
    close_env_factory,
    env_factory,
    load_policy,
    trained_weights,
)


@dataclass
class ExItConfig(SamplerOptions, GRPOOptions, TrainerConfig):
    """Everything an ExIt run needs (the shared `TrainerConfig` options first); loadable from YAML with
    command-line overrides."""

    output_dir: str = "runs/exit"
    """Where metrics, checkpoints, the final model and the report go."""
    env_id: str = "reflectgym/Math-v0"
    """The env to train on: a single-answer env whose `max_attempts` exceeds the depth instances may reach."""
    select_prob: float = 0.5
    """p_select: chance a slot draws its instance from the buffer (once it holds `min_buffer` instances)."""
    diverge_prob: float = 0.15
    """p_div: chance an instance with k > 0 is prompted to diverge (a significantly different approach) rather
    than to improve."""
    buffer_size: int = 512
    """N: the buffer keeps the top N instances by learnability score."""
    min_buffer: int = 64
    """B_min: the buffer is drawn from only once it holds this many instances."""
    priority: Priority = "softmax"
    """How instances are drawn: `softmax` (p ∝ exp(κ·S)) or `rank` (p ∝ (1/rank)^(1/β))."""
    kappa: float = 1.0
    """κ of the softmax priority (0: uniform)."""
    rank_beta: float = 1.0
    """β of the rank priority (larger: flatter)."""
    max_depth: int | None = None
    """Deepest instance kept: children have k at most this (None: as deep as the env's attempts allow)."""
    history_attempts: int | None = 1
    """Earlier attempts an improve/diverge prompt shows, latest last (None: all of them)."""
    reward: Literal["quality", "improvement"] = "quality"
    """The return of a reply: the attempt's reward (`quality`), or the share of the remaining gap to a perfect
    score it closed over the previous attempt, max(0, (q_new − q_prev)/(1 − q_prev)) (`improvement`)."""
    reward_range: tuple[float, float] = (0.0, 1.0)
    """Returns are clipped to this range and scaled to [0, 1] for the learnability score."""
    diversity_bonus: bool = False
    """Scale each positive advantage by the reply's min-max normalised distance to its group's mean embedding."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("select_prob", "diverge_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be a probability in [0, 1]; got {getattr(self, name)}")
        if self.buffer_size < 1:
            raise ConfigError(f"buffer_size must be at least 1; got {self.buffer_size}")
        if not 1 <= self.min_buffer <= self.buffer_size:
            raise ConfigError(
                f"min_buffer must be at least 1 and at most buffer_size ({self.buffer_size}); got {self.min_buffer}"
            )
        if not math.isfinite(self.kappa) or not 0 < self.rank_beta < math.inf:
            raise ConfigError(f"kappa must be finite and rank_beta positive; got {self.kappa}, {self.rank_beta}")
        for name in ("max_depth", "history_attempts"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be None or at least 1; got {getattr(self, name)}")
        low, high = self.reward_range
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ConfigError(f"reward_range must be two finite numbers, low < high; got {self.reward_range}")


KEEP_ENV_ON = (ReplayMismatchError,)
"""Errors after which the env is fine (the instance did not replay), so it is kept."""


def checked_system_prompt(env: gym.Env[Any, Any], env_id: str, override: str | None) -> str:
    """The env's system prompt, once it is checked to be one ExIt can play: snapshots, and a second attempt."""
    if not all(callable(getattr(env.unwrapped, name, None)) for name in ("snapshot", "restore")):
        raise ConfigError(f"{env_id}: ExIt plays attempts from env snapshots; this env has no snapshot()/restore()")
    check_attempts(env, env_id, "ExIt")
    return env_system_prompt(env_id, env, override)


class ExItTrainer:
    """Trains a transformers policy with ExIt on one env.

    Args:
        config: The run's settings.
        policy: The `HFPolicy` whose model is trained in place (and samples); default: loaded from `config.model`.
        sampler: Generates the replies instead of `policy` (e.g. a `VLLMPolicy` on GPU, with the same tokenizer); it
            is sent the new weights after every step that changed them, and a resumed run's at the start.
    """

    def __init__(
        self, config: ExItConfig, policy: HFPolicy | None = None, sampler: WeightSyncedSampler | None = None
    ) -> None:
        self.config = config
        env_id, env_kwargs = config.env_id, dict(config.env_kwargs)
        self._make_env = env_factory(env_id, env_kwargs, config, max_envs=config.num_envs + 1)  # (before the run)
        self.policy = policy if policy is not None else load_policy(config)
        self.sampler = build_sampler(config, self.policy, config.output_dir, config.seed, sampler)  # (before LoRA)
        self.session = TrainingSession(config, self.policy, describe=config, trainer="exit")
        self.reference = kl_reference(self.session.model, config.kl_coef)
        self.env = TimedEnv(self._make_env, config.env_timeout)
        """The env that starts and restores the step's instances (and plays replies when `num_envs` is 1)."""
        self._free_envs: SimpleQueue[TimedEnv] = SimpleQueue()
        """Envs the reply threads take and give back (made on first need, at most `num_envs`)."""
        self._made_envs: list[TimedEnv] = []
        try:
            self.system = self.env.call(partial(checked_system_prompt, env_id=env_id, override=config.system_prompt))
        except BaseException:
            self.close()
            raise
        """The system prompt (read once the env is checked: it must have snapshots and a second attempt)."""
        self.context_limit = context_limit(self.sampler or self.policy)
        """The policy's context length (None: unknown): a prompt that leaves no room for a reply is not played."""
        self.buffer = InstanceBuffer(config.buffer_size, config.priority, config.kappa, config.rank_beta)
        self.sampling = Sampling(temperature=config.temperature, max_new_tokens=config.max_new_tokens)

    @property
    def model(self) -> torch.nn.Module:
        """The model being trained (with LoRA, the adapted model)."""
        return self.session.model

    @property
    def step(self) -> int:
        """Optimiser steps taken so far."""
        return self.session.step

    def seeds_for(self, step: int) -> list[int]:
        """The new-task seeds of a step's slots (GRPO's: a pure function of the run seed and the step)."""
        return step_seeds(self.config.first_seed, self.config.seed, step, self.config.tasks_per_step)

    def train(self) -> list[dict[str, float]]:
        """Runs the configured steps; returns the logged metrics of each step run here."""
        try:
            return self.session.run(f"ExIt {self.config.env_id}", self._step, state=self._state, restore=self._restore)
        finally:
            self.close()

    def close(self) -> None:
        """Closes every env the trainer made (`train` does at its end)."""
        for env in [self.env, *self._made_envs]:
            env.close()
        close_env_factory(self._make_env)

    def _state(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state()}

    def _restore(self, state: Mapping[str, Any]) -> None:
        if "buffer" in state:
            self.buffer.load_state(state["buffer"])
        if state and self.sampler is not None:  # (it generates with the checkpoint's weights, as the run it continues)
            self.sampler.update_weights(trained_weights(self.session.model))

    # ------------------------------------------------------------------------------------------- collect
    def draw_slots(self, step: int) -> list[Draw]:
        """Each slot's instance and mode, without env work: from the buffer with probability p_select once it holds
        B_min instances, else the slot's new task; diverge with probability p_div (k > 0), else improve. A function
        of the buffer and of a generator seeded by (seed, step): every rank draws the same."""
        config = self.config
        rng = np.random.default_rng(derive_seed(config.seed, step))
        draws: list[Draw] = []
        for index, seed in enumerate(self.seeds_for(step)):
            if len(self.buffer) >= config.min_buffer and rng.random() < config.select_prob:
                entry = self.buffer.sample(rng)
                mode: Mode = "diverge" if rng.random() < config.diverge_prob else "improve"
                draws.append(Draw(index, seed, entry, mode))
            else:
                draws.append(Draw(index, seed))
        return draws

    def prepare_slot(self, draw: Draw) -> SlotResult:
        """A drawn slot's env work: its buffer instance restored (its new task started when it cannot be, or when
        none was drawn) and its prompt rendered. The buffer is left alone: what cannot be played again is named in
        the result and dropped with the step's buffer update."""
        problems: list[Problem] = []
        discard = slot = None
        if draw.entry is not None:
            try:
                instance = self.env.call(partial(restore, instance=draw.entry.instance), keep_env_on=KEEP_ENV_ON)
            except Exception as error:  # (a replay that diverged, an env that failed) the instance is lost
                warnings.warn(f"ExIt: buffer instance dropped, it could not be restored: {error!r}", stacklevel=2)
                problems.append("lost")
                discard = draw.entry.serial
            else:
                slot = Slot(instance, draw.mode, [], draw.entry.serial)
        if slot is None:
            try:
                slot = Slot(self.env.call(partial(start, seed=draw.seed)), "solve", [])
            except Exception as error:
                warnings.warn(f"ExIt: task seed {draw.seed} left out, its reset failed: {error!r}", stacklevel=2)
                return SlotResult(draw.index, None, problems=(*problems, "failed"), discard=discard)
        slot.messages = slot.instance.messages(self.system, slot.mode, self.config.history_attempts)
        slot.prompt_ids = self.policy.chat.prompt_ids(slot.messages)
        limit = self.context_limit
        if limit is not None and len(slot.prompt_ids) + self.config.max_new_tokens > limit:
            # positions the model never had: not played (and not drawn again)
            discard = slot.entry if slot.entry is not None else discard
            return SlotResult(draw.index, None, problems=(*problems, "too_long"), discard=discard)
        return SlotResult(draw.index, slot, problems=tuple(problems), discard=discard)

    def choose_slots(self, step: int) -> tuple[list[Slot], dict[str, float]]:
        """Every slot of `step` prepared here (a step prepares only this rank's share), and how many were lost,
        failed or too long."""
        results = [self.prepare_slot(draw) for draw in self.draw_slots(step)]
        return [result.slot for result in results if result.slot is not None], problem_counts(results)

    def play_slots(self, slots: Sequence[Slot]) -> list[list[Reply]]:
        """G replies per slot, sampled in one batch; each played as one attempt from its slot's instance, by up to
        `num_envs` envs at once (each restores the instance's snapshot: which env plays a reply changes nothing)."""
        size = self.config.group_size
        prompts = [slot.prompt_ids for slot in slots for _ in range(size)]
        try:
            generations = (self.sampler or self.policy).generate_ids(prompts, self.sampling) if prompts else []
        except Exception as error:  # (out of memory, a server gone) the step's replies fail, not the run
            warnings.warn(f"ExIt: generation failed, the step's replies are errors: {error!r}", stacklevel=2)
            generations = [Generation("", finish_reason="error", error=repr(error)) for _ in prompts]
        jobs = [
            (slot.instance, generation)
            for i, slot in enumerate(slots)
            for generation in generations[i * size : (i + 1) * size]
        ]
        threads = min(self.config.num_envs, len(jobs))
        if threads > 1:
            with ThreadPoolExecutor(threads, thread_name_prefix="exit-env") as pool:
                replies = list(pool.map(lambda job: self._play_pooled(*job), jobs))
        else:
            replies = [self.play_reply(instance, generation) for instance, generation in jobs]
        return [replies[i * size : (i + 1) * size] for i in range(len(slots))]

    def play_reply(self, instance: Instance, generation: Generation) -> Reply:
        """One reply played by the trainer's env as attempt k + 1 of `instance`, with its return; an error when
        generation or the env failed."""
        if generation.finish_reason == "error" or generation.token_ids is None:
            return Reply(generation, None)
        try:
            outcome = self.env.call(partial(play, instance=instance, reply=generation.text))
        except Exception:  # the env failed (or timed out) on this reply: an error, left out of its group
            return Reply(generation, None)
        return self._reply(instance, generation, outcome)

    def _play_pooled(self, instance: Instance, generation: Generation) -> Reply:
        """`play_reply` on an env of the reply threads' pool (a fresh one replaces an env that raised)."""
        if generation.finish_reason == "error" or generation.token_ids is None:
            return Reply(generation, None)
        try:
            env = self._free_envs.get_nowait()
        except Empty:
            env = TimedEnv(self._make_env, self.config.env_timeout)
            self._made_envs.append(env)
        try:
            outcome = env.call(partial(play, instance=instance, reply=generation.text))
        except Exception:  # the env failed (or timed out) on this reply: an error, left out of its group
            return Reply(generation, None)
        finally:
            self._free_envs.put(env)  # (after a failure, its next call makes a fresh env)
        return self._reply(instance, generation, outcome)

    def _reply(self, instance: Instance, generation: Generation, outcome: Outcome) -> Reply:
        """The reply with its return: the attempt's quality, or its improvement on the instance's."""
        quality = outcome.attempt.reward
        ret = (
            improvement_reward(quality, instance.quality)
            if self.config.reward == "improvement" and instance.k
            else quality
        )
        if not math.isfinite(ret):  # a NaN reward would poison the group and the buffer's priorities
            return Reply(generation, None)
        return Reply(generation, outcome, ret)

    # ------------------------------------------------------------------------------------------- learn
    def group_sequences(self, slot: Slot, replies: Sequence[Reply], group: int) -> tuple[list[TrainingSequence], float]:
        """A group's training sequences (none when it carries no signal) and its learnability S, over the replies
        that did not fail."""
        finished = [reply for reply in replies if reply.outcome is not None]
        returns = [reply.ret for reply in finished]
        score = learnability(returns, *self.config.reward_range)
        if len(finished) < 2 or (self.config.drop_zero_variance_groups and len(set(returns)) == 1):
            return [], score
        advantages = group_advantages(torch.tensor(returns, dtype=torch.float32), len(finished))
        if self.config.diversity_bonus:
            embeddings = reply_embeddings(self.model, [reply.generation.token_ids or () for reply in finished])
            advantages = with_diversity_bonus(advantages, diversity_weights(embeddings))
        sequences = []
        for reply, advantage in zip(finished, advantages.tolist(), strict=True):
            ledger = TokenLedger(self.policy.chat, slot.messages)
            ledger.add_reply(reply.generation)
            record = ledger.record()
            if any(record.loss_mask):
                sequences.append(TrainingSequence.from_record(record, float(advantage), group=group))
        return sequences, score

    def grow_buffer(self, slot: Slot, replies: Sequence[Reply], score: float) -> int:
        """Rescores the slot's buffer entry with S and adds a child (k + 1) for every reply whose episode goes on,
        within `max_depth`; returns how many children were added."""
        if slot.entry is not None:
            self.buffer.rescore(slot.entry, score)
        if self.config.max_depth is not None and slot.instance.k + 1 > self.config.max_depth:
            return 0
        first_new = self.buffer.next_serial
        for reply in replies:
            outcome = reply.outcome
            if outcome is not None and not outcome.ended:
                self.buffer.add(slot.instance.child(outcome.attempt, outcome.snapshot), score)
        return sum(entry.serial >= first_new for entry in self.buffer.entries)  # (a reply held twice counts once)

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

    def play_share(self, step: int) -> tuple[list[SlotResult], list[TrainingSequence]]:
        """This rank's share of the step's slots, played: their results (in slot order) and training sequences."""
        prepared = [self.prepare_slot(draw) for draw in self.session.world.share(self.draw_slots(step))]
        groups = iter(self.play_slots([result.slot for result in prepared if result.slot is not None]))
        results: list[SlotResult] = []
        sequences: list[TrainingSequence] = []
        for result in prepared:
            if result.slot is not None:
                replies = next(groups)
                group_sequences, score = self.group_sequences(result.slot, replies, result.index)
                sequences += group_sequences
                result = dataclasses.replace(
                    result, replies=tuple(replies), score=score, sequences=len(group_sequences)
                )
            results.append(result)
        return results, sequences

    def update_buffer(self, results: Sequence[SlotResult]) -> dict[str, float]:
        """Applies every slot's result to the buffer in slot order (the same changes on every rank): entries that
        cannot be played again go and drawn ones keep the snapshot they were restored to, then each played slot
        rescores its entry and adds its children. Returns the buffer's metrics."""
        for result in results:
            if result.discard is not None:
                self.buffer.discard(result.discard)
            elif result.slot is not None and result.slot.entry is not None:
                self.buffer.replace_instance(result.slot.entry, result.slot.instance)
        children = sum(
            self.grow_buffer(result.slot, result.replies, result.score) for result in results if result.slot is not None
        )
        entries = self.buffer.entries
        return {
            "children_added": float(children),
            "buffer_size": float(len(entries)),
            "buffer_mean_score": float(np.mean([entry.score for entry in entries])) if entries else 0.0,
        }

    def _step(self) -> dict[str, float]:
        started = time.perf_counter()
        own, sequences = self.play_share(self.session.step)
        rollout_seconds = time.perf_counter() - started
        results = every_ranks_results(own)
        metrics = {**result_metrics(results), "rollout_seconds": rollout_seconds}
        if metrics["sequences"] > 0:  # over all ranks: a rank without sequences of its own still takes part
            result = self.session.update(
                sequences, self._loss, dropout=False, temperature=self.config.scoring_temperature
            )
            metrics.update({"loss": result.loss, "grad_norm": result.grad_norm, **result.metrics})
            if self.sampler is not None:  # weights changed: the sampler must generate with them from now on
                self.sampler.update_weights(trained_weights(self.session.model))
        metrics.update(self.update_buffer(results))
        metrics["step_seconds"] = time.perf_counter() - started
        return metrics
