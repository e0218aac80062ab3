"""ExIt (Jiang et al., 2025, "Bootstrapping Task Spaces for Self-Improvement"): GRPO on single self-improvement
steps over an autocurriculum of the model's own partial histories (TRAINERS.md §3). `instances` are the tasks
with their attempts so far, `buffer` keeps the most learnable of them, `scoring` holds the per-group numbers,
`slots` what a step drew, played and gathers, and `trainer` runs the loop."""

from reflectgym.trainers.exit.buffer import BufferEntry, InstanceBuffer, Priority
from reflectgym.trainers.exit.instances import (
    INSTRUCTIONS,
    Attempt,
    Instance,
    Mode,
    Outcome,
    ReplayMismatchError,
    play,
    restore,
    start,
)
from reflectgym.trainers.exit.scoring import (
    diversity_weights,
    improvement_reward,
    learnability,
    reply_embeddings,
    with_diversity_bonus,
)
from reflectgym.trainers.exit.slots import Draw, Reply, Slot, SlotResult, step_metrics
from reflectgym.trainers.exit.trainer import ExItConfig, ExItTrainer

__all__ = [
    "INSTRUCTIONS",
    "Attempt",
    "BufferEntry",
    "Draw",
    "ExItConfig",
    "ExItTrainer",
    "Instance",
    "InstanceBuffer",
    "Mode",
    "Outcome",
    "Priority",
    "ReplayMismatchError",
    "Reply",
    "Slot",
    "SlotResult",
    "diversity_weights",
    "improvement_reward",
    "learnability",
    "play",
    "reply_embeddings",
    "restore",
    "start",
    "step_metrics",
    "with_diversity_bonus",
]
