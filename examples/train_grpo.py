"""Train an agent from a script: GRPO on a tiny model, on a custom env, in about ten seconds on a CPU.

The env is deliberately easy (reward = share of the letter `a` in an 8-character reply) so the learning curve is
visible at once; swap `env_id` for any registered env and the tiny model for your checkpoint
(`HFPolicy.from_pretrained("path/or/hub-name", HFPolicyConfig(dtype="float32"))`) for a real run.

Run: python examples/train_grpo.py [--steps 50] [--out runs/grpo-toy]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import reflectgym
from reflectgym.agents.hf_policy import HFPolicy, HFPolicyConfig
from reflectgym.agents.tiny import build_tiny_model
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer
from reflectgym.trainers.report import write_report


def share_of_a(task: reflectgym.Task, answer: str) -> float:
    return sum(char == "a" for char in answer.strip()) / 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=50, help="GRPO steps (default: 50)")
    parser.add_argument("--out", default="runs/grpo-toy", help="run folder (default: runs/grpo-toy)")
    args = parser.parse_args()

    env_id = reflectgym.register_task_env(
        "SayA-v0", [{"id": "a", "prompt": "Say a.", "answer": "aaaaaaaa"}], share_of_a, max_attempts=1
    )
    model_dir = build_tiny_model(Path(tempfile.mkdtemp()) / "tiny")  # a byte-level Llama made offline
    policy = HFPolicy.from_pretrained(model_dir, HFPolicyConfig(dtype="float32"))  # bf16 autocast on A100 or later
    config = GRPOConfig(
        env_id=env_id, output_dir=args.out, steps=args.steps, tasks_per_step=2, group_size=8, lr=3e-3,
        max_new_tokens=8, save_every=0, overwrite_output_dir=True,
    )  # fmt: skip
    history = GRPOTrainer(config, policy).train()
    for record in history[:: max(1, len(history) // 10)]:
        print(f"step {int(record['step']):>3}  reward {record['reward']:.3f}  success {record['success']:.2f}")
    print(f"\nfinal reward {history[-1]['reward']:.3f}; report: {write_report(args.out, png=False)}")


if __name__ == "__main__":
    main()
