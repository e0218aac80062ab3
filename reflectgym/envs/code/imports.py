"""Third-party modules a task list's tests import that the sandbox's Python does not have.

HumanEval+ tests import numpy; the `bwrap`, `pool` and `local` sandboxes run the system Python, which may lack it,
and then every solution fails with ModuleNotFoundError, blamed on the model. `warn_missing_modules` says so once,
when the env is made (Docker's image is not looked into).
"""

from __future__ import annotations

import ast
import collections
import subprocess
import sys
import warnings
from collections.abc import Iterable

from reflectgym.core.tasks import Task
from reflectgym.sandboxes.environment import default_python
from reflectgym.sandboxes.types import Sandbox

FIND_MISSING = (
    "import importlib.util, sys\nprint(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))"
)
"""Run by the sandbox's Python: which of the module names in argv it cannot import."""
HOST_PYTHON_BACKENDS = frozenset({None, "auto", "bwrap", "pool", "local"})
"""Sandbox choices whose programs run the system Python (`default_python`)."""


def imported_modules(tasks: Iterable[Task]) -> collections.Counter[str]:
    """How many tasks import each module outside the standard library, in their preamble or tests."""
    counts: collections.Counter[str] = collections.Counter()
    for task in tasks:
        sources = [
            str(task.data.get("preamble") or ""),
            *map(str, task.data.get("tests", ())),
            *map(str, task.data.get("hidden_tests", ())),
        ]
        counts.update(_third_party(sources))
    return counts


def missing_modules(modules: Iterable[str], python: str | None = None) -> list[str]:
    """Those of `modules` that `python` (default: the sandboxes' interpreter) cannot import; [] if it cannot tell."""
    names = sorted(set(modules))
    if not names:
        return []
    try:
        found = subprocess.run(
            [python or default_python(), "-I", "-c", FIND_MISSING, *names],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return found.stdout.split()


def warn_missing_modules(tasks: Iterable[Task], sandbox: str | Sandbox | None) -> None:
    """Warn when tests import a module the sandbox's Python lacks (their tasks cannot pass there)."""
    if isinstance(sandbox, Sandbox) or sandbox not in HOST_PYTHON_BACKENDS:
        return
    counts = imported_modules(tasks)
    missing = missing_modules(counts)
    if missing:
        listed = ", ".join(f"{name} ({counts[name]} tasks)" for name in missing)
        warnings.warn(
            f"the tests import {listed}, which the sandbox's Python ({default_python()}) cannot import: those tasks "
            "fail whatever the reply (install the modules for that Python, or use a Docker image that has them)",
            stacklevel=3,
        )


def _third_party(sources: Iterable[str]) -> set[str]:
    names: set[str] = set()
    for source in sources:
        if "import" not in source:  # (most tests import nothing: not parsed)
            continue
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name != "__future__"}
