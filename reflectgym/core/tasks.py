"""Tasks and where they come from: the `TaskSource` protocol, `TaskList`, and loaders for JSONL and HF datasets.

A bad row is never silently dropped: by default it raises `TaskFormatError` naming the file, line and field;
with `on_error="skip"` it is skipped and reported through `TaskList.skipped` and a warning, so nothing is lost
without a word.
"""

from __future__ import annotations

import gzip
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, overload, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Task:
    """One task instance.

    Attributes:
        id: Stable identifier, unique within its source (`reset(options={"task_id": id})` picks it).
        prompt: What the student is asked.
        reference: Teacher-only reference (answer or solution); it goes to `info["privileged"]`, never to prompts.
        data: Everything else the verifier needs (tests, gold answer, metadata), JSON-like.
    """

    id: str
    prompt: str
    reference: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class TaskSource(Protocol):
    """Where an env gets tasks: finite lists and procedural generators alike."""

    def sample(self, rng: np.random.Generator) -> Task:
        """Draws a task using `rng` (the env's seeded generator)."""
        ...

    def get(self, task_id: str) -> Task:
        """Returns the task with this id; raises `KeyError` with a readable message if there is none."""
        ...


@runtime_checkable
class ListedTaskSource(TaskSource, Protocol):
    """A finite task source that can name every task it holds (what an evaluation walks through)."""

    def ids(self) -> list[str]:
        """Every task id, in order."""
        ...


class RowError(ValueError):
    """A row parser's complaint about one field of one row; loaders add the file and line."""

    def __init__(self, field_name: str | None, message: str) -> None:
        super().__init__(message)
        self.field_name = field_name
        self.message = message


class TaskFormatError(ValueError):
    """A dataset row that cannot become a task, located by source, line (or index) and field."""

    def __init__(self, source: str, line: int, field_name: str | None, message: str) -> None:
        where = f"{source}:{line}" + (f": field {field_name!r}" if field_name else "")
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
        self.field_name = field_name


RowParser = Callable[[Mapping[str, Any]], Task]
"""Turns one raw row into a `Task`, raising `RowError` for a bad field."""

T = TypeVar("T")


@overload
def require(row: Mapping[str, Any], name: str, kind: type[T]) -> T: ...
@overload
def require(row: Mapping[str, Any], name: str, kind: tuple[type, ...]) -> Any: ...
def require(row: Mapping[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    """Returns `row[name]`, raising `RowError` if it is missing or not of `kind`."""
    if name not in row:
        raise RowError(name, f"missing (the row has: {', '.join(sorted(map(str, row))) or 'no fields'})")
    value = row[name]
    if not isinstance(value, kind):
        expected = " or ".join(k.__name__ for k in kind) if isinstance(kind, tuple) else kind.__name__
        raise RowError(name, f"expected {expected}, got {type(value).__name__}")
    return value


def first_present(row: Mapping[str, Any], names: Sequence[str]) -> str | None:
    """The first of `names` present in `row` (formats name the same thing differently)."""
    return next((name for name in names if name in row), None)


def generic_row(row: Mapping[str, Any]) -> Task:
    """The plain task format: `prompt` (or `question`), optional `id`/`task_id`, optional `answer`/`reference`.

    Every other field is kept in `Task.data` for the verifier.
    """
    prompt_key = first_present(row, ("prompt", "question"))
    if prompt_key is None:
        raise RowError("prompt", "missing (a task needs 'prompt' or 'question')")
    prompt = require(row, prompt_key, str)
    id_key = first_present(row, ("id", "task_id"))
    task_id = str(require(row, id_key, (str, int))) if id_key else ""
    if id_key and isinstance(row[id_key], bool):  # (JSON true: a bool is an int to `isinstance`, and reads "True")
        raise RowError(id_key, f"expected text or a whole number, got bool ({str(row[id_key]).lower()})")
    reference_key = first_present(row, ("reference", "answer", "solution"))
    reference = row[reference_key] if reference_key else None
    if reference is not None and not isinstance(reference, (str, int, float)):
        raise RowError(reference_key, f"expected text or a number, got {type(reference).__name__}")
    data = {key: value for key, value in row.items() if key not in (prompt_key, id_key)}
    return Task(
        id=task_id,
        prompt=prompt,
        reference=None if reference is None else str(reference),
        data=data,
    )


class TaskList(Sequence[Task]):
    """A finite, indexable task source with unique ids.

    Args:
        tasks: The tasks; a task with an empty id gets its position as id.
        skipped: Human-readable notes about rows a loader skipped (kept so nothing vanishes silently).
    """

    def __init__(self, tasks: Sequence[Task], skipped: Sequence[str] = ()) -> None:
        if not tasks:
            raise ValueError("a task list needs at least one task")
        named = [task if task.id else _with_id(task, str(index)) for index, task in enumerate(tasks)]
        self._by_id: dict[str, Task] = {}
        first_position: dict[str, int] = {}
        for position, task in enumerate(named):
            if task.id in self._by_id:
                raise ValueError(
                    f"duplicate task id {task.id!r}: tasks {first_position[task.id]} and {position} (0-based) share it"
                )
            self._by_id[task.id] = task
            first_position[task.id] = position
        self._tasks = named
        self.skipped: tuple[str, ...] = tuple(skipped)

    def __len__(self) -> int:
        return len(self._tasks)

    @overload
    def __getitem__(self, index: int) -> Task: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Task]: ...
    def __getitem__(self, index: int | slice) -> Task | Sequence[Task]:
        return self._tasks[index]

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks)

    def sample(self, rng: np.random.Generator) -> Task:
        """Uniform draw."""
        return self._tasks[int(rng.integers(len(self._tasks)))]

    def get(self, task_id: str) -> Task:
        """Lookup by id."""
        try:
            return self._by_id[str(task_id)]
        except KeyError:
            known = ", ".join(list(self._by_id)[:5])
            raise KeyError(f"no task with id {task_id!r} (ids look like: {known}, ...)") from None

    def ids(self) -> list[str]:
        """All task ids in order."""
        return [task.id for task in self._tasks]


