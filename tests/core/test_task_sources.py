"""Task loading: good rows load, bad rows are located by file, line and field."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from reflectgym.core import RowError, Task, TaskFormatError, TaskList, generic_row, load_hf_dataset, load_jsonl, require

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
    with pytest.raises(ValueError, match="duplicate task id"):
        TaskList([Task(id="a", prompt="x"), Task(id="a", prompt="y")])


@pytest.mark.skipif(importlib.util.find_spec("datasets") is None, reason="Hugging Face datasets is not installed")
def test_hf_datasets_loader_reads_local_files(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "hf.jsonl", [ROWS[0], {"id": "b", "prompt": "x", "answer": "y", "level": 2}])
    tasks = load_hf_dataset("json", data_files=str(path), split="train")
    assert tasks.ids() == ["a", "b"] and tasks.get("b").reference == "y"
