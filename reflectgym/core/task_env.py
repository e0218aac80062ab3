"""`TaskEnv`: single-answer tasks judged by a verify function — the quickest way to a custom environment.

A task list plus `verify(task, answer) -> Verdict | bool | float` is a complete env: the student answers, the
verifier judges, and after a failed attempt the feedback is the next observation (a self-correction episode)
until the answer passes or `max_attempts` run out.

The verify contract: `verify` returns a `Verdict`, a bool or a finite real score (numpy scalars count: anything
`numbers.Real`, `operator.index`-able, or with a scalar `.item()`). When it raises, or returns anything else (a
non-finite score, `None`, a string), the answer could not be verified: the turn gets reward 0, is not passed,
and its feedback says so (naming the error's type at the `diagnostic` and `hint` levels), as the math envs do for an
answer their checker cannot decide. The turn still uses an attempt, and a `RuntimeWarning` names the problem.
"""

from __future__ import annotations

import inspect
import math
import numbers
import operator
import os
import warnings
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
    """Turns a verify function's bool or score into a `Verdict` with plain feedback.

    Raises `TypeError` for a result that is not a `Verdict`, bool or real number, and `ValueError` for a
    non-finite reward (nan or infinity would poison every mean and advantage computed from it).
    """
    if isinstance(result, Verdict):
        return _checked_verdict(result)
    score = as_score(result)
    passed = score >= 1.0
    text = "Correct." if passed else "Incorrect."
    if not passed and feedback_level != "binary" and 0.0 < score < 1.0:
        text = f"Partly correct (score {score:.2f})."
    return Verdict(reward=score, passed=passed, feedback=text, details={"score": score})


def as_score(result: object) -> float:
    """A verify result as a finite float score: a bool is 1 or 0; numpy and other scalars are unwrapped."""
    value = _unwrap(result)
    try:
        if isinstance(value, bool):
            score = 1.0 if value else 0.0
        elif isinstance(value, numbers.Real):
            score = float(value)
        else:
            score = float(operator.index(value))  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"verify must return a Verdict, a bool or a number; got {type(result).__name__}") from None
    except OverflowError:
        raise ValueError(f"verify returned a score too large for a float: {result!r}") from None
    if not math.isfinite(score):
        raise ValueError(f"verify returned a non-finite score: {score}")
    return score


def _unwrap(result: object) -> object:
    """A numpy (or torch) scalar as its Python value; anything else as it is."""
    item = getattr(result, "item", None)
    if isinstance(result, (bool, int, float)) or not callable(item):
        return result
    try:
        return item()
    except (TypeError, ValueError):  # an array of several values has no single .item()
        return result


def _checked_verdict(verdict: Verdict) -> Verdict:
    """A `Verdict` from verify with a finite float reward, a bool `passed` (numpy values, and 0 / 1, unwrapped) and
    text feedback (None is no feedback, not the word "None")."""
    reward = as_score(verdict.reward)
    passed = _unwrap(verdict.passed)
    if type(passed) is int and passed in (0, 1):
        passed = bool(passed)
    if not isinstance(passed, bool):
        raise TypeError(f"verify's Verdict.passed must be a bool; got {type(verdict.passed).__name__}")
    feedback = "" if verdict.feedback is None else str(verdict.feedback)
    return Verdict(reward=reward, passed=passed, feedback=feedback, details=verdict.details)


def unverified_verdict(error: Exception, feedback_level: FeedbackLevel) -> Verdict:
    """The verdict on an answer `verify` could not judge: reward 0, not passed. Feedback names the error's type
    only: its message is the verify function's own text, which may quote the reference answer (it is kept in
    `details["verify_error"]`)."""
    reason = f"{type(error).__name__}: {error}"
    feedback = (
        "Incorrect."
        if feedback_level == "binary"
        else f"Incorrect. Your answer could not be verified ({type(error).__name__}), so it does not count."
    )
    return Verdict(reward=0.0, passed=False, feedback=feedback, details={"status": "unknown", "verify_error": reason})


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
    An answer `verify` could not judge (it raised, or returned a non-finite or non-numeric result) is
    "Incorrect." with the reason, at reward 0 (see the module docstring for the contract).

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
    episode_fields: ClassVar[tuple[str, ...]] = ("_task",)
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
        wait_action: bool = False,
    ) -> None:
        if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
            raise ValueError(f"max_attempts must be a whole number of at least 1; got {max_attempts!r}")
        super().__init__(
            feedback=feedback,
            max_turns=max_attempts,
            format_penalty=format_penalty,
            render_mode=render_mode,
            wait_action=wait_action,
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
        verdict = self._judge(action)
        if verdict.passed:
            return Transition(observation=verdict.feedback, verdict=verdict, terminated=True)
        return Transition(observation=f"{verdict.feedback}\n\n{self.observation()}", verdict=verdict, terminated=False)

    def _judge(self, action: str) -> Verdict:
        """`verify`'s verdict on `action`; an error in it, or a result it may not give, is an unverified turn."""
        try:
            if self._verify_takes_level:
                result = self.verify(self.task, action, feedback=self.feedback)
            else:
                result = self.verify(self.task, action)
            return as_verdict(result, self.feedback)
        except Exception as error:  # the verify function is user code; one odd answer must not end the run
            warnings.warn(
                f"verify could not judge an answer to task {self.task.id!r} ({type(error).__name__}: {error}); "
                "the turn counts as unverified (reward 0)",
                RuntimeWarning,
                stacklevel=2,
            )
            return unverified_verdict(error, self.feedback)

    def observation(self) -> str:
        attempt = len(self._actions) + 1
        if attempt > self.max_attempts:
            return "No attempts left."
        return f"Attempt {attempt} of {self.max_attempts}: revise your answer to the task above."
