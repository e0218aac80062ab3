"""Which sandbox an env runs programs in (code envs, MathTool's tool), opened on first use and shared by default.

`sandbox=None` means one warm bubblewrap pool shared by every such env of the process (started when the first
program runs, closed when the last env using it closes), or the project's default sandbox where bubblewrap cannot
run. A name opens that backend for this env alone; a `Sandbox` instance is used as given and never closed here.
"""

from __future__ import annotations

import threading
import weakref

from reflectgym.sandboxes.bwrap import bwrap_unavailable_reason
from reflectgym.sandboxes.registry import check_sandbox_name, default_sandbox, get_sandbox
from reflectgym.sandboxes.types import Sandbox

SandboxArg = str | Sandbox | None
"""What `sandbox=` accepts: None (shared warm pool), a backend name for `get_sandbox`, or a `Sandbox`."""

_shared_lock = threading.Lock()
_shared: Sandbox | None = None
_shared_users = 0


def _acquire_shared() -> Sandbox:
    global _shared, _shared_users
    with _shared_lock:
        if _shared is None:
            _shared = get_sandbox("pool") if bwrap_unavailable_reason() is None else default_sandbox()
        _shared_users += 1
        return _shared


def _release_shared() -> None:
    global _shared, _shared_users
    with _shared_lock:
        _shared_users -= 1
        if _shared_users == 0 and _shared is not None:
            _shared.close()
            _shared = None


class SandboxHandle:
    """Opens the env's sandbox lazily and releases it on `close()` (or when the handle is collected)."""

    def __init__(self, sandbox: SandboxArg = None) -> None:
        if sandbox is not None and not isinstance(sandbox, (str, Sandbox)):
            raise TypeError(f"sandbox must be None, a backend name or a Sandbox; got {type(sandbox).__name__}")
        if isinstance(sandbox, str):
            check_sandbox_name(sandbox)  # a typo fails when the env is made, not at its first program
        self.spec = sandbox
        self._sandbox: Sandbox | None = sandbox if isinstance(sandbox, Sandbox) else None
        self._finalizer: weakref.finalize | None = None

    def get(self) -> Sandbox:
        """The sandbox, opened now if this is its first use."""
        if self._sandbox is None:
            if self.spec is None:
                self._sandbox = _acquire_shared()
                self._finalizer = weakref.finalize(self, _release_shared)
            else:
                self._sandbox = get_sandbox(str(self.spec))
                self._finalizer = weakref.finalize(self, self._sandbox.close)
        return self._sandbox

    def close(self) -> None:
        """Releases what this handle opened; a sandbox passed in by the caller stays open. Idempotent."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
            self._sandbox = None
