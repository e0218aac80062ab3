"""What the memory benchmarks share: each way runs in a fresh process (peak RSS is per process), and the two ways'
growth and time are printed side by side with their ratios (`hf_generation_memory.py`, `token_logprobs_memory.py`).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Sequence
from typing import Any


def peak_mb(device: str) -> float:
    """Peak memory so far: CUDA's allocator peak on a GPU, else this process's peak RSS."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def compare_in_fresh_processes(script: str, ways: tuple[str, str], arguments: Sequence[str]) -> None:
    """Runs `script --way WAY ARGUMENTS` for the baseline and ours, each in a new process printing a JSON line with
    `growth_mb` and `seconds` (and any figure more), and prints both and the baseline / ours ratios."""
    results: dict[str, dict[str, Any]] = {}
    for way in ways:
        command = [sys.executable, script, "--way", way, *arguments]
        line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results[way] = json.loads(line)
        figures = results[way].items()
        extra = ", ".join(f"{key} {value}" for key, value in figures if key not in ("growth_mb", "seconds"))
        print(f"{way:>14}: +{results[way]['growth_mb']:.0f} MB peak, {results[way]['seconds']:.2f} s, {extra}")
    base, ours = (results[way] for way in ways)
    print(
        f"memory growth: {ways[0]} / {ways[1]} = {base['growth_mb'] / max(ours['growth_mb'], 1.0):.2f}x; "
        f"time: {ways[0]} / {ways[1]} = {base['seconds'] / ours['seconds']:.2f}x"
    )
