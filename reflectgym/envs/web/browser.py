"""One Chromium per worker process, driven by Playwright's async API on a private event loop in its own thread.

Why a thread with its own loop: Playwright's sync API refuses to run inside a running asyncio loop (Jupyter,
async rollout code), and its objects belong to the thread that made them. Here every Playwright call runs on
one private loop; envs in any thread (or coroutine) submit work to it and wait on a future, so sync and async
callers, and many envs in parallel, share one browser safely.

Isolation: every episode gets a fresh browser context (no shared cookies, storage or cache). Speed: Chromium
runs with one renderer per context (`chromium.py`), and a `ContextPool` prepares the next context, with its task
page loaded, while the browser is idle (an agent thinking between turns), so such a reset only starts the task;
nothing is prepared behind a caller that steps back-to-back, whose steps would only get slower for it
(`idle.py`). Robustness: a browser that dies is relaunched on the next request; a call that overruns its time
limit raises `PageTimeoutError`, and a context that will not close is treated as a wedged browser.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from reflectgym.envs.web.chromium import CHROMIUM_FLAGS, INSTALL_HINT, find_chromium
from reflectgym.envs.web.errors import BrowserUnavailableError, PageTimeoutError
from reflectgym.envs.web.idle import IdleGate
from reflectgym.envs.web.pool import ContextPool, Pace
from reflectgym.envs.web.routing import SiteServer

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page, Playwright, Route

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BrowserConfig:
    """How the worker's browser is started and how long calls into it may take."""

    executable: str | None = None
    """Chromium binary; `None` looks for `$REFLECTGYM_CHROMIUM`, then Playwright's browser, then `chromium`."""
    viewport: tuple[int, int] = (1024, 768)
    """Page size in CSS pixels (width, height)."""
    launch_timeout_s: float = 60.0
    """Seconds a browser launch may take before it counts as failed."""
    spare_contexts: int = 1
    """Contexts prepared ahead so that a reset does not wait for one (0 disables the warm spare)."""
    spare_after_idle_s: float = 0.02
    """Background work (preparing spares, closing old contexts) starts only after the browser was idle this long."""

    def __post_init__(self) -> None:
        if self.spare_contexts < 0:
            raise ValueError(f"spare_contexts must be >= 0; got {self.spare_contexts}")
        if self.spare_after_idle_s < 0:
            raise ValueError(f"spare_after_idle_s must be >= 0 seconds; got {self.spare_after_idle_s}")
        if self.launch_timeout_s <= 0:
            raise ValueError(f"launch_timeout_s must be > 0; got {self.launch_timeout_s}")


@dataclass
class BrowserSession:
    """One episode's browser context and page. Made by `BrowserService`; closed by it."""

    context: BrowserContext
    page: Page
    generation: int
    """Which browser launch it belongs to (a relaunch makes older sessions dead)."""
    url: str | None = None
    """The page it was opened on (a spare waits with its task page already loaded)."""
    blocked: list[str] = field(default_factory=list)
    """URLs refused by the router since the list was last drained."""
    crashed: bool = False
    """Set when the page's renderer crashed."""

    def drain_blocked(self) -> list[str]:
        """The blocked URLs since the last call, emptied (in place: the router's handler holds this list)."""
        urls = list(self.blocked)
        self.blocked.clear()
        return urls


