"""Browser-free parts: the accessibility-tree text, the site router, feedback wording, the task list and the
pointer's way for a drag."""

from __future__ import annotations

from pathlib import Path

import pytest

from reflectgym.envs.web import feedback
from reflectgym.envs.web.axtree import AxTree
from reflectgym.envs.web.executor import DROP_PAST, drag_path
from reflectgym.envs.web.routing import SiteRouter
from reflectgym.envs.web.tasks import BUNDLED_TASKS, TASK_IDS, bundled_task, tasks_dir


def _tree(count: int) -> AxTree:
    raw = {
        "nodes": [[i, "button", f"Button {i}", None, "", 0, None] for i in range(1, count + 1)],
        "nextId": count + 1,
    }
    return AxTree.from_js(raw)


def test_tree_lines_show_role_name_value_options_and_states() -> None:
    raw = {
        "nodes": [
            [1, "heading", "Sign in", None, "", 0, None],
            [2, "textbox", 'Say "hi"', "abc", "focused required", 1, None],
            [3, "combobox", "Colour", "Red", "", 1, ["Red", "Blue"]],
        ],
        "nextId": 4,
    }
    text = AxTree.from_js(raw).text(1000)
    assert text.splitlines() == [
        '[1] heading "Sign in"',
        '  [2] textbox "Say \\"hi\\"" value="abc" focused required',
        '  [3] combobox "Colour" value="Red" options=["Red", "Blue"]',
    ]


def test_tree_text_is_cut_with_a_note() -> None:
    text = _tree(100).text(300)
    assert len(text) < 400
    assert text.endswith("more elements not shown)")


def test_tree_lookup_by_id_and_role() -> None:
    tree = _tree(3)
    assert tree.get(2) is not None and tree.get(9) is None
    assert tree.ids_with_role(["button"]) == [1, 2, 3]


def test_router_serves_mounted_files_only(tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "page.html").write_text("<p>hi</p>")
    (tmp_path / "secret.txt").write_text("no")
    router = SiteRouter("http://127.0.0.1:1")
    base = router.mount(tmp_path / "site")
    assert base.startswith("http://127.0.0.1:1/site/")
    assert router.decide(base + "page.html").body == b"<p>hi</p>"
    assert router.decide(base + "page.html").content_type.startswith("text/html")
    assert router.decide(base + "../secret.txt").status == 404
    assert router.decide(base + "%2e%2e/secret.txt").status == 404
    assert router.decide(base + "missing.html").status == 404
    assert router.decide("https://example.com/page.html").body is None


def test_router_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SiteRouter("http://127.0.0.1:1").mount(tmp_path / "nope")


def test_feedback_levels_differ_and_name_the_field() -> None:
    problem = feedback.Problem(field="Email", kind="the address from the instruction", hint="Retype it.")
    assert "Email" not in feedback.wrong_attempt(problem, "binary")
    assert "Wrong Email" in feedback.wrong_attempt(problem, "diagnostic")
    assert "Hint: Retype it." not in feedback.wrong_attempt(problem, "diagnostic")
    assert feedback.wrong_attempt(problem, "hint").endswith("Hint: Retype it.")
    assert "not complete" in feedback.unfinished(problem, "diagnostic")


def test_every_bundled_task_has_its_pages() -> None:
    assert len(BUNDLED_TASKS) >= 15 and len(set(TASK_IDS)) == len(TASK_IDS)
    for task in BUNDLED_TASKS:
        assert (tasks_dir() / task.page).is_file(), task
    assert (tasks_dir() / "rg.js").is_file()
    with pytest.raises(KeyError, match="known"):
        bundled_task("no-such-task")


def test_a_drag_lets_go_past_the_targets_middle_the_way_it_travels() -> None:
    down = drag_path(pressed=(60, 20), centre=(60, 80), size=(200, 20))  # down a list
    assert down == [(60, 20), (60, 80 + DROP_PAST * 20)]
    up = drag_path(pressed=(60, 80), centre=(60, 20), size=(200, 20))
    assert up == [(60, 80), (60, 20 - DROP_PAST * 20)]
    assert drag_path((5, 5), (5.5, 5.5), (10, 10)) == [(5, 5)]  # nowhere to go: a press and a release


def test_a_drag_between_rows_ends_going_up_or_down() -> None:
    """A sortable grid orders entries row by row and reads the way from the last step: to an entry above and to
    the right, a last step to the right would put the dragged one after it."""
    path = drag_path(pressed=(20, 112), centre=(100, 20), size=(40, 40))
    release = (100 + DROP_PAST * 40, 20 - DROP_PAST * 40)
    assert path == [(20, 112), (release[0], 112), release]
