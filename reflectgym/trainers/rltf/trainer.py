"""The RLTF trainer: reinforcement learning from text feedback, by self-distillation (RLTF-SD) and feedback
modelling (RLTF-FM), on the shared GRPO core (TRAINERS.md §4; official code: lili-chen/rltf).

config → two-turn episodes (an env with `max_attempts=2`: a correct first answer ends the episode, a wrong one
gets the env's critique and a second attempt, `revision`) → GRPO's multi-turn sequences, plus RLTF-SD's: each
second answer y_1 re-attached to the first prompt x_0 with advantage (r_1 − mean r_0)·sd_coef and tokens below
log-prob −5 (`sd_logprob_floor`) under x_0 masked (`distillation`), plus RLTF-FM's: the critique as a supervised
target given the question and the first attempt, weighted by fm_coef (`feedback`) → one optimiser step → log /
checkpoint.

Deviations from the paper and its code, on purpose:
* x_1 is the rollout's grown chat, not a fresh single prompt: the system prompt, the question, y_0, then one user
  turn with the env's feedback, its own request to revise ("Attempt 2 of 2: ...") and the instruction to answer
  as if for the first time (`revision`). It holds what the paper's x_1 holds (question, previous attempt,
  critique, instruction), keeps the multi-turn GRPO sequences token exact, and needs no change to the engine.
* The critique c_0 is the env's own verifier feedback at its `feedback` level, not an LLM judge's critique.
* Rewards are the env's per turn: 1 correct, 0 wrong, −format_penalty (Math: 0.1) with no readable answer, i.e.
  correct + 0.1·(format_ok − 1), where format_ok means the env read an answer (Math also reads the last number by
  default), not the paper's `\\boxed` check. A failed first attempt keeps its reward (0, or −0.1 unformatted)
  where the paper pays intermediate turns 0 (`reward_y1=False`): mean r_0 counts format penalties.
* The GRPO part is this package's: by default one return per episode (r_0 + r_1), group-normalised, PPO-clipped;
  the official code uses per-turn returns discounted by γ = 0.1, centred without the std, and an unclipped
  importance-sampling loss. `returns: turn` with `gamma: 0.1` credits each attempt with its own discounted return
  as there, but normalised by the group's std too (see `grpo`).
* RLTF-SD's π_old is the model's own log-prob under x_0 before the update (see `distillation` for why), as in the
  official code; tokens below −5 leave the loss mask (out of the token mean) where the official code zeroes their
  advantage (its losses are sums, so there they change nothing else); a re-attached answer whose advantage is 0 is
  not added (it has no gradient and would only dilute the token mean); sd_coef is constant (the DAPO run of the
  official code ramps rl_coef from 0 to 0.1).
* The step's loss is GRPO's mean over its policy tokens (re-attached answers included) plus fm_coef times the
  critiques' mean NLL per token (per sequence with `normalisation: sequence`); the official code adds fm_coef
  times the critiques' summed NLL to the summed RL loss, so there a long critique weighs more. The
  feedback-modelling prompt paraphrases the paper's; its target is the critique and the template's end of turn.
  One pass scores every sequence of a step, at the sampling temperature (see `grpo`): with `temperature` ≠ 1 the
  critiques' NLL is the tempered model's too.
* Under `torchrun`, each rank plays its share of the step's task instances (whole groups, as GRPO): RLTF-SD's
  baselines need only the rank's own groups; the share of the step's loss units that are critique targets and the
  turn metrics are sums over every rank, so the step is the one a single process takes on the whole batch.
* A whole-episode context (no `history_turns` window: x_1 must hold the question and the first attempt).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.agents.rollout import EnvFactory
from reflectgym.core.trajectory import Trajectory, Turn
from reflectgym.trainers.batching import Batch, TrainingSequence
from reflectgym.trainers.config import ConfigError
from reflectgym.trainers.data_parallel import global_sums
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer
from reflectgym.trainers.losses import Normalisation, sft_loss
from reflectgym.trainers.rltf.distillation import LOGPROB_FLOOR, self_distillation_sequences
from reflectgym.trainers.rltf.episodes import finished, second_turns
from reflectgym.trainers.rltf.feedback import feedback_sequences
from reflectgym.trainers.rltf.revision import REVISION_INSTRUCTION, with_revision_instruction
from reflectgym.trainers.session import WeightSyncedSampler, check_attempts
from reflectgym.trainers.update import averaged_units


@dataclass
class RLTFConfig(GRPOConfig):
    """Everything an RLTF run needs: GRPO's options, then RLTF-SD's and RLTF-FM's."""

    output_dir: str = "runs/rltf"
    """Where metrics, checkpoints, the final model and the report go."""
    env_id: str = "reflectgym/Math-v0"
    """A single-answer env whose failed attempt is answered with feedback (any registered id)."""
    env_kwargs: dict[str, Any] = field(default_factory=lambda: {"max_attempts": 2})
    """Arguments for `gymnasium.make(env_id, ...)`: give the env a second attempt (`max_attempts: 2`)."""
    max_turns: int = 2
    """Turns per episode: RLTF's episodes have two (an attempt, then a revision after the critique)."""
    sd_coef: float = 0.1
    """RLTF-SD's rl_coef: re-attached second answers get advantage (r_1 − mean r_0)·sd_coef (paper: 0.1; 0: off)."""
    sd_logprob_floor: float = LOGPROB_FLOOR
    """Re-attached tokens whose log-prob under x_0 is below this carry no loss (paper: −5; the scale depends on the
    model and its vocabulary: a tiny random model's tokens all sit near −log(vocab size))."""
    fm_coef: float = 0.0
    """RLTF-FM's weight of the critique's mean NLL per token (paper: 0.1, with sd_coef 0; 0: off)."""
    revision_instruction: str = REVISION_INSTRUCTION
    """Appended to the observation that asks for the second attempt ("": the env's observation alone). It stays
    with sd_coef = fm_coef = 0: that run is GRPO on these second prompts (GRPO's own only with "")."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("sd_coef", "fm_coef"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ConfigError(f"{name} must be 0 (off) or positive and finite; got {getattr(self, name)}")
        if math.isnan(self.sd_logprob_floor) or self.sd_logprob_floor > 0:
            raise ConfigError(f"sd_logprob_floor is a log-prob: 0 or below; got {self.sd_logprob_floor}")
        if self.max_turns != 2:
            raise ConfigError(f"RLTF plays two-turn episodes: max_turns must be 2; got {self.max_turns}")
        if self.history_turns is not None:
            raise ConfigError("RLTF's second prompt must hold the question and the first attempt: history_turns: null")


def passed(turn: Turn) -> bool:
    """Whether the env judged the turn's answer correct."""
    return turn.verdict is not None and turn.verdict.passed


