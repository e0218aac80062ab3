"""The `reflectgym` command, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
