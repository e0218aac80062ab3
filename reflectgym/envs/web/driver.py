"""`BrowserDriver`: the browser side of a web episode, shared by the web envs through composition.

It owns the episode's fresh browser context, reads the page into an accessibility-tree observation, plays
parsed actions and turns browser failures into a clear episode end. What a family of task pages decides —
which page a task is on, how it starts, how its state is judged — comes from a `PageTask` (`WebEnv` and
`MiniWoBEnv` are both), passed to each call. Everything in the page runs on the worker's browser loop
(`browser.py`), so the envs work from plain scripts, from threads and from inside a running asyncio loop.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from reflectgym.core.types import Transition, Verdict
from reflectgym.envs.web.actions import WebAction
from reflectgym.envs.web.axtree import AXTREE_JS, AxTree
from reflectgym.envs.web.browser import BrowserConfig, BrowserService, BrowserSession, shared_service
from reflectgym.envs.web.errors import BrowserCrashedError, BrowserError
from reflectgym.envs.web.executor import ActionOutcome, is_dead_page_error, perform

if TYPE_CHECKING:
    from playwright.async_api import Page

ACTION_EXAMPLES: tuple[str, ...] = (
    "click(3)",
    "hover(3)",
    "drag(3, 6)",
    'type(4, "hello")',
    'select(5, "Blue")',
    'press("Enter")',
    "scroll(down)",
    "wait",
    "done",
)
"""Valid actions, one of each kind (shown by `reflectgym play`, sampled by the random scripted agent)."""

_OBSERVE_JS = """([start, skip, limit, valueChars]) => ({
  ax: window.__rgAx ? window.__rgAx.snapshot(start, skip, limit, valueChars) : {nodes: [], nextId: start},
  task: (%s),
  title: document.title,
  path: location.pathname.split('/').pop() + location.search,
})"""

_BUSY_JS = "() => !!window.__rgLeaving || document.readyState !== 'complete'"


@dataclass(frozen=True)
class PageState:
    """What one observation of the page read: its tree, the task's own state, and where the page is."""

    tree: AxTree
    task: Any
    title: str
    path: str


@dataclass(frozen=True)
class TaskStart:
    """What starting a task page returned: the instruction and the teacher-only solution text."""

    instruction: str
    privileged: str | None
    note: str | None = None
    """What the text view cannot show or play on this task, said under the instruction every turn (`None`: all)."""


@dataclass(frozen=True)
class PageReading:
    """How a family's pages are read: what the tree leaves out, the task's state, and what `wait` waits."""

    task_state_js: str = "null"
    """A JavaScript expression read with every observation: the task's own state, judged by `PageTask.judge`."""
    skip_selectors: tuple[str, ...] = ()
    """CSS selectors the tree leaves out (page chrome that is not part of the task)."""
    wait_ms: int = 0
    """Real time a `wait` action lets pass (bundled tasks advance deterministically instead)."""


class PageTask(Protocol):
    """A family's side of an episode: its task's page, how it starts and how it is judged."""

    @property
    def unsolved_reward(self) -> float:
        """What an episode ending unsolved pays; an episode the browser ended pays it too (see `_failure`)."""
        ...

    def task_url(self) -> str:
        """The URL of the chosen task's first page."""
        ...

    async def open_task(self, page: Page, seed: int) -> TaskStart:
        """Starts the chosen task, already loaded in `page`, with `seed` (runs on the browser loop)."""
        ...

    def judge(self, action: WebAction, outcome: ActionOutcome, state: PageState) -> tuple[Verdict, bool]:
        """The verdict and whether the episode ends, after `action` was played and the page read again."""
        ...

    async def finish(self, page: Page) -> Any:
        """Reads the task's final state when the agent says `done` (runs on the browser loop)."""
        ...

    def judge_done(self, final: Any) -> Verdict:
        """The verdict for `done`, from what `finish` read."""
        ...


