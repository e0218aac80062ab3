"""Math episodes whose every answer takes the symbolic path, for the benchmarks that time it
(`math_symbolic_pool.py`, `env_actors.py`): distinct cubics to factor, answered with the expanded cubic (right,
but only SymPy can tell)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

from reflectgym.agents import Generation, Sampling


def factoring_tasks(count: int, seed: int) -> list[dict[str, str]]:
    """Distinct cubics x^3 + ... given expanded, with the factored form as the gold."""
    rng = random.Random(seed)
    tasks = []
    for index in range(count):
        a, b, c = rng.sample(range(-19, 20), 3)
        p2, p1, p0 = -(a + b + c), a * b + b * c + a * c, -a * b * c
        expanded = f"x^3 + ({p2})x^2 + ({p1})x + ({p0})"
        gold = f"(x - ({a}))(x - ({b}))(x - ({c}))"
        tasks.append({"id": f"cubic-{index}", "problem": f"Factor: {expanded}", "answer": gold})
    return tasks


class ExpandedAnswer:
    """Replies with the problem's own polynomial."""

    name = "expanded"

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        replies = []
        for conversation in conversations:
            match = re.search(r"Factor: (.+)", str(conversation[-1]["content"]))
            replies.append(Generation(f"\\boxed{{{match.group(1) if match else ''}}}"))
        return replies
