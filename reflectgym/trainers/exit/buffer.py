"""ExIt's instance buffer (TRAINERS.md §3): the top N instances by learnability score, sampled by priority.

Priorities: `softmax`, p ∝ exp(κ·S); or `rank`, p ∝ (1/rank)^(1/β) with rank 1 the highest score. Ties in
score are broken by age: the older entry ranks first and, when the buffer is over capacity, the lowest score goes
and among equal lowest scores the oldest. An instance already held is not added twice: it takes the new score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from reflectgym.trainers.exit.instances import Instance

Priority = Literal["softmax", "rank"]


@dataclass
class BufferEntry:
    """An instance held in the buffer with its score.

    Attributes:
        instance: The task instance.
        score: Its learnability S (of the group it was made in, then of the last group played from it).
        serial: Insertion order, unique within a buffer: breaks ties and names the entry.
    """

    instance: Instance
    score: float
    serial: int


class InstanceBuffer:
    """Keeps the top `capacity` instances by score and samples them by priority.

    Args:
        capacity: N, the most instances held.
        priority: `softmax` or `rank`.
        kappa: κ of the softmax priority.
        beta: β of the rank priority (larger: flatter).
    """

    def __init__(self, capacity: int, priority: Priority = "softmax", kappa: float = 1.0, beta: float = 1.0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1; got {capacity}")
        if beta <= 0:
            raise ValueError(f"beta must be positive; got {beta}")
        self.capacity = capacity
        self.priority: Priority = priority
        self.kappa = kappa
        self.beta = beta
        self._entries: dict[int, BufferEntry] = {}
        self._by_key: dict[tuple[Any, ...], int] = {}
        self._next_serial = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def next_serial(self) -> int:
        """The serial the next new entry gets (serials only grow)."""
        return self._next_serial

    @property
    def entries(self) -> list[BufferEntry]:
        """The entries, oldest first."""
        return list(self._entries.values())

    def add(self, instance: Instance, score: float) -> BufferEntry | None:
        """Adds `instance` with `score` (or rescores it when already held), then evicts down to capacity; returns
        its entry, or None when it was itself the one evicted."""
        held = self._by_key.get(instance.key)
        if held is not None:
            self._entries[held].score = score
            return self._entries[held]
        entry = BufferEntry(instance, float(score), self._next_serial)
        self._next_serial += 1
        self._entries[entry.serial] = entry
        self._by_key[instance.key] = entry.serial
        self._evict()
        return self._entries.get(entry.serial)

    def _evict(self) -> None:
        """Drops the lowest-scored entries (the oldest among ties) down to capacity."""
        while len(self._entries) > self.capacity:
            lowest = min(self._entries.values(), key=lambda e: (e.score, e.serial))
            self._remove(lowest.serial)

    def rescore(self, serial: int, score: float) -> None:
        """Sets an entry's score (nothing happens when it is no longer held)."""
        if serial in self._entries:
            self._entries[serial].score = float(score)

    def discard(self, serial: int) -> None:
        """Removes an entry (one that cannot be restored any more)."""
        if serial in self._entries:
            self._remove(serial)

    def _remove(self, serial: int) -> None:
        entry = self._entries.pop(serial)
        del self._by_key[entry.instance.key]

    def probabilities(self) -> np.ndarray:
        """(len,) each entry's sampling probability, in `entries` order."""
        scores = np.array([entry.score for entry in self._entries.values()], dtype=np.float64)
        if scores.size == 0:
            return scores
        if self.priority == "softmax":
            logits = self.kappa * scores
            weights = np.exp(logits - logits.max())
        else:
            order = sorted(range(scores.size), key=lambda i: -scores[i])  # stable: the older first among ties
            ranks = np.empty(scores.size)
            ranks[order] = np.arange(1, scores.size + 1)
            weights = (1.0 / ranks) ** (1.0 / self.beta)
        return weights / weights.sum()

    def sample(self, rng: np.random.Generator) -> BufferEntry:
        """One entry drawn by priority."""
        if not self._entries:
            raise ValueError("cannot sample from an empty buffer")
        entries = self.entries
        return entries[int(rng.choice(len(entries), p=self.probabilities()))]

    def state(self) -> dict[str, Any]:
        """JSON-ready form, for a checkpoint's trainer state."""
        return {
            "next_serial": self._next_serial,
            "entries": [{"serial": e.serial, "score": e.score, "instance": e.instance.to_dict()} for e in self.entries],
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Puts back what `state` returned (instances without snapshots: they are replayed when drawn)."""
        self._entries.clear()
        self._by_key.clear()
        for row in state["entries"]:
            entry = BufferEntry(Instance.from_dict(row["instance"]), float(row["score"]), int(row["serial"]))
            self._entries[entry.serial] = entry
            self._by_key[entry.instance.key] = entry.serial
        self._next_serial = int(state["next_serial"])
        self._evict()  # (a resumed run may keep fewer)

    def replace_instance(self, serial: int, instance: Instance) -> None:
        """Swaps in the same instance with its snapshot, once replayed (the key does not change)."""
        if serial in self._entries:
            self._entries[serial].instance = instance
