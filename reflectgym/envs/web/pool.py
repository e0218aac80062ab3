"""`ContextPool`: hands each reset a fresh browser context, preparing the next one and closing old ones in idle time.

A reset takes a spare (a fresh context with the task page already loaded) when one is ready, joins the one being
made when there is one (cheaper than starting anew), and otherwise makes its own, closing the contexts of
finished episodes alongside. Spares are made, and old contexts closed, only while the browser is idle
(`IdleGate`): when an agent thinks between turns the next reset is a few milliseconds; when a script calls
back-to-back nothing runs behind its steps.

Everything here runs on the browser loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from reflectgym.envs.web.idle import IdleGate

log = logging.getLogger(__name__)


class PooledSession(Protocol):
    """What the pool needs to know of a session: the page it was opened on."""

    url: str | None


S = TypeVar("S", bound=PooledSession)
Pace = Callable[[], Awaitable[None]]
"""Awaited by a session builder between its phases (new context, new page, page load)."""


class ContextPool(Generic[S]):
    """Spare sessions for the next resets, and old sessions waiting to be closed.

    Args:
        gate: Says when background work may run.
        build: Makes a session showing a URL (`None`: a blank page), awaiting `pace` between phases if given.
        close: Closes a session (never raises).
        alive: Whether a session can still be used.
        spares: How many spares to keep ready (0: none; every reset makes its own).
        max_pending_closes: Old sessions allowed to wait for idle time; beyond that they are closed at once.
    """

    def __init__(
        self,
        gate: IdleGate,
        build: Callable[[str | None, Pace | None], Awaitable[S]],
        close: Callable[[S], Awaitable[None]],
        alive: Callable[[S], bool],
        spares: int = 1,
        max_pending_closes: int = 4,
    ) -> None:
        self._gate = gate
        self._build = build
        self._close = close
        self._alive = alive
        self.spares = spares
        self.max_pending_closes = max_pending_closes
        self._ready: list[S] = []
        self._closing: list[S] = []
        self._wanted = False
        self._wanted_url: str | None = None
        self._building: asyncio.Future[None] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def ready(self) -> int:
        """Spares ready now."""
        return len(self._ready)

    @property
    def pending_closes(self) -> int:
        """Old sessions not closed yet."""
        return len(self._closing)

    async def take(self, url: str | None) -> S:
        """A fresh session for a reset: a ready spare (one for `url` first), the one being made, or a new one."""
        session = self._pop_ready(url)
        if session is None and self._building is not None:
            async with self._gate.waiting():
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._building)
            session = self._pop_ready(url)
        if session is not None:
            return session
        closing, self._closing = self._closing, []
        built = asyncio.ensure_future(self._build(url, None))
        await asyncio.gather(built, *(self._close(old) for old in closing))  # closed beside the build
        return built.result()

    def want(self, url: str | None) -> None:
        """Asks for spares showing `url` (made in idle time)."""
        self._wanted, self._wanted_url = True, url
        self._wake()

    def discard(self, session: S) -> None:
        """Queues a finished episode's session for closing (in idle time, or by the next reset that builds)."""
        if session in self._ready:
            self._ready.remove(session)
        self._closing.append(session)
        self._wake()

    def forget(self) -> None:
        """Drops every spare and queued session (their browser is gone)."""
        self._ready.clear()
        self._closing.clear()

    def stop(self) -> None:
        """Stops background work for good."""
        self._stopped = True
        self.forget()
        if self._worker is not None:
            self._worker.cancel()

    # ------------------------------------------------------------------ background work
    def _pop_ready(self, url: str | None) -> S | None:
        dead = [session for session in self._ready if not self._alive(session)]
        for session in dead:
            self._ready.remove(session)
            self._closing.append(session)
        if not self._ready:
            return None
        chosen = next((session for session in self._ready if session.url == url), self._ready[0])
        self._ready.remove(chosen)
        return chosen

    def _wake(self) -> None:
        if self._worker is None and not self._stopped:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        try:
            while not self._stopped:
                if len(self._closing) <= self.max_pending_closes:
                    await self._gate.idle()
                if self._closing:
                    await self._close(self._closing.pop(0))
                    continue
                if not self._spare_needed():
                    if self._closing:  # a spare for another task was let go to make room
                        continue
                    break
                self._building = asyncio.ensure_future(self._prepare(self._wanted_url))
                try:
                    await self._building
                except Exception as error:  # a failed spare is not an error: the next reset makes its own
                    log.info("preparing a spare context failed: %s", error)
                    break
                finally:
                    self._building = None
        finally:
            self._worker = None

    def _spare_needed(self) -> bool:
        """Whether to make a spare for the wanted URL now; a spare for another task makes room first."""
        if not self._wanted or self.spares <= 0:
            return False
        alive = [session for session in self._ready if self._alive(session)]
        if sum(session.url == self._wanted_url for session in alive) >= self.spares:
            return False
        if len(alive) >= self.spares:
            stale = next(session for session in alive if session.url != self._wanted_url)
            self._ready.remove(stale)
            self._closing.append(stale)
            return False  # the loop closes it first, then asks again
        return True

    async def _prepare(self, url: str | None) -> None:
        session = await self._build(url, self._gate.idle)
        if self._stopped or not self._alive(session):
            self._closing.append(session)
            return
        self._ready.append(session)
