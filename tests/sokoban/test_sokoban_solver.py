"""The solver is push-optimal (checked against plain breadth-first search) and its plans play out."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest

from reflectgym.envs.sokoban.game import play_plan
from reflectgym.envs.sokoban.generator import generate_level
from reflectgym.envs.sokoban.level import Level, load_levels, parse_level
from reflectgym.envs.sokoban.solver import SokobanSolver, min_assignment

STEPS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def bfs_min_pushes(level: Level) -> int | None:
    """Fewest pushes by breadth-first search over (boxes, player region) with no pruning at all."""

    def region(boxes: frozenset, player: tuple[int, int]) -> frozenset:
        seen, stack = {player}, [player]
        while stack:
            r, c = stack.pop()
            for dr, dc in STEPS:
                cell = (r + dr, c + dc)
                if cell not in seen and cell not in level.walls and cell not in boxes and _inside(level, cell):
                    seen.add(cell)
                    stack.append(cell)
        return frozenset(seen)

    start = (level.boxes, min(region(level.boxes, level.player)))
    depth = {start: 0}
    queue = deque([start])
    while queue:
        boxes, player = queue.popleft()
        if boxes == level.goals:
            return depth[(boxes, player)]
        reach = region(boxes, player)
        for box in boxes:
            for dr, dc in STEPS:
                target = (box[0] + dr, box[1] + dc)
                if (box[0] - dr, box[1] - dc) not in reach or target in level.walls or target in boxes:
                    continue
                if not _inside(level, target):
                    continue
                moved = (boxes - {box}) | {target}
                state = (moved, min(region(moved, box)))
                if state not in depth:
                    depth[state] = depth[(boxes, player)] + 1
                    queue.append(state)
    return None


def _inside(level: Level, cell: tuple[int, int]) -> bool:
    return 0 <= cell[0] < level.rows and 0 <= cell[1] < level.cols


def small_levels() -> list[Level]:
    rng = np.random.default_rng(123)
    generated = [generate_level(rng, (6, 6), boxes, min_pushes=1).level for boxes in (1, 2, 2, 3) for _ in range(6)]
    hand_made = [
        parse_level("#######\n#.@ $ #\n#  #  #\n# $  .#\n#######"),
        parse_level("########\n#  .   #\n# $$ @ #\n#  .   #\n########"),
    ]
    return hand_made + generated


@pytest.mark.parametrize("level", small_levels(), ids=lambda level: level.one_line())
def test_push_optimal_like_breadth_first_search(level: Level) -> None:
    solution = SokobanSolver(level).solve()
    assert solution.pushes == bfs_min_pushes(level)
    assert solution.plan is not None
    assert play_plan(level, solution.plan).solved
    assert sum(letter.isupper() for letter in solution.plan) == solution.pushes


def test_unsolvable_level_is_reported_as_such() -> None:
    level = parse_level("######\n#@  .#\n#$   #\n######")  # the box is in a corner-bound wall line
    assert SokobanSolver(level).solve().status == "unsolvable"
    boxed_in = parse_level("#######\n#@$$ .#\n#   ..#\n# $   #\n#######")
    assert bfs_min_pushes(boxed_in) == SokobanSolver(boxed_in).solve().pushes


def test_limits_make_it_give_up() -> None:
    level = small_levels()[1]
    assert SokobanSolver(level).solve(max_expanded=0).status == "gave_up"


def test_min_assignment_matches_brute_force() -> None:
    import itertools

    rng = np.random.default_rng(0)
    for size in range(1, 8):
        costs = [tuple(int(x) for x in row) for row in rng.integers(0, 30, size=(size, size))]
        brute = min(sum(costs[i][p[i]] for i in range(size)) for p in itertools.permutations(range(size)))
        assert min_assignment(costs) == brute


def test_solves_boxoban_levels(shared_data: Path) -> None:
    levels = load_levels(shared_data / "boxoban" / "unfiltered" / "train" / "000.txt")[:20]
    for level in levels:
        solution = SokobanSolver(level).solve(time_limit=10)
        assert solution.solved and solution.plan is not None, level.title
        assert play_plan(level, solution.plan).solved
