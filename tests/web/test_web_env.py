"""WebEnv in a real Chromium: every bundled task solved by its oracle, failed with useful feedback, the
conformance checks, isolation between episodes and parallel envs, async use, and recovery from a dead or hung
browser."""

from __future__ import annotations

import asyncio
import os
import pickle
import re
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import reflectgym
from reflectgym.core import check_determinism, check_garbage_actions, check_snapshot_roundtrip
from reflectgym.core.audit import audit_feedback_leaks
from reflectgym.envs.web.browser import BrowserConfig
from reflectgym.envs.web.driver import png_data_url
from reflectgym.envs.web.env import WebEnv
from reflectgym.envs.web.tasks import TASK_IDS

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def env() -> Iterator[WebEnv]:
    instance = WebEnv()
    yield instance
    instance.close()


def play_oracle(env: WebEnv, task: str, seed: int) -> tuple[float, bool, list[str]]:
    env.reset(seed=seed, options={"task_id": task})
    actions: list[str] = []
    reward, terminated = 0.0, False
    for _ in range(env.max_turns or 20):
        action = env.oracle_action()
        actions.append(action)
        observation, reward, terminated, truncated, info = env.step(action)
        assert info["error"] is None, info["error"]
        assert '"null"' not in observation and '"undefined"' not in observation, observation  # a rendering slip
        if terminated or truncated:
            break
    return reward, terminated, actions


@pytest.mark.parametrize("task", TASK_IDS)
def test_oracle_solves_every_bundled_task(env: WebEnv, task: str) -> None:
    reward, terminated, actions = play_oracle(env, task, seed=3)
    assert terminated and reward == 1.0, f"{task}: {actions}"


@pytest.mark.slow
@pytest.mark.parametrize("task", TASK_IDS)
def test_oracle_solves_more_seeds(env: WebEnv, task: str) -> None:
    for seed in (11, 12, 13):
        reward, terminated, actions = play_oracle(env, task, seed)
        assert terminated and reward == 1.0, f"{task} seed {seed}: {actions}"


def test_seeds_give_different_instances_and_the_same_seed_the_same(env: WebEnv) -> None:
    first, _ = env.reset(seed=1, options={"task_id": "login"})
    again, _ = env.reset(seed=1, options={"task_id": "login"})
    other, _ = env.reset(seed=2, options={"task_id": "login"})
    assert first == again and first != other


def test_without_a_task_id_the_seed_chooses_among_tasks(env: WebEnv) -> None:
    chosen = {env.reset(seed=seed)[1]["task_id"] for seed in range(4)}
    assert len(chosen) >= 2 and chosen <= set(TASK_IDS)


def _ids(observation: str, role: str) -> list[int]:
    return [int(match) for match in re.findall(rf"\[(\d+)\] {role}\b", observation)]


def test_wrong_login_says_which_field_without_the_answer(env: WebEnv) -> None:
    observation, info = env.reset(seed=4, options={"task_id": "login"})
    user, password = re.findall(r'"([^"]+)"', observation.splitlines()[0])
    fields = _ids(observation, "textbox")
    button = _ids(observation, "button")[0]
    env.step(f'type({fields[0]}, "{user}")')
    env.step(f'type({fields[1]}, "{password}x")')
    observation, reward, terminated, _, info = env.step(f"click({button})")
    assert reward == 0.0 and not terminated
    assert "Wrong Password" in info["feedback"]
    assert password not in info["feedback"]
    # the diagnosis lets the agent fix it within the same episode
    env.step(f'type({fields[1]}, "{password}")')
    _, reward, terminated, _, info = env.step(f"click({button})")
    assert reward == 1.0 and terminated and "Task complete" in info["feedback"]


