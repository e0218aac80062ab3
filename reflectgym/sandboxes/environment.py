"""What a sandboxed program sees of its surroundings: a fixed minimal environment and the sandbox's Python.

Threat model: nothing of the host's environment is passed on (no tokens, keys or paths leak through variables);
only the fixed variables below and the request's own `env` reach the program.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

PYTHON_NAMES = frozenset({"python", "python3"})
SYSTEM_PYTHON = "/usr/bin/python3"


def default_python() -> str:
    """The interpreter sandboxes run: the system one (visible inside namespaces), else this one."""
    return SYSTEM_PYTHON if os.path.exists(SYSTEM_PYTHON) else sys.executable


def program_env(work_dir: str, tmp_dir: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a sandboxed program (with `PWD`, as a shell would set it and bubblewrap does)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": work_dir,
        "PWD": work_dir,
        "TMPDIR": tmp_dir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",
    }
    env.update(extra)
    return env


def resolve_python(command: Sequence[str], python: str) -> list[str]:
    """Replace a leading `python`/`python3` with the sandbox's interpreter path."""
    argv = list(command)
    if argv[0] in PYTHON_NAMES:
        argv[0] = python
    return argv
