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
import functools
import importlib
import importlib.util
import json
import os
import runpy
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
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
    evaluate_rollouts,
    format_table,
    load_run,
    make_policy,
    scripted_agent,
    write_report,
)
from reflectgym.agents.report import env_folder, summarised_envs
from reflectgym.agents.specs import POLICY_SPECS, check_policy_spec
from reflectgym.core.registry import qualify
from reflectgym.core.trajectory import Trajectory

PLAY_HELP = (
    "commands: :reset (new episode)  :quit  :help — anything else is your action; one that starts with ``` (a code "
    "block) goes on over several lines up to its closing ```"
)


class UsageError(Exception):
    """A command line that cannot run as given: said in one line, exit status 2."""


def parse_env_args(pairs: Sequence[str]) -> dict[str, Any]:
    """`["max_steps=20", "feedback=hint", "size=[8,8]"]` → kwargs; values are JSON when they parse as JSON. A pair
    without `=` is a `UsageError`."""
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--env-arg takes key=value; got {pair!r}")
        try:
            kwargs[key] = json.loads(raw)
        except json.JSONDecodeError:
            kwargs[key] = raw
    return kwargs


def load_user_modules(modules: Sequence[str]) -> None:
    """Imports modules (or runs .py files) that register custom envs; modules are found in the current folder
    first, as `python -m` finds them. Raises `UsageError` for a missing file or module."""
    if modules and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    for module in modules:
        if module.endswith(".py"):
            if not Path(module).is_file():
                raise UsageError(f"--import {module}: no such file")
            try:
                runpy.run_path(module, run_name="reflectgym_user_module")
            except ImportError as error:
                raise UsageError(f"--import {module}: {error}") from error
            except SyntaxError as error:
                raise UsageError(f"--import {module}: {_syntax_error(error)}") from error
            continue
        try:
            importlib.import_module(module)
        except ImportError as error:
            where = " (looked in the current folder and the installed packages)" if error.name == module else ""
            raise UsageError(f"--import {module}: {error}{where}") from error
        except SyntaxError as error:
            raise UsageError(f"--import {module}: {_syntax_error(error)}") from error


def _syntax_error(error: SyntaxError) -> str:
    """Where a module fails to parse, in one line: `path:line: message`."""
    return f"{error.filename}:{error.lineno}: {type(error).__name__}: {error.msg}"


def cmd_envs(args: argparse.Namespace) -> int:
    envs = reflectgym.list_envs(family=args.family)
    if not envs and args.family:
        families = sorted({info.family for info in reflectgym.list_envs()})
        raise UsageError(f"no envs in family {args.family!r}; families: {', '.join(families)}")
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
            families = sorted({info.family for info in reflectgym.list_envs()})
            raise UsageError(f"no envs in suite {args.suite!r}; suites: {', '.join(families)}, all")
        ids += [env_id for env_id in suite if env_id not in ids]
    if not ids:
        raise ValueError("name at least one env, or a suite with --suite FAMILY")
    return ids


POLICY_ONLY = {
    "model": "--model",
    "device": "--device",
    "num_envs": "--num-envs",
    "group_size": "--group-size",
    "max_seconds": "--max-seconds",
    "max_tokens": "--max-tokens",
    "max_new_tokens": "--max-new-tokens",
    "temperature": "--temperature",
    "ray_workers": "--ray-workers",
    "ray_address": "--ray-address",
    "ray_gpus_per_worker": "--ray-gpus-per-worker",
}
"""Eval options (dest → flag) that only a model policy honours; their argparse default is None."""

AT_LEAST_ONE = {
    "episodes": "--episodes",
    "max_turns": "--max-turns",
    "num_envs": "--num-envs",
    "ray_workers": "--ray-workers",
    "group_size": "--group-size",
    "max_tokens": "--max-tokens",
    "max_new_tokens": "--max-new-tokens",
}
"""Eval counts (dest → flag) that must be at least 1 when given."""

RESULT_FILES = ("trajectories.jsonl", "summary.json", "summaries.json", "report.html")
"""What `eval --out` writes in its folder (and trajectories and a summary in one subfolder per env)."""


def rollout_config(args: argparse.Namespace) -> RolloutConfig:
    """The rollout options of `eval --policy`, with the documented defaults for those not given."""
    return RolloutConfig(
        num_envs=8 if args.num_envs is None else args.num_envs,
        group_size=1 if args.group_size is None else args.group_size,
        max_turns=args.max_turns,
        max_episode_seconds=args.max_seconds,
        max_episode_tokens=args.max_tokens,
        sampling=Sampling(
            temperature=0.0 if args.temperature is None else args.temperature,
            max_new_tokens=256 if args.max_new_tokens is None else args.max_new_tokens,
            seed=args.seed,
        ),
    )


