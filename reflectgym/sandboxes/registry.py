"""Backends by name, and which of them work on this machine.

Threat model: choosing a backend chooses its isolation: `bwrap` and `pool` (namespaces), `docker` (containers),
`local` (process limits only, warns). `default_sandbox` picks `bwrap` where it works and falls back to `local`
with a warning, so untrusted code never runs weaker without saying so.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from reflectgym.sandboxes.bwrap import BwrapSandbox, bwrap_unavailable_reason
from reflectgym.sandboxes.local import LocalSandbox, outside_caller_level
from reflectgym.sandboxes.types import ManagedSandbox, SandboxError


def _pool() -> ManagedSandbox:
    from reflectgym.sandboxes.pool import bwrap_pool

    return bwrap_pool()


def _docker() -> ManagedSandbox:
    from reflectgym.sandboxes.docker_pool import docker_pool

    return docker_pool()


BACKENDS: dict[str, Callable[[], ManagedSandbox]] = {
    "bwrap": BwrapSandbox,
    "pool": _pool,
    "docker": _docker,
    "local": LocalSandbox,
}
"""Name -> factory with default settings; each backend's module documents its threat model."""


def get_sandbox(name: str) -> ManagedSandbox:
    """The backend called `name` with default settings (`auto` = `default_sandbox()`).

    Raises:
        ValueError: no backend has that name.
        SandboxError: the backend cannot start here (the message says why).
    """
    check_sandbox_name(name)
    return default_sandbox() if name == "auto" else BACKENDS[name]()


def check_sandbox_name(name: str) -> None:
    """Raises `ValueError` naming the choices unless `name` is a backend's name (or `auto`); starts nothing."""
    if name != "auto" and name not in BACKENDS:
        raise ValueError(f"unknown sandbox {name!r}; choose one of {', '.join(['auto', *BACKENDS])}")


def default_sandbox() -> ManagedSandbox:
    """`bwrap` where it works; otherwise `local`, with a warning that says why."""
    reason = bwrap_unavailable_reason()
    if reason is None:
        return BwrapSandbox()
    warnings.warn(f"falling back to the 'local' sandbox: {reason}", RuntimeWarning, stacklevel=outside_caller_level())
    return LocalSandbox()


def unavailable_reason(name: str) -> str | None:
    """Why backend `name` cannot run here, or None when it can (starts and closes it once to find out)."""
    try:
        sandbox = get_sandbox(name)
    except SandboxError as error:
        return str(error)
    sandbox.close()
    return None