def mask_units(mask: torch.Tensor, normalisation: Normalisation) -> float:
    """What a `normalisation` mean averages over in a (B, T) mask: its tokens, or its rows that have any."""
    return float(mask.sum()) if normalisation == "token" else float((mask.sum(-1) > 0).sum())


def global_share(part: float, whole: float, device: torch.device) -> float:
    """`part` / `whole`, each summed over every rank first (0 when the whole is 0): a share of the whole step, the
    same on every rank, whatever each rank holds. A collective: every rank calls it."""
    sums = global_sums({"part": float(part), "whole": float(whole)}, device)
    return sums["part"] / sums["whole"] if sums["whole"] else 0.0


def turn_counts(groups: list[list[Trajectory]]) -> dict[str, float]:
    """This rank's finished episodes, those solved at the first turn, those that went to a second, and those whose
    second attempt passed: counts that sum over ranks (ratios of them would not)."""
    episodes = [trajectory for group in groups for trajectory in finished(group)]
    second = [trajectory.turns[1] for trajectory in episodes if len(trajectory.turns) > 1]
    return {
        "episodes": float(len(episodes)),
        "first_passed": float(sum(passed(trajectory.turns[0]) for trajectory in episodes)),
        "second_turns": float(len(second)),
        "second_passed": float(sum(passed(turn) for turn in second)),
    }


def turn_metrics(counts: dict[str, float]) -> dict[str, float]:
    """First-turn accuracy, second-turn rate and second-turn accuracy from `turn_counts` (summed over ranks); only
    the ratios whose denominator is not 0."""
    if not counts["episodes"]:
        return {}
    metrics = {
        "first_turn_accuracy": counts["first_passed"] / counts["episodes"],
        "second_turn_rate": counts["second_turns"] / counts["episodes"],
    }
    if counts["second_turns"]:
        metrics["second_turn_accuracy"] = counts["second_passed"] / counts["second_turns"]
    return metrics


