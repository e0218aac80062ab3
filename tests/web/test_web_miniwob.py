"""MiniWoBEnv: MiniWoB++ pages from the `miniwob` package through the same interface; the four named tasks
solved by their scripted solvers; elements clickable without text, hover menus, drags, date fields and the reward
of an episode ending unsolved on other tasks; conformance checks on the default task."""

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
from reflectgym.envs.web.miniwob import SOLVED_TASKS, TEXT_LIMITS, MiniWoBPages

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


def placed(observation: str) -> list[tuple[str, str, int, int, int]]:
    """(id, fill, centre x, centre y, height) of every SVG shape or text the observation places."""
    found = re.findall(r"\[(\d+)\] \w+ \"[^\"]*\" fill=(\w+) at=(\d+),(\d+) size=\d+x(\d+)", observation)
    return [(id_, fill, int(x), int(y), int(height)) for id_, fill, x, y, height in found]


def test_svg_shapes_show_their_size_and_place_enough_to_play_by_them() -> None:
    """click-shape asks for "a large item" or "a small green item", grid-coordinate for the point at (-2, 0): what
    tells them apart is a shape's size and place, which each SVG shape and text shows (`at=X,Y size=WxH`)."""
    env = make(task="click-shape")
    played = 0
    for seed in range(12):
        observation, _ = env.reset(seed=seed)
        asked = re.search(r"Click on a (small|large) (?:(\w+) )?item$", observation.splitlines()[0])
        if asked is None:
            continue
        size, colour = asked.groups()
        # (the page draws a shape 10 or 20 pixels high, a letter or digit in a 10 or 20 pixel font)
        wanted = [id_ for id_, fill, _, _, height in placed(observation)
                  if (height >= 18) == (size == "large") and colour in (None, fill)]  # fmt: skip
        assert wanted, observation
        _, reward, terminated, _, _ = env.step(f"click({wanted[0]})")
        assert terminated and reward > 0, observation
        played += 1
    assert played >= 2, "no size-only instruction among the seeds: nothing was played"
    for seed in (0, 1, 2):
        observation, _ = env.reset(seed=seed, options={"task_id": "grid-coordinate"})
        asked = re.search(r"grid coordinate \((-?\d+),(-?\d+)\)", observation)
        assert asked is not None, observation
        points = placed(observation)
        columns, rows = sorted({x for *_, x, _, _ in points}), sorted({y for *_, y, _ in points}, reverse=True)
        origin = (len(columns) // 2, len(rows) // 2)  # the grid runs from -n to n on both axes, y upwards
        x, y = columns[origin[0] + int(asked.group(1))], rows[origin[1] + int(asked.group(2))]
        [target] = [id_ for id_, _, px, py, _ in points if (px, py) == (x, y)]
        _, reward, terminated, _, _ = env.step(f"click({target})")
        assert terminated and reward > 0, observation
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


@pytest.mark.parametrize(
    ("task", "seed", "field_pattern", "refused", "said", "taken"),
    [
        ("enter-date", 1, r"^textbox .*date \(YYYY-MM-DD\)", "09/28/2010", "it takes a date written YYYY-MM-DD",
         "2010-09-28"),
        ("guess-number", 0, r"^spinbutton", "five", "it takes a number, written with digits", "5"),
    ],
)  # fmt: skip
def test_a_typed_field_says_the_form_it_takes(
    task: str, seed: int, field_pattern: str, refused: str, said: str, taken: str
) -> None:
    env = make(task=task)
    observation, _ = env.reset(seed=seed)
    field = element(observation, field_pattern)
    _, reward, terminated, _, info = env.step(f'type({field}, "{refused}")')
    assert reward == 0.0 and not terminated
    assert said in info["feedback"], info["feedback"]
    observation, *_ = env.step(f'type({field}, "{taken}")')
    assert f'value="{taken}"' in observation
    env.close()


def test_a_list_a_field_opens_after_typing_is_in_the_next_observation() -> None:
    env = make(task="use-autocomplete")  # jQuery UI's list opens 300 ms after the typing
    observation, _ = env.reset(seed=3)
    start = re.findall(r'"([^"]*)"', observation.splitlines()[0])[0]
    observation, *_ = env.step(f'type({element(observation, "^textbox")}, "{start}")')
    assert re.search(rf'\] list\n\s+\[\d+\] text "{re.escape(start)}', observation), observation
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


def test_a_character_without_a_key_is_typed_and_a_chord_with_one_is_refused() -> None:
    env = make(task="enter-text")
    observation, _ = env.reset(seed=1)
    field = element(observation, r"^textbox")
    env.step(f"click({field})")
    observation, reward, terminated, _, info = env.step('press("é")')  # Playwright's keyboard has no key for it
    assert not terminated and reward == 0.0 and info["error"] is None
    assert 'value="é"' in observation
    _, reward, terminated, _, info = env.step('press("Control+ü")')
    assert not terminated and reward == 0.0 and info["error"] is None
    assert "'Control+ü' is not a key" in info["feedback"]
    env.close()


def test_a_browser_failure_pays_what_an_unsolved_end_pays() -> None:
    env = make(task="click-button")
    env.reset(seed=0)
    session = env.unwrapped.session  # type: ignore[attr-defined]
    env.unwrapped.service.run(lambda: session.page.close(), 10)  # type: ignore[attr-defined]
    _, reward, terminated, _, info = env.step("wait")  # no more than giving up: failing the page must not pay
    assert terminated and reward == -1.0 and info["error"] == "the page was closed"
    assert "scored as unsolved (-1)" in info["feedback"]
    env.close()


def test_a_click_scrolls_a_scrolling_box_to_its_element_first() -> None:
    env = make(task="email-inbox")
    observation, _ = env.reset(seed=3)  # Shawn's email is below the inbox's visible part
    lines = observation.splitlines()
    sender = next(index for index, line in enumerate(lines) if '"Shawn"' in line)
    star = element("\n".join(lines[sender : sender + 6]), r'^clickable "span\.star"')
    _, reward, terminated, _, info = env.step(f"click({star})")
    assert terminated and reward == 1.0, info["feedback"]
    env.close()


def test_a_long_field_value_is_shown_to_its_end() -> None:
    env = make(task="scroll-text")  # the answer is the last word of a text area of about 950 characters
    observation, _ = env.reset(seed=3)
    text = re.search(r'^\[\d+\] textbox value="([^"]*)"', observation, re.MULTILINE)
    assert text is not None and len(text.group(1)) > 500, observation
    answer = text.group(1).split()[-1]
    field = element(observation, r'^textbox value=""$')
    env.step(f'type({field}, "{answer}")')
    _, reward, terminated, _, _ = env.step(f"click({element(observation, '^button')})")
    assert terminated and reward == 1.0
    small = make(task="scroll-text", observation_chars=600)  # a tight budget: the value's start and end show
    observation, _ = small.reset(seed=3)
    shown = re.search(r'^\[\d+\] textbox value="([^"]*)"', observation, re.MULTILINE)
    assert shown is not None and len(shown.group(1)) <= 200 and " … " in shown.group(1)
    assert shown.group(1).startswith(text.group(1)[:60]) and shown.group(1).endswith(text.group(1)[-60:])
    small.close()
    env.close()


def test_a_multiple_choice_list_adds_each_selected_option_and_shows_them_all() -> None:
    env = make(task="click-scroll-list")
    observation, _ = env.reset(seed=3)
    wanted = observation.splitlines()[0].removeprefix("Task: Select ").split(" from")[0].split(", ")
    assert len(wanted) == 2, observation
    box = element(observation, r"^combobox .*multiple")
    options = re.findall(r'"([^"]+)"', observation.split("options=[", 1)[1].split("]", 1)[0])
    other = next(option for option in options if option not in wanted)
    for name in [*wanted, other]:
        observation, *_ = env.step(f'select({box}, "{name}")')
    observation, _, _, _, info = env.step(f'select({box}, "{other}")')  # the same option again takes it out
    assert "out of the selection" in info["feedback"]
    assert 'selected=["' + '", "'.join(wanted) + '"] multiple' in observation
    _, reward, terminated, _, _ = env.step(f"click({element(observation, '^button')})")
    assert terminated and reward == 1.0
    env.close()


def entries(observation: str) -> list[tuple[str, str]]:
    """The id and text of each `text` line of the tree, in page order (a list's entries on the drag pages)."""
    return re.findall(r'^\s*\[(\d+)\] text "([^"]*)"$', observation, re.MULTILINE)


GRID_PLACES = ("top left", "top center", "top right", "center left", "center", "center right", "bottom left",
               "bottom center", "bottom right")  # fmt: skip
MOVES = {"up by one position": -1, "down by one position": 1, "up by one": -3, "down by one": 3, "left by one": -1,
         "right by one": 1}  # fmt: skip


def place(where: str, now: int, count: int) -> int:
    """The place (from 1) that `where` names for the entry now at `now`: `to the top`, `to the 3rd position`,
    `down by one position` (a list), `to the bottom left`, `up by one` (a 3 x 3 grid)."""
    if where in MOVES:
        return now + MOVES[where]
    where = where.removeprefix("to the ")
    if where in GRID_PLACES:
        return GRID_PLACES.index(where) + 1
    return {"top": 1, "bottom": count}.get(where) or int(where[0])


@pytest.mark.parametrize(
    ("task", "seeds"),
    [("drag-items", (0, 9, 11)), ("drag-items-grid", (0, 1, 6, 16))],
)  # up and down a list; down, left, up and right, down and right in a grid
def test_a_drag_onto_an_entry_puts_the_dragged_one_in_its_place(task: str, seeds: tuple[int, ...]) -> None:
    env = make(task=task)
    for seed in seeds:
        observation, _ = env.reset(seed=seed)
        found = re.match(r"Task: Drag (\S+) (.+)\.$", observation.splitlines()[0])
        assert found is not None, observation
        ids, names = zip(*entries(observation), strict=True)
        now = names.index(found.group(1)) + 1
        target = place(found.group(2), now, len(names))
        _, reward, terminated, _, info = env.step(f"drag({ids[now - 1]}, {ids[target - 1]})")
        assert terminated and reward == 1.0, (seed, observation.splitlines()[0], info["feedback"])
    env.close()


def test_numbers_are_sorted_by_drags_and_a_drag_onto_a_missing_id_is_a_feedback_turn() -> None:
    env = make(task="drag-sort-numbers")
    for seed in (0, 2):
        observation, _ = env.reset(seed=seed)
        first = entries(observation)[0][0]
        observation, reward, terminated, _, info = env.step(f"drag({first}, 999)")
        assert not terminated and reward == 0.0 and info["error"] is None
        assert "There is no element 999 to drop onto" in info["feedback"]
        numbers = sorted(int(text) for _, text in entries(observation))
        drags = 0
        for _ in range(6):  # a selection sort: the smallest of the rest onto the first place out of order
            shown = [(box, int(text)) for box, text in entries(observation)]
            wrong = next((i for i, (_, number) in enumerate(shown) if number != numbers[i]), None)
            if wrong is None:
                break
            smallest = next(box for box, number in shown[wrong:] if number == numbers[wrong])
            observation, reward, terminated, _, info = env.step(f"drag({smallest}, {shown[wrong][0]})")
            assert info["feedback"].startswith("Dragged") and not terminated
            drags += 1
        assert drags >= 1 and [int(text) for _, text in entries(observation)] == numbers
        _, reward, terminated, _, _ = env.step(f"click({element(observation, '^button')})")
        assert terminated and reward == 1.0
    env.close()


def test_a_small_box_is_dragged_into_a_large_one() -> None:
    env = make(task="drag-box")
    for seed in (0, 1):
        observation, _ = env.reset(seed=seed)
        boxes = dict((text, box) for box, text in entries(observation))
        observation, *_ = env.step(f"drag({boxes['s']}, {boxes['L']})")
        _, reward, terminated, _, _ = env.step(f"click({element(observation, '^button')})")
        assert terminated and reward == 1.0
    env.close()


def test_what_the_instruction_shows_without_words_is_described() -> None:
    env = make(task="use-colorwheel-2")  # the colour to pick is a swatch in the instruction, not a word
    for seed in (0, 1):
        observation, _ = env.reset(seed=seed)
        colour = re.search(r"\(shown: div\.cc background=rgb\((\d+), (\d+), (\d+)\)\)", observation.splitlines()[0])
        assert colour is not None, observation
        env.step(f'type({element(observation, "^textbox")}, "{"".join(f"{int(c):02x}" for c in colour.groups())}")')
        _, reward, terminated, _, _ = env.step(f"click({element(observation, '^button')})")
        assert terminated and reward == 1.0
    observation, _ = env.reset(seed=0, options={"task_id": "click-menu-2"})  # an icon in place of the item's name
    assert "item with the (shown: span.ui-icon.ui-icon-stop" in observation.splitlines()[0], observation
    observation, _ = env.reset(seed=0, options={"task_id": "terminal"})  # words only: the text as the page has it
    assert observation.splitlines()[0].endswith("a file ending with the extension .py"), observation
    env.close()


def test_tasks_the_text_view_cannot_play_say_so_every_turn() -> None:
    assert set(TEXT_LIMITS) <= set(MiniWoBPages.locate().tasks)
    env = make(task="count-sides")  # the shape is drawn on a canvas: only the answer buttons are in the tree
    observation, _ = env.reset(seed=0)
    note = "Note: the text view cannot play this task: the shape is drawn on a canvas"
    assert observation.splitlines()[1].startswith(note), observation
    observation, reward, terminated, _, _ = env.step("wait")
    assert note in observation and reward == 0.0 and not terminated
    observation, _ = env.reset(seed=0, options={"task_id": "circle-center"})
    assert "Note: the text view cannot play this task: it needs the pointer at a chosen spot" in observation
    observation, _ = env.reset(seed=0, options={"task_id": "click-test"})
    assert "Note:" not in observation
    env.close()


def test_a_click_names_the_element_inside_that_took_it() -> None:
    env = make(task="click-link")  # the paragraph's centre is on one of its links, which takes the click
    observation, _ = env.reset(seed=0)
    paragraph = element(observation, r"^text ")
    inside = re.findall(r"^\s+\[(\d+)\] text", observation, re.MULTILINE)
    _, _, _, _, info = env.step(f"click({paragraph})")
    landed = re.search(r"; the pointer is on \[(\d+)\] text \"[^\"]+\", inside it\.", info["feedback"])
    assert landed is not None and landed.group(1) in inside, info["feedback"]
    env.close()


def test_a_text_areas_first_text_is_not_shown_as_its_name() -> None:
    env = make(task="scroll-text-2")  # a text area holding a long text at first
    observation, _ = env.reset(seed=0)
    field = element(observation, r"^textbox value=")
    first = re.search(r'^\[\d+\] textbox value="([^"]{20})', observation, re.MULTILINE)
    assert first is not None, observation
    observation, *_ = env.step(f'type({field}, "hello")')
    assert re.search(rf'^\[{field}\] textbox value="hello" focused$', observation, re.MULTILINE), observation
    assert first.group(1) not in observation
    env.close()
