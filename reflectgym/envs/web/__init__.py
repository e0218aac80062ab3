"""Web environments: real Chromium through Playwright, accessibility-tree observations, bundled and MiniWoB++
tasks. Importing this package imports no browser; Playwright loads when the first env is made."""

from reflectgym.envs.web.actions import ACTION_FORMAT, WebAction, parse_web_action
from reflectgym.envs.web.browser import BrowserConfig
from reflectgym.envs.web.errors import BrowserError
from reflectgym.envs.web.tasks import TASK_IDS

__all__ = ["ACTION_FORMAT", "TASK_IDS", "BrowserConfig", "BrowserError", "WebAction", "parse_web_action"]
