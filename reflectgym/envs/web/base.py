"""`BrowserEnv`: what every browser-backed env shares — a fresh context per episode, the accessibility-tree
observation, the action grammar, and turning browser failures into a clear episode end.

Families (`WebEnv`, `MiniWoBEnv`) say how a task page is opened and started, what JavaScript reads its state,
and how that state is judged. Everything here runs Playwright on the worker's browser loop (see `browser.py`),
so the env works from plain scripts, from threads, and from inside a running asyncio loop.
"""

from __future__ import annotations

import asyncio
import base64
from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from reflectgym.core.env import TextEnv
from reflectgym.core.types import Transition, Verdict
from reflectgym.envs.web.actions import ACTION_FORMAT, WebAction, parse_web_action
from reflectgym.envs.web.axtree import AXTREE_JS, AxTree
from reflectgym.envs.web.browser import BrowserConfig, BrowserService, BrowserSession, shared_service
from reflectgym.envs.web.errors import BrowserCrashedError, BrowserError
from reflectgym.envs.web.executor import ActionOutcome, is_dead_page_error, perform

if TYPE_CHECKING:
    from playwright.async_api import Page

_OBSERVE_JS = """([start, skip, limit]) => ({
  ax: window.__rgAx ? window.__rgAx.snapshot(start, skip, limit) : {nodes: [], nextId: start},
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


class BrowserEnv(TextEnv[WebAction]):
    """Shared machinery of the browser envs (see the module docstring); not registered itself."""

    action_format: ClassVar[str] = ACTION_FORMAT
    action_examples: ClassVar[tuple[str, ...]] = (
        "click(3)",
        'type(4, "hello")',
        'select(5, "Blue")',
        'press("Enter")',
        "scroll(down)",
        "wait",
        "done",
    )
    skip_selectors: ClassVar[tuple[str, ...]] = ()
    """CSS selectors the tree leaves out (page chrome that is not part of the task)."""
    task_state_js: ClassVar[str] = "null"
    """A JavaScript expression read with every observation: the task's own state, judged by `_judge`."""
    wait_ms: ClassVar[int] = 0
    """Real time a `wait` action lets pass (bundled tasks advance deterministically instead)."""

    def __init__(
        self,
        *,
        max_steps: int = 20,
        feedback: str = "diagnostic",
        observation_chars: int = 6000,
        step_timeout_s: float = 10.0,
        screenshot: bool = False,
        browser: BrowserConfig | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(feedback=feedback, max_turns=max_steps, render_mode=render_mode)
        if observation_chars < 200:
            raise ValueError(f"observation_chars must be at least 200 to show a page; got {observation_chars}")
        if step_timeout_s <= 0:
            raise ValueError(f"step_timeout_s must be > 0; got {step_timeout_s}")
        self.observation_chars = observation_chars
        self.step_timeout_s = step_timeout_s
        self.screenshot = screenshot
        self._service: BrowserService = shared_service(browser, AXTREE_JS)
        self._session: BrowserSession | None = None
        self._state: PageState | None = None
        self._next_id = 1
        self._instruction = ""
        self._privileged: str | None = None
        self._error: str | None = None
        self._blocked: list[str] = []
        self._screenshot: bytes | None = None

    # ------------------------------------------------------------------ family hooks
    @abstractmethod
    def _choose_task(self, options: dict[str, Any]) -> None:
        """Picks this episode's task (from `options["task_id"]`, the env's `task`, or `self.np_random`)."""

    @abstractmethod
    def _task_url(self) -> str:
        """The URL of the chosen task's first page."""

    @abstractmethod
    async def _open_task(self, page: Page, seed: int) -> TaskStart:
        """Starts the chosen task, already loaded in `page`, with `seed` (runs on the browser loop)."""

    @abstractmethod
    def _judge(self, action: WebAction, outcome: ActionOutcome, state: PageState) -> tuple[Verdict, bool]:
        """The verdict and whether the episode ends, after `action` was played and the page read again."""

    @abstractmethod
    async def _finish(self, page: Page) -> Any:
        """Reads the task's final state when the agent says `done` (runs on the browser loop)."""

    @abstractmethod
    def _judge_done(self, final: Any) -> Verdict:
        """The verdict for `done`, from what `_finish` read."""

    # ------------------------------------------------------------------ TextEnv hooks
    def parse_action(self, text: str) -> WebAction:
        return parse_web_action(text)

    def _begin(self, options: dict[str, Any]) -> str:
        self._release_session()  # closed in idle time, or beside the new context when this reset has to make one
        self._choose_task(options)
        seed = int(self.np_random.integers(2**31 - 1))
        self._next_id = 1
        self._error = None
        self._blocked = []
        try:
            start, state = self._service.run(lambda: self._start(seed), self.step_timeout_s * 2 + 60)
        except Exception as error:  # the browser died under us: once more, with the fresh one it relaunches
            if not (isinstance(error, BrowserCrashedError) or is_dead_page_error(error)):
                raise
            self._release_session()
            start, state = self._service.run(lambda: self._start(seed), self.step_timeout_s * 2 + 60)
        self._service.prepare_spare(self._task_url())  # made while the agent thinks, if it does
        self._instruction, self._privileged = start.instruction, start.privileged
        self._state = state
        return self.observation()

    def _apply(self, action: WebAction) -> Transition:
        session = self._session
        if session is None or not self._service.is_alive(session):
            reason = self._service.describe_death(session) if session is not None else "no page is open"
            return self._failure(f"{reason}")
        try:
            if action.kind == "done":
                final = self._service.run(lambda: self._finish(session.page), self.step_timeout_s)
                verdict = self._judge_done(final)
                return Transition(
                    observation=f"{verdict.feedback}\n\n{self.observation()}", verdict=verdict, terminated=True
                )
            outcome, state = self._service.run(lambda: self._act(session, action), self.step_timeout_s)
        except BrowserError as error:
            return self._failure(str(error))
        except Exception as error:  # a Playwright error: dead page or browser, or a bug worth reporting
            if not self._service.is_alive(session) or is_dead_page_error(error):
                return self._failure(self._service.describe_death(session))
            return self._failure(f"the browser call failed ({type(error).__name__}: {str(error)[:200]})")
        self._state = state
        verdict, terminated = self._judge(action, outcome, state)
        return Transition(
            observation=f"{verdict.feedback}\n\n{self.observation()}", verdict=verdict, terminated=terminated
        )

    def observation(self) -> str:
        state = self._state
        lines = [f"Task: {self._instruction}"]
        if state is None:
            lines.append("(no page is open)")
        else:
            lines.append(f'Page: "{state.title}" ({state.path})')
            lines.append(state.tree.text(self.observation_chars))
        return "\n".join(lines)

    def privileged(self) -> str | None:
        return self._privileged

    # ------------------------------------------------------------------ Gymnasium API additions
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Starts a new episode in a fresh browser context (see `TextEnv.reset`)."""
        observation, info = super().reset(seed=seed, options=options)
        return observation, self._extra_info(info)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Plays one action; a dead browser or hung page ends the episode with `info["error"]`."""
        observation, reward, terminated, truncated, info = super().step(action)
        return observation, reward, terminated, truncated, self._extra_info(info)

    async def areset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """`reset` for async code: runs in a worker thread, so the caller's event loop keeps running."""
        return await asyncio.to_thread(lambda: self.reset(seed=seed, options=options))

    async def astep(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """`step` for async code: runs in a worker thread, so the caller's event loop keeps running."""
        return await asyncio.to_thread(self.step, action)

    def close(self) -> None:
        """Closes this env's browser context (the worker's browser stays up for other envs)."""
        self._release_session()
        super().close()

    @property
    def service(self) -> BrowserService:
        """The worker's browser service this env uses."""
        return self._service

    # ------------------------------------------------------------------ on the browser loop
    async def _start(self, seed: int) -> tuple[TaskStart, PageState]:
        session = await self._service.open_session(self._task_url())
        self._session = session
        start = await self._open_task(session.page, seed)
        state = await self._observe(session)
        return start, state

    async def _act(self, session: BrowserSession, action: WebAction) -> tuple[ActionOutcome, PageState]:
        assert self._state is not None
        outcome = await perform(session.page, action, self._state.tree, self.wait_ms)
        if outcome.played and action.kind in ("click", "press"):
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
        script = _OBSERVE_JS % self.task_state_js
        raw: dict[str, Any] = {}
        for attempt in range(6):
            try:
                raw = await page.evaluate(script, [self._next_id, list(self.skip_selectors), 400])
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
    def _failure(self, reason: str) -> Transition:
        """Ends the episode because of the browser, saying so; the next reset gets a fresh context (or browser)."""
        self._error = reason
        self._release_session()
        feedback = f"The browser failed: {reason}. The episode ends here (no fault of yours); reset to start again."
        verdict = Verdict(reward=0.0, passed=False, feedback=feedback, details={"error": reason})
        return Transition(observation=f"{feedback}\n\n{self.observation()}", verdict=verdict, terminated=True)

    def _release_session(self) -> None:
        if self._session is not None:
            self._service.close_later(self._session)
            self._session = None

    def _extra_info(self, info: dict[str, Any]) -> dict[str, Any]:
        info["error"] = self._error
        info["blocked_requests"] = tuple(self._blocked)
        self._blocked = []
        if self.screenshot and self._screenshot is not None:
            info["screenshot"] = self._screenshot
        return info


def png_data_url(png: bytes) -> str:
    """A screenshot as a `data:` URL, the form multimodal chat APIs take."""
    return "data:image/png;base64," + base64.b64encode(png).decode()
