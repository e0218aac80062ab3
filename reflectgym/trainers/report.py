"""`reflectgym report RUN_DIR`: learning curves of a run as a self-contained HTML page (inline SVG, no
JavaScript, no network) and, when matplotlib is installed, one PNG per metric in a folder beside the page
(`report.html` → `report_curves/loss.png`)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path

from reflectgym.trainers.metrics import read_metrics

WIDTH, HEIGHT, PAD = 560, 240, 44


def _series(records: Sequence[dict[str, float]], key: str) -> list[tuple[float, float]]:
    points = []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            points.append((float(record["step"]), float(value)))
    return points


def svg_chart(title: str, points: Sequence[tuple[float, float]]) -> str:
    """One line chart with axes, min/max labels and the last value."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    x_span, y_span = (x_hi - x_lo) or 1.0, (y_hi - y_lo) or 1.0

    def project(x: float, y: float) -> str:
        px = PAD + (x - x_lo) / x_span * (WIDTH - 2 * PAD)
        py = HEIGHT - PAD - (y - y_lo) / y_span * (HEIGHT - 2 * PAD)
        return f"{px:.1f},{py:.1f}"

    line = " ".join(project(x, y) for x, y in points)
    name = html.escape(title)
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{name}">'
        f'<rect width="100%" height="100%" fill="white" stroke="#ccc"/>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#888"/>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{line}"/>'
        f'<text x="{PAD}" y="{PAD - 8}" font-size="13" font-family="sans-serif">{name} '
        f"(last {ys[-1]:.4g})</text>"
        f'<text x="4" y="{HEIGHT - PAD}" font-size="10" font-family="sans-serif">{y_lo:.3g}</text>'
        f'<text x="4" y="{PAD + 4}" font-size="10" font-family="sans-serif">{y_hi:.3g}</text>'
        f'<text x="{PAD}" y="{HEIGHT - PAD + 16}" font-size="10" font-family="sans-serif">step {x_lo:g}</text>'
        f'<text x="{WIDTH - PAD - 50}" y="{HEIGHT - PAD + 16}" font-size="10" font-family="sans-serif">'
        f"step {x_hi:g}</text></svg></figure>"
    )


def report_path(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Where the report goes: `output` when it ends in .html, else `output/report.html` (default: the run's)."""
    target = Path(output) if output is not None else Path(run_dir)
    return target if target.suffix == ".html" else target / "report.html"


def curves_folder(report: Path) -> Path:
    """The folder of a report's PNG curves: beside it, named after it (`report.html` → `report_curves/`)."""
    return report.with_name(f"{report.stem}_curves")


def write_report(run_dir: str | Path, output: str | Path | None = None, png: bool = True) -> Path:
    """Writes the run's report to `output` (a .html path, or a folder that gets `report.html`; default: the run
    folder) and, when matplotlib is available, one PNG per metric in `curves_folder`; returns the HTML path."""
    run = Path(run_dir)
    records = read_metrics(run)
    if not records:
        raise ValueError(f"{run / 'metrics.jsonl'} has no records to plot")
    keys = sorted({key for record in records for key in record if key not in {"step", "time"}})
    charts = [svg_chart(key, points) for key in keys if (points := _series(records, key))]
    target = report_path(run, output)
    target.parent.mkdir(parents=True, exist_ok=True)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>reflectgym run {html.escape(run.name)}</title>"
        "<style>body{font-family:sans-serif;margin:24px}figure{display:inline-block;margin:8px}</style></head>"
        f"<body><h1>Run {html.escape(run.name)}</h1><p>{len(records)} logged steps, "
        f"{len(charts)} metrics.</p>{''.join(charts)}</body></html>"
    )
    target.write_text(page, encoding="utf-8")
    if png:
        _write_pngs(records, keys, curves_folder(target))
    return target


def _write_pngs(records: Sequence[dict[str, float]], keys: Sequence[str], folder: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for key in keys:
        points = _series(records, key)
        if not points:
            continue
        figure, axis = plt.subplots(figsize=(5, 2.5))
        axis.plot([x for x, _ in points], [y for _, y in points])
        axis.set_title(key)
        axis.set_xlabel("step")
        figure.tight_layout()
        figure.savefig(folder / f"{key.replace('/', '_')}.png", dpi=100)
        plt.close(figure)
