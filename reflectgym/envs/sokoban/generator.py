"""`generate_level`: random Sokoban levels that the solver has solved, from a numpy `Generator`.

How (the Boxoban recipe, made fast): carve a room by a random walk of small floor patterns, put the boxes on
goals and the player on the floor, then play the game backwards — random walks that pull boxes — keeping the
most scrambled position seen. Pulls reversed are pushes, so the position is solvable by construction; the
push-optimal solver then confirms it, measures its optimal length for difficulty control, and gives the plan.
Rejected rooms are redrawn; every solve has an expansion budget and the number of attempts is capped, so the
time per level is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reflectgym.envs.sokoban.level import Cell, Level
from reflectgym.envs.sokoban.solver import SokobanSolver, Solution

_PATTERNS: tuple[tuple[Cell, ...], ...] = (
    ((0, -1), (0, 0), (0, 1)),
    ((-1, 0), (0, 0), (1, 0)),
    ((0, -1), (0, 0), (1, 0)),
    ((0, -1), (0, 0), (1, -1), (1, 0)),
    ((0, 0), (0, 1), (1, 0)),
)
_STEPS: tuple[Cell, ...] = ((-1, 0), (1, 0), (0, -1), (0, 1))


class GenerationError(RuntimeError):
    """No level met the constraints within the attempt budget (the message says which to relax)."""


@dataclass(frozen=True)
class GeneratedLevel:
    """A generated level with its push-optimal solution."""

    level: Level
    solution: Solution


def generate_level(
    rng: np.random.Generator,
    size: tuple[int, int] = (6, 6),
    num_boxes: int = 2,
    *,
    min_pushes: int | None = None,
    max_moves: int | None = None,
    max_attempts: int = 400,
    max_expanded: int = 3_000,
) -> GeneratedLevel:
    """Draws a level whose optimal solution has at least `min_pushes` pushes and at most `max_moves` moves.

    Args:
        rng: The only source of randomness (same state → same level).
        size: `(rows, cols)` including the outer walls; each at least 5.
        num_boxes: Boxes (and goals).
        min_pushes: Least optimal pushes (difficulty); `None` means two per box.
        max_moves: Most moves in the solver's plan (so the level fits a step limit); `None` for no limit.
        max_attempts: Positions tried before giving up.
        max_expanded: Solver budget per position; positions it cannot settle are skipped.

    Raises:
        GenerationError: when no level met the constraints in `max_attempts` tries.
    """
    rows, cols = size
    if rows < 5 or cols < 5:
        raise ValueError(f"size must be at least (5, 5) including the outer walls; got {size}")
    if num_boxes < 1:
        raise ValueError(f"num_boxes must be at least 1; got {num_boxes}")
    if num_boxes + 1 > (rows - 2) * (cols - 2) // 2:
        raise ValueError(f"{num_boxes} boxes do not fit a {rows}x{cols} room; use fewer boxes or a bigger size")
    least = 2 * num_boxes if min_pushes is None else max(1, min_pushes)
    floor: set[Cell] = set()
    for attempt in range(max_attempts):
        if attempt % 4 == 0 or len(floor) < 2 * num_boxes + 2:
            floor = _carve_room(rng, rows, cols)
            if len(floor) < 2 * num_boxes + 2:
                continue
        level = _scramble(rng, floor, rows, cols, num_boxes)
        if level is None:
            continue
        solution = SokobanSolver(level).solve(max_expanded=max_expanded)
        if not solution.solved or solution.pushes is None or solution.plan is None:
            continue
        if solution.pushes < least or (max_moves is not None and len(solution.plan) > max_moves):
            continue
        return GeneratedLevel(level, solution)
    limits = f"at least {least} pushes" + (f" and at most {max_moves} moves" if max_moves is not None else "")
    raise GenerationError(
        f"no {rows}x{cols} level with {num_boxes} boxes and an optimal solution of {limits} in {max_attempts} "
        "attempts; lower min_solution_length, raise max_steps, or use a bigger size"
    )


def _carve_room(rng: np.random.Generator, rows: int, cols: int) -> set[Cell]:
    """Floor cells carved by a random walk of small patterns inside the outer walls."""
    count = int(1.7 * (rows + cols))
    turns = rng.random(count) < 0.35
    directions = rng.integers(0, 4, size=count)
    patterns = rng.integers(0, len(_PATTERNS), size=count)
    r, c = int(rng.integers(1, rows - 1)), int(rng.integers(1, cols - 1))
    dr, dc = _STEPS[int(rng.integers(0, 4))]
    floor: set[Cell] = set()
    for turn, direction, pattern in zip(turns.tolist(), directions.tolist(), patterns.tolist(), strict=True):
        if turn:
            dr, dc = _STEPS[direction]
        r = min(max(r + dr, 1), rows - 2)
        c = min(max(c + dc, 1), cols - 2)
        for pr, pc in _PATTERNS[pattern]:
            cell = (r + pr, c + pc)
            if 0 < cell[0] < rows - 1 and 0 < cell[1] < cols - 1:
                floor.add(cell)
    return floor


def _scramble(rng: np.random.Generator, floor: set[Cell], rows: int, cols: int, num_boxes: int) -> Level | None:
    """Boxes on goals, then a backwards random walk that pulls them; the most scrambled position seen."""
    cells = sorted(floor)
    chosen = rng.choice(len(cells), size=num_boxes + 1, replace=False).tolist()
    goals = [cells[i] for i in chosen[:num_boxes]]
    player = cells[chosen[-1]]
    boxes = list(goals)
    length = 20 * (rows + cols)
    directions = rng.integers(0, 4, size=length).tolist()
    chances = rng.random(length).tolist()
    best: tuple[int, list[Cell], Cell] | None = None
    swaps, last_pulled = 0, -1
    for direction, chance in zip(directions, chances, strict=True):
        # next to a box, usually pull it straight away from where it stands
        if chance < 0.7:
            for candidate, (dr, dc) in enumerate(_STEPS):
                if (player[0] - dr, player[1] - dc) in boxes:
                    there = (player[0] + dr, player[1] + dc)
                    if there in floor and there not in boxes:
                        direction = candidate
                        break
        dr, dc = _STEPS[direction]
        there = (player[0] + dr, player[1] + dc)
        if there not in floor or there in boxes:
            continue
        behind = (player[0] - dr, player[1] - dc)
        if chance < 0.85 and behind in boxes:
            index = boxes.index(behind)
            boxes[index] = player
            if index != last_pulled:
                swaps, last_pulled = swaps + 1, index
            displacement = sum(abs(b[0] - g[0]) + abs(b[1] - g[1]) for b, g in zip(boxes, goals, strict=True))
            score = swaps * displacement
            if best is None or score > best[0]:
                best = (score, list(boxes), there)
        player = there
    if best is None or best[0] == 0:
        return None
    _, final_boxes, final_player = best
    walls = frozenset((r, c) for r in range(rows) for c in range(cols) if (r, c) not in floor)
    return Level(rows, cols, walls, frozenset(goals), frozenset(final_boxes), final_player)
