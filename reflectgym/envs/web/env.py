"""The web envs: `WebEnv` (tasks bundled with reflectgym) and `MiniWoBEnv` (MiniWoB++ pages).

Both are `BrowserEnv`s: `TextEnv`s that hand the browser work to a `BrowserDriver` (composition: `driver.py`). Each
keeps only what differs: which tasks it has, which page is opened, how it starts, and how its state is judged (the
`PageTask` side). A web env of your own subclasses `BrowserEnv` the same way.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from reflectgym.core.env import TextEnv
from reflectgym.core.types import Transition, Verdict
from reflectgym.envs.web import feedback
from reflectgym.envs.web.actions import ACTION_FORMAT, WebAction, parse_web_action
from reflectgym.envs.web.browser import BrowserConfig, BrowserService, BrowserSession
from reflectgym.envs.web.driver import ACTION_EXAMPLES, BrowserDriver, PageReading, PageState, TaskStart
from reflectgym.envs.web.executor import ActionOutcome
from reflectgym.envs.web.miniwob import MINIWOB_CHROME, MiniWoBPages, miniwob_oracle, text_limit_note
from reflectgym.envs.web.tasks import TASK_IDS, BundledTask, bundled_task, tasks_dir

if TYPE_CHECKING:
    from playwright.async_api import Page


def _format_step(step: dict[str, Any]) -> str:
    """A solver step from a page (`{op, id, text}`) as action text."""
    op = step.get("op")
    text = str(step.get("text") or "").replace("\\", "\\\\").replace('"', '\\"')
    if op in ("type", "select") and step.get("id") is not None:
        return f'{op}({step["id"]}, "{text}")'
    if op == "click" and step.get("id") is not None:
        return f"click({step['id']})"
    if op == "press":
        return f'press("{text}")'
    if op == "wait":
        return "wait"
    return "done"


class BrowserEnv(TextEnv[WebAction]):
    """What both web envs share: a `TextEnv` whose browser work (contexts, observations, actions, failures) a
    `BrowserDriver` does, with the Gymnasium calls that add the driver's `info` and their async forms. A subclass
    says which tasks it has (`task_ids`, `_select_task`) and plays the `PageTask` side (`task_url`, `open_task`,
    `judge`, `finish`, `judge_done`)."""

    action_format: ClassVar[str] = ACTION_FORMAT
    action_examples: ClassVar[tuple[str, ...]] = ACTION_EXAMPLES
    reading: ClassVar[PageReading]
    """What the driver reads from the page with every observation."""
    task: str | None
    """The task every episode plays (None: the options or the seed choose)."""
    unsolved_reward: float
    """What an episode ending unsolved pays, a browser failure's end included (`PageTask`)."""

    def __init__(
        self,
        *,
        max_steps: int,
        feedback: str,
        observation_chars: int,
        step_timeout_s: float,
        screenshot: bool,
        browser: BrowserConfig | None,
        render_mode: str | None,
        wait_action: bool,
    ) -> None:
        super().__init__(feedback=feedback, max_turns=max_steps, render_mode=render_mode, wait_action=wait_action)
        self.driver = BrowserDriver(
            self.reading,
            observation_chars=observation_chars,
            step_timeout_s=step_timeout_s,
            screenshot=screenshot,
            browser=browser,
        )
        """The browser side of the episodes (context, observation, actions, failures)."""

    # ------------------------------------------------------------------ for each web env: its tasks and pages
    @abstractmethod
    def _select_task(self, task_id: str) -> None:
        """Makes `task_id` the task the next episode plays (a `ValueError` for an unknown one)."""

    @abstractmethod
    def task_url(self) -> str:
        """The URL of the chosen task's first page (`PageTask`)."""

    @abstractmethod
    async def open_task(self, page: Page, seed: int) -> TaskStart:
        """Starts the chosen task, loaded in `page`, with `seed` (`PageTask`)."""

    @abstractmethod
    def judge(self, action: WebAction, outcome: ActionOutcome, state: PageState) -> tuple[Verdict, bool]:
        """The verdict and whether the episode ends, after `action` was played (`PageTask`)."""

    @abstractmethod
    async def finish(self, page: Page) -> Any:
        """Reads the task's final state when the agent says `done` (`PageTask`)."""

    @abstractmethod
    def judge_done(self, final: Any) -> Verdict:
        """The verdict for `done`, from what `finish` read (`PageTask`)."""

    # ------------------------------------------------------------------ TextEnv hooks (the browser does the work)
    def parse_action(self, text: str) -> WebAction:
        return parse_web_action(text)

    def _begin(self, options: dict[str, Any]) -> str:
        chosen = options.get("task_id") or self.task
        if chosen is None:
            every = self.task_ids() or []
            chosen = every[int(self.np_random.integers(len(every)))]
        self._select_task(str(chosen))
        self.driver.begin(self, seed=int(self.np_random.integers(2**31 - 1)))
        return self.driver.observation()

    def _apply(self, action: WebAction) -> Transition:
        return self.driver.apply(self, action)

    def observation(self) -> str:
        return self.driver.observation()

    def privileged(self) -> str | None:
        return self.driver.privileged

    # ------------------------------------------------------------------ Gymnasium API additions
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Starts a new episode in a fresh browser context (see `TextEnv.reset`)."""
        observation, info = super().reset(seed=seed, options=options)
        return observation, self.driver.extra_info(info)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Plays one action; a dead browser or hung page ends the episode with `info["error"]`."""
        observation, reward, terminated, truncated, info = super().step(action)
        return observation, reward, terminated, truncated, self.driver.extra_info(info)

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
        self.driver.release()
        super().close()

    @property
    def service(self) -> BrowserService:
        """The worker's browser service this env uses."""
        return self.driver.service

    @property
    def session(self) -> BrowserSession | None:
        """The current episode's browser context and page."""
        return self.driver.session


