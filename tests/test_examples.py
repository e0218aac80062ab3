"""Every example script runs (in a smoke setting) as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_custom_env_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "custom_env.py")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Correct." in result.stdout


def test_quickstart_prints_a_table(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--episodes", "2", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout and "reflectgym/Capitals-v0" in result.stdout
    assert "not run here" not in result.stdout, result.stdout


def test_train_grpo_example_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_grpo.py"), "--steps", "3", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "final reward" in result.stdout and (tmp_path / "run" / "report.html").exists()


def test_sokoban_training_quickstart_runs_every_stage(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--demos", "20", "--bc-steps", "3", "--grpo-steps", "1", "--episodes", "4"]
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sokoban_quickstart.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    for row in ("random", "untrained", "after-BC", "after-GRPO"):
        assert row in result.stdout, result.stdout
    assert (tmp_path / "bc" / "report.html").is_file() and (tmp_path / "grpo" / "model" / "config.json").is_file()
