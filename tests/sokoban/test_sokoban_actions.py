"""Lenient reading of moves from model text."""

from __future__ import annotations

import time

import pytest

from reflectgym.core import ActionParseError
from reflectgym.envs.sokoban.actions import WAIT, parse_moves

UP, DOWN, LEFT, RIGHT = 0, 1, 2, 3


@pytest.mark.parametrize(
    ("text", "moves"),
    [
        ("up", (UP,)),
        ("  Down\n", (DOWN,)),
        ("L", (LEFT,)),
        ("→", (RIGHT,)),
        ("north", (UP,)),
        ("wait", (WAIT,)),
        ("<answer>left</answer>", (LEFT,)),
        ("I could go up, but the box... so I move right.", (RIGHT,)),
        ("Thinking: left is a wall.\nAction: down", (DOWN,)),
        ("the answer is \\boxed{up}", (UP,)),
        ("<think>maybe left</think><answer> Right </answer>", (RIGHT,)),
    ],
)
def test_single_moves(text: str, moves: tuple[int, ...]) -> None:
    assert parse_moves(text) == moves


@pytest.mark.parametrize(
    ("text", "moves"),
    [
        ("UURD", (UP, UP, RIGHT, DOWN)),
        ("up, up, left", (UP, UP, LEFT)),
        ("<answer>u l wait r</answer>", (UP, LEFT, WAIT, RIGHT)),
        ("Go left then down.", (LEFT, DOWN)),
    ],
)
def test_several_moves_when_allowed(text: str, moves: tuple[int, ...]) -> None:
    assert parse_moves(text, multi_move=True) == moves


def test_several_moves_in_a_pure_move_list_are_refused_one_move_per_turn() -> None:
    with pytest.raises(ActionParseError, match="one move per turn"):
        parse_moves("UURD")


def test_letters_inside_words_are_not_moves() -> None:
    with pytest.raises(ActionParseError, match="no move found"):
        parse_moves("a dull lurid rudder")


@pytest.mark.parametrize("text", ["", "   ", "hello there", "{{{{", "a" * 10_000, "\x00"])
def test_no_move_is_a_parse_error(text: str) -> None:
    with pytest.raises(ActionParseError):
        parse_moves(text)


def test_too_many_moves_in_one_turn() -> None:
    with pytest.raises(ActionParseError, match="at most"):
        parse_moves("u" * 1000, multi_move=True)


@pytest.mark.parametrize(
    ("text", "moves"),
    [
        ("<answer>up</answer> <answer>down", (UP,)),
        ("\\boxed{left} \\boxed{right", (LEFT,)),
        ("Think.\n\n  \n Moves = right", (RIGHT,)),
        ("<ANSWER>left</Answer>\nmove: down", (DOWN,)),
        ("Action: up <answer>down</answer>", (DOWN,)),
        ("<answer>up\nAction: left</answer>", (LEFT,)),
    ],
)
def test_the_last_answer_part_wins(text: str, moves: tuple[int, ...]) -> None:
    assert parse_moves(text, multi_move=True)[-1:] == moves


@pytest.mark.parametrize("text", ["<answer>" * 16_000, "\\boxed{" * 16_000, "\n" * 20_000, " \n" * 20_000])
def test_hostile_replies_are_a_quick_parse_error(text: str) -> None:
    # Each took 7-12 s when every unclosed opener or blank line was rescanned to the end of the reply.
    started = time.perf_counter()
    with pytest.raises(ActionParseError):
        parse_moves(text)
    assert time.perf_counter() - started < 5


def test_hostile_reply_with_a_real_answer_at_the_end() -> None:
    assert parse_moves("<answer>" * 16_000 + "\nAction: left") == (LEFT,)


def test_a_labelled_answer_after_a_sentence_is_the_answer_part() -> None:
    reasoning = "The box is to my right, so I should not go left."
    assert parse_moves(f"{reasoning} Action: right", multi_move=True) == (3,)
    assert parse_moves(f"{reasoning} Moves: right, up", multi_move=True) == (3, 0)
    assert parse_moves("I would go left and then up", multi_move=True) == (2, 0)


@pytest.mark.parametrize(
    ("text", "multi_move", "moves"),
    [
        ("Action: up\nReason: moving right would hit the wall.", False, (UP,)),
        ("Answer: left\n(Going down pushes the box into a corner.)", False, (LEFT,)),
        ("Action: up\nReason: right is a wall.\nAction: left", False, (LEFT,)),
        ("Action: up\n<answer>down</answer>", False, (DOWN,)),
        ("Moves:\nup\nleft\n\nThat leaves the box free to go right.", True, (UP, LEFT)),
        ("<answer>up</answer>\nAnswer:", False, (UP,)),
        ("Moves: up, left,\nright, down\nThen the box is free.", True, (UP, LEFT, RIGHT, DOWN)),  # (wrapped)
        ("Moves: up, left, then\nright\nReason: not down", True, (UP, LEFT, RIGHT)),
    ],
)
def test_a_labelled_answer_ends_at_its_lines_end(text: str, multi_move: bool, moves: tuple[int, ...]) -> None:
    assert parse_moves(text, multi_move=multi_move) == moves


@pytest.mark.parametrize(
    ("text", "moves"),
    [
        ("Down is blocked by a wall, so left, then up and up.", (LEFT, UP, UP)),
        ("I thought of going right. Instead: left left", (LEFT, LEFT)),
        ("up and then, after that, down", (DOWN,)),
        ("left then", (LEFT,)),
    ],
)
def test_free_text_with_several_moves_plays_the_last_run_of_move_words(text: str, moves: tuple[int, ...]) -> None:
    assert parse_moves(text, multi_move=True) == moves