class BrowserDriver:
    """One env's browser episodes (see the module docstring).

    Args:
        reading: How the family's pages are read.
        observation_chars: Most characters of page text per observation.
        step_timeout_s: Seconds a call into the page may take before the page counts as hung.
        screenshot: Keep a PNG of the page after every read (for `info["screenshot"]`).
        browser: The worker's browser settings (`None`: defaults).
    """

    def __init__(
        self,
        reading: PageReading,
        *,
        observation_chars: int = 6000,
        step_timeout_s: float = 10.0,
        screenshot: bool = False,
        browser: BrowserConfig | None = None,
    ) -> None:
        if observation_chars < 200:
            raise ValueError(f"observation_chars must be at least 200 to show a page; got {observation_chars}")
        if step_timeout_s <= 0:
            raise ValueError(f"step_timeout_s must be > 0; got {step_timeout_s}")
        self.reading = reading
        self.observation_chars = observation_chars
        self.value_chars = observation_chars // 3
        """Most characters of one field's value in the tree (a longer value shows its start and end): a third of
        the observation, so a long text or what was typed can be read and the rest of the page still shows."""
        self.step_timeout_s = step_timeout_s
        self.screenshot = screenshot
        self.service: BrowserService = shared_service(browser, AXTREE_JS)
        """The worker's browser service (one Chromium per process)."""
        self.session: BrowserSession | None = None
        """The current episode's context and page (`None` between episodes or after a browser failure)."""
        self.instruction = ""
        self.privileged: str | None = None
        """Teacher-only text for the episode, from the task page."""
        self.note: str | None = None
        """What the agent cannot do on this task through the text view (`TaskStart.note`)."""
        self.state: PageState | None = None
        """The page as last read."""
        self._next_id = 1
        self._error: str | None = None
        self._blocked: list[str] = []
        self._screenshot: bytes | None = None
        self._closer: weakref.finalize | None = None
        """Closes the episode's context if this driver is dropped without `release()` (an env never closed)."""

    # ------------------------------------------------------------------ episodes
    def begin(self, task: PageTask, seed: int) -> None:
        """Starts `task`'s chosen page with `seed` in a fresh context (the previous one is closed in idle time)."""
        self.release()
        self._next_id = 1
        self._error = None
        self._blocked = []
        try:
            start, state = self.service.run(lambda: self._start(task, seed), self.step_timeout_s * 2 + 60)
        except Exception as error:  # the browser died under us: once more, with the fresh one it relaunches
            if not (isinstance(error, BrowserCrashedError) or is_dead_page_error(error)):
                raise
            self.release()
            start, state = self.service.run(lambda: self._start(task, seed), self.step_timeout_s * 2 + 60)
        self.service.prepare_spare(task.task_url())  # made while the agent thinks, if it does
        self.instruction, self.privileged, self.note = start.instruction, start.privileged, start.note
        self.state = state

    def apply(self, task: PageTask, action: WebAction) -> Transition:
        """Plays `action` and judges it; a dead browser or hung page ends the episode saying so."""
        session = self.session
        if session is None or not self.service.is_alive(session):
            reason = self.service.describe_death(session) if session is not None else "no page is open"
            return self._failure(task, reason)
        try:
            if action.kind == "done":
                final = self.service.run(lambda: task.finish(session.page), self.step_timeout_s)
                verdict = _note_skipped(action, task.judge_done(final))
                return Transition(
                    observation=f"{verdict.feedback}\n\n{self.observation()}", verdict=verdict, terminated=True
                )
            outcome, state = self.service.run(lambda: self._act(session, action), self.step_timeout_s)
        except BrowserError as error:
            return self._failure(task, str(error))
        except Exception as error:  # a Playwright error: dead page or browser, or a bug worth reporting
            if not self.service.is_alive(session) or is_dead_page_error(error):
                return self._failure(task, self.service.describe_death(session))
            return self._failure(task, f"the browser call failed ({type(error).__name__}: {str(error)[:200]})")
        self.state = state
        verdict, terminated = task.judge(action, outcome, state)
        verdict = _note_skipped(action, verdict)
        return Transition(
            observation=f"{verdict.feedback}\n\n{self.observation()}", verdict=verdict, terminated=terminated
        )

    def observation(self) -> str:
        """The instruction (and the task's `note`), the page's title and its accessibility tree, cut at
        `observation_chars`."""
        state = self.state
        lines = [f"Task: {self.instruction}"]
        if self.note:
            lines.append(f"Note: {self.note}")
        if state is None:
            lines.append("(no page is open)")
        else:
            lines.append(f'Page: "{state.title}" ({state.path})')
            lines.append(state.tree.text(self.observation_chars))
        return "\n".join(lines)

    def extra_info(self, info: dict[str, Any]) -> dict[str, Any]:
        """`info` with the browser's keys: `error`, `blocked_requests`, and `screenshot` when asked for."""
        info["error"] = self._error
        info["blocked_requests"] = tuple(self._blocked)
        self._blocked = []
        if self.screenshot and self._screenshot is not None:
            info["screenshot"] = self._screenshot
        return info

    def release(self) -> None:
        """Lets the episode's context go (closed in idle time); the worker's browser stays up."""
        if self._closer is not None:
            self._closer.detach()
            self._closer = None
        if self.session is not None:
            self.service.close_later(self.session)
            self.session = None

    # ------------------------------------------------------------------ on the browser loop
    async def _start(self, task: PageTask, seed: int) -> tuple[TaskStart, PageState]:
        session = await self.service.open_session(task.task_url())
        self.session = session
        self._closer = weakref.finalize(self, self.service.close_later, session)
        self._closer.atexit = False  # (at exit the browser goes down whole)
        start = await task.open_task(session.page, seed)
        state = await self._observe(session)
        return start, state

    async def _act(self, session: BrowserSession, action: WebAction) -> tuple[ActionOutcome, PageState]:
        assert self.state is not None
        outcome = await perform(session.page, action, self.state.tree, self.reading.wait_ms)
        if outcome.played and action.kind in ("click", "drag", "press"):
            await self._settle(session)
        return outcome, await self._observe(session)

    async def _settle(self, session: BrowserSession) -> None:
        """Lets a navigation the action started finish before the page is read (the caller's limit bounds it).

        A page that is being left has fired `beforeunload` (the walker marks it); the new one is ready when it
        answers, is not being left, and has loaded.
        """
        while True:
            try:
                busy = await session.page.evaluate(_BUSY_JS)
            except Exception as error:
                if is_dead_page_error(error):
                    raise
                busy = True  # the old document went away mid-call: the new one is on its way
            if not busy:
                return
            await asyncio.sleep(0.01)

    async def _observe(self, session: BrowserSession) -> PageState:
        page = session.page
        script = _OBSERVE_JS % self.reading.task_state_js
        raw: dict[str, Any] = {}
        for attempt in range(6):
            try:
                raw = await page.evaluate(
                    script, [self._next_id, list(self.reading.skip_selectors), 400, self.value_chars]
                )
                break
            except Exception as error:
                if is_dead_page_error(error) or attempt == 5:
                    raise
                await self._settle(session)  # the page navigated while it was read: read the new one
        tree = AxTree.from_js(raw["ax"])
        self._next_id = max(self._next_id, tree.next_id)
        self._blocked.extend(session.drain_blocked())
        if self.screenshot:
            self._screenshot = await page.screenshot(type="png")
        return PageState(tree=tree, task=raw["task"], title=str(raw["title"]), path=str(raw["path"]))

    # ------------------------------------------------------------------ helpers
    def _failure(self, task: PageTask, reason: str) -> Transition:
        """Ends the episode because of the browser, saying so; the next reset gets a fresh context (or browser).

        It pays what an unsolved end pays (`task.unsolved_reward`), no more: a policy that could earn more by
        making the page fail (MiniWoB pays -1 unsolved) would learn to. `info["error"]` names the failure, so a
        trainer can drop such episodes instead.
        """
        self._error = reason
        self.release()
        reward = task.unsolved_reward
        feedback = (
            f"The browser failed: {reason}. The episode ends here, scored as unsolved ({reward:g}); "
            "reset to start again."
        )
        verdict = Verdict(reward=reward, passed=False, feedback=feedback, details={"error": reason})
        return Transition(observation=f"{feedback}\n\n{self.observation()}", verdict=verdict, terminated=True)


def _note_skipped(action: WebAction, verdict: Verdict) -> Verdict:
    """`verdict` saying, when the reply held more actions than the one played, that the others were not: an agent
    that wrote a plan of several steps must not believe they all happened."""
    if not action.skipped:
        return verdict
    note = f"(only the first of {action.skipped + 1} actions was played)"
    return dataclasses.replace(verdict, feedback=f"{verdict.feedback} {note}")


def png_data_url(png: bytes) -> str:
    """A screenshot as a `data:` URL, the form multimodal chat APIs take."""
    return "data:image/png;base64," + base64.b64encode(png).decode()
