"""`TaskEnv`: single-answer tasks judged by a verify function — the quickest way to a custom environment.

A task list plus `verify(task, answer) -> Verdict | bool | float` is a complete env: the student answers, the
verifier judges, and after a failed attempt the feedback is the next observation (a self-correction episode)
until the answer passes or `max_attempts` run out.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from reflectgym.core.env import TextEnv
from reflectgym.core.tasks import Task, TaskSource, as_task_source
from reflectgym.core.types import ActionParseError, FeedbackLevel, Transition, Verdict

VerifyResult = Verdict | bool | float
VerifyFn = Callable[..., VerifyResult]
"""`verify(task, answer)` or `verify(task, answer, feedback=level)`; returns a `Verdict`, a bool or a score."""

ExtractFn = Callable[[str], str]
"""Pulls the answer out of model text; raises `ActionParseError` when there is none."""


def whole_reply(text: str) -> str:
    """The default extractor: the reply itself, stripped; an empty reply is a format error."""
    answer = text.strip()
    if not answer:
        raise ActionParseError("the reply is empty")
    return answer


def as_verdict(result: VerifyResult, feedback_level: FeedbackLevel) -> Verdict:
    """Turns a verify function's bool or score into a `Verdict` with plain feedback."""
    if isinstance(result, Verdict):
        return result
    if isinstance(result, bool):
        score = 1.0 if result else 0.0
    elif isinstance(result, (int, float)):
        score = float(result)
    else:
        raise TypeError(f"verify must return a Verdict, a bool or a number; got {type(result).__name__}")
    passed = score >= 1.0
    text = "Correct." if passed else "Incorrect."
    if not passed and feedback_level != "binary" and 0.0 < score < 1.0:
        text = f"Partly correct (score {score:.2f})."
    return Verdict(reward=score, passed=passed, feedback=text, details={"score": score})


class TaskEnv(TextEnv[str]):
    """Answer a task; revise after feedback until it passes or attempts run out.

    ## Description
    Each episode draws one task from `tasks` (the seed picks it, or `options={"task_id": ...}`).

    ## Observation
    First the instructions and the task prompt; after a failed attempt, the verifier's feedback.

    ## Actions
    Free text; `extract` pulls the answer out (default: the whole reply).

    ## Feedback
    Whatever `verify` says at the env's `feedback` level (bool or score results get "Correct."/"Incorrect.").

    ## Reward
    The verdict's reward per attempt (1 for a pass with a bool verify); minus `format_penalty` for an empty or
    unreadable reply.

    ## Episode end
    Terminated when an answer passes; truncated after `max_attempts` turns.

    ## Arguments
    tasks, verify, extract, instructions, max_attempts, feedback, format_penalty, render_mode.

    ## Version history
    v0: initial version.
    """

    action_format: ClassVar[str] = "your answer as text"
    min_leak_marker_length: ClassVar[int] = 4

    def __init__(
        self,
        *,
        tasks: str | os.PathLike[str] | Sequence[Mapping[str, Any] | Task] | TaskSource,
        verify: VerifyFn,
        extract: ExtractFn = whole_reply,
        instructions: str = "",
        max_attempts: int = 1,
        feedback: FeedbackLevel | str = "diagnostic",
        format_penalty: float = 0.1,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(
            feedback=feedback, max_turns=max_attempts, format_penalty=format_penalty, render_mode=render_mode
        )
        self.tasks = as_task_source(tasks)
        self.verify = verify
        self.extract = extract
        self.instructions = instructions.strip()
        self.max_attempts = max_attempts
        self._verify_takes_level = "feedback" in inspect.signature(verify).parameters
        self._task: Task | None = None

    @property
    def task(self) -> Task:
        """The task being played."""
        if self._task is None:
            raise RuntimeError("no task yet: call reset() first")
        return self._task

    @property
    def task_id(self) -> str | None:
        return self._task.id if self._task is not None else None

    def privileged(self) -> str | None:
        return self._task.reference if self._task is not None else None

    def oracle_action(self) -> str:
        """Answers with the task's reference (the scripted oracle's move)."""
        if self.task.reference is None:
            raise RuntimeError(f"task {self.task.id!r} has no reference answer for an oracle")
        return self.task.reference

    def _begin(self, options: dict[str, Any]) -> str:
        task_id = options.get("task_id")
        self._task = self.tasks.get(str(task_id)) if task_id is not None else self.tasks.sample(self.np_random)
        return f"{self.instructions}\n\n{self._task.prompt}" if self.instructions else self._task.prompt

    def parse_action(self, text: str) -> str:
        return self.extract(text)

    def _apply(self, action: str) -> Transition:
        if self._verify_takes_level:
            result = self.verify(self.task, action, feedback=self.feedback)
        else:
            result = self.verify(self.task, action)
        verdict = as_verdict(result, self.feedback)
        if verdict.passed:
            return Transition(observation=verdict.feedback, verdict=verdict, terminated=True)
        return Transition(observation=f"{verdict.feedback}\n\n{self.observation()}", verdict=verdict, terminated=False)

    def observation(self) -> str:
        attempt = len(self._actions) + 1
        if attempt > self.max_attempts:
            return "No attempts left."
        return f"Attempt {attempt} of {self.max_attempts}: revise your answer to the task above."
