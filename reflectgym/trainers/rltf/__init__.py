"""RLTF: reinforcement learning from text feedback (TRAINERS.md §4). Two-turn episodes (an attempt, the env's
critique, a revision); `revision` adds the instruction to the second prompt, `episodes` reads what RLTF needs from
an episode, `distillation` builds RLTF-SD's re-attached answers, `feedback` RLTF-FM's critique targets, and
`trainer` runs the loop on the GRPO core."""

from reflectgym.trainers.rltf.distillation import (
    LOGPROB_FLOOR,
    logprobs_under_first_prompt,
    reattached_sequence,
    sd_advantage,
    self_distillation_sequences,
)
from reflectgym.trainers.rltf.episodes import SecondTurn, first_turn_baseline, second_turn, second_turns
from reflectgym.trainers.rltf.feedback import critique_messages, critique_sequence, feedback_sequences
from reflectgym.trainers.rltf.revision import REVISION_INSTRUCTION, RevisionInstruction, with_revision_instruction
from reflectgym.trainers.rltf.trainer import RLTFConfig, RLTFTrainer

__all__ = [
    "LOGPROB_FLOOR",
    "REVISION_INSTRUCTION",
    "RLTFConfig",
    "RLTFTrainer",
    "RevisionInstruction",
    "SecondTurn",
    "critique_messages",
    "critique_sequence",
    "feedback_sequences",
    "first_turn_baseline",
    "logprobs_under_first_prompt",
    "reattached_sequence",
    "sd_advantage",
    "second_turn",
    "second_turns",
    "self_distillation_sequences",
    "with_revision_instruction",
]
