"""The bundled web tasks: HTML/JS pages (package data) and the list of them.

Every task page loads `rg.js` and defines its seeded generator, renderer, verifier (`problem`: reads the page
and its saved progress) and scripted solver (`next`). A task may span several pages (`pages`); the first is
where an episode starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path


@dataclass(frozen=True)
class BundledTask:
    """One bundled task: its id, the page an episode starts on, and what it exercises."""

    id: str
    page: str
    skill: str


BUNDLED_TASKS: tuple[BundledTask, ...] = (
    BundledTask("click-button", "click-button.html", "buttons"),
    BundledTask("follow-link", "follow-link.html", "links"),
    BundledTask("login", "login.html", "forms and login"),
    BundledTask("contact-form", "contact-form.html", "forms with several kinds of field"),
    BundledTask("dropdowns", "dropdowns.html", "dropdowns"),
    BundledTask("checkboxes", "checkboxes.html", "checkboxes"),
    BundledTask("cheapest-shipping", "cheapest-shipping.html", "radio buttons chosen by comparing values"),
    BundledTask("tabs", "tabs.html", "tabs hiding parts of a form"),
    BundledTask("search-list", "search-list.html", "search and click in a list"),
    BundledTask("shop", "shop-home.html", "multi-page navigation"),
    BundledTask("date-range", "date-range.html", "date entry with date arithmetic"),
    BundledTask("inbox-loading", "inbox-loading.html", "dynamic content that appears after waiting"),
    BundledTask("settings-toggles", "settings-toggles.html", "switches"),
    BundledTask("table-lookup", "table-lookup.html", "reading a table"),
    BundledTask("quantity-stepper", "quantity-stepper.html", "stepper buttons"),
    BundledTask("delete-file", "delete-file.html", "confirmation dialogs"),
    BundledTask("faq-accordion", "faq-accordion.html", "expanding collapsed sections"),
)
"""Every bundled task, in a fixed order (the seed picks among them when no task is named)."""

TASK_IDS: tuple[str, ...] = tuple(task.id for task in BUNDLED_TASKS)


def tasks_dir() -> Path:
    """The folder holding the task pages (inside the installed package)."""
    return Path(str(files(__name__)))


def bundled_task(task_id: str) -> BundledTask:
    """The task with this id; `KeyError` lists the known ids."""
    for task in BUNDLED_TASKS:
        if task.id == task_id:
            return task
    raise KeyError(f"no bundled web task {task_id!r}; known: {', '.join(TASK_IDS)}")