def check_eval_options(args: argparse.Namespace) -> None:
    """Counts below 1 and sampling options a policy would refuse are `UsageError`s before anything loads or plays
    (`--num-envs 0` used to fail only once the model had loaded)."""
    for dest, flag in AT_LEAST_ONE.items():
        value = getattr(args, dest)
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1; got {value}")
    if args.policy is not None:
        try:
            rollout_config(args)
        except ValueError as error:
            raise UsageError(str(error)) from error
    if args.ray_address is not None and args.ray_workers is None:
        raise UsageError("--ray-address: only with --ray-workers")
    if args.ray_workers is not None and importlib.util.find_spec("ray") is None:
        raise UsageError("--ray-workers needs Ray: pip install 'reflectgym[ray]'")
    if args.ray_gpus_per_worker is not None and (args.ray_workers is None or args.ray_gpus_per_worker < 0):
        raise UsageError("--ray-gpus-per-worker: a number >= 0, only with --ray-workers")
    if args.policy is not None:
        try:  # before any model loads (with --ray-workers, policies load only in the actors)
            check_policy_spec(args.policy)
        except ValueError as error:
            raise UsageError(str(error)) from error


def check_envs(env_ids: Sequence[str], kwargs: dict[str, Any]) -> None:
    """Makes (and closes) one env of each id with `kwargs`: an unknown id or a bad --env-arg is a `UsageError`
    before a model loads, not every episode's error after it."""
    for env_id in env_ids:
        try:
            gym.make(env_id, **kwargs).close()
        except Exception as error:
            raise UsageError(f"cannot make {env_id}: {type(error).__name__}: {error}") from error


def existing_results(out: Path, env_ids: Sequence[str]) -> list[Path]:
    """The result files of an earlier eval in `out`: its own, and those in the per-env folders of the envs its
    `summaries.json` names or this run will write (any other folder in `out`, another run's, is not this run's)."""
    if not out.is_dir():
        return []
    found = [out / name for name in RESULT_FILES if (out / name).is_file()]
    folders = dict.fromkeys(env_folder(env_id) for env_id in [*summarised_envs(out / "summaries.json"), *env_ids])
    for folder in (out / name for name in folders):
        found += [folder / name for name in RESULT_FILES if (folder / name).is_file()]
    return found


def check_out_dir(out: Path, env_ids: Sequence[str], overwrite: bool) -> None:
    """`--out` must be a folder (or not exist yet) and, unless `--overwrite`, hold no earlier results: a report of
    the folder would mix them with this run's."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: it is a file; name a folder (made if missing)")
    found = existing_results(out, env_ids)
    if found and not overwrite:
        raise UsageError(
            f"--out {out} already holds results ({found[0].name}...): name a new folder, or add --overwrite"
        )


def clear_results(out: Path, env_ids: Sequence[str]) -> None:
    """Deletes an earlier eval's result files in `out` (see `existing_results`; nothing else) and the per-env
    folders they leave empty."""
    for path in existing_results(out, env_ids):
        path.unlink()
        if path.parent != out and not any(path.parent.iterdir()):
            path.parent.rmdir()


def reject_policy_options(args: argparse.Namespace) -> None:
    """A scripted agent plays one episode at a time without sampling: options it cannot honour are errors."""
    given = [flag for dest, flag in POLICY_ONLY.items() if getattr(args, dest) is not None]
    if given:
        raise UsageError(f"{', '.join(given)}: only for model policies (--policy), not for --agent {args.agent}")


def html_target(out: Path) -> Path:
    """`--out` of a report: a `.html` path as given, anything else a folder that gets `report.html`."""
    return out if out.suffix == ".html" else out / "report.html"


def episode_error(trajectories: Sequence[Trajectory]) -> str | None:
    """The first error's message (one line) when every episode errored, else None."""
    errors = [str(t.metadata["error"]) for t in trajectories if "error" in t.metadata]
    if not trajectories or len(errors) < len(trajectories):
        return None
    return errors[0].strip().splitlines()[0] if errors[0].strip() else "unknown error"


