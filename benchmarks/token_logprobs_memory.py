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
import time
from typing import Any

from fresh_process_memory import compare_in_fresh_processes, peak_mb  # (beside this script)


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
    arguments = ["--rows", shape[0], "--tokens", shape[1], "--vocabulary", shape[2], "--dtype", args.dtype]
    compare_in_fresh_processes(__file__, ("baseline", "token_logprobs"), [*arguments, "--device", args.device])


if __name__ == "__main__":
    main()
