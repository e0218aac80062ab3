"""`IdleGate`: background browser work (closing old contexts, preparing the next one) waits for idle time.

On two cores, a spare context built while an episode's step runs takes the cores the step needs: both get slower
than doing them one after the other. So background work runs only when no episode call is in flight and none
ended within `grace_s` (a caller stepping back-to-back comes back sooner than that, so it never shares the cores
with background work), and it checks the gate again between its phases, so a step that arrives meanwhile waits at
most for the phase under way. A call that waits *for* the background work (a reset taking the spare that is being
made) lifts the gate until it has it.

Everything here runs on the browser loop; nothing is thread-safe by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator


class IdleGate:
    """Counts episode calls in flight and tells background work when it may go on.

    Args:
        grace_s: How long the browser must have been idle before background work starts.
    """

    def __init__(self, grace_s: float) -> None:
        if grace_s < 0:
            raise ValueError(f"grace_s must be >= 0; got {grace_s}")
        self.grace_s = grace_s
        self._calls = 0
        self._waiting = 0
        self._last_end = time.monotonic() - grace_s
        self._changed = asyncio.Event()

    @property
    def busy(self) -> bool:
        """Whether an episode call is in flight."""
        return self._calls > 0

    @contextlib.asynccontextmanager
    async def call(self) -> AsyncIterator[None]:
        """Marks an episode call (a step, a reset, a page read) for its duration."""
        self._calls += 1
        self._changed.set()
        try:
            yield
        finally:
            self._calls -= 1
            self._last_end = time.monotonic()
            self._changed.set()

    @contextlib.asynccontextmanager
    async def waiting(self) -> AsyncIterator[None]:
        """Marks an episode call that waits for background work: the gate stays open meanwhile."""
        self._waiting += 1
        self._changed.set()
        try:
            yield
        finally:
            self._waiting -= 1
            self._changed.set()

    def open(self) -> bool:
        """Whether background work may go on right now."""
        if self._waiting:
            return True
        return not self._calls and time.monotonic() - self._last_end >= self.grace_s

    async def idle(self) -> None:
        """Returns once background work may go on (see the module docstring)."""
        while not self.open():
            self._changed.clear()
            remaining = None if self._calls else self.grace_s - (time.monotonic() - self._last_end)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
