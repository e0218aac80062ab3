"""`Board`: a level's fixed geometry packed into integer bit masks, shared by the game rules, the deadlock
detector and the solver.

Cell `(row, col)` is index `row * stride + col` with `stride = cols + 1`: the extra column separates rows (it is
never floor), so one step is `±1` or `±stride` and a set of cells is one Python int (bit i = cell i). Flood fills
then run on whole masks at once, which is what makes the pure-Python solver fast.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from reflectgym.envs.sokoban.level import Cell, Level

UNREACHABLE = 10_000
"""Push distance of a cell from which a box can never reach a goal."""

MOVE_NAMES = ("up", "down", "left", "right")
MOVE_LETTERS = "udlr"


@dataclass(frozen=True)
class Board:
    """Walls, floor and goals of one level as bit masks (boxes and player are state, kept elsewhere).

    Attributes:
        rows: Grid height.
        cols: Grid width.
        stride: Index distance between vertically adjacent cells (`cols + 1`).
        floor: Cells a player can ever stand on (inside the walls).
        goals: Goal cells.
        goal_cells: Goal indices in ascending order.
        steps: Index offsets of up, down, left, right.
        distances: For each cell, its push distance to each goal in `goal_cells` order (ignoring other boxes);
            `UNREACHABLE` where a box cannot get there.
    """

    rows: int
    cols: int
    stride: int
    floor: int
    goals: int
    goal_cells: tuple[int, ...]
    steps: tuple[int, int, int, int]
    distances: tuple[tuple[int, ...], ...]

    @classmethod
    def from_level(cls, level: Level) -> Board:
        """Packs a level's geometry (its floor is what the player can reach ignoring boxes)."""
        stride = level.cols + 1
        start = level.player[0] * stride + level.player[1]
        walls = 0
        for r, c in level.walls:
            walls |= 1 << (r * stride + c)
        inside = ((1 << (level.rows * stride)) - 1) & ~walls
        for r in range(level.rows):  # the separator column is never floor
            inside &= ~(1 << (r * stride + level.cols))
        floor = flood(1 << start, inside, stride)
        goal_cells = tuple(sorted(r * stride + c for r, c in level.goals))
        goals = 0
        for cell in goal_cells:
            goals |= 1 << cell
        steps = (-stride, stride, -1, 1)
        per_goal = [_pull_distances(goal, floor, steps, level.rows * stride) for goal in goal_cells]
        distances = tuple(zip(*per_goal, strict=True)) if per_goal else ()
        return cls(level.rows, level.cols, stride, floor, goals, goal_cells, steps, distances)

    def index(self, cell: Cell) -> int:
        """The bit index of `(row, col)`."""
        return cell[0] * self.stride + cell[1]

    def cell(self, index: int) -> Cell:
        """The `(row, col)` of a bit index."""
        return divmod(index, self.stride)

    def mask(self, cells: frozenset[Cell] | set[Cell]) -> int:
        """A bit mask of cells."""
        result = 0
        for cell in cells:
            result |= 1 << (cell[0] * self.stride + cell[1])
        return result

    def reachable(self, player: int, boxes: int) -> int:
        """Cells the player can walk to without pushing (a mask)."""
        return flood(1 << player, self.floor & ~boxes, self.stride)

    def path(self, start: int, target: int, boxes: int) -> str | None:
        """A shortest walk (move letters) from `start` to `target` around `boxes`, or `None` if there is none."""
        if start == target:
            return ""
        free = self.floor & ~boxes
        previous: dict[int, tuple[int, str]] = {start: (start, "")}
        queue = deque([start])
        while queue:
            here = queue.popleft()
            for step, letter in zip(self.steps, MOVE_LETTERS, strict=True):
                there = here + step
                if there in previous or not (free >> there) & 1:
                    continue
                previous[there] = (here, letter)
                if there == target:
                    letters = []
                    while there != start:
                        there, letter = previous[there]
                        letters.append(letter)
                    return "".join(reversed(letters))
                queue.append(there)
        return None


def flood(seed: int, free: int, stride: int) -> int:
    """Grows the mask `seed` through `free` cells (4-neighbourhood) until it stops changing."""
    reach = seed & free
    frontier = reach
    while frontier:
        grown = (frontier << 1 | frontier >> 1 | frontier << stride | frontier >> stride) & free & ~reach
        reach |= grown
        frontier = grown
    return reach


def _pull_distances(goal: int, floor: int, steps: tuple[int, ...], size: int) -> list[int]:
    """Pushes needed to bring a box from each cell to `goal` alone: a breadth-first search of pulls from it."""
    distance = [UNREACHABLE] * size
    distance[goal] = 0
    if not (floor >> goal) & 1:  # a goal walled off from the player (under a decorative box), maybe on the edge
        return distance
    queue = deque([goal])
    while queue:
        here = queue.popleft()
        for step in steps:
            box_before, player_before = here - step, here - 2 * step
            if (
                distance[box_before] == UNREACHABLE
                and (floor >> box_before) & 1
                and player_before >= 0
                and (floor >> player_before) & 1
            ):
                distance[box_before] = distance[here] + 1
                queue.append(box_before)
    return distance


def bits(mask: int) -> list[int]:
    """The indices of the set bits of `mask`, ascending."""
    result = []
    while mask:
        low = mask & -mask
        result.append(low.bit_length() - 1)
        mask ^= low
    return result