class BrowserService:
    """A Chromium and the private loop that drives it; see the module docstring.

    Args:
        config: Launch settings.
        init_script: JavaScript added to every page of every context (e.g. the accessibility-tree walker).
    """

    def __init__(self, config: BrowserConfig | None = None, init_script: str = "") -> None:
        self.config = config or BrowserConfig()
        self.site = SiteServer()
        self.router = self.site.router
        self.init_script = init_script
        self.launches = 0
        """How many times a browser was launched (more than 1 means it was restarted)."""
        self._marker = f"--reflectgym-worker={uuid.uuid4().hex}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="reflectgym-browser", daemon=True)
        self._thread.start()
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._generation = 0
        self._launch_lock: asyncio.Lock | None = None
        self._gate = IdleGate(self.config.spare_after_idle_s)
        self.pool: ContextPool[BrowserSession] = ContextPool(
            self._gate, self._new_session, self.close_session, self.is_alive, spares=self.config.spare_contexts
        )
        """Spare contexts for the next resets and old ones waiting to be closed."""
        self._closed = False

    # ------------------------------------------------------------------ calling into the loop
    def run(self, make: Callable[[], Awaitable[T]], timeout: float) -> T:
        """Runs `make()` on the browser loop and waits (from any thread, even inside a running event loop)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("BrowserService.run was called from the browser thread itself")
        future = asyncio.run_coroutine_threadsafe(self._guarded(make, timeout), self._loop)
        try:
            return future.result(timeout + 10.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise PageTimeoutError(f"the browser did not answer within {timeout:.0f} s") from None

    async def arun(self, make: Callable[[], Awaitable[T]], timeout: float) -> T:
        """`run` for async callers: awaits without blocking the caller's loop."""
        future = asyncio.run_coroutine_threadsafe(self._guarded(make, timeout), self._loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout + 10.0)

    async def _guarded(self, make: Callable[[], Awaitable[T]], timeout: float) -> T:
        try:
            async with self._gate.call():
                return await asyncio.wait_for(make(), timeout)
        except TimeoutError:
            raise PageTimeoutError(f"the page did not respond within {timeout:.1f} s") from None

    # ------------------------------------------------------------------ sessions (run on the loop)
    async def open_session(self, url: str | None = None) -> BrowserSession:
        """A fresh context whose page shows `url` (see `ContextPool.take`). Call `prepare_spare` afterwards to have
        the next one made in idle time."""
        await self._ensure_browser()
        session = await self.pool.take(url)
        if url is not None and session.url != url:
            await session.page.goto(url)
            session.url = url
        return session

    def prepare_spare(self, url: str | None) -> None:
        """Asks for a spare context showing `url`, made while the browser is idle (callable from any thread)."""
        if not self._closed:
            self._loop.call_soon_threadsafe(self.pool.want, url)

    async def close_session(self, session: BrowserSession, timeout: float = 5.0) -> None:
        """Closes a session's context; one that will not close means a wedged browser, which is relaunched."""
        if session.generation != self._generation or self._browser is None:
            return
        try:
            await asyncio.wait_for(session.context.close(), timeout)
        except TimeoutError:
            log.warning("a browser context did not close in %.0f s; relaunching the browser", timeout)
            await self._drop_browser()
        except Exception as error:  # already gone with its browser: nothing to close
            log.debug("closing a context failed: %s", error)

    def close_later(self, session: BrowserSession) -> None:
        """Closes a session in the background, in idle time (callable from any thread; the caller does not wait)."""
        if not self._closed:
            self._loop.call_soon_threadsafe(self.pool.discard, session)

    def is_alive(self, session: BrowserSession) -> bool:
        """Whether the session's browser is still the running one and its page has not crashed."""
        browser = self._browser
        return (
            browser is not None
            and browser.is_connected()
            and session.generation == self._generation
            and not session.crashed
            and not session.page.is_closed()
        )

    def describe_death(self, session: BrowserSession) -> str:
        """Why a session is dead, in words."""
        if session.crashed:
            return "the page crashed"
        if self._browser is None or not self._browser.is_connected() or session.generation != self._generation:
            return "the browser process died"
        return "the page was closed"

    async def _new_session(self, url: str | None = None, pace: Pace | None = None) -> BrowserSession:
        """A new context and page showing `url`; `pace` is awaited between the phases (context, page, load)."""
        browser = await self._ensure_browser()
        generation = self._generation
        width, height = self.config.viewport
        context = await browser.new_context(viewport={"width": width, "height": height}, service_workers="block")
        try:
            blocked: list[str] = []
            await asyncio.gather(
                context.add_init_script(self.init_script) if self.init_script else asyncio.sleep(0),
                context.route(self.site.off_site(), lambda route: self._block(route, blocked)),
            )
            if pace is not None:
                await pace()
            page = await context.new_page()
            session = BrowserSession(context=context, page=page, generation=generation, blocked=blocked)

            def on_crash(_: object) -> None:
                session.crashed = True

            page.on("crash", on_crash)
            if pace is not None:
                await pace()
            await page.goto(url or self.site.origin + "/")
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(context.close(), 5.0)
            raise
        session.url = url
        return session

    async def _block(self, route: Route, blocked: list[str]) -> None:
        url = route.request.url
        blocked.append(url)
        log.info("blocked a request outside the task site: %s", url)
        try:
            await route.abort("blockedbyclient")
        except Exception as error:  # the page went away meanwhile: nothing to do
            log.debug("blocking %s failed: %s", url, error)

    # ------------------------------------------------------------------ the browser process
    async def _ensure_browser(self) -> Browser:
        if self._launch_lock is None:
            self._launch_lock = asyncio.Lock()
        async with self._launch_lock:
            if self._closed:
                raise BrowserUnavailableError("the browser service was shut down")
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            if self._browser is not None:
                await self._drop_browser()
            self._browser = await asyncio.wait_for(self._launch(), self.config.launch_timeout_s)
            return self._browser

    async def _launch(self) -> Browser:
        try:
            from playwright.async_api import async_playwright
        except ImportError as error:
            raise BrowserUnavailableError(f"Playwright is not installed; {INSTALL_HINT}") from error
        executable = find_chromium(self.config.executable)
        if self._playwright is None:
            self._playwright = await async_playwright().start()
        try:
            browser = await self._playwright.chromium.launch(
                executable_path=executable, headless=True, args=[*CHROMIUM_FLAGS, self._marker]
            )
        except Exception as error:
            raise BrowserUnavailableError(
                f"Chromium ({executable or 'Playwright'}) failed to start: {error}"
            ) from error
        self._generation += 1
        self.launches += 1
        self.pool.forget()
        browser.on("disconnected", lambda _: None if self._closed else log.warning("the browser process disconnected"))
        log.info("launched Chromium %s (launch %d)", browser.version, self.launches)
        return browser

    async def _drop_browser(self) -> None:
        browser, self._browser = self._browser, None
        self.pool.forget()
        self._generation += 1
        if browser is not None:
            try:
                await asyncio.wait_for(browser.close(), 5.0)
            except Exception:  # a wedged or dead browser: kill what is left of it
                self._kill_processes()

    def browser_pids(self) -> list[int]:
        """Process ids of this service's Chromium processes (found by a marker flag on their command line)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if self._marker.encode() in cmdline:
                pids.append(int(entry.name))
        return pids

    def _kill_processes(self) -> None:
        for pid in self.browser_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, 9)

    def restart(self, timeout: float = 30.0) -> None:
        """Closes the browser now; the next session launches a fresh one."""
        self.run(self._drop_browser, timeout)

    def shutdown(self) -> None:
        """Closes the browser and Playwright and stops the loop thread."""
        if self._closed or not self._thread.is_alive():
            return

        async def stop() -> None:
            self._closed = True
            self.pool.stop()
            await self._drop_browser()
            if self._playwright is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._playwright.stop(), 5.0)
                self._playwright = None

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(20.0)
        except Exception as error:  # shutting down at exit: kill what is left
            log.debug("browser shutdown failed: %s", error)
            self._kill_processes()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        self.site.close()


_SERVICES: dict[tuple[int, BrowserConfig], BrowserService] = {}
_SERVICES_LOCK = threading.Lock()


def shared_service(config: BrowserConfig | None = None, init_script: str = "") -> BrowserService:
    """The process's browser service for `config` (made on first use; one per worker process)."""
    key = (os.getpid(), config or BrowserConfig())
    with _SERVICES_LOCK:
        service = _SERVICES.get(key)
        if service is None or service._closed:
            service = BrowserService(key[1], init_script=init_script)
            _SERVICES[key] = service
        return service


@atexit.register
def _shutdown_all() -> None:
    for (pid, _), service in list(_SERVICES.items()):
        if pid == os.getpid():
            service.shutdown()
