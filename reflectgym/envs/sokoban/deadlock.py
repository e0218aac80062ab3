"""Deadlocks: positions from which the level can no longer be solved, detected without search.

* Dead squares: floor cells from which a box can never be pushed to any goal (corners, walls without goals).
* Freeze deadlocks: a box that can move along neither axis (walls, dead squares on both sides, or other frozen
  boxes), while it or a box frozen with it is not on a goal.
Both are sound: a position they flag is truly unsolvable, so the solver may prune it and feedback may say so.
"""

from __future__ import annotations

from dataclasses import dataclass

from reflectgym.envs.sokoban.board import UNREACHABLE, Board


def dead_squares(board: Board) -> int:
    """The mask of floor cells from which no goal can be reached by pushing."""
    dead = 0
    for index, row in enumerate(board.distances):
        if (board.floor >> index) & 1 and min(row, default=UNREACHABLE) >= UNREACHABLE:
            dead |= 1 << index
    return dead


@dataclass(frozen=True)
class Deadlock:
    """Why a position is lost.

    Attributes:
        kind: `"dead_square"` (the box can never reach a goal from its cell) or `"frozen"` (boxes stuck for
            good, at least one of them off its goal).
        box: The box that was found stuck (a bit index).
        stuck: Every box frozen together with it, ascending (just `box` for a dead square).
    """

    kind: str
    box: int
    stuck: tuple[int, ...]


def deadlock_at(board: Board, dead: int, boxes: int, box: int) -> Deadlock | None:
    """The deadlock the box at `box` is in (after it was pushed there), or `None`."""
    if (dead >> box) & 1:
        return Deadlock("dead_square", box, (box,))
    group = frozen_group(board, dead, boxes, box)
    if group is None or all((board.goals >> cell) & 1 for cell in group):
        return None
    return Deadlock("frozen", box, tuple(sorted(group)))


def is_freeze_deadlock(board: Board, dead: int, boxes: int, box: int) -> bool:
    """Whether the box at `box` is frozen together with a box that is off its goal."""
    group = frozen_group(board, dead, boxes, box)
    return group is not None and any(not (board.goals >> cell) & 1 for cell in group)


def frozen_group(board: Board, dead: int, boxes: int, box: int, treated_as_walls: int = 0) -> list[int] | None:
    """The boxes frozen together with `box` (itself included), or `None` if it can still move.

    A box is blocked along an axis when a neighbour on that axis is a wall (or a box already under examination,
    which counts as a wall), when both neighbours are dead squares, or when a neighbour is a frozen box.
    """
    treated_as_walls |= 1 << box
    group = [box]
    floor = board.floor
    for step in (1, board.stride):
        before, after = box - step, box + step
        if not (floor >> before) & 1 or not (floor >> after) & 1:
            continue
        if (treated_as_walls >> before) & 1 or (treated_as_walls >> after) & 1:
            continue
        if (dead >> before) & 1 and (dead >> after) & 1:
            continue
        blocked = False
        for neighbour in (before, after):
            if (boxes >> neighbour) & 1:
                sub = frozen_group(board, dead, boxes, neighbour, treated_as_walls)
                if sub is not None:
                    group.extend(sub)
                    blocked = True
                    break
        if not blocked:
            return None
    return group