@pytest.mark.parametrize("level", ["binary", "diagnostic", "hint"])
def test_feedback_levels_on_a_wrong_date(level: str) -> None:
    env = WebEnv(task="date-range", feedback=level)
    observation, info = env.reset(seed=5)
    expected = info["privileged"]
    check_in, check_out = re.findall(r"\d{4}-\d{2}-\d{2}", expected)
    fields = _ids(observation, "textbox")
    env.step(f'type({fields[0]}, "{check_in}")')
    env.step(f'type({fields[1]}, "{check_in}")')
    *_, info = env.step(f"click({_ids(observation, 'button')[0]})")
    text = info["feedback"]
    assert check_out not in text
    if level == "binary":
        assert "Check-out" not in text and "not right" in text
    else:
        assert "Wrong Check-out" in text and "plus the number of nights" in text
        assert ("Hint:" in text) == (level == "hint")
    env.close()


def test_done_too_early_ends_the_episode_with_what_is_missing(env: WebEnv) -> None:
    env.reset(seed=0, options={"task_id": "shop"})
    _, reward, terminated, _, info = env.step("done")
    assert terminated and reward == 0.0
    assert "not complete" in info["feedback"] and "cart" in info["feedback"]


def test_unknown_element_names_the_ones_that_exist(env: WebEnv) -> None:
    observation, _ = env.reset(seed=0, options={"task_id": "click-button"})
    buttons = _ids(observation, "button")
    _, reward, terminated, _, info = env.step("click(999)")
    assert not terminated and reward == 0.0
    assert "no element 999" in info["feedback"]
    assert ", ".join(map(str, buttons)) in info["feedback"]
    *_, info = env.step(f'type({buttons[0]}, "x")')
    assert "cannot take text" in info["feedback"]


def test_a_reply_with_several_actions_says_only_the_first_was_played(env: WebEnv) -> None:
    observation, _ = env.reset(seed=0, options={"task_id": "login"})
    field = _ids(observation, "textbox")[0]
    observation, *_, info = env.step(f'type({field}, "ann")\nclick({_ids(observation, "button")[0]})')
    assert info["feedback"].endswith("(only the first of 2 actions was played)")
    assert "Task complete" not in observation and 'value="ann"' in observation


def test_malformed_action_is_a_format_turn(env: WebEnv) -> None:
    env.reset(seed=0, options={"task_id": "login"})
    observation, reward, terminated, _, info = env.step("let me think")
    assert reward < 0 and not terminated and info["parse_error"] == "no action found"
    assert "Task:" in observation


def test_wrong_click_in_a_list_reports_the_product(env: WebEnv) -> None:
    observation, info = env.reset(seed=2, options={"task_id": "search-list"})
    target = re.findall(r'"([^"]+)"', observation.splitlines()[0])[0]
    wrong = next(
        int(m.group(1)) for m in re.finditer(r'\[(\d+)\] button "Add ([^"]+)"', observation) if m.group(2) != target
    )
    *_, info = env.step(f"click({wrong})")
    assert "Wrong product" in info["feedback"] and target not in info["feedback"]


def test_dynamic_content_appears_after_waiting(env: WebEnv) -> None:
    observation, _ = env.reset(seed=1, options={"task_id": "inbox-loading"})
    observation, *_ = env.step(f"click({_ids(observation, 'button')[0]})")
    assert "Loading messages" in observation
    for _ in range(3):
        observation, *_ = env.step("wait")
    assert "Open message from" in observation


@pytest.mark.slow
def test_check_env() -> None:
    env_id = reflectgym.register("WebCheck-v0", WebEnv, family="web", requires=("browser",), kwargs={"task": "login"})
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        check_env(env.unwrapped)
    env.close()


@pytest.mark.slow
def test_determinism_snapshot_and_garbage() -> None:
    check_determinism(lambda: WebEnv(task="checkboxes"), seeds=(3,), turns=6)
    env = WebEnv(task="shop")
    check_snapshot_roundtrip(env, prefix=2, suffix=3)
    check_garbage_actions(env, turns=12)
    env.reset(seed=0)
    env.step(env.oracle_action())
    snapshot = pickle.loads(pickle.dumps(env.snapshot()))
    before = env.observation()
    env.step(env.oracle_action())
    assert env.restore(snapshot) == snapshot.last_observation
    assert env.observation() == before
    env.close()


@pytest.mark.slow
def test_nothing_privileged_leaks() -> None:
    env = WebEnv()
    report = audit_feedback_leaks(env, episodes=6, max_turns=6)
    assert report.ok, str(report)
    assert report.markers_checked >= 4
    env.close()


