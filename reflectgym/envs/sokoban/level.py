"""Sokoban levels in the standard XSB text notation, and collections of them: XSB, SOK and Boxoban text files
and SLC (XML) files, as Sokoban YASC, JSoko and letslogic write them.

XSB: `#` wall, ` ` (or `-`, `_`) floor, `@` player, `+` player on goal, `$` box, `*` box on goal, `.` goal.
Rows may be run-length encoded (`3#` is `###`, `2(#-)` is `#-#-`) and joined by `|` on one line
(`4#|#@$.#|4#`). A board indented with tabs is read if every row has the same indent.

A text file holds levels separated by other lines. A board row holds a `#` and only board characters; lines of
board characters without a wall join a board when a row with a wall follows (JSoko's `---` interior rows,
decorations like `  ***`). Every other line is a comment (`; 12` in Boxoban files), a field (`Title: ...`,
`Author: ...`) or text. A level's title is the last `;` comment or `Title:` field before its board, a `Title:`
field right after it (SOK), or a plain text line that follows a blank line (the YASC / JSoko convention, e.g.
`Level 1`). SLC files give each `<Level Id="...">` its `<L>` rows.

Boxes on goals walled off from the player (decorations, as in Microban's "The Dungeon") are kept; a walled-off
box off a goal or an empty walled-off goal makes the level unsolvable, which is an error. A level whose boxes all
start on goals is an error alone, and is left out of a collection with a warning.
"""

from __future__ import annotations

import codecs
import re
import textwrap
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from xml.etree import ElementTree

Cell = tuple[int, int]
"""(row, col), 0-based from the top-left corner."""

_FLOOR_CHARS = frozenset(" -_")
_LEVEL_CHARS = frozenset("#@+$*.") | _FLOOR_CHARS
_PIECES = frozenset("@+$*")
_ROW_CHARS = _LEVEL_CHARS | frozenset("|\t")
"""What a board row of a level file may hold: board characters, `|` between rows, tabs in its indent."""

_RLE_ROW = re.compile(r"[#@+$*.\-_ ()0-9|]*[#@+$*.\-_ )|]")
"""A run-length encoded board row: board characters, counts and groups; never ending on a count (`30-8-55` is a
title)."""
_RLE_GROUP = re.compile(r"([0-9]*)\(([^()]*)\)")
_RLE_RUN = re.compile(r"([0-9]+)(.)")
_RLE_MAX_LENGTH = 100_000
"""Longest run-length decoded text accepted (a guard against `99999(99999#)`)."""

_FIELD = re.compile(r"(?:[A-Za-z][A-Za-z _-]{0,30}:|::)")
"""A SOK field line (`Author: ...`, `Comment-End:`) or a YASC `::` line: never a title of its own."""


class LevelFormatError(ValueError):
    """A level text that is not a playable Sokoban level; the message says what and where."""


class SolvedLevelError(LevelFormatError):
    """A well-formed level whose boxes all start on goals: nothing to solve (a collection leaves it out)."""


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
    """Parses one level in XSB notation (rows separated by newlines or `|`, optionally run-length encoded).

    Raises:
        LevelFormatError: unknown characters, no player or several, no boxes, unequal boxes and goals, an open
            level the player could walk out of, a box off a goal or a goal without a box that the player can
            never reach, or every box already on a goal (a solved level would pay out for any move).
    """
    where = f"level {title!r}" if title is not None else "level"
    lines = _board_lines(text, where)
    walls: set[Cell] = set()
    goals: set[Cell] = set()
    boxes: set[Cell] = set()
    players: list[Cell] = []
    for r, line in enumerate(lines):
        for c, char in enumerate(line):
            if char not in _LEVEL_CHARS:
                raise LevelFormatError(f"{where}: {_bad_character(char, (r, c))}")
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
    for kind, cells in (("box", boxes - goals), ("goal", goals - boxes)):
        stray = sorted(cells - region)
        if stray:
            raise LevelFormatError(f"{where}: the {kind} at {_name(stray[0])} cannot be reached from the player")
    if boxes == goals:
        raise SolvedLevelError(f"{where}: every box is already on a goal, so there is nothing to solve")
    return Level(rows, cols, frozenset(walls), frozenset(goals), frozenset(boxes), players[0], title)


