"""Kernel resource limits (setrlimit) for one program, computed from `Limits` in one place.

Threat model: RLIMIT_AS bounds each process's memory, RLIMIT_CPU its CPU time, RLIMIT_FSIZE each file,
RLIMIT_NPROC the processes of its uid (it binds only for a non-root uid: the backends switch uid first), RLIMIT_CORE
stops core dumps, RLIMIT_NOFILE bounds open files. rlimits are per process: many processes together can use more
memory than one limit, which is why the namespaced backends also bound processes and the tmpfs size.
"""

from __future__ import annotations

import math
import resource

from reflectgym.sandboxes.types import Limits

OPEN_FILES = 256


def rlimit_table(limits: Limits, extra_processes: int = 0) -> dict[int, tuple[int, int]]:
    """rlimit number -> (soft, hard) for a run; `extra_processes` counts sandbox processes sharing the uid."""
    cpu = max(1, math.ceil(limits.cpu_seconds))
    return {
        resource.RLIMIT_AS: (limits.memory_bytes, limits.memory_bytes),
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_FSIZE: (limits.max_file_bytes, limits.max_file_bytes),
        resource.RLIMIT_NPROC: (limits.max_processes + extra_processes, limits.max_processes + extra_processes),
        resource.RLIMIT_CORE: (0, 0),
        resource.RLIMIT_NOFILE: (OPEN_FILES, OPEN_FILES),
    }


def apply_rlimits(table: dict[int, tuple[int, int]]) -> None:
    """Set every limit of `table` on the calling process (meant for a child before exec)."""
    for which, value in table.items():
        resource.setrlimit(which, value)


def prlimit_argv(table: dict[int, tuple[int, int]]) -> list[str]:
    """The same limits as a `prlimit` command prefix, for use inside a namespace."""
    names = {
        resource.RLIMIT_AS: "--as",
        resource.RLIMIT_CPU: "--cpu",
        resource.RLIMIT_FSIZE: "--fsize",
        resource.RLIMIT_NPROC: "--nproc",
        resource.RLIMIT_CORE: "--core",
        resource.RLIMIT_NOFILE: "--nofile",
    }
    return ["/usr/bin/prlimit", *(f"{names[k]}={soft}:{hard}" for k, (soft, hard) in table.items()), "--"]
