"""Training metrics: JSONL always (flushed per line, so a crash loses nothing written), TensorBoard and
Weights & Biases when asked for and installed."""

from __future__ import annotations

import importlib
import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def require_sinks(*, tensorboard: bool, wandb: bool) -> None:
    """Raises `ImportError` saying what to install when an asked-for logging sink is missing."""
    wanted = [("torch.utils.tensorboard", "tensorboard logging needs the tensorboard package")] if tensorboard else []
    wanted += [("wandb", "W&B logging needs wandb")] if wandb else []
    for module, need in wanted:
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ImportError(f"{need}: pip install {module.rsplit('.', 1)[-1]}") from error


class MetricsLogger:
    """Writes one JSON object per step to `RUN_DIR/metrics.jsonl`, and mirrors scalars to optional sinks.

    Args:
        run_dir: The run's folder.
        tensorboard: Also write TensorBoard event files under `RUN_DIR/tensorboard` (needs `tensorboard`).
        wandb_project: Also log to this Weights & Biases project (needs `wandb`; offline unless logged in).
        config: The run's config, written to `RUN_DIR/config.json` and given to W&B.
        resumed_at: The step a resumed run continues from: the rows of `metrics.jsonl` up to it are kept and new
            ones appended (rows of later steps, logged before a crash after the checkpoint, are dropped: those
            steps run again). None starts a new file.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        tensorboard: bool = False,
        wandb_project: str | None = None,
        config: Mapping[str, Any] | None = None,
        resumed_at: int | None = None,
    ) -> None:
        require_sinks(tensorboard=tensorboard, wandb=wandb_project is not None)  # before any file is touched
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        elapsed = keep_rows_until(self.path, resumed_at) if resumed_at is not None else 0.0
        self._handle = self.path.open("w" if resumed_at is None else "a", encoding="utf-8")
        self._start = time.time() - elapsed  # a resumed run's clock goes on from its last kept row
        if config is not None:
            (self.run_dir / "config.json").write_text(json.dumps(dict(config), indent=2, default=str) + "\n")
        self._tensorboard = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(str(self.run_dir / "tensorboard"))
        self._wandb = None
        if wandb_project is not None:
            import wandb

            self._wandb = wandb.init(project=wandb_project, config=dict(config or {}), dir=str(self.run_dir))

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Records the metrics of one step."""
        clean = {key: float(value) for key, value in metrics.items() if value is not None}
        record = {"step": step, "time": round(time.time() - self._start, 3), **clean}
        self._handle.write(json.dumps(record, allow_nan=True) + "\n")
        self._handle.flush()
        if self._tensorboard is not None:
            for key, value in clean.items():
                if math.isfinite(value):
                    self._tensorboard.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(clean, step=step)

    def close(self) -> None:
        """Flushes and closes every sink."""
        self._handle.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()


def keep_rows_until(path: Path, step: int) -> float:
    """Rewrites a metrics file (atomically) without the rows of steps after `step` and without a line a crash cut
    short; a missing file stays missing. Returns the `time` of the last row kept (0.0 without one)."""
    if not path.exists():
        return 0.0
    kept = []
    elapsed = 0.0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
            kept.append(line + "\n")
            elapsed = float(row.get("time", elapsed)) if isinstance(row.get("time"), int | float) else elapsed
    partial = path.with_name(path.name + ".partial")
    partial.write_text("".join(kept), encoding="utf-8")
    partial.replace(path)
    return elapsed


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every record of `RUN_DIR/metrics.jsonl`, in order (a torn last line from a crash is skipped)."""
    records = []
    path = Path(run_dir) / "metrics.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
