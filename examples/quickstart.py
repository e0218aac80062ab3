"""A tour of every registered environment, played by the scripted oracle and a random agent (`make demo` is the
training quickstart, `sokoban_quickstart.py`).

It shows that each env runs end to end here, that its verifier can tell a solution (oracle, success ≈ 1) from
noise (random), and what the feedback looks like. Trajectories and summaries land in `runs/env-tour/`.

Run: python examples/quickstart.py [--episodes N] [--out DIR]
"""

from __future__ import annotations

import argparse
import runpy
from pathlib import Path

import gymnasium as gym

import reflectgym
from reflectgym.agents import EvalSummary, OracleAgent, RandomAgent, evaluate, format_table

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=5, help="episodes per env and agent (default: 5)")
    parser.add_argument("--out", default="runs/env-tour", help="output folder (default: runs/env-tour)")
    args = parser.parse_args()

    runpy.run_path(str(HERE / "custom_env.py"), run_name="custom_env")  # registers reflectgym/Capitals-v0
    summaries: list[EvalSummary] = []
    skipped: list[str] = []
    examples: dict[str, tuple[str, str]] = {}  # family -> (env id, feedback the random agent got)
    for info in reflectgym.list_envs():
        for agent in (OracleAgent(), RandomAgent(seed=0)):
            try:
                summary, trajectories = evaluate(
                    lambda env_id=info.id: gym.make(env_id),
                    agent,
                    env_id=info.id,
                    episodes=args.episodes,
                    out_dir=Path(args.out) / info.id.replace("/", "_") / agent.name,
                    progress=False,
                )
            except Exception as error:  # an env whose resource is missing here is reported, not fatal
                skipped.append(f"{info.id}: {type(error).__name__}: {error}")
                break
            summaries.append(summary)
            feedback = next(
                (t.feedback for tr in trajectories for t in tr.turns if t.feedback and not t.parse_error), None
            )
            if agent.name == "random" and feedback and info.family not in examples:
                examples[info.family] = (info.id, feedback)
            print(f"  {info.id:<34} {agent.name:<7} success {summary.success_rate:.2f}", flush=True)

    print("\nreflectgym quickstart: scripted agents on every registered environment\n")
    print(format_table(summaries))
    if examples:
        print("\nwhat the verifiers told the random agent (one turn per family):")
        for env_id, feedback in examples.values():
            print(f"  {env_id}: {' '.join(feedback.split())[:200]}")
    if skipped:
        print("\nnot run here:\n  " + "\n  ".join(skipped))
    print(f"\ntrajectories and summaries: {args.out}/")


if __name__ == "__main__":
    main()
