"""Joining the Ray cluster and checking that it can hold the actors asked for (shared by rollout and env actors)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from typing import Any

import ray


def join_cluster(address: str | None, runtime_env: dict[str, Any] | None = None) -> bool:
    """Initialises Ray unless it already is: joins `address` (or `RAY_ADDRESS`), else starts a local cluster, as
    `ray.init()` does. Returns whether the cluster is a fixed local one started here (it cannot grow)."""
    if ray.is_initialized():
        return False
    ray.init(address=address, runtime_env=runtime_env)
    return address is None and not os.environ.get("RAY_ADDRESS")


def check_room(count: int, each: Mapping[str, float], what: str, fixed: bool, wait_s: float) -> None:
    """Actors the cluster cannot hold would wait forever: a `ValueError` on a fixed cluster (a local one started
    here), a warning on one that may grow (an autoscaler) saying how long they wait.

    Args:
        count: Actors wanted at once.
        each: Resources each one reserves ("CPU", "GPU").
        what: The actors, as the message names them ("4 env actors").
        fixed: Whether the cluster cannot grow.
        wait_s: How long an actor may wait to be placed.
    """
    have = ray.cluster_resources()
    short = [
        f"{count} x {amount:g} {name}s, the cluster has {have.get(name, 0):g}"
        for name, amount in each.items()
        if count * amount > have.get(name, 0)
    ]
    if not short:
        return
    message = f"{what} need {'; '.join(short)}"
    if fixed:
        raise ValueError(f"{message}: use fewer or reserve less for each")
    warnings.warn(f"{message}: they wait until it grows (up to {wait_s:g} s)", stacklevel=3)
