"""Dataclass configs from YAML with command-line overrides: `reflectgym train config.yaml --lr 1e-5`.

Each config is a dataclass whose fields carry a docstring on the line below them (as in CleanRL and TRL);
those docstrings become `--help`. Unknown keys and bad values are errors that say what to change.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import inspect
import itertools
import numbers
import os
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

ConfigT = TypeVar("ConfigT")


class ConfigError(ValueError):
    """A config value or key that cannot be used, with what to change."""


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (first line), read from its source."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0]
        if not isinstance(body, ast.ClassDef):
            continue
        statements = body.body
        for current, following in itertools.pairwise(statements):
            if (
                isinstance(current, ast.AnnAssign)
                and isinstance(current.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[current.target.id] = " ".join(following.value.value.split())
    return docs


def _resolved_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(value: Any, annotation: Any, name: str) -> Any:
    """Converts a YAML or command-line value to the field's type, or raises `ConfigError` naming the field."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in {"none", "null"})
        if is_none and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(value, option, name)
            except ConfigError:
                continue
        raise ConfigError(f"{name}: {value!r} fits none of {annotation}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(map(repr, args))}")
    if origin is dict or annotation is dict:
        mapping = value
        if isinstance(value, str):  # from the command line: --env-kwargs '{"max_steps": 30}' (YAML or JSON)
            import yaml

            mapping = yaml.safe_load(value)
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{name}: expected a mapping like '{{\"key\": value}}', got {value!r}")
        return dict(mapping)
    if origin in (tuple, list):
        items = value
        if isinstance(value, str):
            items = [part.strip() for part in value.strip("()[]").split(",") if part.strip()]
        if not isinstance(items, Sequence):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        item_type = args[0] if args else Any
        converted = [coerce(item, item_type, name) if item_type is not Any else item for item in items]
        return tuple(converted) if origin is tuple else converted
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "on"}:
            return True
        if isinstance(value, str) and value.lower() in {"false", "0", "no", "off"}:
            return False
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if annotation is str:
        return str(value)
    if annotation in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected {annotation.__name__}, got {value!r}") from None
        if annotation is int:
            if not number.is_integer():
                raise ConfigError(f"{name}: expected an integer, got {value!r}")
            return int(number)
        return number
    if annotation is Path:
        return Path(value)
    return value


def _fits(value: Any, annotation: Any) -> bool:
    """Whether `value` can stand for a plain `annotation` (int, float, bool, str); True for other annotations."""
    if annotation is bool:
        return isinstance(value, (bool, np.bool_))
    if isinstance(value, bool):
        return False
    if annotation is int:
        return isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and float(value).is_integer())
    if annotation is float:
        return isinstance(value, numbers.Real)  # (an int, or a NumPy number, is fine where a float is asked for)
    if annotation is str:
        return isinstance(value, (str, os.PathLike))  # (a `Path` where a path is asked for)
    return True


def check_field_types(config: Any) -> None:
    """Raises `ConfigError` for a field whose value is not of its plain type (int, float, bool, str, or one of them
    or None): a config built in Python is not converted the way YAML and command-line values are. Annotations
    that do not resolve at run time (a name imported only for type checking) are not checked."""
    try:
        hints = _resolved_types(type(config))
    except NameError:
        return
    for field in dataclasses.fields(config):
        annotation, value = hints[field.name], getattr(config, field.name)
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 2 and type(None) in args:
            if value is None:
                continue
            annotation = next(arg for arg in args if arg is not type(None))
        if typing.get_origin(annotation) is typing.Literal:
            coerce(value, annotation, field.name)  # (raises, naming the values allowed)
        elif not _fits(value, annotation):
            raise ConfigError(
                f"{field.name}: expected {annotation.__name__}, got {type(value).__name__} {value!r} (YAML and "
                "command-line values are converted; values given in Python are not)"
            )


