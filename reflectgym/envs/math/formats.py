"""Row parsers for public math dataset formats, for `reflectgym.core.tasks` loaders.

* GSM8K: `question`, `answer` (a worked solution ending in `#### 72`).
* MATH (Hendrycks): `problem`, `solution` (with a `\\boxed{}` answer), optional `answer`, `level`, `subject`
  (or `type`).
* plain: `question` or `prompt`, and `answer` (just the answer).

Field names are matched case-insensitively (AIME_2024's `Problem`, `Answer`). A numeric answer field becomes text
without an exponent (`0.00001`, not `1e-05`). Rows whose answer is NuminaMath's `proof` or `notfound` are refused:
there is nothing to check a reply against.

Every task gets its gold answer in `Task.data["gold"]`; the worked solution, where there is one, is the
teacher-only `Task.reference`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from reflectgym.core.tasks import (
    OnError,
    RowError,
    RowParser,
    Task,
    TaskSource,
    first_present,
    listed,
    load_jsonl,
    require,
    tasks_from_rows,
)
from reflectgym.envs.math.extract import boxed_contents

TaskFormat = Literal["gsm8k", "math", "plain"]
_CALCULATOR = re.compile(r"<<[^>]*>>")
UNANSWERABLE = frozenset({"proof", "notfound"})
"""Answers NuminaMath gives problems without a final answer to check."""


def answer_text(value: str | int | float) -> str:
    """An answer field as text: floats without an exponent (`str(0.00001)` is `1e-05`, which no reply matches)."""
    if isinstance(value, float) and math.isfinite(value):
        return format(Decimal(repr(value)), "f")
    return str(value).strip()


def _gold(row: Mapping[str, Any], name: str) -> str:
    """The gold answer in field `name` as text, refused when empty or unanswerable."""
    value = require(row, name, (str, int, float))
    if isinstance(value, bool):  # (JSON true/false: a bool is an int to `isinstance`, and would load as 'True')
        raise RowError(name, f"expected str, int or float, got bool ({str(value).lower()})")
    if isinstance(value, float) and not math.isfinite(value):  # (JSON NaN/Infinity, which json.loads accepts)
        raise RowError(name, f"is {value}: not a finite number, so no reply could match it")
    return _checked_gold(answer_text(value), name)


def _checked_gold(gold: str, name: str) -> str:
    if not gold:
        raise RowError(name, "is empty")
    if gold.lower() in UNANSWERABLE:
        raise RowError(name, f"is {gold!r}: the problem has no final answer to check a reply against")
    return gold


def _row_id(row: Mapping[str, Any]) -> str:
    key = first_present(row, ("id", "task_id", "unique_id"))
    return str(require(row, key, (str, int))) if key else ""


def gsm8k_row(row: Mapping[str, Any]) -> Task:
    """A GSM8K row: the gold answer is what follows the last `####` of `answer`."""
    question = require(row, "question", str)
    solution = require(row, "answer", str)
    if "####" not in solution:
        raise RowError("answer", "has no '#### <answer>' line (GSM8K format)")
    gold = solution.rsplit("####", 1)[1].strip().replace(",", "")
    if not gold:
        raise RowError("answer", "the '####' line is empty")
    worked = _CALCULATOR.sub("", solution).strip()
    return Task(id=_row_id(row), prompt=question, reference=worked, data={"gold": gold, "format": "gsm8k"})


def math_row(row: Mapping[str, Any]) -> Task:
    """A MATH row: the gold answer is `answer`, or else the last `\\boxed{}` of `solution`."""
    problem = require(row, "problem", str)
    solution = require(row, "solution", str) if row.get("solution") is not None else None
    if str(row.get("answer") or "").strip() or solution is None:  # an empty answer falls back to the solution's box
        if "answer" not in row:
            raise RowError("answer", "missing (a MATH row needs 'answer' or a 'solution' with \\boxed{...})")
        gold = _gold(row, "answer")
    else:
        boxed = boxed_contents(solution)
        if not boxed:
            raise RowError("solution", "has no \\boxed{...} answer and the row's 'answer' is missing or empty")
        gold = _checked_gold(boxed[-1], "solution")
    data: dict[str, Any] = {"gold": gold, "format": "math"}
    for key in ("level", "subject", "type"):
        if key in row:
            data[key] = row[key]
    return Task(id=_row_id(row), prompt=problem, reference=solution or gold, data=data)


def plain_row(row: Mapping[str, Any]) -> Task:
    """A plain row: `question`/`prompt` and `answer`."""
    prompt_key = first_present(row, ("question", "prompt"))
    if prompt_key is None:
        fields = ", ".join(sorted(map(str, row))) or "no fields"
        raise RowError("question", f"missing (a math task needs 'question' or 'prompt'; the row has: {fields})")
    prompt = require(row, prompt_key, str)
    gold = _gold(row, "answer")
    extra = {key: value for key, value in row.items() if key not in (prompt_key, "answer", "id", "task_id")}
    return Task(id=_row_id(row), prompt=prompt, reference=gold, data={**extra, "gold": gold, "format": "plain"})


ROW_PARSERS: dict[str, RowParser] = {"gsm8k": gsm8k_row, "math": math_row, "plain": plain_row}


def detect_format(row: Mapping[str, Any]) -> TaskFormat:
    """Recognises a row's format by its fields."""
    if "problem" in row:
        return "math"
    if "question" in row and "####" in str(row.get("answer", "")):
        return "gsm8k"
    return "plain"