def test_a_fresh_context_per_episode_shares_no_storage(env: WebEnv) -> None:
    env.reset(seed=0, options={"task_id": "login"})
    session = env.session
    assert session is not None
    env.service.run(
        lambda: session.page.evaluate("() => { localStorage.setItem('leak', 'yes'); document.cookie = 'leak=yes'; }"),
        5,
    )
    env.reset(seed=0, options={"task_id": "login"})
    fresh = env.session
    assert fresh is not None and fresh.context is not session.context
    seen = env.service.run(lambda: fresh.page.evaluate("() => [localStorage.getItem('leak'), document.cookie]"), 5)
    assert seen == [None, ""]


def test_requests_outside_the_task_site_are_blocked_and_logged(env: WebEnv) -> None:
    env.reset(seed=0, options={"task_id": "login"})
    session = env.session
    assert session is not None
    status = env.service.run(
        lambda: session.page.evaluate("() => fetch('https://example.com/x.js').then(() => 'reached', () => 'blocked')"),
        10,
    )
    assert status == "blocked"
    *_, info = env.step("wait")
    assert "https://example.com/x.js" in info["blocked_requests"]


def test_parallel_episodes_in_threads_are_isolated() -> None:
    envs = [WebEnv(task="login") for _ in range(8)]
    results: dict[int, tuple[float, str]] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            env = envs[index]
            observation, _ = env.reset(seed=100 + index)
            reward = 0.0
            for _ in range(6):
                _, reward, terminated, *_ = env.step(env.oracle_action())
                if terminated:
                    break
            results[index] = (reward, observation.splitlines()[0])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for env in envs:
        env.close()
    assert not errors, errors
    assert all(reward == 1.0 for reward, _ in results.values()) and len(results) == 8
    assert len({instruction for _, instruction in results.values()}) == 8  # each its own instance


def test_works_inside_a_running_event_loop() -> None:
    async def main() -> list[float]:
        envs = [WebEnv(task="click-button") for _ in range(3)]
        envs[0].reset(seed=0)  # the sync API, inside a running loop
        envs[0].step(envs[0].oracle_action())
        await asyncio.gather(*(env.areset(seed=index) for index, env in enumerate(envs)))
        steps = await asyncio.gather(*(env.astep(env.oracle_action()) for env in envs))
        for env in envs:
            env.close()
        return [reward for _, reward, *_ in steps]

    assert asyncio.run(main()) == [1.0, 1.0, 1.0]


@pytest.mark.slow
def test_killing_the_browser_mid_episode_ends_it_clearly_and_recovers() -> None:
    config = BrowserConfig(spare_contexts=0, viewport=(800, 600))  # its own browser, not the shared one
    env = WebEnv(task="login", browser=config)
    env.reset(seed=0)
    env.step(env.oracle_action())
    launches = env.service.launches
    pids = env.service.browser_pids()
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    started = time.perf_counter()
    _, reward, terminated, _, info = env.step(env.oracle_action())
    assert time.perf_counter() - started < 15
    assert terminated and reward == 0.0
    assert info["error"] and "browser" in info["feedback"].lower()
    reward, terminated, _ = play_oracle(env, "login", seed=1)
    assert terminated and reward == 1.0
    assert env.service.launches == launches + 1
    env.close()
    env.service.shutdown()


@pytest.mark.slow
def test_a_hung_page_times_out_instead_of_hanging() -> None:
    config = BrowserConfig(spare_contexts=0, viewport=(800, 601))
    env = WebEnv(task="login", browser=config, step_timeout_s=2.0)
    env.reset(seed=0)
    session = env.session
    assert session is not None
    env.service.run(lambda: session.page.evaluate("() => { setTimeout(() => { while (true) {} }, 0); }"), 5)
    started = time.perf_counter()
    _, reward, terminated, _, info = env.step("click(2)")
    assert time.perf_counter() - started < 20
    assert terminated and reward == 0.0 and "respond" in info["error"]
    reward, terminated, _ = play_oracle(env, "login", seed=1)
    assert terminated and reward == 1.0
    env.close()
    env.service.shutdown()


