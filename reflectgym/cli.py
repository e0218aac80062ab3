"""The `reflectgym` command: list envs, evaluate agents and models, write reports, play an env yourself.

reflectgym envs                                  list every registered env
reflectgym eval reflectgym/Sokoban-v0 --agent oracle --episodes 20 --out runs/eval
reflectgym eval Sokoban-v0 Math-v0 --policy hf:runs/ckpt --episodes 8 --out runs/eval
reflectgym eval --suite math --policy openai:http://127.0.0.1:8000/v1 --model my-model
reflectgym report runs/eval                      (re)write runs/eval/report.html
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
from reflectgym.agents import (
    EvalSummary,
    RolloutConfig,
    Sampling,
    evaluate,
    evaluate_policy,
    format_table,
    load_run,
    make_policy,
    scripted_agent,
    write_report,
)
from reflectgym.agents.specs import POLICY_SPECS
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


def eval_env_ids(args: argparse.Namespace) -> list[str]:
    """The envs to evaluate: those named, plus every env of `--suite` (a family, or `all`)."""
    ids = [qualify(env) for env in args.env]
    if args.suite:
        family = None if args.suite == "all" else args.suite
        suite = [info.id for info in reflectgym.list_envs(family=family)]
        if not suite:
            raise ValueError(f"no envs in suite {args.suite!r}")
        ids += [env_id for env_id in suite if env_id not in ids]
    if not ids:
        raise ValueError("name at least one env, or a suite with --suite FAMILY")
    return ids


def cmd_eval(args: argparse.Namespace) -> int:
    env_ids = eval_env_ids(args)
    kwargs = parse_env_args(args.env_arg)
    out_dir = Path(args.out) if args.out else None
    policy = make_policy(args.policy, model=args.model, device=args.device) if args.policy else None
    config = RolloutConfig(
        num_envs=args.num_envs,
        group_size=args.group_size,
        max_turns=args.max_turns,
        max_episode_seconds=args.max_seconds,
        max_episode_tokens=args.max_tokens,
        sampling=Sampling(temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=args.seed),
    )
    summaries: list[EvalSummary] = []
    for env_id in env_ids:
        env_out = out_dir / env_id.replace("/", "_") if out_dir is not None and len(env_ids) > 1 else out_dir
        make_env = lambda env_id=env_id: gym.make(env_id, **kwargs)  # noqa: E731
        if policy is not None:
            summary, _ = evaluate_policy(
                policy, make_env, env_id=env_id, episodes=args.episodes, seed=args.seed, out_dir=env_out,
                config=config, progress=not args.quiet,
            )  # fmt: skip
        else:
            agent = scripted_agent(args.agent, seed=args.seed)
            summary, _ = evaluate(
                make_env, agent, env_id=env_id, episodes=args.episodes, seed=args.seed, out_dir=env_out,
                progress=not args.quiet,
            )  # fmt: skip
        summaries.append(summary)
    print(format_table(summaries))
    if out_dir is not None:
        if len(env_ids) > 1:
            text = json.dumps([summary.to_dict() for summary in summaries], indent=2) + "\n"
            (out_dir / "summaries.json").write_text(text, encoding="utf-8")
        report = write_report(load_run(out_dir), out_dir / "report.html")
        print(f"\ntrajectories and summaries: {out_dir}/\nreport:                     {report}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    run = Path(args.folder)
    if (run / "metrics.jsonl").is_file():  # a training run: learning curves
        from reflectgym.trainers.report import write_report as write_training_report

        print(f"report: {write_training_report(run, args.out)}")
        return 0
    trajectories = load_run(run)
    out = Path(args.out) if args.out else (run if run.is_dir() else run.parent)
    path = write_report(trajectories, out if out.suffix == ".html" else out / "report.html", args.title)
    print(f"report: {path} ({len(trajectories)} episodes)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from reflectgym.trainers.config import load_values
    from reflectgym.trainers.data_parallel import current_world
    from reflectgym.trainers.registry import build_from_config, options_help
    from reflectgym.trainers.report import write_report

    overrides = list(args.overrides)
    if "-h" in overrides or "--help" in overrides:
        values = load_values(args.config, [item for item in overrides if item not in ("-h", "--help")])
        print(options_help(str(values.get("trainer", "grpo"))))
        return 0
    name, trainer = build_from_config(args.config, overrides)
    history = trainer.train()
    if not current_world().is_main:  # under torchrun, rank 0 reports
        return 0
    run_dir = Path(trainer.config.output_dir)
    last = history[-1] if history else {}
    shown = ", ".join(f"{key} {last[key]:.3f}" for key in ("reward", "success", "loss") if key in last)
    print(f"{name}: {len(history)} steps run{'; last: ' + shown if shown else ''}")
    print(f"model: {run_dir / 'model'}\nreport: {write_report(run_dir, png=False)}")
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
        "  reflectgym eval Sokoban-v0 --policy hf:runs/ckpt --episodes 8 --out runs/eval\n"
        "  reflectgym report runs/eval\n"
        "  reflectgym train examples/configs/sokoban_grpo.yaml --lr 1e-4\n"
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

    evaluate_cmd = commands.add_parser(
        "eval", help="run an agent or a model for N episodes; write trajectories, a summary and an HTML report"
    )
    evaluate_cmd.add_argument("env", nargs="*", help="env ids, e.g. reflectgym/Sokoban-v0 (prefix optional)")
    evaluate_cmd.add_argument("--suite", help="also every env of a family (sokoban, math, web, code, custom) or all")
    evaluate_cmd.add_argument(
        "--env-arg", action="append", default=[], metavar="KEY=VALUE", help="env argument (JSON value); repeatable"
    )
    evaluate_cmd.add_argument("--agent", default="oracle", help="oracle | random | replay:PATH (default: oracle)")
    evaluate_cmd.add_argument("--policy", help=f"a model instead of a scripted agent: {POLICY_SPECS}")
    evaluate_cmd.add_argument("--model", help="model name for openai: servers")
    evaluate_cmd.add_argument("--device", help="cpu | cuda | cuda:N for hf: policies (default: cuda if available)")
    evaluate_cmd.add_argument("--num-envs", type=int, default=8, help="episodes in flight at once (default: 8)")
    evaluate_cmd.add_argument("--group-size", type=int, default=1, help="episodes per seed (default: 1)")
    evaluate_cmd.add_argument("--max-turns", type=int, default=100, help="turns per episode at most (default: 100)")
    evaluate_cmd.add_argument("--max-seconds", type=float, help="wall seconds per episode at most")
    evaluate_cmd.add_argument("--max-tokens", type=int, help="sampled tokens per episode at most")
    evaluate_cmd.add_argument("--max-new-tokens", type=int, default=256, help="tokens per reply (default: 256)")
    evaluate_cmd.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default: 0)")
    evaluate_cmd.add_argument("--episodes", type=int, default=10, help="episodes to play (default: 10)")
    evaluate_cmd.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: 0)")
    evaluate_cmd.add_argument("--out", help="folder for trajectories.jsonl, summary.json and report.html")
    evaluate_cmd.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate_cmd.set_defaults(run=cmd_eval)

    report = commands.add_parser(
        "report", help="write the HTML report of an eval folder, a trajectories file, or a training run's curves"
    )
    report.add_argument("folder", metavar="RUN", help="an eval --out folder, a trajectories.jsonl, or a train run")
    report.add_argument("--out", help="report file or folder (default: report.html beside the trajectories)")
    report.add_argument("--title", default="reflectgym evaluation", help="the report's title")
    report.set_defaults(run=cmd_report)

    train = commands.add_parser(
        "train",
        help="train a policy from a config file: reflectgym train run.yaml [--lr 1e-5 ...]",
        description="Runs the trainer named in the config (`trainer: grpo` or `sft`). Any option of the config can "
        "be overridden as --name value. `reflectgym train run.yaml --help` lists that trainer's options.",
    )
    train.add_argument("config", help="a YAML file of options, with `trainer: NAME`")
    train.add_argument("overrides", nargs=argparse.REMAINDER, help="--name value pairs that override the file")
    train.set_defaults(run=cmd_train)

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
    except (KeyError, ValueError, TypeError, ImportError, FileNotFoundError, gym.error.Error) as error:
        # ConfigError is a ValueError: a bad option says what to change, without a traceback
        print(f"reflectgym {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
