"""XSB and Boxoban parsing: round trips, titles, and clear errors for malformed levels."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflectgym.envs.sokoban.level import LevelFormatError, format_levels, load_levels, parse_level, parse_levels

LEVEL = """\
#######
#.  $ #
#+$*  #
#######"""
LEVEL_ONE = "#####\n#@$.#\n#####"


def test_xsb_round_trip_keeps_every_character() -> None:
    level = parse_level(LEVEL)
    assert level.to_xsb() == LEVEL
    assert level.player == (2, 1) and (2, 1) in level.goals
    assert level.boxes == {(1, 4), (2, 2), (2, 3)} and level.goals == {(1, 1), (2, 1), (2, 3)}
    assert parse_level(level.to_xsb()) == level
    assert parse_level(level.one_line()) == level


def test_ragged_rows_and_alternative_floor_characters() -> None:
    level = parse_level("  ####\n###--#\n#@$.#\n#####")
    assert level.cols == 6 and level.to_xsb() == "  ####\n###  #\n#@$.#\n#####"


def test_boxoban_file_titles_and_format_round_trip(tmp_path: Path) -> None:
    text = "; 0\n#####\n#@$.#\n#####\n\n; 17\n######\n#@ $.#\n######\n"
    levels = parse_levels(text)
    assert [level.title for level in levels] == ["0", "17"]
    path = tmp_path / "levels.txt"
    path.write_text(format_levels(levels))
    again = load_levels(str(path))
    assert again == levels and [level.title for level in again] == ["0", "17"]


def test_sources_path_text_and_list_agree(tmp_path: Path) -> None:
    path = tmp_path / "one.xsb"
    path.write_text(LEVEL + "\n")
    assert load_levels(path) == load_levels(LEVEL) == load_levels([LEVEL]) == load_levels(LEVEL.replace("\n", "|"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("#####\n#$ .#\n#####", "no player"),
        ("#####\n#@$@#\n#. .#\n#####", "2 players"),
        ("#####\n#@$.#\n#  .#\n#####", "1 boxes but 2 goals"),
        ("#####\n#@ .#\n#####", "no boxes"),
        ("#####\n#@$x#\n#####", "unknown character 'x' at row 2, column 4"),
        ("#####\n#@$. \n#####", "not enclosed"),
        ("#######\n#@$.#$#\n#####.#\n#######", "cannot be reached"),
        ("", "empty"),
        ("####\n#@*#\n####", "every box is already on a goal"),
    ],
)
def test_malformed_levels_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(LevelFormatError, match=message):
        parse_level(text)


def test_a_bad_level_in_a_file_names_its_title() -> None:
    with pytest.raises(LevelFormatError, match=r"level '3'.*no player"):
        parse_levels("; 3\n#####\n#$ .#\n#####\n")


def test_missing_file_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="no level file"):
        load_levels("no/such/levels.txt")


def test_boxoban_unfiltered_file_loads(shared_data: Path) -> None:
    levels = load_levels(shared_data / "boxoban" / "unfiltered" / "train" / "000.txt")
    assert len(levels) == 1000
    assert all(level.num_boxes == 4 and (level.rows, level.cols) == (10, 10) for level in levels)
    assert levels[5].title == "5"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ([], "empty list"),
        (b"#####\n#@$.#\n#####", "not bytes"),
        (5, "got int"),
        (["#####\n#@$.#\n#####", 5], r"levels\[1\] is int"),
        (["#####\n#@$.#\n#####", "####\n#@*#\n####"], r"levels\[1\].*already on a goal"),
    ],
)
def test_bad_level_sources_are_clear_errors(source: object, message: str) -> None:
    with pytest.raises(LevelFormatError, match=message):
        load_levels(source)  # type: ignore[arg-type]


def test_latin1_utf8_bom_and_utf16_files_are_read(tmp_path: Path) -> None:
    # older XSB / SOK files and SLC files declaring ISO-8859-1 are Latin-1 (here 'é'); Notepad writes BOMs
    path = tmp_path / "levels.sok"
    path.write_bytes(b"#####\n#@$.#\n#####\nTitle: Niveau \xe9t\xe9\n")
    assert [level.title for level in load_levels(path)] == ["Niveau été"]
    path.write_bytes(b"\xef\xbb\xbf#####\n#@$.#\n#####\n")  # a BOM right before the first board row
    assert load_levels(str(path)) == load_levels(LEVEL_ONE)
    path.write_bytes("\ufeff; 1\n#####\n#@$.#\n#####\n".encode("utf-16"))
    assert [level.title for level in load_levels(path)] == ["1"]
    assert [level.title for level in parse_levels("\ufeff; 1\n" + LEVEL_ONE)] == ["1"]


def test_a_binary_file_is_a_level_format_error(tmp_path: Path) -> None:
    path = tmp_path / "levels.xsb"
    path.write_bytes(b"PK\x03\x04\x00\x00#####")
    with pytest.raises(LevelFormatError, match=r"levels.xsb' is not a text file"):
        load_levels(path)


def test_a_long_or_odd_string_is_no_path_and_no_os_error(tmp_path: Path) -> None:
    for text in ("x" * 5000, "a\x00b"):
        with pytest.raises(FileNotFoundError, match="no level file at"):
            load_levels(text)
    path = tmp_path / "dh5#01.xsb"  # a '#' in a file name
    path.write_text(LEVEL_ONE)
    assert load_levels(str(path)) == load_levels(LEVEL_ONE)


def test_sok_and_xsb_field_lines_name_their_levels_and_are_never_board_rows() -> None:
    board = "#####\n#@$.#\n#####"
    sok = f"{board}\nTitle: Level #1\nAuthor: A #1 fan\n\n{board}\nTitle: Two\n"  # SOK: fields after the board
    assert [level.title for level in parse_levels(sok)] == ["Level #1", "Two"]
    assert [level.title for level in parse_levels(f"Title: Level #1\n{board}")] == ["Level #1"]
    before_each = f"Title: Level 1\n{board}\n\nTitle: Level 2\n{board}"  # (titles before their boards)
    assert [level.title for level in parse_levels(before_each)] == ["Level 1", "Level 2"]
    assert [level.title for level in parse_levels(f"; Level 1\n\n{board}")] == ["Level 1"]  # a blank line between
    assert [level.title for level in parse_levels(f"; 1\n{board}\n\n; 2\n{board}")] == ["1", "2"]
    with pytest.raises(LevelFormatError, match="unknown character 'x'"):
        parse_levels("#####\n#@x.#\n#####")  # (a row that starts like a board row is still read as one)