def _with_id(task: Task, task_id: str) -> Task:
    return Task(id=task_id, prompt=task.prompt, reference=task.reference, data=task.data)


OnError = Literal["raise", "skip"]


@dataclass(frozen=True)
class _InvalidJSON:
    """A line that is not JSON, carried to the row loop so it is reported like any other bad row."""

    message: str


def tasks_from_rows(
    rows: Iterable[Any] | Iterable[tuple[int, Any]],
    parse_row: RowParser = generic_row,
    *,
    source: str = "tasks",
    numbered: bool = False,
    on_error: OnError = "raise",
) -> TaskList:
    """Parses rows into a `TaskList`, locating every bad row by `source`, line (or index) and field.

    A row is bad when it is not JSON or not an object, when `parse_row` rejects it (a `RowError`, or a
    `ValueError`, `TypeError`, `KeyError` or `RecursionError` it lets escape), when a string in it cannot be
    encoded as UTF-8 (a lone surrogate such as a JSON "\\ud800" escape, which no sandbox or tokenizer takes),
    or when its task id repeats an earlier row's.

    Args:
        rows: Dict rows, or `(line, row)` pairs when `numbered`.
        parse_row: Turns a row into a task; raises `RowError` for a bad field.
        source: What to call the rows in errors (a file path, a dataset name).
        numbered: Whether `rows` are `(line, row)` pairs.
        on_error: `"raise"` at the first bad row, or `"skip"` it (listed in `TaskList.skipped` and warned).
    """
    pairs: Iterable[tuple[int, Any]] = rows if numbered else enumerate(rows)  # type: ignore[assignment]
    tasks: list[Task] = []
    skipped: list[str] = []
    first_line: dict[str, int] = {}
    for line, row in pairs:
        try:
            task = _named(_parse_one(row, parse_row), len(tasks))
            if task.id in first_line:
                raise RowError("id", f"duplicate task id {task.id!r} (first used at {source}:{first_line[task.id]})")
        except RowError as error:
            problem = TaskFormatError(source, line, error.field_name, error.message)
            if on_error == "raise":
                raise problem from error.__cause__
            skipped.append(str(problem))
            continue
        first_line[task.id] = line
        tasks.append(task)
    if skipped:
        warnings.warn(f"skipped {len(skipped)} bad row(s) of {source}; first: {skipped[0]}", stacklevel=2)
    if not tasks:
        raise TaskFormatError(source, 0, None, "no usable tasks")
    return TaskList(tasks, skipped=skipped)


def _parse_one(row: Any, parse_row: RowParser) -> Task:
    """One row as a task; every way a row can be bad comes out as a `RowError`."""
    if isinstance(row, _InvalidJSON):
        raise RowError(None, row.message)
    if not isinstance(row, Mapping):
        raise RowError(None, f"expected an object (a dict), got {type(row).__name__}")
    check_encodable(row)
    try:
        return parse_row(row)
    except RowError:
        raise
    except (ValueError, TypeError, KeyError, RecursionError) as error:
        raise RowError(None, f"the row parser failed: {type(error).__name__}: {error}") from error


def _named(task: Task, position: int) -> Task:
    """The task, with its position as id when it has none (as `TaskList` would name it)."""
    return task if task.id else _with_id(task, str(position))


