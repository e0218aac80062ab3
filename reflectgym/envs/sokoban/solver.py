"""`SokobanSolver`: push-optimal A* search.

* Optimality: the plan has the fewest **pushes** possible; the walks between pushes are shortest walks, so among
  push-optimal plans it is short but not necessarily move-optimal.
* State: the box mask (one int) and the player's region, named by its lowest cell; regions come from a
  bit-parallel flood fill, so a state is a pair of ints and hashing is cheap.
* Heuristic: a minimum-cost assignment of boxes to goals over push distances (exhaustive over permutations for
  up to 6 boxes, the Hungarian method up to 30); beyond 30 boxes, each box's distance to its nearest goal, since
  a cubic assignment per state would outlast any time limit. A push moves one box one cell, so either heuristic
  is consistent and the first solved state popped is push-optimal.
* Limits: the time limit is checked before every box's pushes are generated, so a large level gives up on time.
* Pruning: dead squares and freeze deadlocks (see `deadlock`), both sound.
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass
from operator import getitem
from typing import Literal

from reflectgym.envs.sokoban.board import MOVE_LETTERS, UNREACHABLE, Board, bits
from reflectgym.envs.sokoban.deadlock import dead_squares, is_freeze_deadlock
from reflectgym.envs.sokoban.level import Level

SolveStatus = Literal["solved", "unsolvable", "gave_up"]

_PERMUTATION_LIMIT = 6
_ASSIGNMENT_LIMIT = 30
"""Most boxes for the exact assignment heuristic (Hungarian, cubic in the boxes, evaluated for every state)."""


@dataclass(frozen=True)
class Solution:
    """What the solver found.

    Attributes:
        status: `"solved"`, `"unsolvable"` (the whole search space was exhausted) or `"gave_up"` (a limit hit).
        plan: The moves in LURD notation (`udlr` walks, `UDLR` pushes), when solved.
        pushes: Number of pushes in the plan (optimal), when solved.
        expanded: States expanded.
        seconds: Wall time spent.
    """

    status: SolveStatus
    plan: str | None
    pushes: int | None
    expanded: int
    seconds: float

    @property
    def solved(self) -> bool:
        """Whether a plan was found."""
        return self.status == "solved"

    @property
    def moves(self) -> int | None:
        """Number of moves (walks and pushes) in the plan."""
        return None if self.plan is None else len(self.plan)


class SokobanSolver:
    """Solves positions of one level, push-optimally.

    Args:
        level: The level whose geometry (walls, goals) the solver knows.
        board: Its packed geometry, if already built.
    """

    def __init__(self, level: Level, board: Board | None = None) -> None:
        self.board = board or Board.from_level(level)
        self.dead = dead_squares(self.board)
        self.start_boxes = self.board.mask(level.boxes)
        self.start_player = self.board.index(level.player)
        self._heuristic_cache: dict[int, int] = {}
        count = len(self.board.goal_cells)
        self._permutations = list(itertools.permutations(range(count))) if count <= _PERMUTATION_LIMIT else None

    def solve(
        self,
        boxes: int | None = None,
        player: int | None = None,
        *,
        max_expanded: int = 2_000_000,
        time_limit: float | None = None,
    ) -> Solution:
        """Finds a push-optimal plan from a position (default: the level's start).

        Args:
            boxes: Box mask (`Board` indices); `None` for the level's start.
            player: Player index; `None` for the level's start.
            max_expanded: Give up after expanding this many states.
            time_limit: Give up after this many seconds.
        """
        started = time.perf_counter()
        boxes = self.start_boxes if boxes is None else boxes
        player = self.start_player if player is None else player
        origin = (boxes, player)
        board, dead, goals = self.board, self.dead, self.board.goals
        if boxes & dead & ~goals:
            return Solution("unsolvable", None, None, 0, time.perf_counter() - started)
        start_h = self.heuristic(boxes)
        if start_h >= UNREACHABLE:
            return Solution("unsolvable", None, None, 0, time.perf_counter() - started)
        counter = itertools.count()
        # (f, h, tie, boxes, player, parent node, pushed box, step)
        heap: list[tuple[int, int, int, int, int, int, int, int]] = [(start_h, start_h, 0, boxes, player, -1, 0, 0)]
        closed: set[tuple[int, int]] = set()
        parents: list[tuple[int, int, int]] = []
        floor, steps = board.floor, board.steps
        expanded = 0
        while heap:
            f, h, _, boxes, player, parent, pushed, step = heapq.heappop(heap)
            reach = board.reachable(player, boxes)
            key = (boxes, reach & -reach)
            if key in closed:
                continue
            closed.add(key)
            node = len(parents)
            parents.append((parent, pushed, step))
            if boxes == goals:
                pushes = self._pushes(parents, node)
                plan = self.plan_moves(origin[0], origin[1], pushes)
                return Solution("solved", plan, len(pushes), expanded, time.perf_counter() - started)
            expanded += 1
            if expanded > max_expanded or _past(started, time_limit):
                return Solution("gave_up", None, None, expanded, time.perf_counter() - started)
            g = f - h
            open_for_box = floor & ~boxes & ~dead
            for box in bits(boxes & floor):  # (a box walled off from the player never moves)
                if _past(started, time_limit):
                    return Solution("gave_up", None, None, expanded, time.perf_counter() - started)
                without = boxes ^ (1 << box)
                for direction, offset in enumerate(steps):
                    target = box + offset
                    if not (open_for_box >> target) & 1 or not (reach >> (box - offset)) & 1:
                        continue
                    moved = without | (1 << target)
                    if is_freeze_deadlock(board, dead, moved, target):
                        continue
                    child_h = self.heuristic(moved)
                    if child_h >= UNREACHABLE:
                        continue
                    heapq.heappush(heap, (g + 1 + child_h, child_h, next(counter), moved, box, node, box, direction))
        return Solution("unsolvable", None, None, expanded, time.perf_counter() - started)

    def heuristic(self, boxes: int) -> int:
        """A lower bound on the pushes left: the cheapest assignment of boxes to distinct goals."""
        cached = self._heuristic_cache.get(boxes)
        if cached is not None:
            return cached
        rows = [self.board.distances[cell] for cell in bits(boxes)]
        if self._permutations is not None:
            value = min(sum(map(getitem, rows, order)) for order in self._permutations)
        elif len(rows) <= _ASSIGNMENT_LIMIT:
            value = min_assignment(rows)
        else:
            value = sum(min(row) for row in rows)
        value = min(value, UNREACHABLE)
        if len(self._heuristic_cache) > 1_000_000:
            self._heuristic_cache.clear()
        self._heuristic_cache[boxes] = value
        return value

    @staticmethod
    def _pushes(parents: list[tuple[int, int, int]], node: int) -> list[tuple[int, int]]:
        pushes = []
        while parents[node][0] >= 0:
            parent, box, direction = parents[node]
            pushes.append((box, direction))
            node = parent
        pushes.reverse()
        return pushes

    def plan_moves(self, boxes: int, player: int, pushes: list[tuple[int, int]]) -> str:
        """Turns a push sequence (box index, direction) into LURD moves, walking shortest paths between pushes."""
        letters = []
        board = self.board
        for box, direction in pushes:
            offset = board.steps[direction]
            walk = board.path(player, box - offset, boxes)
            if walk is None:
                raise RuntimeError("internal error: the solver's push sequence is not playable")
            letters.append(walk)
            letters.append(MOVE_LETTERS[direction].upper())
            boxes = boxes ^ (1 << box) | (1 << (box + offset))
            player = box
        return "".join(letters)


def _past(started: float, time_limit: float | None) -> bool:
    """Whether the time limit (if any) has run out since `started`."""
    return time_limit is not None and time.perf_counter() - started > time_limit


def min_assignment(costs: list[tuple[int, ...]]) -> int:
    """The minimum total cost of assigning each row to a distinct column (Hungarian method, square matrix)."""
    size = len(costs)
    infinity = float("inf")
    u = [0.0] * (size + 1)
    v = [0.0] * (size + 1)
    match = [0] * (size + 1)  # match[column] = row (1-based), 0 = free
    way = [0] * (size + 1)
    for row in range(1, size + 1):
        match[0] = row
        column = 0
        least = [infinity] * (size + 1)
        used = [False] * (size + 1)
        while True:
            used[column] = True
            current, delta, next_column = match[column], infinity, 0
            for j in range(1, size + 1):
                if used[j]:
                    continue
                reduced = costs[current - 1][j - 1] - u[current] - v[j]
                if reduced < least[j]:
                    least[j], way[j] = reduced, column
                if least[j] < delta:
                    delta, next_column = least[j], j
            for j in range(size + 1):
                if used[j]:
                    u[match[j]] += delta
                    v[j] -= delta
                else:
                    least[j] -= delta
            column = next_column
            if match[column] == 0:
                break
        while column:
            previous = way[column]
            match[column] = match[previous]
            column = previous
    return int(sum(costs[match[j] - 1][j - 1] for j in range(1, size + 1)))
