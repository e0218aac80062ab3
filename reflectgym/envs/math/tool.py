"""`MathToolEnv` (`reflectgym/MathTool-v0`): math with a Python tool run in a sandbox before answering."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from reflectgym.core.tasks import OnError
from reflectgym.core.types import FeedbackLevel, Transition, Verdict
from reflectgym.envs.math.env import MathEnv, TasksArg
from reflectgym.envs.math.extract import Extraction, ExtractionConfig, extract_answer
from reflectgym.sandboxes.handle import SandboxHandle
from reflectgym.sandboxes.types import MIB, ExecRequest, ExecStatus, Limits, Sandbox

TOOL_INSTRUCTIONS = (
    "Solve the problem. You may run Python: reply with a ```python code block and what it prints comes back to "
    "you (each block runs in a fresh interpreter: nothing is kept from earlier blocks; count on the standard "
    "library only, packages such as numpy or sympy may be missing). When you are done, give the final answer as "
    "\\boxed{...}."
)
_FENCE = re.compile(r"```[ \t]*(?:(?:python3|python|py)[ \t]*)?\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
"""A fenced block (one run of blanks around the optional tag: two runs side by side backtrack quadratically)."""
_EXPLICIT = ExtractionConfig(last_number_fallback=False)
MAX_TOOL_OUTPUT = 2000
"""Characters of tool output shown in the observation (the tail is kept when it is longer)."""


@dataclass(frozen=True)
class ToolCall:
    """A request to run Python code."""

    code: str


class MathToolEnv(MathEnv):
    """Solve a math problem with a Python tool: code runs in a sandbox and its output comes back.

    ## Description
    `MathEnv`'s problems (procedural generators by default, or `tasks=`), with a tool: a reply holding a
    ```python block and no final answer runs the code in a sandbox, and its output is the next observation
    (ExIt's multi-turn tool-use domain). Each call runs in a fresh interpreter: nothing carries over from one
    call to the next (define what a call uses in that call), and the instructions say so. The seed picks the
    problem, or `reset(options={"task_id": ...})`.

    ## Observation
    First the instructions and the problem; after a tool call, its printed output (or the trimmed traceback,
    or the limit it hit) with the tool calls and answers left; after a wrong answer, the feedback.

    ## Actions
    Free text. A final answer (`\\boxed{...}`, `#### n`, "the answer is ...", outside code blocks) is judged;
    otherwise a ```python block is a tool call; otherwise the last number is the answer (if
    `last_number_fallback`), else it is a format turn.

    ## Feedback
    As `MathEnv` for answers (`binary`, `diagnostic`, `hint`; never the gold answer). Tool output is shown as is.
    `info["privileged"]` holds the worked solution.

    ## Reward
    1 for a correct answer, 0 for a wrong one and for a tool call; minus `format_penalty` for a reply with
    neither an answer nor code.

    ## Episode end
    Terminated when an answer is correct; truncated after `max_attempts` answers or `max_attempts +
    max_tool_calls` turns, whichever comes first. A tool call past `max_tool_calls` runs nothing.

    ## Arguments
    As `MathEnv` (tasks, task_format, on_error, generator, difficulty, max_attempts, feedback, last_number_fallback,
    symbolic, timeout_s, symbolic_workers, instructions, format_penalty, render_mode), plus max_tool_calls (4),
    sandbox (None: a warm pool; a backend name; or a `Sandbox`, never closed by the env), tool_seconds (time per
    call), tool_memory_mib.

    ## Version history
    v0: initial version.
    """

    action_format: ClassVar[str] = "a ```python block to run code, or your final answer as \\boxed{...}"
    episode_fields: ClassVar[tuple[str, ...]] = ("_task", "_tool_calls", "_answers", "max_turns")
    action_examples: ClassVar[tuple[str, ...]] = ("```python\nprint(17 * 23)\n```", "The answer is \\boxed{391}.")

    def __init__(
        self,
        *,
        tasks: TasksArg | None = None,
        task_format: str | None = None,
        on_error: OnError = "raise",
        generator: str | tuple[str, ...] = "mixed",
        difficulty: int = 1,
        max_attempts: int = 3,
        max_tool_calls: int = 4,
        sandbox: str | Sandbox | None = None,
        tool_seconds: float = 5.0,
        tool_memory_mib: int = 512,
        feedback: FeedbackLevel | str = "diagnostic",
        last_number_fallback: bool = True,
        symbolic: bool = True,
        timeout_s: float = 3.0,
        symbolic_workers: int | None = None,
        instructions: str = TOOL_INSTRUCTIONS,
        format_penalty: float = 0.1,
        render_mode: str | None = None,
        wait_action: bool = False,
    ) -> None:
        if max_tool_calls < 0:
            raise ValueError(f"max_tool_calls must be >= 0; got {max_tool_calls}")
        handle = SandboxHandle(sandbox)  # (a wrong type or an unknown name fails here, not at the first tool call)
        super().__init__(
            tasks=tasks,
            task_format=task_format,
            on_error=on_error,
            generator=generator,
            difficulty=difficulty,
            max_attempts=max_attempts,
            feedback=feedback,
            last_number_fallback=last_number_fallback,
            symbolic=symbolic,
            timeout_s=timeout_s,
            symbolic_workers=symbolic_workers,
            instructions=instructions,
            format_penalty=format_penalty,
            render_mode=render_mode,
            wait_action=wait_action,
        )
        self.max_tool_calls = max_tool_calls
        self.max_turns = max_attempts + max_tool_calls
        self.tool_limits = Limits(
            wall_seconds=tool_seconds,
            cpu_seconds=tool_seconds,
            memory_bytes=tool_memory_mib * MIB,
            max_output_bytes=MIB,
        )
        self._sandbox = handle
        self._tool_calls = 0
        self._answers = 0

    @property
    def sandbox(self) -> Sandbox:
        """The tool's sandbox, opened on the first tool call (see `reflectgym.sandboxes.handle`: by default one warm
        pool shared by every such env of the process)."""
        return self._sandbox.get()

    def close(self) -> None:
        """Releases the sandbox this env opened (one passed in stays open)."""
        self._sandbox.close()
        super().close()

    # ----------------------------------------------------------------- TextEnv hooks
    def _begin(self, options: dict[str, Any]) -> str:
        self._tool_calls = 0
        self._answers = 0
        self.max_turns = self.max_attempts + self.max_tool_calls
        return super()._begin(options)

    def parse_action(self, text: str) -> Extraction | ToolCall:  # type: ignore[override]
        blocks = [block for block in _FENCE.findall(text) if block.strip()]
        prose = _FENCE.sub(" ", text)
        explicit = extract_answer(prose, _EXPLICIT)
        if explicit is None and blocks:
            return ToolCall(blocks[-1])
        return super().parse_action(prose if blocks else text)

    def _apply(self, action: Extraction | ToolCall) -> Transition:  # type: ignore[override]
        if isinstance(action, ToolCall):
            return self._tool_turn(action)
        self._answers += 1
        transition = super()._apply(action)
        if not transition.terminated and self._answers >= self.max_attempts:
            self.max_turns = len(self._actions)  # no answers left: the turn limit ends the episode here
        return transition

    def observation(self) -> str:
        answers = self.max_attempts - self._answers
        if answers <= 0 or len(self._actions) >= (self.max_turns or 0):
            return "No attempts left."
        calls = max(0, self.max_tool_calls - self._tool_calls)
        if calls == 0:
            return f"Answers left: {answers}. No tool calls left: give your final answer as \\boxed{{...}}."
        return (
            f"Answers left: {answers}. Tool calls left: {calls}. Run code in a ```python block (a fresh interpreter "
            "each time), or give your final answer as \\boxed{...}."
        )

    # ----------------------------------------------------------------- the tool
    def _tool_turn(self, call: ToolCall) -> Transition:
        if self._tool_calls >= self.max_tool_calls:
            text = "No tool calls left: the code was not run."
            verdict = Verdict(reward=0.0, passed=False, feedback=text, details={"tool_call": "refused"})
        else:
            self._tool_calls += 1
            text, status = self.run_tool(call.code)
            verdict = Verdict(reward=0.0, passed=False, feedback=text, details={"tool_call": status})
        return Transition(observation=f"{verdict.feedback}\n\n{self.observation()}", verdict=verdict, terminated=False)

    def run_tool(self, code: str) -> tuple[str, str]:
        """Runs `code` in the sandbox; returns the text the model sees and the run's status.

        Code that cannot be encoded as UTF-8 (a lone surrogate) is not run: the model is told why instead.
        """
        try:
            source = code.encode("utf-8")
        except UnicodeEncodeError as error:
            character = f"\\u{ord(code[error.start]):04x}"
            text = (
                f"The code was not run: it holds {character} (character {error.start} of the code), a lone "
                "surrogate that cannot be encoded as UTF-8. Remove it and try again."
            )
            return text, "unencodable"
        request = ExecRequest(command=("python3", "tool.py"), files={"tool.py": source}, limits=self.tool_limits)
        result = self.sandbox.run(request)
        output = result.stdout_text
        if result.status is ExecStatus.RUNTIME_ERROR:
            output += result.stderr_text.replace("/work/tool.py", "tool.py")
        if len(output) > MAX_TOOL_OUTPUT:
            output = f"... ({len(output) - MAX_TOOL_OUTPUT} characters cut)\n{output[-MAX_TOOL_OUTPUT:]}"
        notes = {
            ExecStatus.OK: "",
            ExecStatus.RUNTIME_ERROR: f" (exited with an error, code {result.exit_code})",
            ExecStatus.TIMEOUT: f" (stopped: time limit of {self.tool_limits.wall_seconds:g} s exceeded)",
            ExecStatus.MEMORY_LIMIT: " (stopped: memory limit exceeded)",
            ExecStatus.OUTPUT_LIMIT: " (stopped: output limit exceeded)",
            ExecStatus.SANDBOX_ERROR: f" (the sandbox failed: {result.message})",
        }
        shown = output.rstrip() or "(no output: print what you want to see)"
        return f"Tool output{notes[result.status]}:\n```\n{shown}\n```", result.status.value
