"""Tests that import a module the sandbox's Python lacks are pointed out when the env is made."""

from __future__ import annotations

import warnings

import pytest

from reflectgym.core.tasks import Task
from reflectgym.envs.code.env import CodeEnv
from reflectgym.envs.code.imports import imported_modules, missing_modules

ROW = {
    "task_id": "plus/0",
    "prompt": 'def f(x):\n    """Return x."""\n',
    "canonical_solution": "    return x\n",
    "entry_point": "f",
    "test": "import no_such_module_here as np\n\n\ndef check(candidate):\n    assert candidate(1) == 1\n",
}


def test_third_party_imports_are_counted_once_per_task_and_the_standard_library_is_not() -> None:
    tasks = [
        Task(id="a", prompt="", data={"tests": ["import numpy as np\nassert f(1)", "from numpy.linalg import norm"]}),
        Task(id="b", prompt="", data={"preamble": "import math\nimport sympy", "hidden_tests": ["import numpy"]}),
    ]
    assert imported_modules(tasks) == {"numpy": 2, "sympy": 1}


def test_the_sandboxes_python_is_asked_which_modules_it_lacks() -> None:
    assert missing_modules(["json", "no_such_module_here"]) == ["no_such_module_here"]
    assert missing_modules([]) == []


def test_an_env_whose_tests_import_a_missing_module_warns_when_it_is_made() -> None:
    with pytest.warns(UserWarning, match=r"no_such_module_here \(1 tasks\).*cannot import"):
        CodeEnv(tasks=[ROW]).close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CodeEnv(tasks=[{**ROW, "test": ROW["test"].replace("no_such_module_here", "math")}]).close()
