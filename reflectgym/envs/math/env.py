"""`MathEnv` (`reflectgym/Math-v0`): answer-checked math with self-correction attempts."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

from reflectgym.core.env import TextEnv
from reflectgym.core.tasks import OnError, Task, TaskSource
from reflectgym.core.types import FeedbackLevel, Transition, Verdict
from reflectgym.envs.math.equivalence import AnswerChecker, EquivalenceConfig
from reflectgym.envs.math.extract import Extraction, ExtractionConfig, require_answer
from reflectgym.envs.math.feedback import judge, scored_verdict
from reflectgym.envs.math.formats import gold_of, load_math_tasks
from reflectgym.envs.math.generators import GeneratedTasks

DEFAULT_INSTRUCTIONS = "Solve the problem. Show your work, then give the final answer as \\boxed{...}."
TasksArg = str | os.PathLike[str] | Sequence[Mapping[str, Any] | Task] | TaskSource


@runtime_checkable
class ScoredTaskSource(Protocol):
    """A task source that judges answers itself (reasoning-gym datasets): 1.0 is fully correct."""

    def score(self, task: Task, answer: str) -> float:
        """The score of `answer` for `task`."""
        ...


class MathEnv(TextEnv[Extraction]):
    """Solve a math problem; the answer is checked for mathematical equivalence, not string equality.

    ## Description
    Each episode is one problem: from `tasks` (GSM8K, MATH or plain rows, any `TaskSource`, or a
    `reasoning_gym.ReasoningGymTasks` judged by its own scorer), or made fresh by
    a procedural `generator` at a `difficulty` (arithmetic, fractions, linear, systems, polynomial_roots,
    modular, counting, or "mixed"). The seed picks the problem, or `reset(options={"task_id": ...})`.

    ## Observation
    First the instructions and the problem; after a wrong attempt, the feedback and the attempt count.

    ## Actions
    Free text; reasoning inside `<think>...</think>` is not read. The final answer is the last
    `<answer>...</answer>`, else the last `\\boxed{...}`, else a `#### n` line, else "the answer is ..." (to the end
    of its sentence), else (if `last_number_fallback`) the last number. `1,000`, `\\$18`, `0.5` for `1/2`,
    `x = 2` for `2`, `(1, 2]`, `\\{3, 1\\}` and LaTeX are all read as what they mean.

    ## Feedback
    `binary`: Correct / Incorrect. `diagnostic`: what was read, whether it parsed, whether it is the right
    kind of object, and how close it is (never the answer). `hint`: also the first intermediate quantity of a
    generated problem that the work does not show correctly. `info["privileged"]` holds the worked solution.

    ## Reward
    1 for a correct answer, 0 for a wrong one or one that could not be verified (symbolic check timed out);
    minus `format_penalty` for a reply with no answer in it. reasoning-gym tasks: 1 when the dataset's scorer
    gives 1, or the gold is an integer the answer equals (`-989.0`), else 0 (the scorer's partial score is in the
    feedback).

    ## Episode end
    Terminated when an answer is correct; truncated after `max_attempts` replies.

    ## Arguments
    tasks, task_format ("auto", "gsm8k", "math", "plain"), on_error ("raise" at a bad row, or "skip" it with a
    warning), generator, difficulty (1-5), max_attempts,
    feedback, last_number_fallback, symbolic (use math-verify for what the fast path cannot read),
    timeout_s (limit per symbolic check), symbolic_workers (the most math-verify processes of this process's envs
    checking at once; None: one per core, up to 4), instructions, format_penalty, render_mode.

    ## Version history
    v0: initial version.
    """

    action_format: ClassVar[str] = "your work, then the final answer as \\boxed{...}"
    episode_fields: ClassVar[tuple[str, ...]] = ("_task",)
    action_examples: ClassVar[tuple[str, ...]] = ("The answer is \\boxed{42}.", "#### 18", "\\boxed{\\frac{1}{2}}")
    min_leak_marker_length: ClassVar[int] = 3
    """Gold answers this long or longer are audited (shorter ones, like `7`, occur innocently in any text)."""

    def __init__(
        self,
        *,
        tasks: TasksArg | None = None,
        task_format: str | None = None,
        on_error: OnError = "raise",
        generator: str | Sequence[str] = "mixed",
        difficulty: int = 1,
        max_attempts: int = 3,
        feedback: FeedbackLevel | str = "diagnostic",
        last_number_fallback: bool = True,
        symbolic: bool = True,
        timeout_s: float = 3.0,
        symbolic_workers: int | None = None,
        instructions: str = DEFAULT_INSTRUCTIONS,
        format_penalty: float = 0.1,
        render_mode: str | None = None,
        wait_action: bool = False,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1; got {max_attempts}")
        super().__init__(
            feedback=feedback,
            max_turns=max_attempts,
            format_penalty=format_penalty,
            render_mode=render_mode,
            wait_action=wait_action,
        )
        self.tasks: TaskSource = (
            load_math_tasks(tasks, task_format, on_error)
            if tasks is not None
            else GeneratedTasks(generator, difficulty)
        )
        self.max_attempts = max_attempts
        self.extraction = ExtractionConfig(last_number_fallback=last_number_fallback)
        self.checker = AnswerChecker(
            EquivalenceConfig(symbolic=symbolic, timeout_s=timeout_s, symbolic_workers=symbolic_workers)
        )
        self.instructions = instructions.strip()
        self._task: Task | None = None

    @property
    def task(self) -> Task:
        """The problem being played."""
        if self._task is None:
            raise RuntimeError("no task yet: call reset() first")
        return self._task

    @property
    def gold(self) -> str:
        """The gold answer of the current problem."""
        gold = gold_of(self.task)
        if gold is None:
            raise RuntimeError(f"task {self.task.id!r} has no gold answer")
        return gold

    @property
    def task_id(self) -> str | None:
        return self._task.id if self._task is not None else None

    def privileged(self) -> str | None:
        return self._task.reference if self._task is not None else None

    def leak_markers(self) -> list[str]:
        """The worked solution and the gold answer (when it is specific and not already in the problem)."""
        markers = [marker for marker in super().leak_markers() if marker not in self.task.prompt]
        gold = self.gold.strip()
        if len(gold) >= self.min_leak_marker_length and gold not in self.task.prompt:
            markers.append(gold)
        return markers

    def oracle_action(self) -> str:
        """The gold answer, boxed."""
        return f"The answer is \\boxed{{{self.gold}}}."

    def _begin(self, options: dict[str, Any]) -> str:
        task_id = options.get("task_id")
        self._task = self.tasks.get(str(task_id)) if task_id is not None else self.tasks.sample(self.np_random)
        return f"{self.instructions}\n\n{self._task.prompt}" if self.instructions else self._task.prompt

    def parse_action(self, text: str) -> Extraction:
        return require_answer(text, self.extraction)

    def _apply(self, action: Extraction) -> Transition:
        # a source with its own scorer (reasoning-gym) judges itself
        verdict = self._scored(self.tasks, action) if isinstance(self.tasks, ScoredTaskSource) else self._judge(action)
        if verdict.passed:
            return Transition(observation=verdict.feedback, verdict=verdict, terminated=True)
        return Transition(observation=f"{verdict.feedback}\n\n{self.observation()}", verdict=verdict, terminated=False)

    def _scored(self, source: ScoredTaskSource, action: Extraction) -> Verdict:
        """The verdict of the source's own scorer. A scorer that raises on an answer it cannot read (reasoning-gym's
        `prime_factorization` runs `int()` on `2 x 3 x 7`; others on `(`, `nan`, `1e999`) scores it 0, saying so,
        rather than ending the run: its code is the dataset's, and any reply may reach it."""
        try:
            score, unscorable = source.score(self.task, action.answer), False
        except Exception:  # (whatever a third-party scorer raises: ValueError, OverflowError, IndexError, ...)
            score, unscorable = 0.0, True
        equal = score < 1.0 and self._equals_integer_gold(action.answer)
        return scored_verdict(action, score, level=self.feedback, equal=equal, unscorable=unscorable)

    def _equals_integer_gold(self, answer: str) -> bool:
        """Whether the gold is an integer that `answer` equals (a scorer may mark `-989.0` down). Other golds are
        the dataset's own to judge: `138/583` asks for the simplest form, a sorted list for its order."""
        integer = re.fullmatch(r"[-+]?\d+", self.gold.strip()) is not None
        return integer and self.checker.check(answer, self.gold).status == "equal"

    def _judge(self, action: Extraction) -> Verdict:
        return judge(
            action,
            self.gold,
            self._actions[-1],
            level=self.feedback,
            checker=self.checker,
            steps=self.task.data.get("steps", ()),
            final_hint=str(self.task.data.get("final_hint", "")),
        )

    def observation(self) -> str:
        attempt = len(self._actions) + 1
        if attempt > self.max_attempts:
            return "No attempts left."
        return f"Attempt {attempt} of {self.max_attempts}: revise your answer to the problem above."