def check_second_attempt(make_env: EnvFactory, env_id: str) -> None:
    """Raises `ConfigError` unless the env is a single-answer env with a second attempt (`check_attempts`)."""
    env = make_env()
    try:
        check_attempts(env, env_id, "RLTF")
    finally:
        env.close()


class RLTFTrainer(GRPOTrainer):
    """Trains a transformers policy with RLTF (SD and/or FM) on a single-answer env.

    Args:
        config: The run's settings.
        policy: The `HFPolicy` trained in place; default: loaded from `config.model`.
        sampler: Generates the rollouts instead of `policy` (see `GRPOTrainer`).
    """

    name = "rltf"
    title = "RLTF"

    def __init__(
        self, config: RLTFConfig, policy: HFPolicy | None = None, sampler: WeightSyncedSampler | None = None
    ) -> None:
        super().__init__(config, policy, sampler)
        self.config: RLTFConfig = config
        self.engine.make_env = with_revision_instruction(self.engine.make_env, config.revision_instruction)
        check_second_attempt(self.engine.make_env, config.env_id)
        self._target_share = 0.0
        """The share of the step's loss units, over every rank, that are RLTF-FM targets (set with the step's
        sequences)."""

    def _training_sequences(self, groups: list[list[Trajectory]]) -> tuple[list[TrainingSequence], dict[str, float]]:
        """GRPO's sequences, then RLTF-SD's re-attached second answers, then RLTF-FM's critiques."""
        config, session = self.config, self.session
        sequences, counts = super()._training_sequences(groups)
        counts["grpo_sequences"] = counts["sequences"]
        targets: list[TrainingSequence] = []
        if config.sd_coef > 0:
            distilled, sd_counts = self_distillation_sequences(
                session.model,
                groups,
                coef=config.sd_coef,
                floor=config.sd_logprob_floor,
                pad_id=session.pad_id,
                batch_size=config.minibatch_size,
                autocast_dtype=session.autocast_dtype,
                temperature=config.scoring_temperature,
            )
            sequences += distilled
            counts.update(sd_counts)
        if config.fm_coef > 0:
            targets, fm_counts = feedback_sequences(self.policy.chat, second_turns(groups))
            sequences += targets
            counts.update(fm_counts)
        counts["sequences"] = float(len(sequences))
        target_units = averaged_units(targets, config.normalisation)
        units = averaged_units(sequences, config.normalisation)
        self._target_share = global_share(target_units, units, self.policy.device)  # (a collective: every rank)
        return sequences, counts

    def _loss(self, batch: Batch, logprobs: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """GRPO's loss as a mean over the step's policy tokens, plus fm_coef·NLL as a mean over its critique tokens.
        `optimizer_step` weighs each minibatch by its share of all the step's units (over every rank), so each part is
        scaled by the step's units over its own: however long the critiques, GRPO keeps the weight it has without
        them (and so do the metrics, means over their own units)."""
        if self._target_share == 0.0:
            return super()._loss(batch, logprobs)
        normalisation = self.config.normalisation
        supervised = batch.supervised[:, None].to(batch.loss_mask.dtype)  # (B, 1)
        policy_mask = batch.loss_mask * (1.0 - supervised)  # (B, T-1)
        target_mask = batch.loss_mask * supervised  # (B, T-1)
        units = mask_units(batch.loss_mask, normalisation)
        policy_share = mask_units(policy_mask, normalisation) / units
        target_share = mask_units(target_mask, normalisation) / units
        policy_loss, policy_metrics = super()._loss(dataclasses.replace(batch, loss_mask=policy_mask), logprobs)
        nll = sft_loss(logprobs, target_mask, normalisation)
        step_policy_share = 1.0 - self._target_share
        policy_scale = policy_share / step_policy_share if step_policy_share > 0 else 0.0
        target_scale = target_share / self._target_share
        loss = policy_scale * policy_loss + self.config.fm_coef * target_scale * nll
        metrics = {key: value * policy_scale for key, value in policy_metrics.items()}
        metrics["fm_nll"] = float(nll.detach()) * target_scale
        return loss, metrics

    def _after_update(self, groups: list[list[Trajectory]]) -> dict[str, float]:
        """First-turn accuracy (over finished episodes), and the share of them that went to a second turn and the
        accuracy of those second attempts: over every rank's episodes (a collective: every rank calls it)."""
        return turn_metrics(global_sums(turn_counts(groups), self.policy.device))