def play_env(
    args: argparse.Namespace,
    env_id: str,
    kwargs: dict[str, Any],
    env_out: Path | None,
    policy: Any,
    task_ids: list[str] | None,
) -> tuple[EvalSummary, list[Trajectory]]:
    """Evaluates one env, made with `kwargs`, with the policy or the scripted agent (its episodes cut at
    --max-turns); with `task_ids` (--all-tasks), each of those tasks once."""
    if args.ray_workers is not None:
        return play_env_on_ray(args, env_id, kwargs, env_out, task_ids)
    if policy is not None:
        make_env = lambda: gym.make(env_id, **kwargs)  # noqa: E731
        return evaluate_policy(
            policy, make_env, env_id=env_id, episodes=args.episodes, seed=args.seed, out_dir=env_out,
            config=rollout_config(args), progress=not args.quiet, task_ids=task_ids,
        )  # fmt: skip
    make_limited = lambda: gym.make(env_id, max_episode_steps=args.max_turns, **kwargs)  # noqa: E731
    agent = scripted_agent(args.agent, seed=args.seed)
    return evaluate(
        make_limited, agent, env_id=env_id, episodes=args.episodes, seed=args.seed, out_dir=env_out,
        progress=not args.quiet, task_ids=task_ids,
    )  # fmt: skip


def play_env_on_ray(
    args: argparse.Namespace, env_id: str, kwargs: dict[str, Any], env_out: Path | None, task_ids: list[str] | None
) -> tuple[EvalSummary, list[Trajectory]]:
    """`play_env` for `--ray-workers`: the policy is built in each Ray actor, which also loads the --import
    modules before it makes its envs."""
    from reflectgym.distributed import RayRolloutConfig, RayRolloutPool, WorkerStartError

    make_one_policy = functools.partial(make_policy, args.policy, model=args.model, device=args.device)
    make_env = functools.partial(make_env_after_imports, os.getcwd(), tuple(args.imports), env_id, kwargs)
    gpus = args.ray_gpus_per_worker or 0.0
    config = RayRolloutConfig(num_workers=args.ray_workers, num_gpus_per_worker=gpus, address=args.ray_address)
    rollout = rollout_config(args)
    try:
        pool = RayRolloutPool(make_one_policy, make_env, env_id, rollout, config)
    except WorkerStartError as error:
        raise UsageError(str(error)) from error
    with pool:
        return evaluate_rollouts(
            pool, env_id=env_id, agent=pool.policy_name, group_size=rollout.group_size, episodes=args.episodes,
            seed=args.seed, out_dir=env_out, progress=not args.quiet, task_ids=task_ids,
        )  # fmt: skip


def make_env_after_imports(
    folder: str, imports: Sequence[str], env_id: str, kwargs: dict[str, Any]
) -> gym.Env[Any, Any]:
    """Makes `env_id` in a process that may not have registered it yet (a Ray actor): the --import modules are
    loaded first, from `folder` (the driver's current folder), once per process (env threads take turns)."""
    with _IMPORTING:
        if env_id not in gym.registry:
            if folder not in sys.path:
                sys.path.insert(0, folder)
            load_user_modules([name if not name.endswith(".py") else str(Path(folder, name)) for name in imports])
    return gym.make(env_id, **kwargs)


_IMPORTING = threading.Lock()


def every_task(env_id: str, kwargs: dict[str, Any]) -> list[str]:
    """The ids of every task `env_id` plays (`--all-tasks`); a `UsageError` for an env that generates its tasks."""
    env = gym.make(env_id, **kwargs)
    try:
        ids = getattr(env.unwrapped, "task_ids", lambda: None)()
    finally:
        env.close()
    if not ids:
        raise UsageError(f"--all-tasks: {env_id} generates its tasks and has no list to play through; use --episodes")
    return list(ids)


def cmd_eval(args: argparse.Namespace) -> int:
    env_ids = eval_env_ids(args)
    kwargs = parse_env_args(args.env_arg)  # a malformed --env-arg fails before any model loads
    check_eval_options(args)
    if args.policy is None:
        reject_policy_options(args)
    out_dir = Path(args.out) if args.out else None
    if out_dir is not None:
        check_out_dir(out_dir, env_ids, args.overwrite)
    # every env's tasks before any model loads or episode runs: an env with no list stops the run at once
    task_lists = {env_id: every_task(env_id, kwargs) for env_id in env_ids} if args.all_tasks else {}
    if args.policy:
        check_envs(env_ids, kwargs)
    if args.quiet and args.policy:
        from reflectgym.agents.hf_policy import silence_library_bars

        silence_library_bars()
    use_ray = args.ray_workers is not None  # the policy is built in each Ray actor instead
    policy = make_policy(args.policy, model=args.model, device=args.device) if args.policy and not use_ray else None
    if out_dir is not None and args.overwrite:  # once the run can begin, as train's --overwrite-output-dir
        clear_results(out_dir, env_ids)
    summaries: list[EvalSummary] = []
    played: list[Trajectory] = []
    failures: list[str] = []
    for env_id in env_ids:
        env_out = out_dir / env_folder(env_id) if out_dir is not None and len(env_ids) > 1 else out_dir
        summary, trajectories = play_env(args, env_id, kwargs, env_out, policy, task_lists.get(env_id))
        summaries.append(summary)
        played.extend(trajectories)
        error = episode_error(trajectories)
        if error is not None:
            failures.append(f"every episode of {env_id} failed; the first with: {error}")
    print(format_table(summaries))
    if out_dir is not None:
        if len(env_ids) > 1:
            text = json.dumps([summary.to_dict() for summary in summaries], indent=2) + "\n"
            (out_dir / "summaries.json").write_text(text, encoding="utf-8")
        report = write_report(played, out_dir / "report.html")  # this run's episodes only
        print(f"\ntrajectories and summaries: {out_dir}/\nreport:                     {report}")
    for failure in failures:
        print(f"reflectgym eval: {failure}", file=sys.stderr)
    return 1 if failures else 0