def _board_lines(text: str, where: str) -> list[str]:
    """A level text's rows: split at newlines and `|`, run-length decoded, blank edges and a common tab indent
    removed."""
    lines = [_run_length_decode(line.rstrip("\r"), where) for line in text.split("\n")]
    lines = [row for line in lines for row in line.split("|")]
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise LevelFormatError(f"{where}: the text is empty")
    if any("\t" in line for line in lines):  # an indent of tabs shared by every row shifts the level alone
        lines = textwrap.dedent("\n".join(lines)).split("\n")
    return lines


def _bad_character(char: str, cell: Cell) -> str:
    """Names a character that is not XSB and where it is (a tab gets its own reason: its width is a guess)."""
    if char == "\t":
        return f"a tab inside the board at {_name(cell)} (tabs have no fixed width; use spaces)"
    return f"unknown character {char!r} at {_name(cell)} (XSB uses # @ + $ * . and space)"


def _run_length_decode(line: str, where: str = "level") -> str:
    """Expands a run-length encoded row (`3#` is `###`, `2(#-)` is `#-#-`); other lines come back unchanged."""
    if not _RLE_ROW.fullmatch(line.strip()) or not any(char.isdigit() or char in "()" for char in line):
        return line
    decoded = line
    while "(" in decoded or ")" in decoded:
        expanded = _expand(_RLE_GROUP, decoded, line, where)
        if expanded == decoded:
            raise LevelFormatError(f"{where}: unbalanced parentheses in the run-length encoded row {line[:40]!r}")
        decoded = expanded
    return _expand(_RLE_RUN, decoded, line, where)


def _expand(pattern: re.Pattern[str], text: str, line: str, where: str) -> str:
    """Repeats each `count` + part match of `pattern` in `text`, refusing results over `_RLE_MAX_LENGTH`."""
    matches = list(pattern.finditer(text))
    counts = [_run_count(match.group(1), line, where) for match in matches]
    size = len(text) + sum(
        count * len(match.group(2)) - len(match.group(0)) for count, match in zip(counts, matches, strict=True)
    )
    if size > _RLE_MAX_LENGTH:
        raise LevelFormatError(f"{where}: the run-length encoded row {line[:40]!r} expands to over {_RLE_MAX_LENGTH}")
    parts = iter(counts)
    return pattern.sub(lambda match: next(parts) * match.group(2), text)


def _run_count(digits: str, line: str, where: str) -> int:
    """A run length (1 when a group has no count); a count of over six digits is refused before `int` reads it."""
    if len(digits) > 6:
        raise LevelFormatError(f"{where}: a run length of {len(digits)} digits in the row {line[:40]!r}")
    return int(digits or 1)


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
    """Parses every level of an XSB, SOK, Boxoban or SLC (XML) text (see the module docstring for the layout).

    Raises:
        LevelFormatError: a malformed level (its title or text line named), malformed XML, or no level at all.
    """
    text = text.removeprefix("\ufeff")
    if text.lstrip().startswith(("<?xml", "<SokobanLevels")):
        return _slc_levels(text)
    reader = _TextReader()
    for number, raw in enumerate(text.splitlines()):
        reader.read(number, raw.rstrip())
    reader.flush()
    return _collection(reader.levels, reader.skipped, "no level found in the text (a level's rows contain # walls)")


