"""Which Chromium to launch and with which flags.

Both matter for the cost of a fresh browser context per episode (CPU per context with its task page loaded, on
the benchmark's machine): Chromium's defaults open three renderer processes per context (the page's, a spare
renderer the context never uses, and one for the omnibox popup of the window the page gets), ~600 ms; with the
features below turned off, one (~270 ms). The full browser still builds a window with its UI for every page;
the headless shell (Debian's `chromium-headless-shell`, Playwright's default for headless runs) has no UI and
makes the same context and page for about half that again (~150 ms), so it is preferred when installed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from reflectgym.envs.web.errors import BrowserUnavailableError

INSTALL_HINT = (
    "pip install 'reflectgym[web]' (Playwright), and a Chromium: apt-get install chromium-headless-shell "
    "(or chromium), or playwright install chromium"
)

DEBIAN_HEADLESS_SHELLS: tuple[str, ...] = ("/usr/lib/chromium/chromium-headless-shell",)
"""Debian's `chromium-headless-shell` binary (its /usr/bin entry is a shell wrapper around it)."""

PLAYWRIGHT_DISABLED_FEATURES: tuple[str, ...] = (
    "AimEnabled",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsFirstBalancedModeAutoEnable",
    "HttpsUpgrades",
    "LensOverlay",
    "MediaRouter",
    "NetworkTimeServiceQuerying",
    "OptimizationHints",
    "PaintHolding",
    "PreconnectToSearch",
    "TcpPortRandomizationWin",
    "ThirdPartyStoragePartitioning",
)
"""Playwright 1.65's own `--disable-features` list, repeated here: Chromium keeps only the last such flag."""

EXTRA_DISABLED_FEATURES: tuple[str, ...] = (
    "WebUIOmniboxPopup",  # a renderer per window for the omnibox popup (headless has no omnibox to show)
    "WebUIOmniboxAimPopup",
    "SpareRendererForSitePerProcess",  # a renderer started ahead for each context, never used by our one page
)
"""Features that cost a renderer process per browser context and do nothing for a headless task page."""

CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=" + ",".join((*PLAYWRIGHT_DISABLED_FEATURES, *EXTRA_DISABLED_FEATURES)),
)
"""Flags for a Chromium in a closed network (no sandbox: these machines run as root), one renderer per context."""


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium to launch: `explicit`, `$REFLECTGYM_CHROMIUM`, or `None` to let Playwright use its own.

    `None` is returned only when Playwright's own browser is installed; otherwise Debian's headless shell
    (`chromium-headless-shell`) when present, else its `chromium`. Raises `BrowserUnavailableError` when there
    is none at all.
    """
    for candidate in (explicit, os.environ.get("REFLECTGYM_CHROMIUM")):
        if candidate:
            if not Path(candidate).exists():
                raise BrowserUnavailableError(f"Chromium not found at {candidate}")
            return candidate
    if _playwright_browser_installed():
        return None
    for path in DEBIAN_HEADLESS_SHELLS:
        if Path(path).exists():
            return path
    for name in ("chromium-headless-shell", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    raise BrowserUnavailableError(f"no Chromium found; {INSTALL_HINT}")


def _playwright_browser_installed() -> bool:
    cache = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or Path.home() / ".cache" / "ms-playwright")
    return cache.is_dir() and any(path.is_dir() for path in cache.glob("chromium-*"))
