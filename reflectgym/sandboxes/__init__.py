"""Sandboxes: run untrusted programs under limits, with backends chosen by name.

`get_sandbox("bwrap" | "pool" | "docker" | "local" | "auto")` returns a `Sandbox` (a context manager that closes it);
`run(ExecRequest)` returns an `ExecResult` whose `status` says how the run ended. Each backend's module states its
threat model; this package imports nothing else of reflectgym.
"""

from reflectgym.sandboxes.bwrap import BwrapConfig, BwrapSandbox
from reflectgym.sandboxes.local import LocalConfig, LocalSandbox, LocalSandboxWarning
from reflectgym.sandboxes.pool import PoolConfig, WarmPool, bwrap_pool
from reflectgym.sandboxes.python_tests import PythonTest, PythonTestReport, TestOutcome, TestStatus, run_python_tests
from reflectgym.sandboxes.registry import BACKENDS, default_sandbox, get_sandbox, unavailable_reason
from reflectgym.sandboxes.types import (
    ExecRequest,
    ExecResult,
    ExecStatus,
    Isolation,
    Limits,
    ManagedSandbox,
    Sandbox,
    SandboxError,
)

__all__ = [
    "BACKENDS",
    "BwrapConfig",
    "BwrapSandbox",
    "ExecRequest",
    "ExecResult",
    "ExecStatus",
    "Isolation",
    "Limits",
    "LocalConfig",
    "LocalSandbox",
    "LocalSandboxWarning",
    "ManagedSandbox",
    "PoolConfig",
    "PythonTest",
    "PythonTestReport",
    "Sandbox",
    "SandboxError",
    "TestOutcome",
    "TestStatus",
    "WarmPool",
    "bwrap_pool",
    "default_sandbox",
    "get_sandbox",
    "run_python_tests",
    "unavailable_reason",
]
