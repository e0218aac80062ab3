"""Level files as Sokoban YASC, JSoko and letslogic write them: SLC XML, run-length encoding, plain-text titles,
tabs, wall-less rows inside a board, decorations walled off from the player, and solved levels left out."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest

from reflectgym.envs.sokoban.env import SokobanEnv
from reflectgym.envs.sokoban.game import play_plan
from reflectgym.envs.sokoban.level import LevelFormatError, load_levels, parse_level, parse_levels
from reflectgym.envs.sokoban.solver import SokobanSolver

ONE = "#####\n#@$.#\n#####"

SLC = """<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE SokobanLevels SYSTEM "SokobanLev.dtd">
<SokobanLevels>
  <Title>Two &#x26; Two</Title>
  <Description>
Made up for a test.
  </Description>
  <LevelCollection Copyright="Nobody" MaxWidth="7" MaxHeight="5">
    <Level Id="First one" Width="5" Height="3">
      <L>#####</L>
      <L>#@$.#</L>
      <L>#####</L>
    </Level>
    <Level Id="2" Width="7" Height="5" Copyright="Somebody">
      <L>  #####</L>
      <L>###   #</L>
      <L>#.@$  #</L>
      <L>#######</L>
    </Level>
  </LevelCollection>
</SokobanLevels>
"""


def test_slc_xml_files_give_each_level_its_id(tmp_path: Path) -> None:
    path = tmp_path / "two.slc"
    path.write_bytes(SLC.encode("latin-1"))
    levels = load_levels(path)
    assert [level.title for level in levels] == ["First one", "2"]
    assert levels[1].to_xsb() == "  #####\n###   #\n#.@$  #\n#######"
    env = SokobanEnv(levels=path, max_steps=20)
    env.reset(seed=0, options={"task_id": "First one"})
    assert env.task_id == "First one"
    assert env.step("right")[1] == 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<?xml version='1.0'?><SokobanLevels><Level Id='a'><L>####", "malformed SLC"),
        ("<SokobanLevels><Title>none</Title></SokobanLevels>", "no <Level> elements"),
        ("<SokobanLevels><Level Id='x'><L>#####</L><L>#$ .#</L><L>#####</L></Level></SokobanLevels>", "element 1"),
    ],
)
def test_malformed_slc_files_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(LevelFormatError, match=message):
        parse_levels(text)


def test_run_length_encoded_levels() -> None:
    assert parse_level("4#|#@$.#|4#") == parse_level("####\n#@$.#\n####")
    assert load_levels("5#|#@$.#|5#") == load_levels(ONE)
    assert parse_level("7#|#@-2$2.#|7#").to_xsb() == "#######\n#@ $$..#\n#######"
    assert parse_level("7#|#@2($.)#|7#").to_xsb() == "#######\n#@$.$.#\n#######"
    text = "30-8-55\n\n5#\n#@$.#\n5#\n\n; next\n2(3#)\n#@--$.#\n7#\n"  # a title ending in a digit is no row
    levels = parse_levels(text)
    assert [level.title for level in levels] == ["30-8-55", "next"]
    assert levels[1].to_xsb() == "######\n#@  $.#\n#######"
    assert parse_levels("3(#\n" + ONE)[0] == parse_level(ONE)  # broken encoding in a text line: a comment


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("99999(99999#)|#@$.#|5#", "expands to over"),
        ("9999999#|#@$.#|5#", "run length of 7 digits"),
        ("5#|#@$.#|2(#", "unbalanced parentheses"),
        ("5#|#@$.#|" + "9" * 5000 + "#", "run length of 5000 digits"),
    ],
)
def test_bad_run_length_encoding_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(LevelFormatError, match=message):
        parse_level(text)


def test_plain_text_titles_follow_a_blank_line() -> None:
    text = f"\n\nCorral 1\n\n{ONE}\n\n\nCorral 2\n{ONE}\n"
    assert [level.title for level in parse_levels(text)] == ["Corral 1", "Corral 2"]
    described = f"This collection is for a test\nand has two levels.\n\n{ONE}\n\nAuthor: Nobody\n\n{ONE}\n"
    assert [level.title for level in parse_levels(described)] == [None, None]  # a paragraph, no field, names none
    commented = f"; Level 1\nA hard one.\n{ONE}\n\nSolution\nR\n\nLevel 2\n\n{ONE}"
    assert [level.title for level in parse_levels(commented)] == ["Level 1", "Level 2"]


def test_a_title_that_starts_with_a_wall_is_text_outside_a_board() -> None:
    assert [level.title for level in parse_levels(f"Title 3\n{ONE}\n\n\n#50 (3)\n\n{ONE}\n")] == ["Title 3", "#50 (3)"]
    with pytest.raises(LevelFormatError, match="unknown character 'x' at row 2"):
        parse_levels("#####\n#@$x#\n#.  #\n#####")


def test_a_board_indented_with_tabs() -> None:
    assert parse_levels(f"level 05\n\n\t{ONE.replace(chr(10), chr(10) + chr(9))}\n") == [parse_level(ONE)]
    with pytest.raises(LevelFormatError, match="a tab inside the board at row 2, column 3"):
        parse_level("#####\n#@\t.#\n#####")


def test_wall_less_rows_inside_a_board_belong_to_it() -> None:
    steam = "__#___#__\n_#___#___\n_________\n#########\n#@$.#___#\n#########"  # JSoko's interior empty row
    assert parse_levels(steam)[0].rows == 6
    candle_foot = f"{ONE}\n  ***\n #*#*#\n  ###"  # boxes on goals below the board, outside its walls
    level = parse_levels(candle_foot)[0]
    assert level.rows == 6 and level.num_boxes == 6
    assert len(parse_levels(f"{ONE}\n...\n\n{ONE}")) == 2  # wall-less text after a board stays text


DUNGEON = """\
#####
#*#@######
### $  .#
  ########"""