def cmd_report(args: argparse.Namespace) -> int:
    run = Path(args.folder)
    if (run / "metrics.jsonl").is_file():  # a training run: learning curves
        from reflectgym.trainers.report import write_report as write_training_report

        print(f"report: {write_training_report(run, args.out)}")
        return 0
    trajectories = load_run(run)
    out = Path(args.out) if args.out else (run if run.is_dir() else run.parent)
    path = write_report(trajectories, html_target(out), args.title)
    print(f"report: {path} ({len(trajectories)} episodes)")
    return 0


def producing_config(config: Path, model: str) -> Path | None:
    """A config beside `config` whose run writes `model` (its `output_dir/model`), e.g. sokoban_bc.yaml for
    sokoban_grpo.yaml's `runs/sokoban-bc/model`."""
    import yaml

    for candidate in sorted(config.parent.glob("*.y*ml")):
        try:
            values = yaml.safe_load(candidate.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(values, dict) and Path(str(values.get("output_dir", ""))) / "model" == Path(model):
            return candidate
    return None


def missing_model_hint(config: str, overrides: Sequence[str], error: FileNotFoundError) -> str:
    """The error of a model that is not there, with the config that trains it when one is beside `config`."""
    from reflectgym.trainers.config import load_values

    model = str(load_values(config, overrides).get("model", ""))
    producer = producing_config(Path(config), model) if model else None
    if producer is None or Path(model).exists():
        return str(error)
    return f"{error}; it is what `reflectgym train {producer}` writes: run that first"


def cmd_train(args: argparse.Namespace) -> int:
    from reflectgym.trainers.config import load_values
    from reflectgym.trainers.data_parallel import current_world
    from reflectgym.trainers.registry import build_from_config, options_help
    from reflectgym.trainers.report import write_report

    if not Path(args.config).is_file():
        raise UsageError(f"no config file {args.config}")
    overrides = list(args.overrides)
    if "-h" in overrides or "--help" in overrides:
        values = load_values(args.config, [item for item in overrides if item not in ("-h", "--help")])
        print(options_help(str(values.get("trainer", "grpo")), values, source=args.config))
        return 0
    try:
        name, trainer = build_from_config(args.config, overrides)
    except FileNotFoundError as error:
        raise UsageError(missing_model_hint(args.config, overrides, error)) from error
    history = trainer.train()
    if not current_world().is_main:  # under torchrun, rank 0 reports
        return 0
    run_dir = Path(trainer.config.output_dir)
    last = history[-1] if history else {}
    shown = ", ".join(f"{key} {last[key]:.3f}" for key in ("reward", "success", "loss") if key in last)
    print(f"{name}: {len(history)} steps run{'; last: ' + shown if shown else ''}")
    print(f"model: {run_dir / 'model'}\nreport: {write_report(run_dir, png=False)}")
    return 0


def whole_reply(line: str) -> str:
    """A reply typed at `play`'s prompt: one line, or a fenced code block read on to its closing fence (or the end
    of input), as a model would write it."""
    if not line.lstrip().startswith("```") or line.strip().count("```") > 1:
        return line
    lines = [line]
    while True:
        try:
            lines.append(input("... "))
        except EOFError:
            break
        if lines[-1].strip() == "```":
            break
    return "\n".join(lines)


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
        observation, reward, terminated, truncated, info = env.step(whole_reply(line))
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
    parser.set_defaults(subparsers=commands.choices)

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
    evaluate_cmd.add_argument("--num-envs", type=int, help="--policy: episodes in flight at once (default: 8)")
    evaluate_cmd.add_argument("--group-size", type=int, help="--policy: episodes per seed (default: 1)")
    evaluate_cmd.add_argument("--max-turns", type=int, default=100, help="turns per episode at most (default: 100)")
    evaluate_cmd.add_argument("--max-seconds", type=float, help="--policy: wall seconds per episode at most")
    evaluate_cmd.add_argument("--max-tokens", type=int, help="--policy: sampled tokens per episode at most")
    evaluate_cmd.add_argument("--max-new-tokens", type=int, help="--policy: tokens per reply (default: 256)")
    evaluate_cmd.add_argument("--temperature", type=float, help="--policy: 0 = greedy (default: 0)")
    evaluate_cmd.add_argument("--episodes", type=int, default=10, help="episodes to play (default: 10)")
    evaluate_cmd.add_argument(
        "--all-tasks",
        action="store_true",
        help="play every task of the env's list once, in order (HumanEval-v0: 164 episodes), instead of --episodes "
        "seeded draws, which repeat some tasks and miss others",
    )
    evaluate_cmd.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: 0)")
    evaluate_cmd.add_argument("--out", help="folder for trajectories.jsonl, summary.json and report.html")
    evaluate_cmd.add_argument(
        "--overwrite", action="store_true", help="--out may hold an earlier eval's results: delete them first"
    )
    evaluate_cmd.add_argument(
        "--ray-workers",
        type=int,
        help="--policy: play on this many Ray actors, each with its own policy and --num-envs envs (needs ray)",
    )
    evaluate_cmd.add_argument(
        "--ray-address", help="--ray-workers: the cluster to join (default: a local one, or $RAY_ADDRESS)"
    )
    evaluate_cmd.add_argument(
        "--ray-gpus-per-worker",
        type=float,
        help="--ray-workers: GPUs each actor reserves, for hf: and vllm: policies (default: 0)",
    )
    evaluate_cmd.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate_cmd.set_defaults(run=cmd_eval)

    report = commands.add_parser(
        "report", help="write the HTML report of an eval folder, a trajectories file, or a training run's curves"
    )
    report.add_argument("folder", metavar="RUN", help="an eval --out folder, a trajectories.jsonl, or a train run")
    report.add_argument("--out", help="a .html file, or a folder that gets report.html (default: the run folder)")
    report.add_argument("--title", default="reflectgym evaluation", help="the report's title")
    report.set_defaults(run=cmd_report)

    train = commands.add_parser(
        "train",
        help="train a policy from a config file: reflectgym train run.yaml [--lr 1e-5 ...]",
        description="Runs the trainer named in the config (`trainer: grpo`, `sft`, `agent_r`, `skill_sd`, `exit` or "
        "`rltf`; a project's own through `register_trainer`). Any option of the config can be overridden as --name "
        "value. `reflectgym train run.yaml --help` lists that trainer's options.",
    )
    train.add_argument("config", nargs="?", metavar="CONFIG", help="a YAML file of options, with `trainer: NAME`")
    train.add_argument(
        "overrides", nargs=argparse.REMAINDER, metavar="--NAME VALUE", help="options that override the file's"
    )
    train.set_defaults(run=cmd_train)

    play = commands.add_parser("play", help="play an env yourself in the terminal")
    env_options(play)
    play.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: 0)")
    play.set_defaults(run=cmd_play)
    return parser


