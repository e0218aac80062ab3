"""`SokobanGame`: the rules of play on one level — moves, pushes, what blocked a move — and the XSB picture.

The picture is kept as a bytearray in `Board` index order (a newline in each row's separator column), so a move
rewrites at most three bytes and the observation text is one decode.
"""

from __future__ import annotations

from enum import IntEnum

from reflectgym.envs.sokoban.board import MOVE_LETTERS, Board
from reflectgym.envs.sokoban.level import Level


class Outcome(IntEnum):
    """What one move did."""

    MOVED = 0
    PUSHED = 1
    WALL = 2
    """The player walked into a wall."""
    BOX_INTO_WALL = 3
    """The box in the way is against a wall."""
    BOX_INTO_BOX = 4
    """The box in the way is against another box."""


class SokobanGame:
    """A position on a level and the moves that change it.

    Args:
        level: The level to play (its start position).
        board: Its packed geometry, if already built.
    """

    __slots__ = ("_empty", "board", "boxes", "level", "on_goals", "picture", "player")

    def __init__(self, level: Level, board: Board | None = None) -> None:
        self.level = level
        self.board = board or Board.from_level(level)
        stride = self.board.stride
        picture = bytearray(b" " * (level.rows * stride))
        for r in range(level.rows):
            picture[r * stride + level.cols] = ord("\n")
            for c in range(level.cols):
                picture[r * stride + c] = ord(level.char_at((r, c)))
        self.picture = picture
        empty = bytearray(picture)
        for index, char in enumerate(empty):
            if char in b"@$":
                empty[index] = ord(" ")
            elif char in b"+*":
                empty[index] = ord(".")
        self._empty = bytes(empty)
        self.player = self.board.index(level.player)
        self.boxes = self.board.mask(level.boxes)
        self.on_goals = len(level.boxes & level.goals)

    @property
    def solved(self) -> bool:
        """Whether every box is on a goal."""
        return self.boxes == self.board.goals

    def text(self) -> str:
        """The position in XSB, one line per row."""
        return self.picture[:-1].decode()

    def move(self, direction: int) -> Outcome:
        """Plays one move (0 up, 1 down, 2 left, 3 right), pushing a box if one is in the way."""
        board = self.board
        step = board.steps[direction]
        here = self.player
        there = here + step
        if not (board.floor >> there) & 1:
            return Outcome.WALL
        picture, empty = self.picture, self._empty
        outcome = Outcome.MOVED
        if (self.boxes >> there) & 1:
            beyond = there + step
            if not (board.floor >> beyond) & 1:
                return Outcome.BOX_INTO_WALL
            if (self.boxes >> beyond) & 1:
                return Outcome.BOX_INTO_BOX
            self.boxes ^= (1 << there) | (1 << beyond)
            goals = board.goals
            self.on_goals += ((goals >> beyond) & 1) - ((goals >> there) & 1)
            picture[beyond] = 42 if (goals >> beyond) & 1 else 36  # '*' or '$'
            outcome = Outcome.PUSHED
        picture[here] = empty[here]
        picture[there] = 43 if empty[there] == 46 else 64  # '+' on a goal ('.'), else '@'
        self.player = there
        return outcome

    def state(self) -> tuple[bytes, int, int, int]:
        """A copy of the position (picture, player, boxes, boxes on goals)."""
        return bytes(self.picture), self.player, self.boxes, self.on_goals

    def set_state(self, state: tuple[bytes, int, int, int]) -> None:
        """Puts back a position made by `state()`."""
        picture, self.player, self.boxes, self.on_goals = state
        self.picture = bytearray(picture)


def play_plan(level: Level, plan: str) -> SokobanGame:
    """Plays LURD moves from the level's start; raises `ValueError` if a move is blocked."""
    game = SokobanGame(level)
    for number, letter in enumerate(plan):
        outcome = game.move(MOVE_LETTERS.index(letter.lower()))
        if outcome >= Outcome.WALL:
            raise ValueError(f"move {number + 1} ({letter!r}) of the plan is blocked ({outcome.name.lower()})")
        if letter.isupper() != (outcome == Outcome.PUSHED):
            raise ValueError(
                f"move {number + 1} ({letter!r}) of the plan {'does not push' if letter.isupper() else 'pushes'}"
            )
    return game
