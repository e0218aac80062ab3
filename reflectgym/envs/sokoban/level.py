"""Sokoban levels in the standard XSB text notation, and collections of them (Boxoban's `; n` files included).

XSB: `#` wall, ` ` (or `-`, `_`) floor, `@` player, `+` player on goal, `$` box, `*` box on goal, `.` goal.
A file holds levels separated by blank lines; a level's title is the comment line before it (`; 12` in Boxoban
files, or `Title: ...`). Every row of an enclosed level contains a wall, which is how level rows are told from
comments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

Cell = tuple[int, int]
"""(row, col), 0-based from the top-left corner."""

_FLOOR_CHARS = frozenset(" -_")
_LEVEL_CHARS = frozenset("#@+$*.") | _FLOOR_CHARS


class LevelFormatError(ValueError):
    """A level text that is not a playable Sokoban level; the message says what and where."""


@dataclass(frozen=True)
class Level:
    """One Sokoban level.

    Attributes:
        rows: Height of the grid.
        cols: Width of the grid (the longest row).
        walls: Wall cells.
        goals: Goal cells.
        boxes: Box cells.
        player: The player's cell.
        title: The level's name in its file (`"12"` for Boxoban's `; 12`), if any; not part of equality.
    """

    rows: int
    cols: int
    walls: frozenset[Cell]
    goals: frozenset[Cell]
    boxes: frozenset[Cell]
    player: Cell
    title: str | None = field(default=None, compare=False)

    @property
    def num_boxes(self) -> int:
        """How many boxes (and goals) the level has."""
        return len(self.boxes)

    @property
    def solved(self) -> bool:
        """Whether every box is on a goal."""
        return self.boxes == self.goals

    def char_at(self, cell: Cell) -> str:
        """The XSB character of one cell."""
        if cell in self.walls:
            return "#"
        goal = cell in self.goals
        if cell == self.player:
            return "+" if goal else "@"
        if cell in self.boxes:
            return "*" if goal else "$"
        return "." if goal else " "

    def to_xsb(self) -> str:
        """The level as XSB text, one line per row, trailing spaces removed."""
        return "\n".join("".join(self.char_at((r, c)) for c in range(self.cols)).rstrip() for r in range(self.rows))

    def one_line(self) -> str:
        """The level on one line, rows joined by `|` (the XSB one-line form, also accepted by `parse_level`)."""
        return self.to_xsb().replace("\n", "|")


def parse_level(text: str, title: str | None = None) -> Level:
    """Parses one level in XSB notation (rows separated by newlines or `|`).

    Raises:
        LevelFormatError: unknown characters, no player or several, no boxes, unequal boxes and goals, an open
            level the player could walk out of, a box or goal the player can never reach, or every box already
            on a goal (a solved level would pay out for any move).
    """
    where = f"level {title!r}" if title is not None else "level"
    lines = [line.rstrip("\r") for line in text.replace("|", "\n").split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise LevelFormatError(f"{where}: the text is empty")
    walls: set[Cell] = set()
    goals: set[Cell] = set()
    boxes: set[Cell] = set()
    players: list[Cell] = []
    for r, line in enumerate(lines):
        for c, char in enumerate(line):
            if char not in _LEVEL_CHARS:
                raise LevelFormatError(
                    f"{where}: unknown character {char!r} at row {r + 1}, column {c + 1} "
                    "(XSB uses # @ + $ * . and space)"
                )
            cell = (r, c)
            if char == "#":
                walls.add(cell)
            if char in "+*.":
                goals.add(cell)
            if char in "$*":
                boxes.add(cell)
            if char in "@+":
                players.append(cell)
    if not players:
        raise LevelFormatError(f"{where}: no player (@ or +)")
    if len(players) > 1:
        cells = ", ".join(_name(p) for p in players)
        raise LevelFormatError(f"{where}: {len(players)} players ({cells}); a level has exactly one")
    if not boxes:
        raise LevelFormatError(f"{where}: no boxes ($ or *)")
    if len(boxes) != len(goals):
        raise LevelFormatError(f"{where}: {len(boxes)} boxes but {len(goals)} goals; they must be equal")
    rows, cols = len(lines), max(len(line) for line in lines)
    region = _walkable_region(players[0], walls, rows, cols, lines)
    for kind, cells in (("box", boxes), ("goal", goals)):
        stray = sorted(cells - region)
        if stray:
            raise LevelFormatError(f"{where}: the {kind} at {_name(stray[0])} cannot be reached from the player")
    if boxes == goals:
        raise LevelFormatError(f"{where}: every box is already on a goal, so there is nothing to solve")
    return Level(rows, cols, frozenset(walls), frozenset(goals), frozenset(boxes), players[0], title)


def _walkable_region(start: Cell, walls: set[Cell], rows: int, cols: int, lines: Sequence[str]) -> set[Cell]:
    """Cells the player could walk to if there were no boxes; raises if that leads out of the level."""
    seen = {start}
    stack = [start]
    while stack:
        r, c = stack.pop()
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if nr < 0 or nc < 0 or nr >= rows or nc >= len(lines[nr]):
                raise LevelFormatError(
                    f"the level is not enclosed by walls: the player can walk off it from {_name((r, c))}"
                )
            if (nr, nc) not in walls and (nr, nc) not in seen:
                seen.add((nr, nc))
                stack.append((nr, nc))
    return seen


def _name(cell: Cell) -> str:
    return f"row {cell[0] + 1}, column {cell[1] + 1}"


def parse_levels(text: str) -> list[Level]:
    """Parses every level of an XSB, SOK or Boxoban text.

    A board row holds a `#` and starts with a board character; other lines are comments (`; 12`) and fields
    (`Title: Level #1`, `Author: ...`). A level's title is the comment or title line before its board (blank lines
    between allowed), or a `Title:` line right after it with no blank line between, as SOK files write them.
    """
    levels: list[Level] = []
    block: list[str] = []
    title: str | None = None
    start_line = 0
    after_board = False  # right after a level's board: no blank line, comment or board since

    def flush() -> None:
        nonlocal block, title, after_board
        if block:
            try:
                levels.append(parse_level("\n".join(block), title=title))
            except LevelFormatError as error:
                raise LevelFormatError(f"{error} (text line {start_line + 1})") from None
            block, title, after_board = [], None, True

    for number, raw in enumerate(text.splitlines()):
        line = raw.rstrip()
        stripped = line.strip()
        if "#" in line and stripped[:1] in _LEVEL_CHARS:
            if not block:
                start_line = number
            block.append(line)
            continue
        flush()
        if not stripped:
            after_board = False
        elif stripped.startswith(";"):
            title, after_board = stripped.lstrip(";").strip() or None, False
        elif stripped.lower().startswith("title:"):
            named = stripped.split(":", 1)[1].strip() or None
            if after_board and named:  # SOK: the title follows its board
                levels[-1] = replace(levels[-1], title=named)
            else:
                title = named
    flush()
    if not levels:
        raise LevelFormatError("no level found in the text (a level's rows contain # walls)")
    return levels


def load_levels(source: str | Path | Iterable[str]) -> list[Level]:
    """Levels from a file path, a text of one or more levels, or a list of level texts.

    Raises:
        LevelFormatError: a malformed level (its list index named), a file that is not UTF-8, bytes or another
            type instead of text, or no level at all.
        FileNotFoundError: a path-like string that names no file.
    """
    if isinstance(source, Path):
        return parse_levels(_read(source))
    if isinstance(source, str):
        if "\n" not in source and "|" not in source and "#" not in source:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"no level file at {source!r} (pass a path, XSB text, or a list of levels)")
            return parse_levels(_read(path))
        return parse_levels(source.replace("|", "\n")) if "\n" not in source else parse_levels(source)
    if isinstance(source, (bytes, bytearray)):
        raise LevelFormatError("levels must be a path, XSB text or a list of level texts, not bytes: decode them first")
    if not isinstance(source, Iterable):
        raise LevelFormatError(f"levels must be a path, XSB text or a list of level texts; got {type(source).__name__}")
    levels = [level for index, text in enumerate(source) for level in _listed_levels(index, text)]
    if not levels:
        raise LevelFormatError("levels is an empty list: give at least one level")
    return levels


def _listed_levels(index: int, text: object) -> list[Level]:
    """The levels of item `index` of a list of level texts; errors name the item."""
    if not isinstance(text, str):
        raise LevelFormatError(f"levels[{index}] is {type(text).__name__}, not XSB text")
    try:
        return parse_levels(text)
    except LevelFormatError as error:
        raise LevelFormatError(f"levels[{index}]: {error}") from None


def _read(path: Path) -> str:
    """A level file's text; one that is not UTF-8 is a `LevelFormatError` naming the file and the bad byte."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise LevelFormatError(
            f"level file {str(path)!r} is not UTF-8 text (byte {error.start}: {error.reason})"
        ) from None


def format_levels(levels: Iterable[Level]) -> str:
    """Writes levels in the Boxoban layout: `; title` then the rows, a blank line between levels."""
    parts = [
        f"; {level.title if level.title is not None else index}\n{level.to_xsb()}" for index, level in enumerate(levels)
    ]
    return "\n\n".join(parts) + "\n"
