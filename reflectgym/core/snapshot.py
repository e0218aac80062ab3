"""`Snapshot`: a picklable point in an episode, for tree search and partial-history curricula."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Snapshot:
    """Everything needed to put an env back at one turn of one episode.

    Attributes:
        seed: The seed the episode was reset with.
        options: The reset options (e.g. `{"task_id": ...}`).
        actions: The raw action texts played since reset, in order.
        state: The env's native state copy, or `None` when restoring replays `actions` instead.
        start_rng_state: The env's `np_random` bit-generator state at the start of the episode (for replay).
        rng_state: The bit-generator state at the snapshot (restored with a native state).
        episode_over: Whether the episode had ended.
        last_observation: The observation the agent saw at this point.
    """

    seed: int | None
    options: dict[str, Any]
    actions: tuple[str, ...]
    state: Any = None
    start_rng_state: Mapping[str, Any] | None = None
    rng_state: Mapping[str, Any] | None = None
    episode_over: bool = False
    last_observation: str = ""

    @property
    def turn(self) -> int:
        """How many turns had been played."""
        return len(self.actions)