def any_math_row(row: Mapping[str, Any]) -> Task:
    """Parses a row of any known format, recognised by its fields."""
    return ROW_PARSERS[detect_format(row)](row)


def row_parser(task_format: str | None) -> RowParser:
    """The parser for `task_format` (`None` or `"auto"`: recognise each row by its fields)."""
    if task_format in (None, "auto"):
        parser = any_math_row
    elif task_format in ROW_PARSERS:
        parser = ROW_PARSERS[task_format]
    else:
        raise ValueError(f"task_format must be one of 'auto', {', '.join(map(repr, ROW_PARSERS))}; got {task_format!r}")
    return lambda row: parser(lowercase_fields(row))


def lowercase_fields(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """`row` with its field names in lower case too (AIME_2024's `Problem`, `Answer`), where that names no other."""
    if all(not isinstance(key, str) or key == key.lower() for key in row):
        return row
    lowered = dict(row)
    for key, value in row.items():
        if isinstance(key, str) and key.lower() not in lowered:
            lowered[key.lower()] = value
    return lowered


def load_math_tasks(
    tasks: str | os.PathLike[str] | Sequence[Mapping[str, Any] | Task] | TaskSource,
    task_format: str | None = None,
    on_error: OnError = "raise",
) -> TaskSource:
    """What `MathEnv(tasks=...)` accepts: a JSONL path, a list of rows or `Task`s, or a `TaskSource`. A bad row
    stops the load (`on_error="raise"`) or is skipped, warned about and listed in `TaskList.skipped`."""
    parser = row_parser(task_format)
    if isinstance(tasks, (str, os.PathLike)):
        return load_jsonl(tasks, parser, on_error=on_error)
    if isinstance(tasks, TaskSource):
        return tasks
    if (items := listed(tasks)) is not None:  # (a list, a Hugging Face Dataset, any iterable of rows)
        rows = [_task_row(task) if isinstance(task, Task) else task for task in items]
        return tasks_from_rows(rows, lambda row: _keep_task(row, parser), on_error=on_error)
    raise TypeError(f"tasks must be a JSONL path, a list of rows or Tasks, or a TaskSource; got {type(tasks).__name__}")


def _task_row(task: Task) -> dict[str, Any]:
    return {"__task__": task}


def _keep_task(row: Mapping[str, Any], parser: RowParser) -> Task:
    task = row.get("__task__")
    if isinstance(task, Task):
        if gold_of(task) is None:
            raise RowError("gold", f"task {task.id!r} has neither data['gold'] nor a reference answer")
        return task
    return parser(row)


def gold_of(task: Task) -> str | None:
    """A task's gold answer: `data["gold"]`, else its reference."""
    gold = task.data.get("gold", task.reference)
    return None if gold is None else str(gold)