def parse_command_line(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parses the command line; a bad option is reported with the usage of its subcommand."""
    args, extra = build_parser().parse_known_args(argv)
    subparser = args.subparsers[args.command]
    if extra:
        subparser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "train" and args.config is None:
        subparser.error("name a config file: reflectgym train CONFIG [--NAME VALUE ...] (see examples/configs/)")
    return args


def one_line_warning(command: str) -> Callable[..., None]:
    """A `warnings.showwarning` that says a warning in one line on stderr (`reflectgym report: warning: ...`),
    without the source line Python adds."""

    def show(message: Warning | str, *args: Any, **kwargs: Any) -> None:
        print(f"reflectgym {command}: warning: {message}", file=sys.stderr)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `reflectgym` command."""
    args = parse_command_line(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = one_line_warning(args.command)
            load_user_modules(args.imports)
            return int(args.run(args))
    except UsageError as error:
        print(f"reflectgym {args.command}: {error}", file=sys.stderr)
        return 2
    except (KeyError, ValueError, TypeError, ImportError, FileNotFoundError, gym.error.Error) as error:
        # ConfigError is a ValueError: a bad option says what to change, without a traceback
        print(f"reflectgym {args.command}: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a folder that cannot be written (a file in the way, no permission, disk full)
        print(f"reflectgym {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