def _renderers(roots: list[int]) -> int:
    """How many renderer processes descend from the processes `roots`."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = 0, list(roots)
    while stack:
        pid = stack.pop()
        try:
            found += b"--type=renderer" in (Path("/proc") / str(pid) / "cmdline").read_bytes()
        except OSError:
            continue
        stack.extend(children.get(pid, []))
    return found


def test_a_fresh_context_costs_one_renderer_process() -> None:
    """The full Chromium starts three per context by default (spare renderer, omnibox popup; `chromium.py`)."""
    env = WebEnv(task="click-button", browser=BrowserConfig(spare_contexts=0, viewport=(800, 602)))
    env.reset(seed=0)
    env.reset(seed=1)
    time.sleep(0.5)  # the first episode's context is closed once the browser is idle
    assert _renderers(env.service.browser_pids()) == 1
    env.close()
    env.service.shutdown()


def test_screenshot_in_info_when_asked() -> None:
    env = WebEnv(task="click-button", screenshot=True)
    _, info = env.reset(seed=0)
    assert info["screenshot"][:8] == b"\x89PNG\r\n\x1a\n"
    assert png_data_url(info["screenshot"]).startswith("data:image/png;base64,")
    *_, info = env.step("wait")
    assert info["screenshot"][:4] == b"\x89PNG"
    env.close()


def test_a_large_drawing_cannot_crowd_out_the_rest_of_the_page(tmp_path: Path) -> None:
    from reflectgym.envs.web.axtree import AXTREE_JS, AxTree
    from reflectgym.envs.web.browser import shared_service

    labels = "".join(f'<text x="{k % 50 * 12}" y="{k // 50 * 14 + 14}">{k}</text>' for k in range(500))
    page = f'<html><body><svg width="640" height="160">{labels}</svg><button>Save</button></body></html>'
    (tmp_path / "chart.html").write_text(page)
    service = shared_service(BrowserConfig(spare_contexts=0, viewport=(800, 604)), AXTREE_JS)
    url = service.router.mount(tmp_path) + "chart.html"

    async def read() -> dict[str, object]:
        session = await service.open_session(url)
        try:
            return await session.page.evaluate("() => window.__rgAx.snapshot(1, [], 400)")
        finally:
            await service.close_session(session)

    tree = AxTree.from_js(service.run(read, 60))
    assert [node.name for node in tree.nodes if node.role == "button"] == ["Save"]
    assert sum(node.role == "text" for node in tree.nodes) == 120 and not tree.truncated


def test_a_click_on_an_element_its_box_clips_says_so_and_clicks_nothing(tmp_path: Path) -> None:
    from reflectgym.envs.web.actions import parse_web_action
    from reflectgym.envs.web.axtree import AXTREE_JS, AxTree
    from reflectgym.envs.web.browser import shared_service
    from reflectgym.envs.web.executor import perform

    # the button sits above the top of its box, which no scrolling of the box can reach (scrollTop stays >= 0)
    page = (
        '<html><body><div style="position: relative; margin-top: 200px; height: 40px; overflow: hidden">'
        '<button style="position: absolute; top: -100px" onclick="document.title = \'clicked\'">Hidden</button>'
        "</div></body></html>"
    )
    (tmp_path / "clip.html").write_text(page)
    service = shared_service(BrowserConfig(spare_contexts=0, viewport=(800, 605)), AXTREE_JS)
    url = service.router.mount(tmp_path) + "clip.html"

    async def click() -> tuple[str, str]:
        session = await service.open_session(url)
        try:
            tree = AxTree.from_js(await session.page.evaluate("() => window.__rgAx.snapshot(1, [], 400)"))
            button = next(node.id for node in tree.nodes if node.role == "button")
            outcome = await perform(session.page, parse_web_action(f"click({button})"), tree, 0)
            return outcome.message, await session.page.title()
        finally:
            await service.close_session(session)

    message, title = service.run(click, 60)
    assert "is not visible" in message and title != "clicked"


DROP_PAGE = """<html><body style="margin: 0">
<div id="card" style="position: absolute; left: 20px; top: 20px; width: 60px; height: 30px">Card</div>
<div id="bin" style="position: absolute; left: 300px; top: 200px; width: 120px; height: 90px">Bin</div>
<div id="note" draggable="true" style="position: absolute; left: 20px; top: 320px; width: 60px">Note</div>
<div id="tray" style="position: absolute; left: 300px; top: 400px; width: 120px; height: 60px">Tray</div>
<script>
  // the card follows the pointer while pressed, as jQuery UI's draggable does; the note is a native HTML drag
  const card = document.getElementById('card'), bin = document.getElementById('bin');
  let grab = null;
  card.addEventListener('mousedown', (e) => { grab = [e.clientX - card.offsetLeft, e.clientY - card.offsetTop]; });
  document.addEventListener('mousemove', (e) => {
    if (grab) { card.style.left = (e.clientX - grab[0]) + 'px'; card.style.top = (e.clientY - grab[1]) + 'px'; }
  });
  document.addEventListener('mouseup', () => {
    if (!grab) return;
    grab = null;
    const c = card.getBoundingClientRect(), b = bin.getBoundingClientRect();
    if (c.left >= b.left && c.right <= b.right && c.top >= b.top && c.bottom <= b.bottom) document.title = 'in the bin';
  });
  const tray = document.getElementById('tray');
  document.getElementById('note').addEventListener('dragstart', (e) => e.dataTransfer.setData('text/plain', 'note'));
  tray.addEventListener('dragover', (e) => e.preventDefault());
  tray.addEventListener('drop', (e) => {
    e.preventDefault();
    tray.textContent = 'Got ' + e.dataTransfer.getData('text/plain');
  });
