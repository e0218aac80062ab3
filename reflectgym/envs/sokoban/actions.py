"""Reading Sokoban moves from model text, leniently.

Accepted: `up down left right` (also `north south west east`, arrows `↑ ↓ ← →`), the letters `U D L R` when the
text is only moves (`"UURD"`, `"u, l"`), and `wait` (also `noop`, `stay`, `pass`) for a turn without a move.
If the text has an answer part — `<answer>…</answer>`, `\\boxed{…}` or `Action: …` / `Answer: …` / `Move: …` at a
line's start or after a sentence, up to its line's end (or on while a line ends in a comma or `then`/`and`) — only
the last such part is read. In free text only whole move words count, and the last ones named are played (models
reason first and answer last): with one move per turn the last move word, with several the last run of move words
joined only by punctuation, `then` or `and` ("not down: left, then up" plays left, up).
"""

from __future__ import annotations

import re

from reflectgym.core import ActionParseError

WAIT = 4
"""The no-op move code (0-3 are up, down, left, right)."""

MAX_MOVES_PER_TURN = 200

_WORDS = {
    "up": 0, "north": 0, "↑": 0,
    "down": 1, "south": 1, "↓": 1,
    "left": 2, "west": 2, "←": 2,
    "right": 3, "east": 3, "→": 3,
    "wait": WAIT, "noop": WAIT, "stay": WAIT, "pass": WAIT,
}  # fmt: skip
_LETTERS = {"u": 0, "d": 1, "l": 2, "r": 3}
# An answer part is `<answer>(.*?)</answer>`, `\\boxed\{([^}]*)\}` or `^\s*(?:action|answer|move|moves)\s*[:=](.*)$`
# (case-insensitive, `^` at line starts and after a sentence's end; a label's part is the rest of its line, or the
# lines below it up to a blank line when nothing follows it on its own); `_answer_part` finds them as `re.finditer`
# over that alternation would, in one pass.
_ANSWER_START = re.compile(
    r"(?=<answer>|\\boxed\{)|^|(?<=[.!?] )(?=(?:action|answer|move|moves)\s*[:=])", re.IGNORECASE | re.MULTILINE
)
_TAG_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_TAG_CLOSE = re.compile(r"</answer>", re.IGNORECASE)
_BOX_OPEN = re.compile(r"\\boxed\{", re.IGNORECASE)
_NON_SPACE = re.compile(r"\S")
_LABELLED = re.compile(r"(?:action|answer|move|moves)\s*[:=]([^\n]*)", re.IGNORECASE)
_BLANK_LINE = re.compile(r"\n[^\S\n]*(?=\n|$)")
_TOKENS = re.compile(r"[a-z]+|[↑↓←→]")
_FAST = {word: (code,) for word, code in _WORDS.items()} | {letter: (code,) for letter, code in _LETTERS.items()}
_JOINERS = frozenset({"then", "and"})
"""Words that may join the moves of one run in free text ("left, then up and up")."""


def parse_moves(text: str, multi_move: bool = False) -> tuple[int, ...]:
    """The move codes in `text` (0 up, 1 down, 2 left, 3 right, 4 wait).

    Raises:
        ActionParseError: when no move is found, or several where one move per turn is allowed.
    """
    quick = _FAST.get(text.strip().lower())
    if quick is not None:
        return quick
    segment = _answer_part(text)
    tokens = _TOKENS.findall(segment.lower())
    only_moves = bool(tokens) and all(token in _WORDS or _is_letters(token) for token in tokens)
    moves: list[int] = []
    if only_moves:
        for token in tokens:
            if token in _WORDS:
                moves.append(_WORDS[token])
            else:
                moves.extend(_LETTERS[letter] for letter in token)
        if not multi_move and len(moves) > 1:
            raise ActionParseError(f"found {len(moves)} moves, but this game takes one move per turn")
    else:
        moves = _last_run(tokens) if multi_move else [_WORDS[token] for token in tokens if token in _WORDS][-1:]
    if not moves:
        shown = text.strip()[:40]
        raise ActionParseError(f"no move found in {shown!r}" if shown else "the reply is empty")
    if len(moves) > MAX_MOVES_PER_TURN:
        raise ActionParseError(f"{len(moves)} moves in one turn; at most {MAX_MOVES_PER_TURN}")
    return tuple(moves)


def _last_run(tokens: list[str]) -> list[int]:
    """The moves of the last run of move words in free text: consecutive but for `_JOINERS` between them (the
    moves named earlier belong to the reasoning, as in "down is blocked, so left then up")."""
    run: list[int] = []
    for token in reversed(tokens):
        if token in _WORDS:
            run.append(_WORDS[token])
        elif run and token not in _JOINERS:
            break
    return run[::-1]


def _answer_part(text: str) -> str:
    """The last answer part of `text`, or all of it when it has none.

    Linear in the text: once a tag or box is found unclosed, no later one can close either, so they are not
    looked for again (a regex would rescan to the end from each `<answer>`); a line that is not a labelled answer
    skips the blank lines after it, which lead to the same verdict.
    """
    part, position = text, 0
    tags = boxes = True
    while position <= len(text) and (start := _ANSWER_START.search(text, position)) is not None:
        at = start.start()  # (a search from past the end would find the end again)
        if tags and (opened := _TAG_OPEN.match(text, at)):
            closed = _TAG_CLOSE.search(text, opened.end())
            if closed is not None:
                part, position = text[opened.end() : closed.start()], closed.end()
                continue
            tags = False
        if boxes and (opened := _BOX_OPEN.match(text, at)):
            closed_at = text.find("}", opened.end())
            if closed_at >= 0:
                part, position = text[opened.end() : closed_at], closed_at + 1
                continue
            boxes = False
        position = at + 1
        if at == 0 or text[at - 1] in "\n ":  # a line's start, or a label after a sentence ("... left. Action: up")
            found = _NON_SPACE.search(text, at)
            word = found.start() if found is not None else len(text)
            labelled = _LABELLED.match(text, word)
            found_part = _labelled_part(text, labelled) if labelled is not None else None
            if found_part is not None:
                part, position = found_part
                continue
            position = max(word, position)
    return part


def _labelled_part(text: str, labelled: re.Match[str]) -> tuple[str, int] | None:
    """A label's answer part and where it ends: the rest of the label's line ("Action: up" — a reason on the next
    line is not read: "Reason: moving right would hit the wall"), with the lines after it while each ends in a
    comma or a joining word (a list wrapped: "Moves: up, left,\nright"), or, when the label ends its line
    ("Moves:"), the lines below it up to the next blank line (one move per line is a common list); None when
    nothing follows."""
    if labelled.group(1).strip():
        end = labelled.end()
        while _continues(text[labelled.start(1) : end]) and end < len(text):
            following = text.find("\n", end + 1)
            end = len(text) if following < 0 else following
        return text[labelled.start(1) : end], end
    found = _NON_SPACE.search(text, labelled.end())
    if found is None:
        return None
    blank = _BLANK_LINE.search(text, found.start())
    end = blank.start() if blank is not None else len(text)
    return text[labelled.end() : end], end


def _continues(part: str) -> bool:
    """Whether a labelled line goes on to the next: it ends in a comma or a joining word."""
    words = part.lower().split()
    return bool(words) and (words[-1].endswith(",") or words[-1] in _JOINERS)


def _is_letters(token: str) -> bool:
    return all(letter in _LETTERS for letter in token)
