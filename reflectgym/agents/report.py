"""A self-contained HTML evaluation report: summary table, plots (inline SVG) and a trajectory viewer.

One file with no external scripts, styles or fonts, so it opens anywhere and can be attached to an issue. Plots:
success rate by env (with the 95 % interval) and a histogram of episode lengths. The viewer lists every episode;
opening one shows each turn's observation, action and feedback, with its reward and any parse error.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from reflectgym.agents.evaluation import EvalSummary, summarize
from reflectgym.core.trajectory import Trajectory, read_trajectories

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}.plots{display:flex;gap:2em;flex-wrap:wrap}
details{border:1px solid #ddd;border-radius:4px;margin:4px 0;padding:4px 8px}summary{cursor:pointer}
.turn{border-left:3px solid #88a;margin:8px 0;padding-left:8px}.ok{color:#070}.bad{color:#a00}
pre{white-space:pre-wrap;background:#f6f6f6;padding:6px;margin:2px 0;font-size:12px}
.label{font-weight:600;font-size:12px;color:#555}
"""


def load_run(folder: str | os.PathLike[str]) -> list[Trajectory]:
    """The trajectories of a run: a trajectories file; an eval folder's own (its `trajectories.jsonl`, or for a
    run of several envs those of the envs its `summaries.json` names), not those of older runs left beside them;
    else every `trajectories.jsonl` under `folder`, searched recursively (a folder of runs)."""
    files = run_files(Path(folder))
    if not files:
        raise FileNotFoundError(f"no trajectories.jsonl under {folder}")
    return [trajectory for file in files for trajectory in read_trajectories(file)]


def run_files(root: Path) -> list[Path]:
    """The trajectories files `load_run` reads (see there)."""
    if root.is_file():
        return [root]
    if (root / "trajectories.jsonl").is_file():
        return [root / "trajectories.jsonl"]
    envs = summarised_envs(root / "summaries.json")
    if envs:
        files = [root / env_folder(env) / "trajectories.jsonl" for env in envs]
        return [file for file in files if file.is_file()]
    return sorted(root.rglob("trajectories.jsonl"))


def env_folder(env_id: str) -> str:
    """The folder of one env's files in a run of several envs."""
    return env_id.replace("/", "_")


def summarised_envs(path: Path) -> list[str]:
    """The env ids a run of several envs lists in its `summaries.json` (each env's files are in a folder named by
    `env_folder`); [] without a readable one."""
    try:
        summaries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(summaries, list):
        return []
    return [str(s["env_id"]) for s in summaries if isinstance(s, dict) and "env_id" in s]


def group_summaries(trajectories: Sequence[Trajectory]) -> list[EvalSummary]:
    """One summary per (env, agent) found in the trajectories."""
    groups: defaultdict[tuple[str, str], list[Trajectory]] = defaultdict(list)
    for trajectory in trajectories:
        agent = str(trajectory.metadata.get("policy") or trajectory.metadata.get("agent") or "?")
        groups[(trajectory.env_id, agent)].append(trajectory)
    seconds = {key: sum(float(t.metadata.get("seconds", 0.0)) for t in items) for key, items in groups.items()}
    return [
        summarize(items, env_id=env_id, agent=agent, seconds=seconds[(env_id, agent)])
        for (env_id, agent), items in sorted(groups.items())
    ]


def render_report(trajectories: Sequence[Trajectory], title: str = "reflectgym evaluation") -> str:
    """The report as one HTML string."""
    summaries = group_summaries(trajectories)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        _summary_table(summaries),
        "<div class='plots'>",
        _success_plot(summaries),
        _turns_histogram(trajectories),
        "</div>",
        f"<h2>Trajectories ({len(trajectories)})</h2><div id='viewer'>",
        *(_episode(number, trajectory) for number, trajectory in enumerate(trajectories)),
        "</div></body></html>",
    ]
    return "\n".join(parts)


