"""The training quickstart (`make demo`): teach a tiny model Sokoban on a laptop CPU in a few minutes.

1. Build a tiny byte-level Llama offline (random weights) and evaluate it on held-out levels.
2. Behaviour-clone it on the solver's demonstrations of small levels (`SFTTrainer`, one optimiser step per
   batch of demonstrations), and evaluate again.
3. Train it further with GRPO on the env's reward (`GRPOTrainer`), and evaluate a last time.
4. Print the before/after table and where the learning curves are.

Every stage is an ordinary run folder (metrics.jsonl, checkpoints, the trained model, report.html), so each can
be re-run alone with `reflectgym train`; the held-out levels (seeds 0..N-1) are never trained on (BC uses seeds
from 100000, GRPO from 200000).

Run: python examples/sokoban_quickstart.py [--out runs/quickstart] [--bc-steps 600] [--grpo-steps 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium as gym

import reflectgym  # noqa: F401  (registers the envs)
from reflectgym.agents.evaluation import EvalSummary, evaluate, evaluate_policy, format_table
from reflectgym.agents.hf_policy import HFPolicy, HFPolicyConfig
from reflectgym.agents.policy import Sampling
from reflectgym.agents.rollout import RolloutConfig
from reflectgym.agents.scripted import RandomAgent
from reflectgym.agents.tiny import TinyModelConfig, build_tiny_model
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer
from reflectgym.trainers.report import write_report
from reflectgym.trainers.sft import SFTConfig, SFTTrainer

ENV_ID = "reflectgym/Sokoban-6x6-1-v0"
ENV_KWARGS = {"show_legend": False}  # the tiny model reads the board, not the rules
SYSTEM_PROMPT = ""  # no system prompt: shorter contexts for a model that cannot read it anyway
HISTORY_TURNS = 0  # each turn the model sees the current board and feedback only (Sokoban is Markov)


def evaluate_stage(policy: HFPolicy, name: str, episodes: int, out: Path) -> EvalSummary:
    """Greedy play on the held-out levels (seeds 0..episodes-1)."""
    policy.name = name
    config = RolloutConfig(
        num_envs=32,
        max_turns=40,
        system_prompt=SYSTEM_PROMPT,
        history_turns=HISTORY_TURNS,
        sampling=Sampling(temperature=0.0, max_new_tokens=8),
    )
    summary, _ = evaluate_policy(
        policy,
        lambda: gym.make(ENV_ID, **ENV_KWARGS),
        env_id=ENV_ID,
        episodes=episodes,
        out_dir=out / f"eval-{name}",
        config=config,
        progress=False,
    )
    print(f"  {name}: success {summary.success_rate:.2f} on {episodes} held-out levels", flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/quickstart", help="run folder (default: runs/quickstart)")
    parser.add_argument("--demos", type=int, default=2000, help="solver demonstrations (default: 2000)")
    parser.add_argument("--bc-steps", type=int, default=600, help="behaviour-cloning steps (default: 600)")
    parser.add_argument("--grpo-steps", type=int, default=30, help="GRPO steps (default: 30)")
    parser.add_argument("--episodes", type=int, default=500, help="held-out levels per evaluation (default: 500)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model, data order and sampling")
    args = parser.parse_args()
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # our own bars only: no per-file loading/saving bars
    out = Path(args.out)
    started = time.perf_counter()

    print(f"1/4 tiny model (byte-level Llama, random weights) and baselines on {ENV_ID}", flush=True)
    model_dir = build_tiny_model(out / "tiny-model", TinyModelConfig(seed=args.seed))
    summaries = [
        evaluate(
            lambda: gym.make(ENV_ID, **ENV_KWARGS),
            RandomAgent(args.seed),
            env_id=ENV_ID,
            episodes=args.episodes,
            progress=False,
        )[0]
    ]
    print(f"  random moves: success {summaries[0].success_rate:.2f}", flush=True)
    policy = HFPolicy.from_pretrained(model_dir, HFPolicyConfig(dtype="float32"), name="untrained")
    summaries.append(evaluate_stage(policy, "untrained", args.episodes, out))

    print(f"2/4 behaviour cloning on {args.demos} solver demonstrations ({args.bc_steps} steps)", flush=True)
    sft = SFTConfig(
        output_dir=str(out / "bc"), env_id=ENV_ID, env_kwargs=ENV_KWARGS, system_prompt=SYSTEM_PROMPT,
        history_turns=HISTORY_TURNS, num_demonstrations=args.demos, steps=args.bc_steps, lr=3e-3,
        batch_size=64, minibatch_size=64, save_every=0, seed=args.seed, overwrite_output_dir=True,
    )  # fmt: skip
    SFTTrainer(sft, policy).train()
    summaries.append(evaluate_stage(policy, "after-BC", args.episodes, out))

    print(f"3/4 GRPO on the env's reward ({args.grpo_steps} steps)", flush=True)
    grpo = GRPOConfig(
        output_dir=str(out / "grpo"), env_id=ENV_ID, env_kwargs=ENV_KWARGS, system_prompt=SYSTEM_PROMPT,
        history_turns=HISTORY_TURNS, steps=args.grpo_steps, tasks_per_step=8, group_size=8, num_envs=64,
        lr=3e-4, max_new_tokens=8, minibatch_size=64, save_every=0, seed=args.seed, first_seed=200_000,
        overwrite_output_dir=True,  # a rerun of the quickstart starts over
    )  # fmt: skip
    GRPOTrainer(grpo, policy).train()
    summaries.append(evaluate_stage(policy, "after-GRPO", args.episodes, out))

    print("4/4 results (greedy, held-out levels)\n", flush=True)
    print(format_table(summaries))
    for stage in ("bc", "grpo"):
        print(f"{stage} learning curves: {write_report(out / stage, png=False)}")
    print(f"trained model: {out / 'grpo' / 'model'}   total time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
