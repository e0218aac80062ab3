"""Claim: the trainers' target log-probs (`reflectgym.trainers.logprobs.token_logprobs`) take a fraction of the
memory of `log_softmax(logits.float()).gather(...)` through a forward and backward pass, at the same speed.

Side by side, each in a fresh process (peak RSS is per process), the same logits: an output layer (hidden 64 →
vocabulary) on random hidden states, the log-probs of random targets, summed and backpropagated to the layer.
- baseline: `torch.log_softmax(logits.float(), -1).gather(-1, targets)` (what the trainers did, and the usual way);
- `token_logprobs`: a slice of positions at a time, the backward rebuilding each slice's softmax.
Prints the growth of peak RSS (or `torch.cuda.max_memory_allocated` with `--device cuda`) and the time.

Run: .venv/bin/python benchmarks/token_logprobs_memory.py [--rows 4] [--tokens 512] [--vocabulary 49152]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any


def peak_mb(device: str) -> float:
    """Peak memory so far: CUDA's allocator peak on a GPU, else this process's peak RSS."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(way: str, rows: int, tokens: int, vocabulary: int, dtype: str, device: str) -> dict[str, Any]:
    """One forward and backward pass of the chosen way; memory growth and time."""
    import torch

    from reflectgym.trainers.logprobs import token_logprobs

    def baseline(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)

    torch.manual_seed(0)
    head = torch.nn.Linear(64, vocabulary, bias=False).to(device, getattr(torch, dtype))
    hidden = torch.randn(rows, tokens + 1, 64, device=device, dtype=head.weight.dtype, requires_grad=True)
    targets = torch.randint(0, vocabulary, (rows, tokens), device=device)
    before = peak_mb(device)
    start = time.perf_counter()
    logprobs = (baseline if way == "baseline" else token_logprobs)(head(hidden)[:, :-1], targets)
    logprobs.sum().backward()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    took = time.perf_counter() - start
    return {"growth_mb": peak_mb(device) - before, "seconds": took, "sum": float(logprobs.detach().sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--vocabulary", type=int, default=49152)
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--way", choices=("baseline", "token_logprobs"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = [str(value) for value in (args.rows, args.tokens, args.vocabulary)]
    if args.way:
        print(json.dumps(measure(args.way, *map(int, shape), args.dtype, args.device)))
        return
    results = {}
    for way in ("baseline", "token_logprobs"):
        command = [sys.executable, __file__, "--way", way, "--rows", shape[0], "--tokens", shape[1]]
        command += ["--vocabulary", shape[2], "--dtype", args.dtype, "--device", args.device]
        line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results[way] = json.loads(line)
        print(
            f"{way:>14}: +{results[way]['growth_mb']:.0f} MB peak, {results[way]['seconds']:.2f} s, "
            f"sum of log-probs {results[way]['sum']:.3f}"
        )
    base, ours = results["baseline"], results["token_logprobs"]
    print(
        f"memory growth: baseline / token_logprobs = {base['growth_mb'] / max(ours['growth_mb'], 1.0):.2f}x; "
        f"time: baseline / token_logprobs = {base['seconds'] / ours['seconds']:.2f}x"
    )


if __name__ == "__main__":
    main()
