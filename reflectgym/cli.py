"""The `reflectgym` command: list envs, evaluate agents, play an env yourself.

reflectgym envs                                  list every registered env
reflectgym eval reflectgym/Sokoban-v0 --agent oracle --episodes 20 --out runs/eval
reflectgym play reflectgym/Sokoban-v0            play in the terminal
"""

from __future__ import annotations

import argparse
import importlib
import json
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

import reflectgym
from reflectgym.agents import evaluate, format_table, scripted_agent
from reflectgym.core.registry import qualify

PLAY_HELP = "commands: :reset (new episode)  :quit  :help — anything else is your action"


def parse_env_args(pairs: Sequence[str]) -> dict[str, Any]:
    """`["max_steps=20", "feedback=hint", "size=[8,8]"]` → kwargs; values are JSON when they parse as JSON."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--env-arg takes key=value; got {pair!r}")
        try:
            kwargs[key] = json.loads(raw)
        except json.JSONDecodeError:
            kwargs[key] = raw
    return kwargs


def load_user_modules(modules: Sequence[str]) -> None:
    """Imports modules (or runs .py files) that register custom envs."""
    for module in modules:
        if module.endswith(".py"):
            runpy.run_path(module, run_name="reflectgym_user_module")
        else:
            importlib.import_module(module)


def cmd_envs(args: argparse.Namespace) -> int:
    envs = reflectgym.list_envs(family=args.family)
    width = max((len(info.id) for info in envs), default=10)
    for info in envs:
        needs = f"  [needs {', '.join(info.requires)}]" if info.requires else ""
        print(f"{info.id:<{width}}  {info.family:<8} {info.description}{needs}")
    if not envs:
        print("no envs registered" + (f" in family {args.family!r}" if args.family else ""))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    env_id = qualify(args.env)
    kwargs = parse_env_args(args.env_arg)
    agent = scripted_agent(args.agent, seed=args.seed)
    out_dir = Path(args.out) if args.out else None
    summary, _ = evaluate(
        lambda: gym.make(env_id, **kwargs),
        agent,
        env_id=env_id,
        episodes=args.episodes,
        seed=args.seed,
        out_dir=out_dir,
        progress=not args.quiet,
    )
    print(format_table([summary]))
    if out_dir is not None:
        print(f"\ntrajectories: {out_dir / 'trajectories.jsonl'}\nsummary:      {out_dir / 'summary.json'}")
    return 0


def cmd_play(args: argparse.Namespace) -> int:
    env_id = qualify(args.env)
    env = gym.make(env_id, **parse_env_args(args.env_arg))
    examples = getattr(env.unwrapped, "action_examples", ())
    print(f"Playing {env_id}. {PLAY_HELP}")
    if examples:
        print(f"example actions: {', '.join(examples)}")
    seed = args.seed
    observation, _ = env.reset(seed=seed)
    print(f"\n{observation}")
    total = 0.0
    while True:
        try:
            line = input("\n> ")
        except EOFError:
            print()
            break
        command = line.strip()
        if command in (":quit", ":q"):
            break
        if command in (":help", ":h"):
            print(PLAY_HELP)
            continue
        if command in (":reset", ":r"):
            seed = None if seed is None else seed + 1
            observation, _ = env.reset(seed=seed)
            total = 0.0
            print(f"\n{observation}")
            continue
        if env.unwrapped.episode_over:  # type: ignore[attr-defined]
            print("The episode is over: :reset for another, :quit to leave.")
            continue
        observation, reward, terminated, truncated, info = env.step(line)
        total += float(reward)
        print(f"\n{observation}\n[reward {reward:+.2f}, total {total:+.2f}]")
        if terminated or truncated:
            verdict = info.get("verdict")
            outcome = "solved" if verdict is not None and verdict.passed else "over"
            print(f"Episode {outcome} ({'terminated' if terminated else 'turn limit'}). :reset for another, :quit.")
    env.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reflectgym",
        description="Gymnasium environments with verifiers that answer in text feedback.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  reflectgym envs\n  reflectgym eval reflectgym/Sokoban-v0 --agent oracle --episodes 20\n"
        "  reflectgym play reflectgym/Sokoban-v0 --env-arg feedback=hint",
    )
    parser.add_argument("--version", action="version", version=f"reflectgym {reflectgym.__version__}")
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module (or run a .py file) that registers custom envs first; repeatable",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    envs = commands.add_parser("envs", help="list registered environments with one-line descriptions")
    envs.add_argument("--family", help="only this family (sokoban, code, math, web, custom)")
    envs.set_defaults(run=cmd_envs)

    def env_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("env", help="env id, e.g. reflectgym/Sokoban-v0 (the reflectgym/ prefix is optional)")
        sub.add_argument(
            "--env-arg", action="append", default=[], metavar="KEY=VALUE", help="env argument (JSON value); repeatable"
        )

    evaluate_cmd = commands.add_parser("eval", help="run an agent for N episodes; write trajectories and a summary")
    env_options(evaluate_cmd)
    evaluate_cmd.add_argument("--agent", default="oracle", help="oracle | random | replay:PATH (default: oracle)")
    evaluate_cmd.add_argument("--episodes", type=int, default=10, help="episodes to play (default: 10)")
    evaluate_cmd.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: 0)")
    evaluate_cmd.add_argument("--out", help="folder for trajectories.jsonl and summary.json")
    evaluate_cmd.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate_cmd.set_defaults(run=cmd_eval)

    play = commands.add_parser("play", help="play an env yourself in the terminal")
    env_options(play)
    play.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: 0)")
    play.set_defaults(run=cmd_play)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `reflectgym` command."""
    args = build_parser().parse_args(argv)
    load_user_modules(args.imports)
    try:
        return int(args.run(args))
    except (KeyError, ValueError, TypeError, gym.error.Error) as error:
        print(f"reflectgym {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
