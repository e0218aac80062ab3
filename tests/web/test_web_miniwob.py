"""MiniWoBEnv: MiniWoB++ pages from the `miniwob` package through the same interface; the four named tasks
solved by their scripted solvers; elements clickable without text, hover menus, date fields and the reward of an
episode ending unsolved on other tasks; conformance checks on the default task."""

from __future__ import annotations

import gc
import importlib.util
import re
import time
import warnings
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import reflectgym
from reflectgym.core import check_determinism, check_garbage_actions, check_snapshot_roundtrip
from reflectgym.core.audit import audit_feedback_leaks
from reflectgym.envs.web.miniwob import SOLVED_TASKS, MiniWoBPages

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(importlib.util.find_spec("miniwob") is None, reason="the miniwob package is not installed"),
]


def make(**kwargs: object) -> gym.Env:
    from reflectgym.envs.web.env import MiniWoBEnv

    return MiniWoBEnv(**kwargs)  # type: ignore[arg-type]


def test_the_package_pages_are_found() -> None:
    pages = MiniWoBPages.locate()
    assert len(pages.tasks) >= 100 and set(SOLVED_TASKS) <= set(pages.tasks)
    with pytest.raises(KeyError, match="similar"):
        pages.check("click-tset")


def test_a_folder_that_is_not_miniwob_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a MiniWoB"):
        make(miniwob_dir=tmp_path)


@pytest.mark.parametrize("task", SOLVED_TASKS)
def test_scripted_solvers_succeed(task: str) -> None:
    env = make(task=task)
    for seed in (0, 1):
        env.reset(seed=seed)
        reward, terminated, info = 0.0, False, {}
        for _ in range(6):
            _, reward, terminated, truncated, info = env.step(env.unwrapped.oracle_action())  # type: ignore[attr-defined]
            if terminated or truncated:
                break
        assert terminated and reward == 1.0 and info["error"] is None
    env.close()


def test_a_wrong_click_ends_with_the_pages_reward() -> None:
    env = make(task="click-button", feedback="diagnostic")
    observation, info = env.reset(seed=3)
    assert "Click on the" in observation and info["privileged"].startswith("Solution")
    right = env.unwrapped.oracle_action()  # type: ignore[attr-defined]
    buttons = [line.split("]")[0].strip(" [") for line in observation.splitlines() if "] button " in line]
    wrong = next(b for b in buttons if f"click({b})" != right)
    _, reward, terminated, _, info = env.step(f"click({wrong})")
    assert terminated and reward == -1.0 and "reward -1" in info["feedback"]
    env.close()


def test_a_users_own_checkout_folder_works() -> None:
    root = MiniWoBPages.locate().root
    env = make(task="enter-text", miniwob_dir=root)
    observation, _ = env.reset(seed=0)
    assert observation.startswith('Task: Enter "')
    env.close()


@pytest.mark.slow
def test_conformance_on_click_test() -> None:
    env_id = reflectgym.register(
        "MiniWoBCheck-v0", "reflectgym.envs.web.env:MiniWoBEnv", family="web", requires=("browser",)
    )
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        check_env(env.unwrapped)
    check_snapshot_roundtrip(env)
    check_garbage_actions(env, turns=10)
    assert audit_feedback_leaks(env, episodes=4, max_turns=5).ok
    env.close()
    check_determinism(lambda: gym.make(env_id), seeds=(2,), turns=4)


def element(observation: str, pattern: str) -> str:
    """The id of the first element whose line matches `pattern` (a regex on the text after the id)."""
    for line in observation.splitlines():
        match = re.match(r"\s*\[(\d+)\] (.*)", line)
        if match and re.search(pattern, match.group(2)):
            return match.group(1)
    raise AssertionError(f"no element matches {pattern!r} in:\n{observation}")


def test_elements_made_clickable_without_text_are_shown_and_played() -> None:
    env = make(task="click-color")
    for seed in (0, 1, 2):
        observation, _ = env.reset(seed=seed)
        color = re.search(r"Click on the (\w+) colored box", observation)
        assert color is not None, observation
        box = element(observation, rf'^clickable "div\.color background={color.group(1)}"')
        _, reward, terminated, _, _ = env.step(f"click({box})")
        assert terminated and reward == 1.0
    for task, expected in [("email-inbox", 'clickable "span.star"'), ("social-media", 'clickable "span.like"')]:
        observation, _ = env.reset(seed=0, options={"task_id": task})
        assert expected in observation, observation
    observation, _ = env.reset(seed=0, options={"task_id": "click-shape"})  # SVG shapes, with their colours
    assert re.search(r'clickable "(rect|circle|polygon)" fill=\w+', observation), observation
    observation, _ = env.reset(seed=0, options={"task_id": "tic-tac-toe"})
    assert observation.count('] clickable "span"') == 9
    env.close()


def test_hover_opens_menus_on_the_way_to_an_item() -> None:
    env = make(task="click-menu")
    for seed in (0, 5):  # items three levels deep
        observation, _ = env.reset(seed=seed)
        path = observation.splitlines()[0].removeprefix("Task: Select ").split(">")
        assert len(path) == 3
        for name in path[:-1]:
            parent = element(observation, f'^menuitem "{re.escape(name)}"')
            observation, *_ = env.step(f"hover({parent})")
        last = element(observation, f'^menuitem "{re.escape(path[-1])}"')
        _, reward, terminated, _, _ = env.step(f"click({last})")
        assert terminated and reward == 1.0
    env.close()


def test_ending_unsolved_scores_as_a_failed_attempt() -> None:
    env = make(task="click-button", max_steps=2)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("done")  # giving up never pays more than a wrong click (-1)
    assert terminated and reward == -1.0 and "not registered the task as complete" in info["feedback"]
    for last in ("wait", "I give up"):  # a real action or a garbled reply, on the last step
        env.reset(seed=0)
        _, reward, *_ = env.step("wait")
        assert reward == 0.0
        _, reward, terminated, truncated, info = env.step(last)
        assert truncated and not terminated and reward == -1.0 and "last step" in info["feedback"]
    env.close()


def test_a_date_field_says_the_format_it_takes() -> None:
    env = make(task="enter-date")
    observation, _ = env.reset(seed=1)
    field = element(observation, r"^textbox .*date \(YYYY-MM-DD\)")
    _, reward, terminated, _, info = env.step(f'type({field}, "09/28/2010")')
    assert reward == 0.0 and not terminated
    assert "did not take '09/28/2010'; it takes a date written YYYY-MM-DD" in info["feedback"]
    observation, *_ = env.step(f'type({field}, "2010-09-28")')
    assert "Typed into" in observation and 'value="2010-09-28"' in observation
    env.close()


def test_an_env_dropped_without_close_lets_its_browser_context_go() -> None:
    from reflectgym.envs.web.browser import BrowserConfig

    env = make(task="click-test", browser=BrowserConfig(spare_contexts=0, viewport=(800, 603)))
    env.reset(seed=0)
    session = env.unwrapped.session  # type: ignore[attr-defined]
    assert session is not None and not session.page.is_closed()
    del env
    gc.collect()
    deadline = time.monotonic() + 10
    while not session.page.is_closed() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session.page.is_closed()
