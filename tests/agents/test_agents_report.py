"""The HTML report: self-contained, its plots and trajectory viewer render and work in headless Chromium."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from reflectgym.agents import load_run, write_report
from reflectgym.agents.report import group_summaries, render_report
from reflectgym.core.trajectory import Trajectory, Turn, write_trajectories
from reflectgym.core.types import Verdict


def trajectories() -> list[Trajectory]:
    out = []
    for seed in range(5):
        solved = seed % 2 == 0
        turns = [
            Turn("board <1>", "left", 0.0, "You moved left.", parse_error=None),
            Turn("board 2", "<b>up</b>", float(solved), "Solved!" if solved else "Deadlock: box in a corner.",
                 terminated=True, verdict=Verdict(float(solved), solved, "x")),
        ][: 1 + (seed > 0)]  # fmt: skip
        env = "reflectgym/Sokoban-v0" if seed < 3 else "reflectgym/Math-v0"
        out.append(Trajectory(env, None, seed, turns, "final <board>", metadata={"policy": "hf:tiny"}))
    out.append(Trajectory("reflectgym/Math-v0", None, 9, metadata={"policy": "hf:tiny", "error": "RuntimeError: boom"}))
    return out


def test_report_is_self_contained_and_escapes_model_text(tmp_path: Path) -> None:
    page = render_report(trajectories())
    assert "<script src" not in page and "http://" not in page and "https://" not in page
    assert "&lt;b&gt;up&lt;/b&gt;" in page and "<b>up</b>" not in page
    summaries = {s.env_id: s for s in group_summaries(trajectories())}
    assert summaries["reflectgym/Sokoban-v0"].episodes == 3 and summaries["reflectgym/Math-v0"].errors == 1
    assert write_report(trajectories(), tmp_path / "r" / "report.html").is_file()


def chromium() -> str | None:
    return os.environ.get("REFLECTGYM_CHROMIUM") or shutil.which("chromium")


@pytest.mark.browser
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    path = write_report(trajectories(), tmp_path / "report.html")
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), headless=True, args=flags)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(path.as_uri())
        assert page.locator("#summary tr").count() == 3  # header + two envs
        success_bars = page.locator("#success-plot rect.bar")
        assert success_bars.count() == 2 and success_bars.first.bounding_box()["width"] > 0  # type: ignore[index]
        assert page.locator("#turns-plot rect.bar").count() >= 2
        episodes = page.locator("details.episode")
        assert episodes.count() == 6
        second = episodes.nth(1)
        assert not second.locator("pre.feedback").first.is_visible()
        second.locator("summary").click()
        assert second.locator("pre.feedback").nth(1).inner_text() == "Deadlock: box in a corner."
        assert second.locator("pre.action").nth(1).inner_text() == "<b>up</b>"
        episodes.nth(5).locator("summary").click()
        assert "RuntimeError: boom" in episodes.nth(5).inner_text()
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        if os.environ.get("REFLECTGYM_KEEP_SCREENSHOT"):
            shutil.copy(tmp_path / "report.png", os.environ["REFLECTGYM_KEEP_SCREENSHOT"])
        browser.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_load_run_reads_the_runs_own_files_not_older_ones_beside_them(tmp_path: Path) -> None:
    old, new = trajectories()[:3], trajectories()[3:4]
    write_trajectories(tmp_path / "one" / "reflectgym_Sokoban-v0" / "trajectories.jsonl", old)  # an older run
    write_trajectories(tmp_path / "one" / "trajectories.jsonl", new)
    assert load_run(tmp_path / "one") == new
    several = tmp_path / "several"
    write_trajectories(several / "reflectgym_Math-v0" / "trajectories.jsonl", new)
    write_trajectories(several / "reflectgym_Sokoban-v0" / "trajectories.jsonl", old)  # not in summaries.json
    (several / "summaries.json").write_text('[{"env_id": "reflectgym/Math-v0"}]')
    assert load_run(several) == new
    assert len(load_run(tmp_path)) == 2 * len(old) + 2 * len(new)  # a folder of runs: every file under it