def write_report(
    trajectories: Sequence[Trajectory], path: str | os.PathLike[str], title: str = "reflectgym evaluation"
) -> Path:
    """Writes the report to `path`; returns it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(trajectories, title), encoding="utf-8")
    return out


def _summary_table(summaries: Sequence[EvalSummary]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(s.env_id)}</td><td>{html.escape(s.agent)}</td><td>{s.episodes}</td>"
        f"<td>{s.success_rate:.2f}</td><td>{s.ci_low:.2f}–{s.ci_high:.2f}</td><td>{s.mean_turns:.1f}</td>"
        f"<td>{s.mean_tokens:.0f}</td><td>{s.mean_reward:.2f}</td><td>{s.errors}</td><td>{s.seconds:.1f}</td></tr>"
        for s in summaries
    )
    header = "".join(
        f"<th>{name}</th>"
        for name in ("env", "policy", "episodes", "success", "95% CI", "turns", "tokens", "reward", "errors", "s")
    )
    return f"<table id='summary'><tr>{header}</tr>{rows}</table>"


def _success_plot(summaries: Sequence[EvalSummary]) -> str:
    bar, gap, left = 28, 10, 230
    width = left + 220
    total = max(1, len(summaries)) * (bar + gap) + 40
    items = [f"<text x='{left}' y='14' font-size='13' font-weight='600'>success rate by env (95% CI)</text>"]
    for row, summary in enumerate(summaries):
        y = 24 + row * (bar + gap)
        label = html.escape(f"{summary.env_id.removeprefix('reflectgym/')} · {summary.agent}")[:40]
        items.append(f"<text x='{left - 6}' y='{y + bar * 0.65}' font-size='11' text-anchor='end'>{label}</text>")
        items.append(f"<rect x='{left}' y='{y}' width='{200}' height='{bar}' fill='#eee'/>")
        items.append(
            f"<rect class='bar' x='{left}' y='{y}' width='{200 * summary.success_rate:.1f}' height='{bar}' "
            f"fill='#4a7'><title>{summary.success_rate:.2f}</title></rect>"
        )
        low, high = left + 200 * summary.ci_low, left + 200 * summary.ci_high
        mid = y + bar / 2
        items.append(f"<line x1='{low:.1f}' x2='{high:.1f}' y1='{mid}' y2='{mid}' stroke='#222' stroke-width='2'/>")
    return f"<svg id='success-plot' width='{width}' height='{total}' role='img'>{''.join(items)}</svg>"


def _turns_histogram(trajectories: Sequence[Trajectory]) -> str:
    counts = Counter(len(trajectory.turns) for trajectory in trajectories)
    width, height, base = 420, 220, 190
    items = ["<text x='10' y='14' font-size='13' font-weight='600'>turns per episode</text>"]
    if counts:
        top = max(counts)
        peak = max(counts.values())
        step = (width - 40) / (top + 1)
        for turns in range(top + 1):
            value = counts.get(turns, 0)
            h = (base - 30) * value / peak
            x = 30 + turns * step
            items.append(
                f"<rect class='bar' x='{x:.1f}' y='{base - h:.1f}' width='{max(step - 2, 1):.1f}' height='{h:.1f}' "
                f"fill='#58c'><title>{turns} turns: {value}</title></rect>"
            )
        items.append(f"<text x='30' y='{base + 16}' font-size='11'>0</text>")
        items.append(f"<text x='{30 + top * step:.1f}' y='{base + 16}' font-size='11'>{top}</text>")
    items.append(f"<line x1='30' x2='{width - 10}' y1='{base}' y2='{base}' stroke='#222'/>")
    return f"<svg id='turns-plot' width='{width}' height='{height}' role='img'>{''.join(items)}</svg>"


def _episode(number: int, trajectory: Trajectory) -> str:
    metadata = trajectory.metadata
    outcome = "<span class='ok'>solved</span>" if trajectory.success else "<span class='bad'>not solved</span>"
    reason = metadata.get("stop_reason") or ("error" if "error" in metadata else "")
    head = (
        f"#{number} {html.escape(trajectory.env_id)} seed {trajectory.seed} · {outcome} · {len(trajectory.turns)} "
        f"turns · reward {trajectory.total_reward:.2f}" + (f" · {html.escape(str(reason))}" if reason else "")
    )
    body = []
    if "error" in metadata:
        body.append(f"<pre class='bad'>{html.escape(str(metadata['error']))}</pre>")
    for index, turn in enumerate(trajectory.turns):
        parse = f" · <span class='bad'>parse error: {html.escape(turn.parse_error)}</span>" if turn.parse_error else ""
        body.append(
            f"<div class='turn'><div class='label'>turn {index + 1} · reward {turn.reward:+.2f}{parse}</div>"
            f"<div class='label'>observation</div><pre>{html.escape(turn.observation)}</pre>"
            f"<div class='label'>action</div><pre class='action'>{html.escape(turn.action)}</pre>"
            f"<div class='label'>feedback</div><pre class='feedback'>{html.escape(turn.feedback)}</pre></div>"
        )
    if trajectory.final_observation:
        body.append(f"<div class='label'>final observation</div><pre>{html.escape(trajectory.final_observation)}</pre>")
    return f"<details class='episode'><summary>{head}</summary>{''.join(body)}</details>"
