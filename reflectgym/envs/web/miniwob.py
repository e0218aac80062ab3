"""MiniWoB++ pages: where they are, which tasks exist, and scripted solvers for a few of them.

The pages come from the `miniwob` package on PyPI (its wheel ships `miniwob/html/`, found here with
`importlib.resources`, without importing the package and its Selenium stack) or from a folder the user points
at: the `html/` folder of a MiniWoB++ checkout, holding `miniwob/<task>.html` and `core/`.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

from reflectgym.envs.web.axtree import AxNode, AxTree

MINIWOB_CHROME: tuple[str, ...] = ("#query", "#reward-display", "#click-canvas", "#sync-task-cover")
"""MiniWoB's own page furniture, left out of the observation (the utterance is given as the task instead)."""

SOLVED_TASKS: tuple[str, ...] = ("click-test", "click-button", "enter-text", "login-user")
"""MiniWoB tasks with a scripted solver here."""

_POINT = "it needs the pointer at a chosen spot of a drawing, and click(ID) or hover(ID) only reach an element's centre"
_DRAG = (
    "it needs a drag in a direction, by a distance or onto a spot that is no element here, and drag(ID, ID) only "
    "drops an element onto another"
)
_MOVING = "it needs the pointer on shapes as they move, which one action a turn cannot follow"
_SELECT = "it needs text selected with the pointer, which no action here does"
TEXT_LIMITS: dict[str, str] = {
    "bisect-angle": _POINT,
    "circle-center": _POINT,
    "draw-circle": _POINT,
    "draw-line": _POINT,
    "find-midpoint": _POINT,
    "hot-cold": _POINT,
    "right-angle": _POINT,
    "drag-circle": _DRAG,
    "drag-cube": _DRAG,
    "drag-shapes": _DRAG,
    "drag-shapes-2": _DRAG,
    "drag-single-shape": _DRAG,
    "chase-circle": _MOVING,
    "moving-items": _MOVING,
    "highlight-text": _SELECT,
    "highlight-text-2": _SELECT,
    "simon-says": "the buttons blink in the order to push, and the text view does not show a blink",
    "count-sides": "the shape is drawn on a canvas, which the text view cannot show",
    "visual-addition": "the blocks to count are empty boxes, which the text view does not list",
}
"""MiniWoB tasks the text view cannot play, and why. They load and play, and the page judges what is done, but the
observation says under the instruction, every turn, that the actions here cannot solve them (`note`)."""


def text_limit_note(task: str) -> str | None:
    """What the observation says about `task` when the text view cannot play it (`None` for the others)."""
    reason = TEXT_LIMITS.get(task)
    if reason is None:
        return None
    return f"the text view cannot play this task: {reason}. Actions still play, and the page judges them."


@dataclass(frozen=True)
class MiniWoBPages:
    """A folder of MiniWoB++ pages and the task names found in it."""

    root: Path
    tasks: tuple[str, ...]

    @classmethod
    def locate(cls, miniwob_dir: str | Path | None = None) -> MiniWoBPages:
        """The pages in `miniwob_dir`, or those of the installed `miniwob` package."""
        root = Path(miniwob_dir).expanduser().resolve() if miniwob_dir is not None else _package_html()
        pages = root / "miniwob"
        if not pages.is_dir() or not (root / "core" / "core.js").is_file():
            raise FileNotFoundError(
                f"{root} is not a MiniWoB++ html folder (it needs miniwob/<task>.html and core/core.js); "
                "pass miniwob_dir= the html/ folder of a MiniWoB++ checkout, or pip install 'reflectgym[web]'"
            )
        tasks = tuple(sorted(path.stem for path in pages.glob("*.html")))
        if not tasks:
            raise FileNotFoundError(f"no task pages in {pages}")
        return cls(root=root, tasks=tasks)

    def check(self, task: str) -> str:
        """`task` if such a page exists; a `KeyError` naming a few close ones otherwise."""
        if task in self.tasks:
            return task
        close = [name for name in self.tasks if task.split("-")[0] in name][:8]
        raise KeyError(f"no MiniWoB task {task!r} in {self.root}; similar: {', '.join(close) or 'none'}")


def _package_html() -> Path:
    spec = importlib.util.find_spec("miniwob")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the miniwob package is not installed (pip install 'reflectgym[web]'), and no miniwob_dir= was given"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "html"


def _quoted(utterance: str) -> list[str]:
    return re.findall(r'"([^"]*)"', utterance)


@dataclass(frozen=True)
class MiniWoBSolver:
    """A scripted solver for one episode of one MiniWoB task, working from the observation's tree."""

    task: str
    utterance: str

    def describe(self) -> str | None:
        """Teacher-only text: the solution in words, or `None` for tasks without a solver."""
        words = _quoted(self.utterance)
        if self.task == "click-test":
            return "Solution: click the button."
        if self.task == "click-button" and words:
            return f'Solution: click the button labelled "{words[0]}".'
        if self.task == "enter-text" and words:
            return f'Solution: type "{words[0]}" into the text field, then click Submit.'
        if self.task == "login-user" and len(words) >= 2:
            return f'Solution: type "{words[0]}" as username and "{words[1]}" as password, then click Login.'
        return None

    def next_action(self, tree: AxTree) -> str:
        """The next action text; raises `LookupError` for tasks without a solver."""
        words = _quoted(self.utterance)
        buttons = [node for node in tree.nodes if node.role == "button"]
        fields = [node for node in tree.nodes if node.role == "textbox"]
        if self.task == "click-test" and buttons:
            return f"click({buttons[0].id})"
        if self.task == "click-button" and words:
            target = next((node for node in buttons if node.name == words[0]), None)
            if target is not None:
                return f"click({target.id})"
        if self.task == "enter-text" and words and fields:
            return _fill_then_submit([(fields[0], words[0], words[0])], buttons)
        if self.task == "login-user" and len(words) >= 2 and len(fields) >= 2:
            password = next((node for node in fields if "password" in node.states.split()), fields[1])
            user = next(node for node in fields if node.id != password.id)
            return _fill_then_submit([(user, words[0], words[0]), (password, "•" * len(words[1]), words[1])], buttons)
        if self.task not in SOLVED_TASKS:
            raise LookupError(f"no scripted solver for MiniWoB task {self.task!r} (solvers: {', '.join(SOLVED_TASKS)})")
        return "wait"


def _fill_then_submit(fields: list[tuple[AxNode, str, str]], buttons: list[AxNode]) -> str:
    """Types into the first field not yet showing its value (field, shown value, text to type), else submits."""
    for node, shown, typed in fields:
        if node.value != shown:
            escaped = typed.replace("\\", "\\\\").replace('"', '\\"')
            return f'type({node.id}, "{escaped}")'
    return f"click({buttons[-1].id})" if buttons else "done"


def miniwob_oracle(task: str, utterance: str) -> MiniWoBSolver:
    """The scripted solver for `task` given its utterance."""
    return MiniWoBSolver(task=task, utterance=utterance)
