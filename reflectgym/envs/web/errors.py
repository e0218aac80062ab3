"""What can go wrong in the browser, as exceptions whose messages a user can act on."""

from __future__ import annotations


class BrowserError(RuntimeError):
    """Something went wrong in the browser; the message says what, in words a user can act on."""


class BrowserUnavailableError(BrowserError):
    """No browser could be started (missing Playwright or Chromium, or it fails to launch)."""


class BrowserCrashedError(BrowserError):
    """The browser process or the episode's page died during a call."""


class PageTimeoutError(BrowserError):
    """A call into the page did not finish in time (a hung page or a wedged browser)."""
