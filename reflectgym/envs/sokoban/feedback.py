"""The words of Sokoban feedback: what a move did, what blocked it, which deadlock it made, and solver hints.

Cells are named `row R, column C`, counted from 1 at the top-left corner (the legend says so).
"""

from __future__ import annotations

from reflectgym.envs.sokoban.board import MOVE_NAMES, Board
from reflectgym.envs.sokoban.deadlock import Deadlock
from reflectgym.envs.sokoban.game import Outcome
from reflectgym.envs.sokoban.solver import Solution

LEGEND = (
    "Sokoban: push every box onto a goal. Legend: # wall, @ you, + you on a goal, $ box, * box on a goal, "
    ". goal, space floor. You move one square up, down, left or right; walking into a box pushes it one square "
    "if the square behind it is free. Boxes cannot be pulled, and two boxes cannot be pushed at once. "
    "Rows and columns are counted from 1 at the top-left corner."
)


def where(board: Board, index: int) -> str:
    """`row R, column C` of a cell, 1-based."""
    row, col = divmod(index, board.stride)
    return f"row {row + 1}, column {col + 1}"


def blocked(board: Board, outcome: Outcome, direction: int, player: int) -> str:
    """Why a move did nothing."""
    name = MOVE_NAMES[direction]
    if outcome == Outcome.WALL:
        return f"You cannot move {name}: a wall is in the way."
    box = player + board.steps[direction]
    behind = (
        "a wall"
        if outcome == Outcome.BOX_INTO_WALL
        else f"another box (at {where(board, box + board.steps[direction])})"
    )
    return f"You cannot push the box at {where(board, box)} {name}: {behind} is behind it."


def pushed(board: Board, direction: int, box: int) -> str:
    """A push, and whether the box landed on a goal."""
    onto = " onto a goal" if (board.goals >> box) & 1 else ""
    return f"You pushed a box {MOVE_NAMES[direction]} to {where(board, box)}{onto}."


def deadlock(board: Board, found: Deadlock) -> str:
    """Which box is stuck and why; the level cannot be solved any more."""
    box = where(board, found.box)
    if found.kind == "dead_square":
        return (
            f"Deadlock: the box at {box} is on a dead square — from there no push can ever bring it to a goal "
            "(a corner, or a wall with no goal along it). The level can no longer be solved."
        )
    others = [where(board, cell) for cell in found.stuck if cell != found.box]
    partners = f" together with the box(es) at {'; '.join(others)}" if others else ""
    return (
        f"Deadlock: the box at {box} is frozen{partners} — it can no longer move along either axis and not every "
        "frozen box is on a goal. The level can no longer be solved."
    )


def hint(solution: Solution, next_move: str | None) -> str:
    """The solver's verdict on the position and one good move, never the whole plan."""
    if solution.status == "unsolvable":
        return "Hint: this position can no longer be solved, whatever you do."
    if solution.status == "gave_up" or next_move is None:
        return "Hint: the solver could not settle this position within its budget."
    pushes = solution.pushes or 0
    plural = "es" if pushes != 1 else ""
    return f"Hint: still solvable, with {pushes} more push{plural} at best; a good next move is {next_move}."
