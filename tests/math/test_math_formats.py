"""GSM8K / MATH / plain row parsers and loading through the core loaders."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflectgym.core.tasks import Task, TaskFormatError, load_jsonl
from reflectgym.envs.math.formats import detect_format, gsm8k_row, load_math_tasks, math_row

DATA = Path(__file__).parent / "data"


def test_gsm8k_gold_is_after_the_hashes_without_separators() -> None:
    tasks = load_jsonl(DATA / "gsm8k_sample.jsonl", gsm8k_row)
    assert [task.data["gold"] for task in tasks] == ["38", "1050", "4"]
    assert "<<" not in (tasks[0].reference or "")


def test_math_gold_from_answer_or_last_box() -> None:
    tasks = load_jsonl(DATA / "math_sample.jsonl", math_row)
    assert [task.data["gold"] for task in tasks] == ["\\frac{11}{12}", "(2,3)", "5\\sqrt{2}"]
    assert tasks[1].id == "algebra/1.json" and tasks[1].data["subject"] == "Algebra"
    assert tasks[0].data["type"] == "Prealgebra"


def test_bad_row_is_located_by_file_line_and_field() -> None:
    with pytest.raises(TaskFormatError, match=r"math_bad_row.jsonl:2: field 'solution'"):
        load_jsonl(DATA / "math_bad_row.jsonl", math_row)


@pytest.mark.parametrize(
    ("answer", "message"),
    [("true", "got bool"), ("false", "got bool"), ("NaN", "not a finite number"), ("Infinity", "not a finite number")],
)
def test_a_boolean_or_non_finite_json_answer_is_a_located_row_error(tmp_path: Path, answer: str, message: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(f'{{"question": "q", "answer": "1"}}\n{{"question": "q?", "answer": {answer}}}\n')
    with pytest.raises(TaskFormatError, match=rf"rows\.jsonl:2: field 'answer'.*{message}"):
        load_math_tasks(str(path))


def test_formats_are_recognised_by_fields() -> None:
    assert detect_format({"problem": "p", "solution": "s"}) == "math"
    assert detect_format({"question": "q", "answer": "w\n#### 3"}) == "gsm8k"
    assert detect_format({"question": "q", "answer": "3"}) == "plain"
    mixed = load_math_tasks([{"question": "1+1?", "answer": "2"}, {"problem": "2+2?", "answer": "4"}])
    assert [mixed.get(str(index)).data["gold"] for index in range(2)] == ["2", "4"]


def test_named_format_and_unknown_format() -> None:
    source = load_math_tasks(DATA / "gsm8k_sample.jsonl", task_format="gsm8k")
    assert source.get("0").data["gold"] == "38"
    with pytest.raises(ValueError, match="task_format"):
        load_math_tasks(DATA / "gsm8k_sample.jsonl", task_format="mmlu")
    with pytest.raises(TaskFormatError, match="'answer'"):
        load_math_tasks([{"question": "q", "answer": "no hashes"}], task_format="gsm8k")


def test_task_objects_need_a_gold() -> None:
    source = load_math_tasks([Task(id="a", prompt="1+1?", reference="2")])
    assert source.get("a").reference == "2"
    with pytest.raises(TaskFormatError, match="gold"):
        load_math_tasks([Task(id="b", prompt="?")])


def test_capitalised_fields_load_as_their_lower_case_names() -> None:
    tasks = load_math_tasks([{"ID": "2024-I-1", "Problem": "Find x.", "Solution": "...", "Answer": 204}])
    (task,) = list(tasks)
    assert (task.id, task.prompt, task.data["gold"], task.data["format"]) == ("2024-I-1", "Find x.", "204", "math")


def test_numeric_answers_become_text_a_reply_can_match() -> None:
    rows = [{"id": str(i), "question": "q", "answer": value} for i, value in enumerate([0.00001, 1e16, 2.5, 7])]
    assert [task.data["gold"] for task in load_math_tasks(rows)] == ["0.00001", "10000000000000000", "2.5", "7"]


def test_an_empty_math_answer_falls_back_to_the_solutions_box() -> None:
    for empty in ("", None):
        (task,) = list(load_math_tasks([{"problem": "p", "solution": "so \\boxed{7}", "answer": empty}]))
        assert task.data["gold"] == "7"


@pytest.mark.parametrize("answer", ["proof", "notfound"])
def test_rows_without_a_checkable_answer_are_refused(answer: str) -> None:
    with pytest.raises(TaskFormatError, match="no final answer to check"):
        load_math_tasks([{"problem": "Prove it.", "solution": "...", "answer": answer}])


def test_a_file_that_starts_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_text('{"question": "q", "answer": "3"}\n', encoding="utf-8-sig")
    assert [task.data["gold"] for task in load_math_tasks(path)] == ["3"]


def test_a_hugging_face_dataset_or_any_iterable_of_rows_loads() -> None:
    datasets = pytest.importorskip("datasets")
    rows = [{"id": "a", "question": "q", "answer": "3"}]
    assert [task.id for task in load_math_tasks(datasets.Dataset.from_list(rows))] == ["a"]
    assert [task.id for task in load_math_tasks(iter(rows))] == ["a"]
    with pytest.raises(TypeError, match="got dict"):  # (one row where a list of them belongs)
        load_math_tasks(rows[0])  # type: ignore[arg-type]


def test_an_env_can_skip_bad_rows_with_a_warning(tmp_path: Path) -> None:
    from reflectgym.envs.math.env import MathEnv

    path = tmp_path / "mixed.jsonl"
    path.write_text('{"id": "a", "question": "q", "answer": "3"}\n{"id": "b", "question": "q"}\n')
    with pytest.raises(TaskFormatError, match="answer"):
        MathEnv(tasks=path)
    with pytest.warns(UserWarning, match="skipped"):
        env = MathEnv(tasks=path, on_error="skip")
    assert env.task_ids() == ["a"]
