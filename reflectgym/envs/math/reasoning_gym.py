"""Any `reasoning-gym` dataset as a task source, judged by its own scorer (optional extra).

`reasoning-gym` (PyPI) has 100+ seeded procedural generators, each with a scorer. `ReasoningGymTasks` makes
`size` entries of one of them; task ids are `<dataset>-<index>`, so the same (dataset, size, seed, config)
rebuilds the same tasks anywhere. `MathEnv(tasks=ReasoningGymTasks("basic_arithmetic"))` then scores each
extracted answer with the dataset's `score_answer`: a score of 1 passes, and so does an answer equal to an integer
gold (`-989.0` for `-989`, which some scorers mark down; other golds keep the dataset's verdict, whose form may
count: a simplest fraction, a list's order); a lower score is shown in the feedback and pays nothing, as any wrong
answer (some reasoning-gym scorers give 0.01 for a readable wrong one).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from reflectgym.core.tasks import Task

INSTALL_HINT = "reasoning-gym datasets need the reasoning-gym package: pip install 'reflectgym[reasoning-gym]'"


class ReasoningGymTasks:
    """A `TaskSource` over one reasoning-gym dataset, with the dataset's scorer.

    Args:
        dataset: A reasoning-gym dataset name, e.g. `"basic_arithmetic"`, `"chain_sum"`, `"word_sorting"`.
        size: How many entries to generate.
        seed: The dataset's seed.
        config: Extra dataset options, passed to `reasoning_gym.create_dataset`.
    """

    def __init__(self, dataset: str, *, size: int = 1000, seed: int = 0, **config: Any) -> None:
        try:
            import reasoning_gym
        except ImportError as error:
            raise ImportError(INSTALL_HINT) from error
        if size < 1:
            raise ValueError(f"size must be at least 1; got {size}")
        self.name = dataset
        self._dataset = reasoning_gym.create_dataset(dataset, size=size, seed=seed, **config)
        self.size = size

    def sample(self, rng: np.random.Generator) -> Task:
        """A uniformly drawn entry."""
        return self._task(int(rng.integers(self.size)))

    def get(self, task_id: str) -> Task:
        """The entry named `<dataset>-<index>`."""
        prefix, _, index = str(task_id).rpartition("-")
        if prefix != self.name or not re.fullmatch(r"[0-9]{1,18}", index) or int(index) >= self.size:
            raise KeyError(
                f"no task {task_id!r} in {self.name}: ids are '{self.name}-<index>' with index < {self.size}"
            )
        return self._task(int(index))

    def ids(self) -> list[str]:
        """Every entry's id, in order (an evaluation plays each once)."""
        return [f"{self.name}-{index}" for index in range(self.size)]

    def score(self, task: Task, answer: str) -> float:
        """The dataset's own score for `answer` (1.0 is fully correct)."""
        entry = self._dataset[int(task.id.rpartition("-")[2])]
        return float(self._dataset.score_answer(answer=answer, entry=entry))

    def _task(self, index: int) -> Task:
        entry = self._dataset[index]
        answer = str(entry["answer"])
        return Task(
            id=f"{self.name}-{index}",
            prompt=str(entry["question"]),
            reference=answer,
            data={"gold": answer, "dataset": self.name},
        )