class WebEnv(BrowserEnv):
    """Web tasks in a real Chromium: forms, dropdowns, tabs, lists, dialogs, multi-page navigation.

    ## Description
    Seventeen original tasks bundled with reflectgym (`reflectgym.envs.web.tasks.TASK_IDS`): click-button,
    follow-link, login, contact-form, dropdowns, checkboxes, cheapest-shipping, tabs, search-list, shop
    (several pages), date-range, inbox-loading (content that appears later), settings-toggles, table-lookup,
    quantity-stepper, delete-file (a confirmation dialog) and faq-accordion. Each page draws its instance from
    a seed (the same seed gives the same instance) and judges itself by reading the page's state. Every
    episode runs in a fresh browser context of the worker's one Chromium: nothing carries over between
    episodes or between envs playing in parallel.

    ## Observation
    Text: `Task: <instruction>`, the page's title and file, and a compact accessibility tree, one element per
    line with a stable id, role, name, value and states (`[4] textbox "Email" value="" focused`), cut at
    `observation_chars`. After a step the feedback comes first. With `screenshot=True`, `info["screenshot"]`
    holds a PNG of the page.

    ## Actions
    One action per reply: `click(ID)`, `hover(ID)`, `drag(ID, ID)` (presses on the first element, moves the
    pointer onto the second in small steps and lets go there: sortable lists, drop zones), `type(ID, "text")`
    (replaces the field's text; a field that does not take it, such as a date in another format, says so),
    `select(ID, "option")` (a multiple-choice list adds the option to its selection, or takes it out when chosen;
    the tree lists them all as `selected=[...]`), `press("Enter")`, `scroll(down|up|ID)`, `wait` (lets
    time-dependent content move on) and `done`. A line starting with `Action:` wins; otherwise the first action in
    the reply is played.

    ## Feedback
    `binary`: whether the attempt was right. `diagnostic`: which field, button or link was wrong and what was
    expected in kind ("the username from the instruction, exactly"), never the value. `hint`: adds an
    actionable next step. At every level an action that cannot be played says why ("There is no element 12;
    clickable elements are 3, 7"), and unreadable text gets the format penalty.

    ## Reward
    1.0 on the turn the task is solved, 0.0 otherwise; -`format_penalty` (0.1) for a reply with no action.

    ## Episode end
    Terminates when the task is solved, when the agent says `done` (judged then), or when the browser fails
    (`info["error"]` says how, and it pays 0.0 as an unsolved end does; the next reset recovers with a fresh
    browser). Truncates after `max_steps`.

    ## Arguments
    - `task`: a task id to always play; `None` lets `reset(options={"task_id": ...})` or the seed choose.
    - `max_steps`: turns before truncation (20).
    - `feedback`: `"binary"`, `"diagnostic"` (default) or `"hint"`.
    - `observation_chars`: most characters of page text per observation (6000).
    - `step_timeout_s`: seconds a step may take before the page counts as hung (10).
    - `screenshot`: put a PNG of the page in `info["screenshot"]` every turn (False).
    - `browser`: a `BrowserConfig` (Chromium path, viewport, warm spare contexts).

    ## Version history
    - v0: first release. Later, the `drag(ID, ID)` action (a reply holding one used to be unreadable);
      observations, rewards and episode ends are unchanged.
    """

    reading: ClassVar[PageReading] = PageReading(task_state_js="window.RG ? window.RG.poll() : null")
    """The page's own judge (`RG.poll()`) is read with every observation."""
    unsolved_reward: float = 0.0
    """What an episode ending unsolved (on `done`, or by a browser failure) pays."""

    def __init__(
        self,
        *,
        task: str | None = None,
        max_steps: int = 20,
        feedback: str = "diagnostic",
        observation_chars: int = 6000,
        step_timeout_s: float = 10.0,
        screenshot: bool = False,
        browser: BrowserConfig | None = None,
        render_mode: str | None = None,
        wait_action: bool = False,
    ) -> None:
        super().__init__(
            max_steps=max_steps,
            feedback=feedback,
            observation_chars=observation_chars,
            step_timeout_s=step_timeout_s,
            screenshot=screenshot,
            browser=browser,
            render_mode=render_mode,
            wait_action=wait_action,
        )
        self.task = None if task is None else bundled_task(task).id
        self._base_url = self.service.router.mount(tasks_dir())
        self._task: BundledTask = bundled_task(self.task or TASK_IDS[0])

    def _select_task(self, task_id: str) -> None:
        self._task = bundled_task(task_id)

    @property
    def task_id(self) -> str | None:
        return self._task.id

    def task_ids(self) -> list[str] | None:
        return [self.task] if self.task is not None else list(TASK_IDS)

    # ------------------------------------------------------------------ PageTask: the bundled pages
    def task_url(self) -> str:
        return self._base_url + self._task.page

    async def open_task(self, page: Page, seed: int) -> TaskStart:
        started = await page.evaluate("(seed) => window.RG.start(seed)", seed)
        return TaskStart(instruction=str(started["instruction"]), privileged=started.get("privileged"))

    def judge(self, action: WebAction, outcome: ActionOutcome, state: PageState) -> tuple[Verdict, bool]:
        task = state.task or {}
        if task.get("solved"):
            return Verdict(1.0, True, f"{outcome.message} {feedback.solved()}"), True
        event = task.get("event")
        if event:
            problem = feedback.Problem.from_js(event)
            text = f"{outcome.message} {feedback.wrong_attempt(problem, self.feedback)}"
            return Verdict(0.0, False, text, details={"field": problem.field}), False
        if not outcome.played:
            return Verdict(0.0, False, outcome.message, details={"action_error": outcome.message}), False
        return Verdict(0.0, False, f"{outcome.message} The task is not complete yet."), False

    async def finish(self, page: Page) -> Any:
        return await page.evaluate("() => window.RG ? window.RG.finish() : null")

    def judge_done(self, final: Any) -> Verdict:
        if final and final.get("solved"):
            return Verdict(1.0, True, feedback.solved())
        raw = (final or {}).get("problem") or {"field": "page", "kind": "the task page to be open"}
        problem = feedback.Problem.from_js(raw)
        return Verdict(0.0, False, feedback.unfinished(problem, self.feedback), details={"field": problem.field})

    def oracle_action(self) -> str:
        """The scripted solver's next action, read from the page's own solver."""
        session = self.session
        if session is None or self.episode_over:
            return "done"
        try:
            step = self.service.run(lambda: session.page.evaluate("() => window.RG.next()"), self.driver.step_timeout_s)
        except Exception:
            if self.service.is_alive(session):
                raise
            return "wait"  # the browser is gone: any action lets step() report it and end the episode
        return _format_step(step)