def from_dict(cls: type[ConfigT], values: Mapping[str, Any]) -> ConfigT:
    """Builds `cls` from a mapping, rejecting unknown keys with a did-you-mean and coercing types."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = [key for key in values if key not in names]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, names, n=1)
            hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ConfigError(f"unknown {cls.__name__} option(s): {', '.join(hints)}")
    hints_by_name = _resolved_types(cls)
    kwargs = {key: coerce(value, hints_by_name[key], key) for key, value in values.items()}
    return cls(**kwargs)  # __post_init__ validates combinations


def load_config(cls: type[ConfigT], path: str | Path | None = None, overrides: Sequence[str] = ()) -> ConfigT:
    """Loads `cls` from a YAML file (optional) and `--name value` / `--name=value` overrides (later wins)."""
    return from_dict(cls, load_values(path, overrides))


def load_values(path: str | Path | None = None, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The raw option values of a YAML file (optional) with `--name value` overrides applied (later wins)."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = read_yaml(path) or {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{path}: expected a mapping of option: value at the top level")
        values.update(loaded)
    values.update(parse_overrides(overrides))
    return values


def read_yaml(path: str | Path) -> Any:
    """The YAML document in `path`; invalid YAML is a `ConfigError` saying "FILE: line N: what is wrong"."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context, opened = getattr(error, "context", None), getattr(error, "context_mark", None)
        if context and opened is not None:
            problem += f" ({context} started on line {opened.line + 1})"
        raise ConfigError(f"{path}: {where}invalid YAML: {problem}") from None


def parse_overrides(overrides: Sequence[str]) -> dict[str, str]:
    """`["--lr", "1e-5", "--group-size=4"]` → `{"lr": "1e-5", "group_size": "4"}`; a bare flag means true."""
    values: dict[str, str] = {}
    index = 0
    while index < len(overrides):
        token = overrides[index]
        if not token.startswith("--"):
            raise ConfigError(f"expected --option value, got {token!r}")
        key, sep, value = token[2:].partition("=")
        if not sep:
            following = overrides[index + 1] if index + 1 < len(overrides) else None
            if following is None or following.startswith("--"):
                value = "true"
            else:
                value = following
                index += 1
        values[key.replace("-", "_")] = value
        index += 1
    return values


def field_default(field: dataclasses.Field[Any]) -> Any:
    """A field's default value (built by its factory when it has one), or `dataclasses.MISSING`."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def value_metavar(annotation: Any) -> str:
    """The placeholder of an option's value in help: N, X, BOOL, TEXT, {a,b}, MAPPING, LIST."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [value_metavar(arg) for arg in args if arg is not type(None)]
        return options[0] if len(options) == 1 else "|".join(options)
    if origin is typing.Literal:
        return "{" + ",".join(map(str, args)) + "}"
    if origin is dict or annotation is dict:
        return "MAPPING"
    if origin in (tuple, list):
        return "LIST"
    names = {int: "N", float: "X", bool: "BOOL", str: "TEXT", Path: "PATH"}
    return names.get(annotation, "VALUE")


def add_config_help(parser: argparse.ArgumentParser, cls: type, values: Mapping[str, Any] | None = None) -> None:
    """Lists every option of `cls` with its default and docstring in `parser`'s help; `values` (a config
    file's) are shown as the defaults they replace."""
    docs = field_docs(cls)
    hints = _resolved_types(cls)
    given = dict(values or {})
    group = parser.add_argument_group(f"{cls.__name__} options (--name value, or in the YAML file)")
    for field in dataclasses.fields(cls):
        if field.name in given:
            shown = f"{given[field.name]}, from the config file"
        else:
            default = field_default(field)
            shown = "required" if default is dataclasses.MISSING else default
        group.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=f"_doc_{field.name}",
            default=argparse.SUPPRESS,
            metavar=value_metavar(hints.get(field.name, Any)),
            help=f"{docs.get(field.name, '')} (default: {shown})",
        )


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON/YAML-ready dict of a config (paths and tuples as plain values)."""
    result: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        result[field.name] = (
            str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        )
    return result
