"""Sandbox fixtures: one instance per backend for the session, parametrised so every test runs on every backend."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import pytest

from reflectgym.sandboxes import BwrapSandbox, LocalConfig, LocalSandbox, PoolConfig, Sandbox, SandboxError, bwrap_pool
from reflectgym.sandboxes.bwrap import bwrap_unavailable_reason

BACKENDS = [
    pytest.param("local", id="local"),
    pytest.param("bwrap", id="bwrap"),
    pytest.param("pool", id="pool"),
    pytest.param("docker", id="docker", marks=pytest.mark.docker),
]


class SandboxCache:
    """Starts each backend once, on first use, and closes them all at the end of the session."""

    def __init__(self) -> None:
        self.started: dict[str, Sandbox] = {}

    def get(self, name: str) -> Sandbox:
        if name not in self.started:
            self.started[name] = self._start(name)
        return self.started[name]

    def _start(self, name: str) -> Sandbox:
        if name == "local":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return LocalSandbox(LocalConfig())
        if name in ("bwrap", "pool"):
            reason = bwrap_unavailable_reason()
            if reason is not None:
                pytest.skip(f"[bwrap] {reason}")
            return BwrapSandbox() if name == "bwrap" else bwrap_pool(PoolConfig(workers=2))
        from reflectgym.sandboxes.docker_pool import docker_pool

        try:
            return docker_pool(PoolConfig(workers=2))
        except SandboxError as error:
            pytest.skip(f"[docker] {error}")

    def close(self) -> None:
        for sandbox in self.started.values():
            sandbox.close()


@pytest.fixture(scope="session")
def sandbox_cache() -> Iterator[SandboxCache]:
    cache = SandboxCache()
    yield cache
    cache.close()


@pytest.fixture(params=BACKENDS)
def sandbox(request: pytest.FixtureRequest, sandbox_cache: SandboxCache) -> Sandbox:
    """Each available backend in turn."""
    return sandbox_cache.get(request.param)


@pytest.fixture
def known_gap(request: pytest.FixtureRequest, sandbox: Sandbox) -> Callable[[str, str], None]:
    """`known_gap(backend, reason)`: this test is an expected failure (strict) on a backend that cannot contain it."""

    def mark(backend: str, reason: str) -> None:
        if sandbox.name == backend:
            request.applymarker(pytest.mark.xfail(strict=True, reason=f"{backend}: {reason}"))

    return mark