def check_encodable(row: Mapping[str, Any]) -> None:
    """Raises `RowError` naming the field of the first string in `row` that cannot be encoded as UTF-8.

    Such a string (a lone surrogate, from a JSON "\\ud800" escape) loads fine but breaks every later step that
    sends it to a sandbox, a tokenizer or a UTF-8 file, so it is refused at load time. Keys and `Task` values are
    looked into too; the walk is iterative, so a deeply nested row cannot overflow the stack.
    """
    stack: list[tuple[str, Any]] = [("", row)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            _check_text(path, value)
        elif isinstance(value, Task):
            stack.extend(_children(path, {"id": value.id, "prompt": value.prompt, "data": value.data}))
            stack.append((_join(path, "reference"), value.reference))
        elif isinstance(value, Mapping):
            for key in value:
                _check_text(path or "(keys)", str(key))
            stack.extend(_children(path, value))
        elif isinstance(value, (list, tuple)):
            stack.extend((f"{path}[{index}]", item) for index, item in enumerate(value))


def _children(path: str, mapping: Mapping[Any, Any]) -> list[tuple[str, Any]]:
    return [(_join(path, str(key)), item) for key, item in mapping.items()]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_text(path: str, text: str) -> None:
    position = _first_unencodable(text)
    if position is not None:
        code = f"\\u{ord(text[position]):04x}"
        raise RowError(path, f"holds {code} at character {position}, a lone surrogate that UTF-8 cannot encode")


def _first_unencodable(text: str) -> int | None:
    """Where the first lone surrogate of `text` is, or `None` when it all encodes as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return error.start
    return None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """`(line, row)` pairs; a line that is not UTF-8 or not JSON becomes an `_InvalidJSON` at its line.

    Undecodable bytes are read as surrogate escapes, so one bad line cannot stop the others from loading.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8-sig", errors="surrogateescape") as handle:  # (a BOM is skipped)
        for line, text in enumerate(handle, start=1):
            if text.strip():
                yield line, _json_row(text)


def _json_row(text: str) -> Any:
    """One JSONL line as a value, or an `_InvalidJSON` saying why it is none."""
    bad_byte = _first_unencodable(text)
    if bad_byte is not None:
        byte = ord(text[bad_byte]) - 0xDC00
        return _InvalidJSON(f"not UTF-8 text (byte 0x{byte:02x} at column {bad_byte + 1})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        return _InvalidJSON(f"not valid JSON ({error.msg} at column {error.colno})")
    except ValueError as error:  # an integer too long to convert
        return _InvalidJSON(f"not loadable JSON ({error})")
    except RecursionError:
        return _InvalidJSON("not loadable JSON (nested too deeply)")


def load_jsonl(
    path: str | os.PathLike[str],
    parse_row: RowParser = generic_row,
    *,
    on_error: OnError = "raise",
) -> TaskList:
    """Loads a JSONL (or `.jsonl.gz`) file of tasks; errors name the file, the line and the field."""
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"task file not found: {file}")
    return tasks_from_rows(_jsonl_rows(file), parse_row, source=str(file), numbered=True, on_error=on_error)


def load_hf_dataset(
    path: str,
    parse_row: RowParser = generic_row,
    *,
    split: str = "train",
    on_error: OnError = "raise",
    **load_dataset_kwargs: Any,
) -> TaskList:
    """Loads tasks with Hugging Face `datasets.load_dataset(path, split=..., **kwargs)`.

    Works for hub names (on a machine that can reach the hub) and for local files
    (`load_hf_dataset("json", data_files="tasks.jsonl")`). Row numbers in errors are 0-based indices.
    """
    try:
        import datasets
    except ImportError as error:
        raise ImportError("load_hf_dataset needs Hugging Face datasets: pip install 'reflectgym[datasets]'") from error
    dataset = datasets.load_dataset(path, split=split, **load_dataset_kwargs)
    return tasks_from_rows(iter(dataset), parse_row, source=f"{path}[{split}]", on_error=on_error)  # type: ignore[arg-type]


def listed(tasks: object) -> list[Any] | None:
    """The items of `tasks` when it is a list of rows or `Task`s: any sequence, or any other iterable of rows
    (a Hugging Face `datasets.Dataset`, a generator); None for text, bytes, a single row or anything else."""
    if isinstance(tasks, (str, bytes, Mapping)) or not isinstance(tasks, Iterable):
        return None
    return list(tasks)


def as_task_source(
    tasks: str | os.PathLike[str] | Sequence[Mapping[str, Any] | Task] | TaskSource,
    parse_row: RowParser = generic_row,
) -> TaskSource:
    """Accepts what users pass as `tasks=`: a JSONL path, a list of dicts or `Task`s, or a ready `TaskSource`."""
    if isinstance(tasks, (str, os.PathLike)):
        return load_jsonl(tasks, parse_row)
    if isinstance(tasks, TaskSource):
        return tasks
    if (items := listed(tasks)) is not None:
        if all(isinstance(task, Task) for task in items):
            return tasks_from_rows([{"__task__": task} for task in items], lambda row: row["__task__"])
        return tasks_from_rows(
            [task if not isinstance(task, Task) else _task_as_row(task) for task in items], parse_row
        )
    raise TypeError(
        f"tasks must be a JSONL path, a list of dicts or Tasks, or a TaskSource; got {type(tasks).__name__}"
    )


def _task_as_row(task: Task) -> dict[str, Any]:
    return {"id": task.id, "prompt": task.prompt, "reference": task.reference, **task.data}
