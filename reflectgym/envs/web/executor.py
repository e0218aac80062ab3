"""Plays a parsed `WebAction` on a page (coroutines run on the browser loop) and says in words what happened.

An action that cannot be played (no such element, a button that cannot take text, a covered element) is not an
error: it returns an `ActionOutcome` with `played=False` and a message naming what exists instead. Only a dead
browser or page escapes as an exception.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reflectgym.envs.web.actions import WebAction
from reflectgym.envs.web.axtree import AxNode, AxTree

if TYPE_CHECKING:
    from playwright.async_api import Page

CLICKABLE = (
    "button", "link", "checkbox", "radio", "tab", "switch", "option", "menuitem", "clickable", "img", "text",
    "listitem", "cell",
)  # fmt: skip
EDITABLE = ("textbox", "searchbox", "spinbutton", "combobox")
_TYPEABLE = ("textbox", "searchbox", "spinbutton")
_DEAD = ("Target closed", "has been closed", "Target crashed", "Browser closed", "crashed")
HOVER_SETTLE_MS = 400
"""How long a hover waits before the page is read: menus and tooltips open after a delay (jQuery UI's: 300 ms)."""
CLIP_RETRY_MS = 150
"""How long a click waits before it looks again at an element a box around it hid: icons sized by a stylesheet
are empty for a moment after a page starts, and the box answers for their centre."""
TYPE_SETTLE_MS = 400
"""How long a type waits before the page is read, when the field listens to typing: an autocomplete's list opens
after a delay (jQuery UI's: 300 ms). A field nobody listens to is read at once, so plain forms stay fast."""
DRAG_STEP_PX = 8
"""About how far apart the pointer events of a drag are. MiniWoB's jQuery UI lists and boxes, and a native HTML
drag, also follow a jump (press, one move, release); the steps are for pages that follow the pointer's way, as a
hand's drag gives it (d3 moves a dragged shape at each event; a list may open a gap for what passes over it)."""
DRAG_STEPS = (5, 40)
"""Fewest and most pointer events for each leg of a drag's way (`drag_path`)."""
DROP_PAST = 1 / 8
"""How far past the target's centre a drag lets go, in the direction it travels, as a part of the target's size: a
sortable list puts the dragged entry past another only once the pointer crosses that one's middle, and a pointer
exactly on the middle (rounded to whole pixels by the page) falls short. Small enough to stay well inside the
target, as a drop into a box needs."""
_FORMAT = re.compile(r"\b(date|time|datetime-local|month|week|color) \(([^)]*)\)")
"""A field's input format as the tree states it: `date (YYYY-MM-DD)`."""


@dataclass(frozen=True)
class ActionOutcome:
    """What playing an action did: whether it was played, and a sentence for the agent."""

    played: bool
    message: str


def _describe(node: AxNode) -> str:
    return f'[{node.id}] {node.role} "{node.name}"' if node.name else f"[{node.id}] {node.role}"


def _ids(tree: AxTree, roles: tuple[str, ...], label: str) -> str:
    ids = tree.ids_with_role(roles)
    if not ids:
        return f"the page has no {label}"
    shown = ", ".join(str(i) for i in ids[:12]) + (", ..." if len(ids) > 12 else "")
    return f"{label} are {shown}"


def is_dead_page_error(error: BaseException) -> bool:
    """Whether a Playwright error means the page or browser is gone (not a problem with the action)."""
    return any(marker in str(error) for marker in _DEAD)


async def perform(page: Page, action: WebAction, tree: AxTree, wait_ms: int) -> ActionOutcome:
    """Plays `action` against the elements of `tree` (the tree the agent was shown)."""
    kind = action.kind
    if kind == "wait":
        await page.evaluate("() => window.RG && window.RG.tick && window.RG.tick()")
        if wait_ms:
            await asyncio.sleep(wait_ms / 1000)
        return ActionOutcome(True, "Waited.")
    if kind == "press":
        return await _press(page, str(action.text))
    if kind == "scroll" and action.element is None:
        sign = 1 if action.text == "down" else -1
        await page.evaluate(
            "(dy) => window.scrollBy(0, dy)",
            sign * int(page.viewport_size["height"] * 0.8 if page.viewport_size else 600),
        )
        return ActionOutcome(True, f"Scrolled {action.text}.")
    assert action.element is not None
    node = tree.get(action.element)
    if node is None:
        wanted = {
            "click": (CLICKABLE + EDITABLE, "clickable elements"),
            "hover": (CLICKABLE, "elements"),
            "drag": (CLICKABLE, "elements"),
            "type": (_TYPEABLE, "text fields"),
            "select": (("combobox",), "dropdowns"),
            "scroll": (CLICKABLE, "elements"),
        }[kind]
        return ActionOutcome(False, f"There is no element {action.element} on the page; {_ids(tree, *wanted)}.")
    selector = f'[data-rg-id="{node.id}"]'
    if kind == "scroll":
        await page.evaluate(
            "(id) => { const el = window.__rgAx.element(id); if (el) el.scrollIntoView({block: 'center'}); }", node.id
        )
        return ActionOutcome(True, f"Scrolled {_describe(node)} into view.")
    if kind in ("click", "hover"):
        return await _point_at(page, node, kind, tree)
    if kind == "drag":
        drop = tree.get(action.target) if action.target is not None else None
        if drop is None:
            return ActionOutcome(
                False, f"There is no element {action.target} to drop onto; {_ids(tree, CLICKABLE, 'elements')}."
            )
        return await _drag(page, node, drop)
    if kind == "type":
        if node.role not in _TYPEABLE:
            return ActionOutcome(False, f"{_describe(node)} cannot take text; {_ids(tree, _TYPEABLE, 'text fields')}.")
        return await _type(page, node, action.text or "")
    # select
    if node.role != "combobox" or node.options is None:
        return ActionOutcome(False, f"{_describe(node)} is not a dropdown; {_ids(tree, ('combobox',), 'dropdowns')}.")
    options: list[list[str]] | None = await page.evaluate("(id) => window.__rgAx.options(id)", node.id)
    wanted_text = (action.text or "").strip()
    match = next((value for label, value in options or [] if label == wanted_text), None)
    if match is None:
        match = next((value for label, value in options or [] if label.lower() == wanted_text.lower()), None)
    if match is None:
        return ActionOutcome(
            False, f"{_describe(node)} has no option {wanted_text!r}; its options are listed on the page."
        )
    if node.selected is not None:
        return await _toggle_option(page, node, match, wanted_text)
    await page.locator(selector).select_option(value=match, timeout=2000)
    return ActionOutcome(True, f"Selected an option in {_describe(node)}.")


async def _toggle_option(page: Page, node: AxNode, value: str, label: str) -> ActionOutcome:
    """Adds an option to a multiple-choice dropdown's selection, or takes it out when it is chosen already: one
    option per action, so a task wanting several is played as several selects (a person would ctrl-click)."""
    chosen: list[str] = await page.evaluate("(id) => window.__rgAx.selectedValues(id)", node.id)
    removing = value in chosen
    wanted = [option for option in chosen if option != value] if removing else [*chosen, value]
    await page.locator(f'[data-rg-id="{node.id}"]').select_option(value=wanted, timeout=2000)
    if removing:
        return ActionOutcome(True, f"Took {label!r} out of the selection of {_describe(node)}.")
    return ActionOutcome(True, f"Added {label!r} to the selection of {_describe(node)}.")


async def _press(page: Page, key: str) -> ActionOutcome:
    """Presses `key`. A character Playwright's keyboard has no key for (é, ñ, €: keys of other layouts) is typed
    into the focused element instead, as such a keyboard would; a chord with one (`Control+ü`) cannot be pressed
    and says so, as an action that could not be played, not a browser failure."""
    try:
        await page.keyboard.press(" " if key == "Space" else key)
    except Exception as error:
        if "Unknown key" not in str(error) or is_dead_page_error(error):
            raise
        if len(key) != 1:
            return ActionOutcome(
                False, f'{key!r} is not a key this keyboard can press; type text with type(ID, "text") instead.'
            )
        await page.keyboard.insert_text(key)
        return ActionOutcome(True, f"Typed {key!r} (not a key of its own) into the focused element.")
    return ActionOutcome(True, f"Pressed {key}.")


async def _type(page: Page, node: AxNode, text: str) -> ActionOutcome:
    """Fills field `node` with `text`, then reads it back: a field that drops or reshapes what was typed (a date
    field given another format, a length limit) says so instead of reporting success."""
    locator = page.locator(f'[data-rg-id="{node.id}"]')
    expected = _FORMAT.search(node.states)
    needs = f"; it takes a {expected.group(1)} written {expected.group(2)}" if expected else ""
    try:
        await locator.fill(text, timeout=2000)
    except Exception as error:
        if is_dead_page_error(error):
            raise
        return ActionOutcome(False, f"Could not type into {_describe(node)}: {_refusal(node, text, needs)}.")
    try:
        held = await locator.input_value(timeout=2000)
    except Exception as error:  # a contenteditable element has no value to read back
        if is_dead_page_error(error):
            raise
        held = text
    if await page.evaluate("(id) => window.__rgAx.listensToTyping(id)", node.id):
        await asyncio.sleep(TYPE_SETTLE_MS / 1000)
    if held == text:
        return ActionOutcome(True, f"Typed into {_describe(node)}.")
    if expected:
        return ActionOutcome(False, f"{_describe(node)} did not take {text!r}{needs}.")
    return ActionOutcome(True, f"Typed into {_describe(node)}; it now holds {held!r}.")


def _refusal(node: AxNode, text: str, needs: str) -> str:
    """Why field `node` did not take `text`, in words: read-only or disabled, the format it takes, a number."""
    why = next((state for state in ("read-only", "disabled") if state.replace("-", "") in node.states), None)
    if why:
        return f"it is {why}"
    if needs:
        return f"it did not take {text!r}{needs}"
    if node.role == "spinbutton":  # Playwright refuses to fill a number field with anything else
        return f"it takes a number, written with digits (such as 42 or -3.5), not {text!r}"
    return "it is not editable now"


async def _click_point(page: Page, node: AxNode) -> dict[str, Any]:
    """Where `node` can be pointed at (its centre, brought into view), or why not (`__rgAx.clickPoint`)."""
    target: dict[str, Any] = await page.evaluate("(id) => window.__rgAx.clickPoint(id)", node.id)
    if target.get("error") == "clipped":  # perhaps a page still laying out: look once more
        await asyncio.sleep(CLIP_RETRY_MS / 1000)
        target = await page.evaluate("(id) => window.__rgAx.clickPoint(id)", node.id)
    return target


def _unreachable(node: AxNode, target: dict[str, Any], verb: str, undone: str) -> ActionOutcome | None:
    """Why the pointer cannot get to `node`, from what `clickPoint` or `dropPoint` found (`None`: it can). `verb`
    says what it cannot be (`clicked`), `undone` what did not happen (`nothing was clicked`)."""
    error = target.get("error")
    if error == "missing":
        return ActionOutcome(False, f"Element {node.id} is no longer on the page.")
    if error == "hidden":
        return ActionOutcome(False, f"{_describe(node)} is hidden and cannot be {verb}.")
    if error == "clipped" and target.get("empty"):
        return ActionOutcome(
            False,
            f"{_describe(node)} has no size on the page, so it cannot be {verb} itself; the element that holds it "
            "may be.",
        )
    if error == "clipped":
        return ActionOutcome(
            False,
            f"{_describe(node)} is not visible: the page or a box around it hides it, even scrolled as far as it "
            f"goes; nothing was {undone}.",
        )
    if error == "covered":
        return ActionOutcome(
            False, f"{_describe(node)} is covered by element {target.get('by')}; deal with that first."
        )
    return None


async def _point_at(page: Page, node: AxNode, kind: str, tree: AxTree) -> ActionOutcome:
    """Clicks `node`, or moves the pointer over it (`hover`), at its centre once it is in view and uncovered. When
    an element of `tree` inside `node` lies at that centre, the message names it: that one takes the click (a link
    in a paragraph), and an agent told only of the paragraph would credit the wrong element."""
    target = await _click_point(page, node)
    verb = "clicked" if kind == "click" else "reached"
    refusal = _unreachable(node, target, verb, verb)
    if refusal is not None:
        return refusal
    inner = tree.get(int(target["on"])) if target.get("on") is not None else None
    landed = f"; the pointer is on {_describe(inner)}, inside it" if inner is not None else ""
    if kind == "hover":
        await page.mouse.move(float(target["x"]), float(target["y"]))
        await asyncio.sleep(HOVER_SETTLE_MS / 1000)
        return ActionOutcome(True, f"Moved the pointer over {_describe(node)}{landed}.")
    if target.get("disabled"):
        return ActionOutcome(False, f"{_describe(node)} is disabled.")
    await page.mouse.click(float(target["x"]), float(target["y"]))
    return ActionOutcome(True, f"Clicked {_describe(node)}{landed}.")


async def _drag(page: Page, source: AxNode, target: AxNode) -> ActionOutcome:
    """Drags `source` onto `target` as a person does with a mouse: presses on the source's centre, moves the pointer
    in small steps onto the target and lets go there. Nothing is pressed unless both can be reached, so a drag that
    cannot be played leaves the page as it was."""
    if source.id == target.id:
        return ActionOutcome(False, f"{_describe(source)} cannot be dropped onto itself; name another element.")
    start = await _click_point(page, source)
    refusal = _unreachable(source, start, "dragged", "dragged")
    if refusal is not None:
        return refusal
    drop: dict[str, Any] = await page.evaluate("([a, b]) => window.__rgAx.dropPoint(a, b)", [source.id, target.id])
    if drop.get("error") == "source missing":
        return ActionOutcome(False, f"Element {source.id} is no longer on the page.")
    if drop.get("error") == "inside":
        return ActionOutcome(
            False, f"{_describe(target)} is part of {_describe(source)}; nothing can be dropped onto a part of itself."
        )
    refusal = _unreachable(target, drop, "dropped onto", "dragged")
    if refusal is not None:
        return refusal
    if not drop["pressable"]:
        return ActionOutcome(
            False, f"{_describe(source)} and {_describe(target)} cannot both be in the window; nothing was dragged."
        )
    pressed = (float(drop["fromX"]), float(drop["fromY"]))
    centre = (float(drop["x"]), float(drop["y"]))
    await _press_move_release(page, drag_path(pressed, centre, (float(drop["width"]), float(drop["height"]))))
    return ActionOutcome(True, f"Dragged {_describe(source)} onto {_describe(target)}.")


Point = tuple[float, float]


def drag_path(pressed: Point, centre: Point, size: Point) -> list[Point]:
    """The pointer's way for a drag: the press, a corner, and the release near the drop target's `centre` (`size`
    is the target's width and height).

    The release is `DROP_PAST` of the target's size past its centre, along each axis the pointer travels. The
    pointer goes across first, then up or down: a grid of entries is ordered row by row, and a sortable grid reads
    the way the pointer goes from its last step, so between rows that step must be vertical (one to the right, on
    the way to an entry above and to the right, would put the dragged entry after it, not before).
    """

    def past(at: float, travel: float, extent: float) -> float:
        return at if abs(travel) < 1 else at + math.copysign(DROP_PAST * extent, travel)

    release = (past(centre[0], centre[0] - pressed[0], size[0]), past(centre[1], centre[1] - pressed[1], size[1]))
    path = [pressed]
    for point in ((release[0], pressed[1]), release):
        if math.dist(point, path[-1]) >= 1:
            path.append(point)
    return path


async def _press_move_release(page: Page, path: list[Point]) -> None:
    """Presses the left button at the first point of `path`, moves through the others with pointer events about
    `DRAG_STEP_PX` apart, and releases it at the last (jQuery UI and d3 start a drag on a move with the button
    down). Real pointer events, not `locator.drag_to`: that one lets go on the target's centre, where a sortable
    list does not yet move the dragged entry past it."""
    fewest, most = DRAG_STEPS
    await page.mouse.move(*path[0])
    await page.mouse.down()
    for start, end in itertools.pairwise(path):
        await page.mouse.move(*end, steps=max(fewest, min(most, round(math.dist(start, end) / DRAG_STEP_PX))))
    await page.mouse.up()
