"""RLTF's second prompt x_1: the env's own observation after a failed attempt, plus the instruction to answer afresh.

A single-answer env already shows, after a wrong attempt, its critique and a request to revise (Math-v0: the
feedback, then "Attempt 2 of 2: revise your answer to the problem above."), and the rollout's growing chat holds
the question and the attempt before it. What RLTF adds is the instruction to write a complete solution as if
answering for the first time, so that y_1 reads as an answer to x_0 too (it is re-attached to x_0 for RLTF-SD).
It goes into the observation text through a Gymnasium wrapper: the rollout engine then tokenises it as it does
any observation (one more user turn appended to the grown context), so token records stay exact.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from reflectgym.agents.rollout import EnvFactory

REVISION_INSTRUCTION = (
    "Write a complete solution as if you were answering the problem for the first time. "
    "Do not refer to your previous attempt or to the feedback."
)
"""The paper's instruction to the second turn, shortened."""


class RevisionInstruction(gym.Wrapper[str, str, str, str]):
    """Appends `instruction` to every observation that asks for another attempt (a step that did not end the
    episode); the first observation and the last one are left as they are."""

    def __init__(self, env: gym.Env[str, str], instruction: str) -> None:
        super().__init__(env)
        self.instruction = instruction

    def step(self, action: str) -> tuple[str, Any, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        if not (terminated or truncated):
            observation = f"{observation}\n\n{self.instruction}"
        return observation, reward, terminated, truncated, info


def with_revision_instruction(make_env: EnvFactory, instruction: str) -> EnvFactory:
    """A factory of `make_env`'s envs wrapped in `RevisionInstruction` (`make_env` itself when `instruction` is
    empty)."""
    if not instruction:
        return make_env
    return lambda: RevisionInstruction(make_env(), instruction)
