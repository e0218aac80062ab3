"""`FreeText`: a Gymnasium space for unrestricted text observations and actions.

Gymnasium's `Text` space only admits a fixed charset, and an LLM's output is any Unicode string. `FreeText`
admits every `str` up to a length bound, samples printable text (ASCII plus some non-ASCII letters and
whitespace, so that samples exercise an env's parser), and is seeded like every other space so
`check_env`'s determinism checks hold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from gymnasium.spaces import Space

_SAMPLE_ALPHABET: tuple[str, ...] = tuple(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \n\t.,;:!?()[]{}<>'\"`#@$*+-=/\\_|~%&^éßøλπ中文→✓"
)


class FreeText(Space[str]):
    """Any string of at most `max_length` characters (all of Unicode).

    Args:
        max_length: Largest admitted length in characters; `None` admits any length.
        sample_max_length: Longest string `sample()` draws (samples are for fuzzing, not realism).
        seed: Seed for `sample()`.
    """

    def __init__(
        self,
        max_length: int | None = None,
        *,
        sample_max_length: int = 64,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        if max_length is not None and max_length < 0:
            raise ValueError(f"max_length must be non-negative or None, got {max_length}")
        self.max_length = max_length
        self.sample_max_length = sample_max_length if max_length is None else min(sample_max_length, max_length)
        super().__init__(shape=None, dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        """Free text has no fixed-size numeric encoding."""
        return False

    def sample(self, mask: Any | None = None, probability: Any | None = None) -> str:
        """Draws a random printable string (for fuzzing parsers and `check_env`)."""
        if mask is not None or probability is not None:
            raise ValueError("FreeText.sample() takes no mask or probability")
        length = int(self.np_random.integers(0, self.sample_max_length + 1))
        picks = self.np_random.integers(0, len(_SAMPLE_ALPHABET), size=length)
        return "".join(_SAMPLE_ALPHABET[i] for i in picks)

    def contains(self, x: Any) -> bool:
        """True for any `str` within the length bound."""
        return isinstance(x, str) and (self.max_length is None or len(x) <= self.max_length)

    def to_jsonable(self, sample_n: Iterable[str]) -> list[str]:
        """Strings are already JSON."""
        return list(sample_n)

    def from_jsonable(self, sample_n: Sequence[str]) -> list[str]:
        """Strings are already JSON."""
        return list(sample_n)

    def __repr__(self) -> str:
        return f"FreeText(max_length={self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FreeText) and other.max_length == self.max_length

    def __hash__(self) -> int:
        return hash(("FreeText", self.max_length))
