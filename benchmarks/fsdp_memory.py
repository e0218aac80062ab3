"""Claim: with `fsdp: true` each of N ranks holds 1/N of the training state (weights, gradients, AdamW's moments) at
the update, where DDP holds all of it on every rank; the whole weights only between updates, for rollouts.

Side by side in one run, two torchrun ranks on the CPU (gloo) for each way, the same model (a Llama of `--hidden`
width and `--layers` blocks on a 32k vocabulary, random weights saved as a checkpoint) and the same update (one
optimiser step of the shared core, `TrainingSession.update`, over 8 random sequences):
- baseline: DDP (`fsdp: false`), every rank a full copy;
- `fsdp: true`: FSDP2, one unit per transformer block.
Prints, per rank, the bytes held at the update (the stepped parameters, their gradients and AdamW's state, counted
tensor by tensor: a DTensor counts its local shard) and the process's peak RSS, and the ratio of the two ways.

Run: .venv/bin/python benchmarks/fsdp_memory.py [--hidden 512] [--layers 8]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = "--worker"


def tensor_bytes(tensor: object) -> int:
    """Bytes this rank holds for `tensor` (a DTensor's local shard)."""
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor  # type: ignore[union-attr]
    return local.numel() * local.element_size()  # type: ignore[union-attr]


def worker(model: str, out: str, fsdp: bool) -> None:
    """One rank: a session over `model`, one update, then what it holds."""
    import resource

    import torch

    from reflectgym.trainers.batching import TrainingSequence
    from reflectgym.trainers.losses import sft_loss
    from reflectgym.trainers.session import TrainerConfig, TrainingSession, load_policy

    config = TrainerConfig(model=model, output_dir=out, fsdp=fsdp, device="cpu", progress=False, minibatch_size=4)
    session = TrainingSession(config, load_policy(config))
    session.begin("memory")
    generator = torch.Generator().manual_seed(session.world.rank)
    sequences = [
        TrainingSequence(tuple(ids), (0,) + (1,) * 127, (0.0,) * 128)
        for ids in torch.randint(0, 32000, (8, 128), generator=generator).tolist()
    ]
    session.update(sequences, lambda batch, logprobs: (sft_loss(logprobs, batch.loss_mask), {}))
    stepped = [parameter for group in session.optimizer.param_groups for parameter in group["params"]]
    held = {
        "weights": sum(tensor_bytes(p) for p in stepped),
        "gradients": sum(tensor_bytes(p.grad) for p in stepped if p.grad is not None),
        "adamw": sum(tensor_bytes(v) for state in session.optimizer.state.values() for v in state.values()),
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    Path(out, f"rank{session.world.rank}.json").write_text(json.dumps(held))
    session.finish()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_ranks(model: Path, out: Path, fsdp: bool) -> list[dict[str, int]]:
    """Two CPU ranks of `worker`; what each held."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={free_port()}",
               __file__, WORKER, str(model), str(out), str(fsdp)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512, help="width of the residual stream")
    parser.add_argument("--layers", type=int, default=8, help="transformer blocks")
    args = parser.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM

    from reflectgym.agents.tiny import build_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        width, blocks = args.hidden, args.layers
        config = LlamaConfig(
            vocab_size=32000, hidden_size=width, intermediate_size=width * 8 // 3, num_hidden_layers=blocks,
            num_attention_heads=8, num_key_value_heads=8, tie_word_embeddings=False,
        )  # fmt: skip
        model = LlamaForCausalLM(config)
        parameters = sum(p.numel() for p in model.parameters())
        model.save_pretrained(model_dir)
        build_tokenizer().save_pretrained(model_dir)
        rows = {way: run_ranks(model_dir, Path(tmp) / way, way == "fsdp") for way in ("ddp", "fsdp")}
    print(f"model: {parameters / 1e6:.1f}M parameters (float32), 2 ranks on the CPU, one update of 8 x 128 tokens")
    print(f"{'MB per rank (rank 0 / rank 1)':34s} {'DDP':>15s} {'FSDP':>15s} {'FSDP / DDP':>11s}")
    for key in ("weights", "gradients", "adamw", "training state", "peak_rss"):
        values = {
            way: [sum(rank[k] for k in ("weights", "gradients", "adamw")) if key == "training state" else rank[key]
                  for rank in ranks]
            for way, ranks in rows.items()
        }  # fmt: skip
        shown = {way: " / ".join(f"{value / 2**20:.0f}" for value in ranks) for way, ranks in values.items()}
        ratio = sum(values["fsdp"]) / sum(values["ddp"])
        print(f"{key:34s} {shown['ddp']:>15s} {shown['fsdp']:>15s} {ratio:10.2f}x")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == WORKER:
        worker(sys.argv[2], sys.argv[3], sys.argv[4] == "True")
    else:
        main()
