"""Reading Sokoban moves from model text, leniently.

Accepted: `up down left right` (also `north south west east`, arrows `↑ ↓ ← →`), the letters `U D L R` when the
text is only moves (`"UURD"`, `"u, l"`), and `wait` (also `noop`, `stay`, `pass`) for a turn without a move.
If the text has an answer part — `<answer>…</answer>`, `\\boxed{…}` or a line `Action: …` / `Answer: …` /
`Move: …` — only that part is read. In free text only whole move words count, and with one move per turn the
last one named is played (models reason first and answer last).
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
_ANSWER = re.compile(
    r"<answer>(.*?)</answer>|\\boxed\{([^}]*)\}|^\s*(?:action|answer|move|moves)\s*[:=]\s*(.+)$",
    re.IGNORECASE | re.MULTILINE | re.DOTALL,
)
_TOKENS = re.compile(r"[a-z]+|[↑↓←→]")
_FAST = {word: (code,) for word, code in _WORDS.items()} | {letter: (code,) for letter, code in _LETTERS.items()}


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
        moves = [_WORDS[token] for token in tokens if token in _WORDS]
        if moves and not multi_move:
            moves = moves[-1:]
    if not moves:
        shown = text.strip()[:40]
        raise ActionParseError(f"no move found in {shown!r}" if shown else "the reply is empty")
    if len(moves) > MAX_MOVES_PER_TURN:
        raise ActionParseError(f"{len(moves)} moves in one turn; at most {MAX_MOVES_PER_TURN}")
    return tuple(moves)


def _answer_part(text: str) -> str:
    matches = list(_ANSWER.finditer(text))
    if not matches:
        return text
    return next(group for group in matches[-1].groups() if group is not None)


def _is_letters(token: str) -> bool:
    return all(letter in _LETTERS for letter in token)
