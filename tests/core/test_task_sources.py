"""Task loading: good rows load, bad rows are located by file, line and field."""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from reflectgym.core import (
    RowError,
    Task,
    TaskFormatError,
    TaskList,
    generic_row,
    load_hf_dataset,
    load_jsonl,
    require,
    tasks_from_rows,
)
from reflectgym.core.tasks import as_task_source

ROWS = [
    {"id": "a", "prompt": "2+2?", "answer": "4", "level": 1},
    {"task_id": 7, "question": "3+3?", "answer": 6},
    {"prompt": "no id here"},
]


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    return path


def test_generic_rows_load(tmp_path: Path) -> None:
    tasks = load_jsonl(write_jsonl(tmp_path / "t.jsonl", ROWS))
    assert tasks.ids() == ["a", "7", "2"]
    assert tasks.get("a") == Task(id="a", prompt="2+2?", reference="4", data={"answer": "4", "level": 1})
    assert tasks.get("7").reference == "6"


def test_missing_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], {"id": "x", "promt": "typo"}])
    with pytest.raises(TaskFormatError, match=r"bad\.jsonl:2: field 'prompt': missing") as caught:
        load_jsonl(path)
    assert caught.value.line == 2 and caught.value.field_name == "prompt"


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"id": "x", "prompt": ["not", "text"]}])
    with pytest.raises(TaskFormatError, match=r"bad\.jsonl:1: field 'prompt': expected str, got list"):
        load_jsonl(path)


def test_invalid_json_and_non_objects_are_located(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], "", '{"id": 1, "prompt": ', "[1, 2]"])
    with pytest.raises(TaskFormatError, match=r"bad\.jsonl:3: not valid JSON"):
        load_jsonl(path)


def test_skip_mode_keeps_good_rows_and_reports_the_rest(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "mixed.jsonl", [ROWS[0], "[1, 2]", {"id": "b"}, ROWS[1]])
    with pytest.warns(UserWarning, match="skipped 2 bad row"):
        tasks = load_jsonl(path, on_error="skip")
    assert tasks.ids() == ["a", "7"]
    assert len(tasks.skipped) == 2 and "mixed.jsonl:2" in tasks.skipped[0] and "mixed.jsonl:3" in tasks.skipped[1]


def test_gzip_files_load(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(json.dumps(ROWS[0]) + "\n")
    assert load_jsonl(path).ids() == ["a"]


def test_custom_row_parser_errors_are_located(tmp_path: Path) -> None:
    def parse(row: dict) -> Task:
        tests = require(row, "tests", list)
        if not tests:
            raise RowError("tests", "needs at least one test")
        return Task(id=require(row, "name", str), prompt="p", data={"tests": tests})

    path = write_jsonl(tmp_path / "c.jsonl", [{"name": "ok", "tests": [1]}, {"name": "empty", "tests": []}])
    with pytest.raises(TaskFormatError, match=r"c\.jsonl:2: field 'tests': needs at least one test"):
        load_jsonl(path, parse)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="task file not found"):
        load_jsonl(tmp_path / "nope.jsonl")


def test_task_list_sampling_and_lookup() -> None:
    tasks = TaskList([generic_row(row) for row in ROWS])
    rng = np.random.default_rng(0)
    assert {tasks.sample(rng).id for _ in range(60)} == {"a", "7", "2"}
    with pytest.raises(KeyError, match="no task with id 'zz'"):
        tasks.get("zz")
    with pytest.raises(ValueError, match="duplicate task id 'a': tasks 0 and 2"):
        TaskList([Task(id="a", prompt="x"), Task(id="b", prompt="y"), Task(id="a", prompt="z")])


@pytest.mark.skipif(importlib.util.find_spec("datasets") is None, reason="Hugging Face datasets is not installed")
def test_hf_datasets_loader_reads_local_files(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "hf.jsonl", [ROWS[0], {"id": "b", "prompt": "x", "answer": "y", "level": 2}])
    tasks = load_hf_dataset("json", data_files=str(path), split="train")
    assert tasks.ids() == ["a", "b"] and tasks.get("b").reference == "y"


GOOD = '{"id": "t1", "prompt": "2+2?", "answer": "4"}'
HOSTILE_LINES = {
    "non_utf8": (b'{"id": "t2", "prompt": "caf\xe9", "answer": "4"}', None, "not UTF-8"),
    "huge_int": (b'{"id": "t2", "prompt": "x", "answer": ' + b"9" * 5000 + b"}", None, "4300 digits"),
    "deep": (b'{"id": "t2", "prompt": "x", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None, "nested"),
    "duplicate_id": (GOOD.encode(), "id", "duplicate task id 't1'.*:1"),
    "surrogate": (b'{"id": "t2", "prompt": "x\\ud800", "answer": "4"}', "prompt", "surrogate"),
}


@pytest.mark.parametrize("case", list(HOSTILE_LINES))
def test_hostile_lines_are_located_and_skippable(tmp_path: Path, case: str) -> None:
    bad, field, message = HOSTILE_LINES[case]
    path = tmp_path / "t.jsonl"
    path.write_bytes(GOOD.encode() + b"\n" + bad + b"\n")
    with pytest.raises(TaskFormatError, match=message) as caught:
        load_jsonl(path)
    assert caught.value.line == 2 and caught.value.field_name == field and str(path) in str(caught.value)
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        tasks = load_jsonl(path, on_error="skip")
    assert tasks.ids() == ["t1"] and "t.jsonl:2" in tasks.skipped[0]


def test_a_surrogate_deep_in_a_row_names_its_path() -> None:
    rows = [{"id": "a", "prompt": "p", "tests": [{"input": "ok"}, {"input": "x\ud800"}]}]
    with pytest.raises(TaskFormatError, match=r"tests\[1\]\.input"):
        tasks_from_rows(rows)
    with pytest.raises(TaskFormatError, match=r"prompt"):
        as_task_source([Task(id="a", prompt="x\udc80")])


def test_a_parser_crash_is_a_located_row_error() -> None:
    def parser(row: Mapping[str, object]) -> Task:
        return Task(id="a", prompt=str(int(str(row["n"]))))

    with pytest.raises(TaskFormatError, match=r"tasks:0: the row parser failed: ValueError"):
        tasks_from_rows([{"n": "x"}], parser)