UNSOLVED_REWARD = -1.0
"""What MiniWoB++ pays an episode that times out; here also one ended by `done` or `max_steps` unsolved."""

MINIWOB_STATE_JS = (
    "typeof WOB_DONE_GLOBAL === 'undefined' ? null : "
    "{done: WOB_DONE_GLOBAL, reward: WOB_REWARD_GLOBAL, raw: WOB_RAW_REWARD_GLOBAL, "
    "reason: WOB_REWARD_REASON === null || WOB_REWARD_REASON === undefined ? null : String(WOB_REWARD_REASON)}"
)
"""What a MiniWoB++ page says about its episode: done, reward (time-scaled), raw reward and a reason."""


class MiniWoBEnv(BrowserEnv):
    """MiniWoB++ tasks through the same observation and action interface as `WebEnv`.

    ## Description
    The 130 MiniWoB++ task pages, from the `miniwob` package (`pip install 'reflectgym[web]'`) or from a
    folder of your own (`miniwob_dir=`, the `html/` folder of a MiniWoB++ checkout). Pages are served to a
    fresh browser context per episode; the episode starts with `Math.seedrandom(seed)` and
    `core.startEpisodeReal()`, so the same seed gives the same instance.

    ## Observation
    `Task: <the page's utterance>`, the page title, and the accessibility tree of the task area (MiniWoB's
    own reward display and timer are left out). What the utterance shows without words (use-colorwheel-2's colour,
    click-menu-2's icon) is described in it, as the tree describes such elements. On a task the text view cannot
    play (`miniwob.TEXT_LIMITS`: a spot in a drawing, a canvas, a timed or blinking sequence, ...) a `Note:` line
    under the task says so, every turn. With `screenshot=True`, `info["screenshot"]` is a PNG.

    ## Actions
    As `WebEnv`: `click(ID)`, `hover(ID)`, `drag(ID, ID)`, `type(ID, "text")`, `select(ID, "option")`,
    `press("Key")`, `scroll(...)`, `wait` (lets 300 ms of real time pass, for animated tasks) and `done`. Elements a
    page made clickable without text (colour boxes, icons, SVG shapes) show as `clickable`, described by tag,
    classes and colour; an SVG shape or text also by where it is drawn and its size (`at=X,Y size=WxH`:
    click-shape's large item, grid-coordinate's point). `drag(A, B)` plays a real pointer drag of element A onto
    element B (press, moves, release), which jQuery UI's sortable lists and draggable boxes follow: drag-items,
    drag-items-grid, drag-sort-numbers and drag-box can be solved with it. Still out of reach, though they load and
    play: tasks that need a pointer position, a distance or a direction rather than an element to drop on (hot-cold;
    drag-circle and drag-single-shape, whose "drag it left" has nothing there to drop on; drag-cube's rotation),
    drops into a box the tree does not show (drag-shapes, drag-shapes-2: the box is an outline, not an element of
    the tree), and exact timing (chase-circle, ...); `miniwob.TEXT_LIMITS` lists them all, and their observation
    says so.

    ## Feedback
    MiniWoB pages only report a reward, so: `binary` says solved or not; `diagnostic` adds the page's reward
    and its reason when it gives one; `hint` adds a pointer back to the instruction. Actions that cannot be
    played are explained at every level.

    ## Reward
    The task's own reward when the page ends the episode: `WOB_RAW_REWARD_GLOBAL` (1.0 solved, -1.0 failed,
    partial credit on some tasks), or the time-scaled `WOB_REWARD_GLOBAL` with `time_limit_s` set. 0.0 while
    the episode runs; -`format_penalty` for a reply with no action. An episode that ends unsolved without the
    page ending it, on `done`, on the last of `max_steps` or by a browser failure, scores -1.0, as MiniWoB's own
    time-out does: giving up, or making the page fail, never pays more than a wrong attempt (`info["error"]`
    marks a failure's end, for trainers that drop such episodes).

    ## Episode end
    Terminates when the page ends its episode (`WOB_DONE_GLOBAL`), on `done`, or when the browser fails
    (`info["error"]`). Truncates after `max_steps`.

    ## Arguments
    - `task`: a MiniWoB task name such as `"click-test"`; `None` lets `options={"task_id": ...}` or the seed
      choose among all tasks.
    - `miniwob_dir`: a folder with `miniwob/<task>.html` and `core/`; default: the `miniwob` package's pages.
    - `max_steps`, `feedback`, `observation_chars`, `step_timeout_s`, `screenshot`, `browser`: as `WebEnv`.
    - `time_limit_s`: MiniWoB's own episode clock (reward scaled by the time left, `WOB_REWARD_GLOBAL`);
      `None` (default) turns it off: an agent that thinks for a minute is not punished, and rewards are
      the unscaled `WOB_RAW_REWARD_GLOBAL`, equal for equal play.

    ## Version history
    - v0: first release. Later, the `drag(ID, ID)` action (a reply holding one used to be unreadable);
      observations, rewards and episode ends are unchanged. Later still, the `Note:` line on the tasks of
      `TEXT_LIMITS`, and the described swatch or icon in the utterances of use-colorwheel-2 and click-menu-2 (it was
      dropped); other observations, and all rewards and episode ends, are unchanged.
    """

    reading: ClassVar[PageReading] = PageReading(
        task_state_js=MINIWOB_STATE_JS, skip_selectors=MINIWOB_CHROME, wait_ms=300
    )
    """MiniWoB's globals are read with every observation; its own chrome is left out; `wait` lets 300 ms pass."""
    unsolved_reward: float = UNSOLVED_REWARD
    """What an episode ending unsolved pays, a browser failure's end included (`BrowserDriver._failure`)."""

    def __init__(
        self,
        *,
        task: str | None = "click-test",
        miniwob_dir: str | Path | None = None,
        max_steps: int = 10,
        feedback: str = "diagnostic",
        time_limit_s: float | None = None,
        observation_chars: int = 6000,
        step_timeout_s: float = 10.0,
        screenshot: bool = False,
        browser: BrowserConfig | None = None,
        render_mode: str | None = None,
        wait_action: bool = False,
    ) -> None:
        super().__init__(
            max_steps=max_steps,
            feedback=feedback,
            observation_chars=observation_chars,
            step_timeout_s=step_timeout_s,
            screenshot=screenshot,
            browser=browser,
            render_mode=render_mode,
            wait_action=wait_action,
        )
        if time_limit_s is not None and time_limit_s <= 0:
            raise ValueError(f"time_limit_s must be > 0 seconds, or None for no limit; got {time_limit_s}")
        self.pages = MiniWoBPages.locate(miniwob_dir)
        self.task = None if task is None else self.pages.check(task)
        self.time_limit_s = time_limit_s
        self._base_url = self.service.router.mount(self.pages.root)
        self._task = self.task or self.pages.tasks[0]

    @property
    def task_id(self) -> str | None:
        return self._task

    def task_ids(self) -> list[str] | None:
        return [self.task] if self.task is not None else list(self.pages.tasks)

    def _select_task(self, task_id: str) -> None:
        self._task = self.pages.check(task_id)

    # ------------------------------------------------------------------ PageTask: MiniWoB++ pages
    def task_url(self) -> str:
        return self._base_url + f"miniwob/{self._task}.html"

    async def open_task(self, page: Page, seed: int) -> TaskStart:
        limit_ms = 2**31 - 1 if self.time_limit_s is None else int(self.time_limit_s * 1000)
        utterance = await page.evaluate(
            """async ([seed, limitMs]) => {
              core.EPISODE_MAX_TIME = limitMs;
              Math.seedrandom(seed);
              core.startEpisodeReal();
              for (let i = 0; i < 100 && !WOB_TASK_READY; i++) await new Promise((done) => setTimeout(done, 20));
              const said = core.getUtterance();
              const utterance = typeof said === 'string' ? said : said.utterance;
              // Core's utterance is the query's bare text, which drops what it shows without words (the colour
              // of use-colorwheel-2, the icon of click-menu-2); a page's own utterance is kept as it is.
              const query = document.getElementById('query');
              const bare = query ? query.textContent.replace(/\\s+/g, ' ').trim() : null;
              return utterance === bare ? window.__rgAx.shownText(query) : utterance;
            }""",
            [seed, limit_ms],
        )
        privileged = miniwob_oracle(self._task, str(utterance)).describe()
        return TaskStart(instruction=str(utterance), privileged=privileged, note=text_limit_note(self._task))

    def _reward(self, task: dict[str, Any]) -> float:
        return float(task.get("raw" if self.time_limit_s is None else "reward") or 0.0)

    def judge(self, action: WebAction, outcome: ActionOutcome, state: PageState) -> tuple[Verdict, bool]:
        task = state.task or {}
        if task.get("done"):  # (an action that could not be played met a page that had ended already)
            return self._ended(task, prefix=outcome.message if outcome.played else ""), True
        if self.on_last_turn:
            return self._unsolved(f"{outcome.message} That was the last step, and the task is not solved."), False
        if not outcome.played:
            return Verdict(0.0, False, outcome.message, details={"action_error": outcome.message}), False
        return Verdict(0.0, False, f"{outcome.message} The task is not complete yet."), False

    def _format_turn(self, error: str) -> Transition:
        """An unreadable reply; on the last step it ends the episode unsolved like any other (-1, not the format
        penalty alone, which would make a garbled last reply pay more than a real attempt)."""
        transition = super()._format_turn(error)
        if not self.on_last_turn:
            return transition
        verdict = self._unsolved(f"{transition.verdict.feedback} That was the last step.", transition.verdict.details)
        return Transition(f"{verdict.feedback}\n\n{self.observation()}", verdict, terminated=False)

    def _unsolved(self, text: str, details: Mapping[str, Any] | None = None) -> Verdict:
        """An episode ending unsolved without the page ending it: MiniWoB's time-out reward, -1."""
        feedback = f"{text} MiniWoB scores an unsolved episode {self.unsolved_reward:g}."
        return Verdict(self.unsolved_reward, False, feedback, details=dict(details or {}))

    def _ended(self, task: dict[str, Any], prefix: str = "") -> Verdict:
        reward = self._reward(task)
        passed = float(task.get("raw") or 0.0) >= 1.0
        if passed:
            text = feedback.solved()
        elif self.feedback == "binary":
            text = "The task was not solved."
        else:
            reason = f" (the page says: {task['reason']})" if task.get("reason") else ""
            text = f"The task was not solved: the page ended the episode with reward {reward:g}{reason}."
            if self.feedback == "hint":
                text += " Hint: re-read the instruction and check each element you acted on against it."
        return Verdict(reward, passed, f"{prefix} {text}".strip(), details={"raw_reward": task.get("raw")})

    async def finish(self, page: Page) -> Any:
        return await page.evaluate(f"() => ({MINIWOB_STATE_JS})")

    def judge_done(self, final: Any) -> Verdict:
        if final and final.get("done"):
            return self._ended(final)
        text = "You said done, but the page has not registered the task as complete."
        if self.feedback == "hint":
            text += " Hint: most tasks end with a click on a submit button or the target element."
        return self._unsolved(text)

    def oracle_action(self) -> str:
        """A scripted solver's next action for click-test, click-button, enter-text and login-user."""
        state = self.driver.state
        if state is None or self.episode_over:
            return "done"
        return miniwob_oracle(self._task, self.driver.instruction).next_action(state.tree)