</script></body></html>"""


def test_a_drag_moves_an_element_into_a_drop_zone_and_a_bad_one_says_why(tmp_path: Path) -> None:
    from reflectgym.envs.web.actions import parse_web_action
    from reflectgym.envs.web.axtree import AXTREE_JS, AxTree
    from reflectgym.envs.web.browser import shared_service
    from reflectgym.envs.web.executor import perform

    (tmp_path / "drop.html").write_text(DROP_PAGE)
    service = shared_service(BrowserConfig(spare_contexts=0, viewport=(800, 605)), AXTREE_JS)
    url = service.router.mount(tmp_path) + "drop.html"

    async def drag() -> list[tuple[bool, str, str]]:
        session = await service.open_session(url)
        page = session.page
        try:
            tree = AxTree.from_js(await page.evaluate("() => window.__rgAx.snapshot(1, [], 400)"))
            ids = {node.name: node.id for node in tree.nodes}
            card, bin_, note, tray = ids["Card"], ids["Bin"], ids["Note"], ids["Tray"]
            seen = []
            for text in [
                f"drag({card}, 99)",
                f"drag({card}, {card})",
                f"drag({card}, {bin_})",
                f"drag({note}, {tray})",
            ]:
                outcome = await perform(page, parse_web_action(text), tree, 0)
                state = await page.evaluate("() => document.title + '|' + document.getElementById('tray').textContent")
                seen.append((outcome.played, outcome.message, state))
            await page.evaluate("() => { document.getElementById('bin').style.display = 'none'; }")
            outcome = await perform(page, parse_web_action(f"drag({note}, {bin_})"), tree, 0)
            return [*seen, (outcome.played, outcome.message, "")]
        finally:
            await service.close_session(session)

    missing, itself, into_bin, into_tray, hidden = service.run(drag, 60)
    assert not missing[0] and "There is no element 99 to drop onto; elements are" in missing[1]
    assert not itself[0] and "cannot be dropped onto itself" in itself[1]
    assert missing[2] == itself[2] == "|Tray"  # nothing moved
    assert into_bin[0] and into_bin[1] == 'Dragged [1] text "Card" onto [2] text "Bin".'
    assert into_bin[2] == "in the bin|Tray"
    assert into_tray[0] and into_tray[2] == "in the bin|Got note"
    assert not hidden[0] and hidden[1] == '[2] text "Bin" is hidden and cannot be dropped onto.'
