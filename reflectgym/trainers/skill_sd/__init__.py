"""Skill-SD: GRPO plus on-policy self-distillation from a teacher that sees a skill the model wrote about its own
earlier episodes (TRAINERS.md §2). `skills` holds the skills and the per-task bank, `summariser` writes them,
`teacher` re-scores the student's tokens under a skill, `trainer` runs the loop."""

from reflectgym.trainers.skill_sd.skills import SKILL_FIELDS, Skill, SkillBank, parse_skill
from reflectgym.trainers.skill_sd.summariser import Summariser, Summary, summary_conversation
from reflectgym.trainers.skill_sd.teacher import episode_contexts, teacher_prompts, with_skill, with_teacher_logprobs

__all__ = [
    "SKILL_FIELDS",
    "Skill",
    "SkillBank",
    "Summariser",
    "Summary",
    "episode_contexts",
    "parse_skill",
    "summary_conversation",
    "teacher_prompts",
    "with_skill",
    "with_teacher_logprobs",
]