@dataclass
class _TextReader:
    """Reads a level file line by line: board rows gather into a block, other lines name the levels."""

    levels: list[Level] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # why each solved level was left out
    block: list[str] = field(default_factory=list)
    interior: list[str] = field(default_factory=list)  # wall-less board lines, kept if a row with a wall follows
    start_line: int = 0
    title: str | None = None
    plain_title: bool = False  # the title is a plain text line (a later line of its paragraph revokes it)
    previous: str = "blank"  # the last line's kind: "blank", "board", "note" (`;` comment or field), "text"
    after_board: bool = False  # right after a level's board: no blank line or `;` comment since
    kept_last: bool = False  # the last board read became a level (it was not left out as solved)

    def read(self, number: int, line: str) -> None:
        """Takes the next line of the file (trailing spaces removed)."""
        row = self._board_row(line)
        if row is not None:
            if not self.block:
                self.start_line = number - len(self.interior)
            self.block += [*self.interior, row]
            self.interior = []
            self.previous = "board"
            return
        if _wall_less_row(line, inside=bool(self.block)):  # a row only if a row with a wall follows
            self.interior.append(line)
            return
        self.flush()
        self._comment(line.strip())

    def _board_row(self, line: str) -> str | None:
        """The line as a board row (run-length decoded), or `None` if it is a comment. A line that starts like a
        row but holds other characters (`#@x.#`) is a row inside a board, so that the error names it, and a
        comment (`#50 (3)`) elsewhere."""
        stripped = line.strip()
        if not stripped:
            return None
        try:
            row = _run_length_decode(line)
        except LevelFormatError:
            return None  # (`3(#` or a huge count: text, not a row)
        if "#" not in row:
            return None
        if set(row) <= _ROW_CHARS or (self.block and stripped[0] in _LEVEL_CHARS):
            return row
        return None

    def _comment(self, stripped: str) -> None:
        """Takes a line that is no board row: a blank, a `;` comment, a field or text."""
        if not stripped:
            self.previous, self.after_board = "blank", False
        elif stripped.startswith(";"):
            self._name(stripped.lstrip(";").strip() or None, plain=False)
            self.previous, self.after_board = "note", False
        elif _FIELD.match(stripped):
            if stripped.lower().startswith("title:"):
                self._titled(stripped.split(":", 1)[1].strip() or None)
            self.previous = "note"
        else:
            if self.previous == "blank":
                self._name(stripped, plain=True)
            elif self.previous == "text" and self.plain_title:
                self._name(None, plain=False)
            self.previous = "text"

    def _titled(self, named: str | None) -> None:
        """A `Title:` field: the level just read if it follows its board (SOK), else the next one."""
        if self.after_board and named:
            if self.kept_last:
                self.levels[-1] = replace(self.levels[-1], title=named)
        else:
            self._name(named, plain=False)

    def _name(self, title: str | None, *, plain: bool) -> None:
        self.title, self.plain_title = title, plain

    def flush(self) -> None:
        """Parses the gathered board, if any, under the current title; wall-less lines after it are text."""
        if self.block:
            self.kept_last = _add_level(
                self.levels, self.skipped, "\n".join(self.block), self.title, f"text line {self.start_line + 1}"
            )
            self.block, self.after_board = [], True
            self._name(None, plain=False)
        interior, self.interior = self.interior, []
        for line in interior:
            self._comment(line.strip())


def _wall_less_row(line: str, *, inside: bool) -> bool:
    """Whether a line without a wall may be a board row: board characters only, inside a board (JSoko's `-_`
    interior rows, decorations) or, above one, with a box or player in it (`  ***` over a candle)."""
    chars = set(line)
    return bool(line.strip()) and chars <= _LEVEL_CHARS and (inside or bool(chars & _PIECES))


def _add_level(levels: list[Level], skipped: list[str], text: str, title: str | None, where: str) -> bool:
    """Parses one level of a collection onto `levels`, or notes in `skipped` why a solved one is left out;
    whether it was added. Errors name `where` the level is."""
    try:
        levels.append(parse_level(text, title=title))
    except SolvedLevelError as error:
        skipped.append(f"{error} ({where})")
        return False
    except LevelFormatError as error:
        raise LevelFormatError(f"{error} ({where})") from None
    return True


