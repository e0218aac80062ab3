"""Claim: `HFPolicy` reports every sampled token's log-prob without holding the whole generation's logits, so its
memory does not grow with replies x tokens x vocabulary, at the same speed.

Side by side, each in a fresh process (peak RSS is per process), the same prompts, seed and model:
- baseline: transformers' documented way, `generate(output_logits=True, return_dict_in_generate=True)` then
  `compute_transition_scores(..., normalize_logits=True)` (every step's float32 logits kept, then stacked);
- `policy`: `HFPolicy.generate`, which records each token's log-prob as it is sampled.
Prints the growth of peak RSS during generation and the time, and their ratios. On GPU, pass `--device cuda` (the
figures are then `torch.cuda.max_memory_allocated`).

Run: .venv/bin/python benchmarks/hf_generation_memory.py [--replies 16] [--tokens 256] [--model PATH|smollm2]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from fresh_process_memory import compare_in_fresh_processes, peak_mb  # (beside this script)

PROMPT = [{"role": "user", "content": "Write a long story about a robot who learns to paint."}]


def measure(way: str, model: str, device: str, replies: int, tokens: int) -> dict[str, Any]:
    """Loads the model, warms it up, then generates once the chosen way; returns memory growth and time."""
    import torch

    from reflectgym.agents import Sampling
    from reflectgym.agents.gguf import smollm2_gguf
    from reflectgym.agents.hf_policy import HFPolicy, HFPolicyConfig

    source = smollm2_gguf() if model == "smollm2" else model
    policy = HFPolicy.from_pretrained(source, HFPolicyConfig(device=device, dtype="float32", batch_size=replies))
    policy.generate([PROMPT], Sampling(max_new_tokens=2, seed=0))
    before = peak_mb(device)
    start = time.perf_counter()
    if way == "policy":
        generated = sum(
            len(reply.token_ids or ())
            for reply in policy.generate([PROMPT] * replies, Sampling(max_new_tokens=tokens, seed=0))
        )
    else:
        prompt = torch.tensor([policy.chat.prompt_ids(PROMPT)] * replies, device=policy.device)
        torch.manual_seed(0)
        with torch.inference_mode():
            out = policy.model.generate(
                input_ids=prompt,
                attention_mask=torch.ones_like(prompt),
                do_sample=True,
                top_k=0,
                max_new_tokens=tokens,
                output_logits=True,
                return_dict_in_generate=True,
                pad_token_id=policy.tokenizer.eos_token_id,
            )
            scores = policy.model.compute_transition_scores(out.sequences, out.logits, normalize_logits=True)
        generated = int(scores.numel())
    took = time.perf_counter() - start
    return {"growth_mb": peak_mb(device) - before, "seconds": took, "token log-probs": generated}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--model", default="smollm2", help="a checkpoint folder, or smollm2 (the packaged GGUF)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--way", choices=("baseline", "policy"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.way:
        print(json.dumps(measure(args.way, args.model, args.device, args.replies, args.tokens)))
        return
    arguments = ["--replies", str(args.replies), "--tokens", str(args.tokens), "--model", args.model]
    compare_in_fresh_processes(__file__, ("baseline", "policy"), [*arguments, "--device", args.device])


if __name__ == "__main__":
    main()
