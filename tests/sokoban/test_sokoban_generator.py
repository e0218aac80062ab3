"""Generated levels: always solved by the solver, within the step limit, at the asked difficulty, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from reflectgym.envs.sokoban.game import play_plan
from reflectgym.envs.sokoban.generator import GenerationError, generate_level
from reflectgym.envs.sokoban.solver import SokobanSolver

PRESETS = [((6, 6), 1, 20), ((6, 6), 2, 40), ((8, 8), 3, 60), ((10, 10), 4, 120)]


@pytest.mark.parametrize(("size", "boxes", "max_moves"), PRESETS)
def test_every_generated_level_is_solvable_within_the_limit(size: tuple[int, int], boxes: int, max_moves: int) -> None:
    rng = np.random.default_rng(7)
    for _ in range(25):
        generated = generate_level(rng, size, boxes, max_moves=max_moves)
        level, solution = generated.level, generated.solution
        assert (level.rows, level.cols) == size and level.num_boxes == boxes
        assert solution.plan is not None and len(solution.plan) <= max_moves
        assert play_plan(level, solution.plan).solved
        again = SokobanSolver(level).solve()  # an independent solve agrees on the optimum
        assert again.pushes == solution.pushes and solution.pushes is not None and solution.pushes >= 2 * boxes


def test_difficulty_control() -> None:
    rng = np.random.default_rng(1)
    pushes = [generate_level(rng, (10, 10), 3, min_pushes=12).solution.pushes for _ in range(10)]
    assert min(p for p in pushes if p is not None) >= 12


def test_same_generator_state_same_level() -> None:
    first = generate_level(np.random.default_rng(42), (8, 8), 3)
    second = generate_level(np.random.default_rng(42), (8, 8), 3)
    assert first.level == second.level and first.solution.plan == second.solution.plan


def test_impossible_constraints_fail_clearly() -> None:
    with pytest.raises(GenerationError, match="lower min_solution_length"):
        generate_level(np.random.default_rng(0), (5, 5), 1, min_pushes=50, max_attempts=20)
    with pytest.raises(ValueError, match="do not fit"):
        generate_level(np.random.default_rng(0), (5, 5), 6)
