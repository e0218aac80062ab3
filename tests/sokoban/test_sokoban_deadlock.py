"""Deadlock detection on hand-made positions, and the diagnostic feedback that names the stuck box."""

from __future__ import annotations

import pytest

from reflectgym.envs.sokoban.board import Board
from reflectgym.envs.sokoban.deadlock import dead_squares, deadlock_at
from reflectgym.envs.sokoban.env import SokobanEnv
from reflectgym.envs.sokoban.level import parse_level


def check(xsb: str, cell: tuple[int, int]) -> str | None:
    level = parse_level(xsb)
    board = Board.from_level(level)
    found = deadlock_at(board, dead_squares(board), board.mask(level.boxes), board.index(cell))
    return None if found is None else found.kind


def test_corner_and_goal_less_wall_are_dead_squares() -> None:
    level = parse_level("######\n#   .#\n# $@ #\n#    #\n######")
    board = Board.from_level(level)
    dead = {board.cell(i) for i in range(board.rows * board.stride) if (dead_squares(board) >> i) & 1}
    assert {(1, 1), (3, 1), (3, 4)} <= dead  # corners without goals
    assert (3, 2) in dead and (3, 3) in dead  # the bottom wall has no goal
    assert (1, 4) not in dead and (2, 2) not in dead


def test_a_box_in_a_corner_is_a_dead_square_deadlock() -> None:
    assert check("######\n#$  .#\n#  @ #\n######", (1, 1)) == "dead_square"


def test_a_box_on_a_goal_in_a_corner_is_fine() -> None:
    assert check("######\n#*  .#\n# $@ #\n######", (1, 1)) is None


def test_two_boxes_side_by_side_against_a_wall_freeze() -> None:
    # along the top wall there is a goal, so neither square is dead, but the pair can never move
    assert check("#######\n# $$. #\n# @ . #\n#######", (1, 3)) == "frozen"


def test_a_frozen_pair_on_goals_is_not_a_deadlock() -> None:
    assert check("#######\n# ** @#\n#  $. #\n#######", (1, 3)) is None


def test_a_free_box_is_no_deadlock() -> None:
    assert check("#######\n#  .  #\n# @$  #\n#  .$ #\n#######", (2, 3)) is None


def test_diagnostic_feedback_names_the_box_and_where() -> None:
    env = SokobanEnv(levels="######\n#   .#\n#  $@#\n#    #\n######", feedback="diagnostic", max_steps=10)
    env.reset(seed=0)
    _, _, _, _, info = env.step("left")  # box to row 3, column 3: still fine
    assert "pushed a box left to row 3, column 3" in info["feedback"] and "Deadlock" not in info["feedback"]
    _, _, terminated, _, info = env.step("left")  # box against the left wall, which has no goal
    assert "Deadlock: the box at row 3, column 2 is on a dead square" in info["feedback"]
    assert info["verdict"].details["deadlock"] == "dead_square" and not terminated
    _, _, _, _, info = env.step("wait")
    assert "can no longer be solved" in info["feedback"]


def test_freeze_feedback_lists_the_partner_box() -> None:
    env = SokobanEnv(levels="#######\n#  $. #\n# $@. #\n#     #\n#######", feedback="diagnostic", max_steps=10)
    env.reset(seed=0)
    env.step("down")
    env.step("left")
    _, _, _, _, info = env.step("up")  # the box goes beside the other one, both against the top wall
    assert (
        "Deadlock: the box at row 2, column 3 is frozen together with the box(es) at row 2, column 4"
        in (info["feedback"])
    )
    assert info["verdict"].details["deadlock"] == "frozen"


@pytest.mark.filterwarnings("ignore:level 0. it has no solution")  # (the second level is stuck on purpose)
def test_blocked_moves_say_why() -> None:
    env = SokobanEnv(levels="#######\n#@$$. #\n#   . #\n#######", feedback="diagnostic", max_steps=10)
    env.reset(seed=0)
    _, _, _, _, info = env.step("up")
    assert info["feedback"].startswith("You cannot move up: a wall is in the way.")
    _, _, _, _, info = env.step("right")
    assert "cannot push the box at row 2, column 3 right: another box (at row 2, column 4)" in info["feedback"]
    env2 = SokobanEnv(levels="#####\n#@ .#\n#$  #\n#####", feedback="diagnostic", max_steps=10)
    env2.reset(seed=0)
    _, _, _, _, info = env2.step("down")
    assert "cannot push the box at row 3, column 2 down: a wall is behind it" in info["feedback"]


def test_hint_says_when_the_level_is_lost() -> None:
    env = SokobanEnv(levels="######\n#   .#\n#  $@#\n#    #\n######", feedback="hint", max_steps=10)
    env.reset(seed=0)
    _, _, _, _, info = env.step("left")
    assert "Hint: still solvable" in info["feedback"] and "a good next move is" in info["feedback"]
    _, _, _, _, info = env.step("left")
    assert "can no longer be solved, whatever you do" in info["feedback"]
