"""A real local Ray cluster per test module of this folder (4 CPUs, quiet), with the module's own code sent to the
actors by value: they cannot import a test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module", autouse=True)
def cluster(request: pytest.FixtureRequest) -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(request.module)
    # (log_to_driver off: the actors' own stderr would reach the CLI tests' captured stderr whenever Ray forwards it)
    quiet = {"logging_level": "ERROR", "log_to_driver": False}
    ray.init(num_cpus=4, include_dashboard=False, object_store_memory=80 * 2**20, **quiet)
    yield
    ray.shutdown()