def test_boxes_on_goals_walled_off_from_the_player_are_decorations() -> None:
    level = parse_level(DUNGEON)
    assert (1, 1) in level.boxes & level.goals and level.num_boxes == 2
    solution = SokobanSolver(level).solve(time_limit=5)
    assert solution.solved and solution.pushes == 3
    assert play_plan(level, solution.plan or "").solved
    env = SokobanEnv(levels=DUNGEON, max_steps=20, feedback="hint")
    observation, _ = env.reset(seed=0)
    assert "#*#@" in observation and "Boxes on goals: 1/2" in observation
    for move in solution.plan or "":
        *_, terminated, _, _ = env.step(move.lower())
    assert terminated
    walled_off = {"box": "#####\n#$#@######\n### $ ..#\n  ########", "goal": "#####\n#.#@######\n### $$ .#\n  ########"}
    for kind, text in walled_off.items():  # off a goal, or an empty goal: unsolvable
        with pytest.raises(LevelFormatError, match=f"the {kind} at row 2, column 2 cannot be reached"):
            parse_level(text)


def test_a_solved_level_is_left_out_of_a_collection_with_a_warning() -> None:
    solved = "####\n#@*#\n####"
    text = f"; one\n{ONE}\n\n{solved}\nTitle: The End\n\n; two\n{ONE}\n"
    with pytest.warns(UserWarning, match=r"left out 1 level\(s\) with nothing to solve.*text line 6"):
        levels = parse_levels(text)
    assert [level.title for level in levels] == ["one", "two"]  # (the SOK title of the solved one renames none)
    with pytest.raises(LevelFormatError, match="every box is already on a goal"), warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_levels(f"{solved}\n\n{solved}")


def test_reset_reports_the_task_ids_task_ids_lists() -> None:
    env = SokobanEnv(levels=f"Level\n\n{ONE}\n\nLevel\n\n{ONE.replace('@$.', '.$@')}", max_steps=20)
    assert env.task_ids() == ["0", "1"]  # the titles repeat
    env.reset(seed=0, options={"task_id": "1"})
    assert env.task_id == "1"


def _room(pairs: int) -> str:
    """A wide room with a row of `pairs` box-goal pairs (`$.$.`), each box one push from its goal."""
    row = "#  " + "$." * pairs + "  #"
    free = "#" + " " * (len(row) - 2) + "#"
    return "\n".join(["#" * len(row), "#@" + " " * (len(row) - 3) + "#", free, row, free, free, "#" * len(row)])


def test_the_time_limit_holds_within_one_expansion() -> None:
    # 30 boxes: an exact assignment per child, ~120 children per state; the limit is checked between boxes
    solution = SokobanSolver(parse_level(_room(30))).solve(time_limit=0.1)
    assert solution.status == "gave_up" and solution.seconds < 0.4


def test_many_boxes_get_a_heuristic_that_is_fast_and_still_a_lower_bound() -> None:
    solver = SokobanSolver(parse_level(_room(120)))
    started = time.perf_counter()
    assert solver.heuristic(solver.start_boxes) == 120  # each box is one push from its goal
    assert time.perf_counter() - started < 0.05  # (the cubic assignment takes ~0.2 s here)


def test_decorations_on_the_edge_of_the_grid_above_a_board() -> None:
    # boxes on goals in the first row and column: no negative index in the board's distances or the solver
    text = "; edge\n *\n*####\n#@$.#\n#####\n"
    level = parse_levels(text)[0]
    assert level.title == "edge" and level.to_xsb() == " *\n*####\n#@$.#\n#####"
    assert SokobanSolver(level).solve(time_limit=5).plan == "R"
    env = SokobanEnv(levels=text, feedback="hint", show_legend=False)
    assert env.reset(seed=0)[0].startswith(" *")
    assert "a good next move is right" in env.step("left")[0]
    assert len(parse_levels(f"*****\n\n{ONE}")) == 1  # (a wall-less line followed by text stays text)


def test_a_title_with_a_hash_picks_its_level_as_a_task_id() -> None:
    env = SokobanEnv(levels=f"; Boxxle #1\n{ONE}\n\n; dh5#02\n{ONE.replace('@$.', '.$@')}\n", max_steps=20)
    assert env.task_ids() == ["Boxxle #1", "dh5#02"]
    env.reset(seed=0, options={"task_id": "dh5#02"})
    assert env.task_id == "dh5#02" and env.step("left")[1] == 1.0
