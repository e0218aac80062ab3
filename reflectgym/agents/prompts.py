"""System prompts, one per env family, ending with the env's own statement of what a valid action looks like."""

from __future__ import annotations

from reflectgym.core.registry import env_info

FAMILY_PROMPTS: dict[str, str] = {
    "sokoban": (
        "You are playing Sokoban. Each turn you see the board and answer with your next move. "
        "Think briefly about which box to push and where, then give the move."
    ),
    "math": (
        "You are solving a math problem. Reason step by step. If the checker says your answer is wrong, "
        "read its feedback and revise."
    ),
    "web": (
        "You are operating a web page through its accessibility tree. Each turn you see the page and answer "
        "with one action on one element."
    ),
    "code": (
        "You are writing a program. Answer with the complete code. If tests fail, read the failure and "
        "submit a corrected version."
    ),
    "custom": "You are solving a task. If your answer is judged wrong, read the feedback and try again.",
}
"""What the policy is told about each family; the env's `action_format` is appended."""


def family_of(env_id: str) -> str:
    """The family of a registered env, or `custom` for ids the catalogue does not know."""
    try:
        return env_info(env_id).family
    except (KeyError, ValueError):
        return "custom"


def system_prompt(env_id: str, action_format: str | None = None) -> str:
    """The system prompt for `env_id`: its family's prompt plus the env's action format."""
    text = FAMILY_PROMPTS.get(family_of(env_id), FAMILY_PROMPTS["custom"])
    if action_format:
        text += f" Reply with {action_format}."
    return text