def _collection(levels: list[Level], skipped: list[str], empty: str) -> list[Level]:
    """A collection's levels, with a warning naming the solved levels left out; raises if none is left."""
    if not levels:
        raise LevelFormatError(skipped[0] if skipped else empty)
    if skipped:
        shown = "; ".join(skipped[:3]) + ("; ..." if len(skipped) > 3 else "")
        warnings.warn(f"left out {len(skipped)} level(s) with nothing to solve: {shown}", stacklevel=3)
    return levels


def _slc_levels(text: str) -> list[Level]:
    """The levels of an SLC (XML) file: each `<Level Id="...">` with its `<L>` rows, titled by its Id."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise LevelFormatError(f"malformed SLC (XML) level file: {error}") from None
    elements = [element for element in root.iter() if _local_name(element.tag) == "Level"]
    levels: list[Level] = []
    skipped: list[str] = []
    for number, element in enumerate(elements, start=1):
        rows = [row.text or "" for row in element if _local_name(row.tag) == "L"]
        where = f"<Level> element {number} of the SLC file"
        _add_level(levels, skipped, "\n".join(rows), element.get("Id"), where)
    return _collection(levels, skipped, "the SLC (XML) file has no <Level> elements")


def _local_name(tag: object) -> str:
    """An XML tag without its namespace (`{uri}Level` is `Level`); comments and other nodes have none."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def load_levels(source: str | Path | Iterable[str]) -> list[Level]:
    """Levels from a file path, a text of one or more levels, or a list of level texts.

    Raises:
        LevelFormatError: a malformed level (its list index named), a file that is not text, bytes or another
            type instead of text, or no level at all.
        FileNotFoundError: a path-like string that names no file.
    """
    if isinstance(source, Path):
        return parse_levels(_read(source))
    if isinstance(source, str):
        if "\n" not in source and _is_file(source):
            return parse_levels(_read(Path(source)))
        if "\n" not in source and "|" not in source and "#" not in source:
            raise FileNotFoundError(f"no level file at {source[:200]!r} (pass a path, XSB text, or a list of levels)")
        return parse_levels(source.replace("|", "\n")) if "\n" not in source else parse_levels(source)
    if isinstance(source, (bytes, bytearray)):
        raise LevelFormatError("levels must be a path, XSB text or a list of level texts, not bytes: decode them first")
    if not isinstance(source, Iterable):
        raise LevelFormatError(f"levels must be a path, XSB text or a list of level texts; got {type(source).__name__}")
    levels = [level for index, text in enumerate(source) for level in _listed_levels(index, text)]
    if not levels:
        raise LevelFormatError("levels is an empty list: give at least one level")
    return levels


def _is_file(text: str) -> bool:
    """Whether a string names an existing file (a name the OS refuses, too long or with a NUL, names none)."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def _listed_levels(index: int, text: object) -> list[Level]:
    """The levels of item `index` of a list of level texts; errors name the item."""
    if not isinstance(text, str):
        raise LevelFormatError(f"levels[{index}] is {type(text).__name__}, not XSB text")
    try:
        return parse_levels(text)
    except LevelFormatError as error:
        raise LevelFormatError(f"levels[{index}]: {error}") from None


def _read(path: Path) -> str:
    """A level file's text: UTF-8 (BOM or not) or UTF-16 with a BOM, else Latin-1, the encoding of older level
    files and of SLC files that declare ISO-8859-1 (level rows are ASCII in all of them)."""
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise LevelFormatError(f"level file {str(path)!r} is not UTF-16 text (byte {error.start})") from None
    if b"\x00" in data:
        raise LevelFormatError(f"level file {str(path)!r} is not a text file (it holds NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def format_levels(levels: Iterable[Level]) -> str:
    """Writes levels in the Boxoban layout: `; title` then the rows, a blank line between levels."""
    parts = [
        f"; {level.title if level.title is not None else index}\n{level.to_xsb()}" for index, level in enumerate(levels)
    ]
    return "\n\n".join(parts) + "\n"
