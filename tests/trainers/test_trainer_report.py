"""The run report: one chart per metric, self-contained HTML, rendered by a real browser."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from reflectgym.trainers.metrics import MetricsLogger
from reflectgym.trainers.report import write_report


def make_run(folder: Path) -> Path:
    logger = MetricsLogger(folder)
    for step in range(1, 11):
        logger.log(step, {"reward": step / 10, "loss": 1 / step, "kl": float("nan") if step == 3 else 0.01 * step})
    logger.close()
    return folder


def test_report_has_one_chart_per_metric_and_no_external_resources(tmp_path: Path) -> None:
    page = write_report(make_run(tmp_path), png=False).read_text()
    assert page.count("<svg") == 3 and page.count("<polyline") == 3
    assert "reward (last 1)" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "<script" not in page


def test_report_of_an_empty_run_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="no records"):
        write_report(tmp_path)


@pytest.mark.browser
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    page_path = write_report(make_run(tmp_path), png=False)
    executable = os.environ.get("REFLECTGYM_CHROMIUM") or shutil.which("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        page = browser.new_page()
        page.goto(page_path.as_uri())
        assert page.locator("svg").count() == 3
        box = page.locator("svg").first.bounding_box()
        assert box is not None and box["width"] > 500
        page.screenshot(path=str(tmp_path / "report.png"))
        browser.close()
    assert (tmp_path / "report.png").stat().st_size > 5_000


@pytest.mark.parametrize("out", ["rep", "rep/page.html"])
def test_out_is_a_folder_or_an_html_path_with_the_curves_in_a_folder_of_their_own(tmp_path: Path, out: str) -> None:
    pytest.importorskip("matplotlib")
    page = write_report(make_run(tmp_path / "run"), tmp_path / out)
    assert page == tmp_path / ("rep/report.html" if out == "rep" else out)
    assert sorted(path.name for path in (page.parent / f"{page.stem}_curves").iterdir()) == [
        "kl.png",
        "loss.png",
        "reward.png",
    ]
    assert not list(tmp_path.glob("*.png")) and not list(page.parent.glob("*.png"))
