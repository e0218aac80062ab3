"""The web action grammar, parsed from model text.

One action per turn::

    click(12)                 click element 12
    hover(12)                 move the pointer over element 12 (menus and tooltips that open on hover)
    drag(12, 15)              press on element 12, move the pointer onto element 15 and let go there (sortable
                              lists, drop zones, boxes dragged into others)
    type(12, "some text")     replace the text of field 12
    select(12, "Option")      choose an option of dropdown 12 by its label (a multiple-choice list adds it to
                              its selection, or takes it out when it is chosen already)
    press("Enter")            press a key (Enter, Tab, Escape, Backspace, ArrowDown, Control+a, ...)
    scroll(down)              scroll the page: down, up, or an element id to bring into view
    wait                      let the page update
    done                      declare the task finished

Ids may be written `12`, `[12]` or `"12"`; strings take double or single quotes with backslash escapes. A line
starting with `Action:` wins (one that cannot be read is an error, not a reason to search the rest); otherwise the
first action in the text that can be read is played, and the env says when the reply held more.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from typing import Literal

from reflectgym.core.types import ActionParseError

ActionKind = Literal["click", "hover", "drag", "type", "select", "press", "scroll", "wait", "done"]
ACTION_KINDS: tuple[ActionKind, ...] = ("click", "hover", "drag", "type", "select", "press", "scroll", "wait", "done")

ACTION_FORMAT = (
    'one action: click(ID), hover(ID), drag(ID, ID), type(ID, "text"), select(ID, "option"), press("Key"), '
    "scroll(down|up|ID), wait or done"
)

_NAMED_KEYS = {
    "Enter",
    "Tab",
    "Escape",
    "Backspace",
    "Delete",
    "Space",
    "ArrowUp",
    "ArrowDown",
    "ArrowLeft",
    "ArrowRight",
    "Home",
    "End",
    "PageUp",
    "PageDown",
}
_KEY_ALIASES = {name.lower(): name for name in _NAMED_KEYS} | {"esc": "Escape", "return": "Enter", "up": "ArrowUp"}
_MODIFIERS = {"control": "Control", "ctrl": "Control", "shift": "Shift", "alt": "Alt", "meta": "Meta"}
_CALL = re.compile(r"\b([A-Za-z_]+)\s*\(")
_BARE = re.compile(r"^\W*(wait|done)\W*$", re.IGNORECASE)
_ELEMENT_ID = re.compile(r"[0-9]{1,9}")
_MAX_TEXT = 2000


@dataclass(frozen=True)
class WebAction:
    """A parsed action. `element` is an id; `text` the typed text, option label, key or scroll direction."""

    kind: ActionKind
    element: int | None = None
    text: str | None = None
    target: int | None = None
    """The id a `drag` drops `element` onto."""
    skipped: int = field(default=0, compare=False)
    """How many more actions the reply held after this one (only one is played per turn; the env says so)."""

    def __str__(self) -> str:
        if self.kind in ("wait", "done"):
            return self.kind
        if self.kind in ("click", "hover"):
            return f"{self.kind}({self.element})"
        if self.kind == "drag":
            return f"drag({self.element}, {self.target})"
        if self.kind in ("type", "select"):
            return f"{self.kind}({self.element}, {_quote(self.text or '')})"
        if self.kind == "press":
            return f"press({_quote(self.text or '')})"
        return f"scroll({self.element if self.element is not None else self.text})"


def parse_web_action(text: str) -> WebAction:
    """Reads one action from model text; raises `ActionParseError` saying what was wrong.

    A line starting with `Action:` is read alone (its rest, or the next line when the rest is empty); when none
    of them holds a readable action, that is the error, naming the line: falling back to the whole reply could
    play an action its reasoning only mentioned ("I must not click(3)"). Otherwise the first readable action in
    the reply is played: a call that does not build (`click (the blue button)`) is passed over for a later one.
    """
    if not text.strip():
        raise ActionParseError("the reply is empty")
    marked = _marked_lines(text)
    for candidate in marked:
        actions, _ = _actions_in(candidate)
        if actions:
            return _played(actions)
    if marked:
        _, error = _actions_in(marked[0])
        reason = str(error) if error is not None else "it holds no action"
        raise ActionParseError(f"the line 'Action:{marked[0][:60]}' cannot be read: {reason}")
    actions, error = _actions_in(text)
    if actions:
        return _played(actions)
    if error is not None:
        raise error
    unknown = _CALL.search(text)
    if unknown is not None:
        raise ActionParseError(f"{unknown.group(1)!r} is not an action (actions: {', '.join(ACTION_KINDS)})")
    raise ActionParseError("no action found")


def _marked_lines(text: str) -> list[str]:
    """What follows `Action:` on each line that starts with it (the next non-empty line when nothing does)."""
    lines = text.splitlines()
    marked: list[str] = []
    for index, line in enumerate(lines):
        if not line.strip().lower().startswith("action:"):
            continue
        rest = line.split(":", 1)[1]
        if not rest.strip():
            rest = next((later for later in lines[index + 1 :] if later.strip()), "")
        marked.append(rest)
    return marked


def _played(actions: list[WebAction]) -> WebAction:
    """The first of the actions read from a reply, noting how many more it held (the env says they were skipped)."""
    return replace(actions[0], skipped=len(actions) - 1)


MAX_CALLS = 64
"""Calls read from one reply at most (see `_actions_in`)."""


def _actions_in(text: str) -> tuple[list[WebAction], ActionParseError | None]:
    """Every readable action in `text` in order (calls, and lines that are only `wait` or `done`; not those inside
    a call's arguments, as in `type(3, "click(4)")`), and the error of the first call that could not be read.

    Calls are read up to the first one never closed (the rest of the reply is inside it) and at most `MAX_CALLS`
    of them: each is a scan to its closing parenthesis, which on a degenerate reply (`click('` repeated) would
    otherwise rescan the whole text once per call."""
    found: list[tuple[int, WebAction]] = []
    spans: list[tuple[int, int]] = []
    first_error: ActionParseError | None = None
    calls = (match for match in _CALL.finditer(text) if match.group(1).lower() in ACTION_KINDS)
    for match in itertools.islice(calls, MAX_CALLS):
        name = match.group(1).lower()
        if spans and match.start() < spans[-1][1]:  # (inside the last call's arguments: spans only grow)
            continue
        args = _arguments(text, match.end())
        if args is None:
            first_error = first_error or ActionParseError(f"{name}( is never closed with ')'")
            break
        spans.append((match.start(), match.end() + len(args) + 1))
        try:
            found.append((match.start(), _build(name, args)))
        except ActionParseError as error:
            first_error = first_error or error
    offset = 0
    for line in text.splitlines(keepends=True):
        bare = _BARE.match(line.rstrip("\r\n"))
        if bare is not None and not any(start <= offset < end for start, end in spans):
            found.append((offset + bare.start(1), WebAction(kind=bare.group(1).lower())))  # type: ignore[arg-type]
        offset += len(line)
    found.sort(key=lambda item: item[0])
    return [action for _, action in found], first_error


def _arguments(text: str, start: int) -> str | None:
    """The text between an opening parenthesis (just before `start`) and its closing one, quotes respected."""
    quote: str | None = None
    index = start
    while index < len(text):
        char = text[index]
        if quote is not None:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == ")":
            return text[start:index]
        index += 1
    return None


def _split_arguments(args: str) -> list[str]:
    parts: list[str] = []
    quote: str | None = None
    current = ""
    index = 0
    while index < len(args):
        char = args[index]
        if quote is not None:
            current += char
            if char == "\\" and index + 1 < len(args):
                current += args[index + 1]
                index += 1
            elif char == quote:
                quote = None
        elif char in "\"'":
            quote = char
            current += char
        elif char == ",":
            parts.append(current.strip())
            current = ""
        else:
            current += char
        index += 1
    if quote is not None:
        raise ActionParseError("a quoted string is never closed")
    if current.strip() or parts:
        parts.append(current.strip())
    return parts


def _build(name: str, raw: str) -> WebAction:
    args = _split_arguments(raw)
    kind: ActionKind = name  # type: ignore[assignment]
    if kind in ("wait", "done"):
        if args:
            raise ActionParseError(f"{kind} takes no arguments; write {kind}")
        return WebAction(kind=kind)
    if kind in ("click", "hover"):
        _expect(kind, args, 1, f"{kind}(ID)")
        return WebAction(kind=kind, element=_element(kind, args[0]))
    if kind == "drag":
        _expect(kind, args, 2, "drag(ID, ID): the element to drag, then the one to drop it on")
        return WebAction(kind=kind, element=_element(kind, args[0]), target=_element(kind, args[1]))
    if kind in ("type", "select"):
        _expect(kind, args, 2, f'{kind}(ID, "text")')
        return WebAction(kind=kind, element=_element(kind, args[0]), text=_string(kind, args[1]))
    if kind == "press":
        _expect(kind, args, 1, 'press("Key")')
        return WebAction(kind=kind, text=_key(_unquote(args[0])))
    _expect(kind, args, 1, "scroll(down), scroll(up) or scroll(ID)")
    target = _unquote(args[0]).strip().lower()
    if target in ("down", "up"):
        return WebAction(kind=kind, text=target)
    return WebAction(kind=kind, element=_element(kind, args[0]))


def _expect(kind: str, args: list[str], count: int, form: str) -> None:
    if len(args) != count:
        raise ActionParseError(
            f"{kind} takes {count} argument{'s' if count > 1 else ''}, got {len(args)}; write {form}"
        )


def _element(kind: str, raw: str) -> int:
    cleaned = _unquote(raw).strip().strip("[]").strip()
    if _ELEMENT_ID.fullmatch(cleaned) is None:  # not `str.isdigit`: it takes '²', which `int` refuses
        raise ActionParseError(f"{kind} needs an element id (a number from the page), got {raw[:30]!r}")
    return int(cleaned)


def _unquote(raw: str) -> str:
    raw = raw.strip()
    if _quoted(raw):
        return _unescape(raw[1:-1])
    return raw


def _quoted(raw: str) -> bool:
    """Whether `raw` is one quoted string: it opens and closes with the same quote and holds no second string beside
    the first (`"a" "b"`). Quotes inside need no escaping (`"the "best" lamp"` is `the "best" lamp`): models often
    write them so."""
    if len(raw) < 2 or raw[0] not in "\"'" or raw[-1] != raw[0]:
        return False
    return re.search(re.escape(raw[0]) + r"\s+" + re.escape(raw[0]), raw[1:-1]) is None


def _string(kind: str, raw: str) -> str:
    raw = raw.strip()
    if not _quoted(raw):
        raise ActionParseError(f'{kind} needs its text in quotes, one string, e.g. {kind}(3, "text"); got {raw[:30]!r}')
    value = _unescape(raw[1:-1])
    if len(value) > _MAX_TEXT:
        raise ActionParseError(f"the text is {len(value)} characters long; at most {_MAX_TEXT} can be typed at once")
    return value


def _unescape(text: str) -> str:
    out = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            nxt = text[index + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


def _key(raw: str) -> str:
    stripped = raw.strip()
    if stripped == "+":
        parts = ["+"]
    elif stripped.endswith("++"):  # a chord ending in the plus key ("Shift++")
        parts = [part.strip() for part in stripped[:-2].split("+")] + ["+"]
    else:
        parts = [part.strip() for part in stripped.split("+")]
    if not stripped or any(not part for part in parts):
        raise ActionParseError(f'{raw[:30]!r} is not a key; try press("Enter") or press("Control+a")')
    *modifiers, key = parts
    named = []
    for modifier in modifiers:
        if modifier.lower() not in _MODIFIERS:
            raise ActionParseError(f"{modifier!r} is not a modifier key (Control, Shift, Alt, Meta)")
        named.append(_MODIFIERS[modifier.lower()])
    if len(key) == 1 and key.isprintable():
        return "+".join([*named, key])
    if key.lower() in _KEY_ALIASES:
        return "+".join([*named, _KEY_ALIASES[key.lower()]])
    if re.fullmatch(r"[Ff]([1-9]|1[0-2])", key):
        return "+".join([*named, key.upper()])
    known = ", ".join(sorted(_NAMED_KEYS))
    raise ActionParseError(f"{key[:30]!r} is not a key name; use a single character or one of {known}")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
