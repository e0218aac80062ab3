"""The `reflectgym` command, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CUSTOM = str(ROOT / "examples" / "custom_env.py")


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reflectgym.cli", *args], input=stdin, capture_output=True, text=True, timeout=300
    )


def test_help_reads_well() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("envs", "eval", "play"):
        assert command in result.stdout


def test_envs_lists_builtins_and_custom_envs_with_descriptions() -> None:
    result = run("--import", CUSTOM, "envs")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "reflectgym/Sokoban-v0" in lines and "reflectgym/Capitals-v0" in lines
    assert "custom" in lines["reflectgym/Capitals-v0"]


def test_eval_writes_trajectories_and_a_summary(tmp_path: Path) -> None:
    result = run("--import", CUSTOM, "eval", "Capitals-v0", "--episodes", "4", "--out", str(tmp_path), "--quiet")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["episodes"] == 4 and summary["success_rate"] == 1.0
    lines = (tmp_path / "trajectories.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["success"] is True
    assert "success" in result.stdout


def test_eval_replays_a_recorded_file(tmp_path: Path) -> None:
    run("--import", CUSTOM, "eval", "Capitals-v0", "--episodes", "3", "--out", str(tmp_path / "a"), "--quiet")
    replay = f"replay:{tmp_path / 'a' / 'trajectories.jsonl'}"
    result = run(
        "--import",
        CUSTOM,
        "eval",
        "Capitals-v0",
        "--agent",
        replay,
        "--episodes",
        "3",
        "--quiet",
        "--out",
        str(tmp_path / "b"),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["success_rate"] == 1.0


def test_unknown_env_is_a_clear_error() -> None:
    result = run("eval", "NoSuchEnv-v0", "--quiet")
    assert result.returncode == 2 and "NoSuchEnv" in result.stderr


def test_play_takes_moves_from_the_terminal() -> None:
    result = run(
        "--import",
        CUSTOM,
        "play",
        "Capitals-v0",
        "--env-arg",
        'feedback="hint"',
        stdin="Rome\nNairobi\n:reset\n:quit\n",
    )
    assert result.returncode == 0, result.stderr
    assert "starts with 'N'" in result.stdout and "Correct." in result.stdout and "Episode solved" in result.stdout


def test_eval_a_tiny_hf_model_on_every_family_writes_a_report(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from support.resources import resource_missing

    from reflectgym.agents.tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    envs = ["Sokoban-v0", "Math-v0", "Capitals-v0"] + ([] if resource_missing("browser") else ["Web-v0"])
    out = tmp_path / "run"
    result = run(
        "--import", CUSTOM, "eval", *envs, "--policy", f"hf:{model}", "--episodes", "2", "--max-turns", "3",
        "--max-new-tokens", "8", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summaries = json.loads((out / "summaries.json").read_text())
    assert [s["env_id"] for s in summaries] == [f"reflectgym/{env}" for env in envs]
    assert all(s["episodes"] == 2 and s["errors"] == 0 and s["mean_tokens"] > 0 for s in summaries)
    line = json.loads((out / "reflectgym_Sokoban-v0" / "trajectories.jsonl").read_text().splitlines()[0])
    assert line["turns"][0]["action_token_ids"] and sum(line["metadata"]["tokens"]["loss_mask"]) > 0
    assert "Sokoban" in (out / "report.html").read_text()
    again = run("report", str(out), "--out", str(tmp_path / "again.html"), "--title", "Tiny")
    assert again.returncode == 0 and "Tiny" in (tmp_path / "again.html").read_text()


def test_eval_a_suite_with_the_oracle() -> None:
    result = run("eval", "--suite", "math", "--episodes", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "reflectgym/Math-v0" in result.stdout and "1.00" in result.stdout


def test_unknown_policy_is_a_clear_error() -> None:
    result = run("eval", "Math-v0", "--policy", "nope:x", "--quiet")
    assert result.returncode == 2 and "unknown policy" in result.stderr


def test_train_runs_the_trainer_named_in_the_config_with_overrides(tmp_path: Path) -> None:
    config = tmp_path / "bc.yaml"
    config.write_text((ROOT / "examples" / "configs" / "sokoban_bc.yaml").read_text())
    out = tmp_path / "run"
    result = run("train", str(config), "--steps", "2", "--num-demonstrations", "4", "--output-dir", str(out),
                 "--progress", "false")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "sft: 2 steps run" in result.stdout
    assert json.loads((out / "config.json").read_text())["num_demonstrations"] == 4
    assert (out / "model" / "config.json").is_file() and (out / "checkpoints" / "latest").is_file()
    report = run("report", str(out))
    assert report.returncode == 0, report.stderr
    assert "<svg" in (out / "report.html").read_text()


def test_train_option_errors_and_help_name_the_options(tmp_path: Path) -> None:
    config = tmp_path / "grpo.yaml"
    config.write_text("trainer: grpo\nsteps: 1\n")
    bad = run("train", str(config), "--learning-rate", "1e-5")
    assert bad.returncode == 2 and "unknown GRPOConfig option(s): 'learning_rate'" in bad.stderr
    worse = run("train", str(config), "--group-size", "1")
    assert worse.returncode == 2 and "group_size must be at least 2" in worse.stderr
    unnamed = tmp_path / "none.yaml"
    unnamed.write_text("steps: 1\n")
    assert "say which trainer" in run("train", str(unnamed)).stderr
    helped = run("train", str(config), "--help")
    assert helped.returncode == 0 and "--kl-coef" in helped.stdout and "--lora-rank" in helped.stdout
