"""SokobanEnv: every preset passes check_env and determinism; snapshots, wait, rewards, levels=, feedback levels."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import reflectgym
from reflectgym.core import check_determinism, check_snapshot_roundtrip
from reflectgym.envs.sokoban.env import SokobanEnv

PRESETS = [
    "reflectgym/Sokoban-v0",
    "reflectgym/Sokoban-6x6-1-v0",
    "reflectgym/Sokoban-6x6-2-v0",
    "reflectgym/Sokoban-8x8-3-v0",
    "reflectgym/Sokoban-10x10-4-v0",
]
TWO_BOXES = "#######\n#.  $ #\n#@ $ .#\n#     #\n#######"


@pytest.mark.parametrize("env_id", PRESETS)
def test_check_env_and_determinism(env_id: str) -> None:
    assert reflectgym  # registers the ids
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        check_env(env.unwrapped)
    check_determinism(lambda: gym.make(env_id), seeds=(0, 5), turns=6)
    check_snapshot_roundtrip(env, seed=3)
    first, _ = env.reset(seed=11)
    second, _ = gym.make(env_id).reset(seed=11)
    assert first == second


@pytest.mark.parametrize("env_id", PRESETS)
def test_oracle_solves_every_preset(env_id: str) -> None:
    env = gym.make(env_id)
    base = env.unwrapped
    assert isinstance(base, SokobanEnv)
    for seed in range(5):
        env.reset(seed=seed)
        terminated = truncated = False
        reward = 0.0
        while not (terminated or truncated):
            _, reward, terminated, truncated, info = env.step(base.oracle_action())
        assert terminated and reward == 1.0 and info["verdict"].passed


def test_snapshot_restore_mid_episode_is_a_native_copy() -> None:
    env = SokobanEnv(levels=TWO_BOXES, max_steps=30)
    env.reset(seed=0)
    for move in ("right", "right"):
        env.step(move)
    snap = pickle.loads(pickle.dumps(env.snapshot()))
    assert snap.state is not None
    after = [env.step(move)[0] for move in ("up", "right", "wait")]
    assert env.restore(snap) == snap.last_observation
    again = [env.step(move)[0] for move in ("up", "right", "wait")]
    assert after == again
    fresh = SokobanEnv(levels=TWO_BOXES, max_steps=30)
    fresh.reset(seed=99)
    assert fresh.restore(snap) == snap.last_observation
    assert [fresh.step(move)[0] for move in ("up", "right", "wait")] == after


def test_wait_is_a_no_op_that_costs_a_step() -> None:
    env = SokobanEnv(levels=TWO_BOXES, max_steps=2)
    observation, _ = env.reset(seed=0)
    grid = observation.split("\n\n")[-1].splitlines()[:5]
    after, reward, terminated, truncated, info = env.step("wait")
    assert after.split("\n\n")[-1].splitlines()[:5] == grid
    assert reward == 0.0 and not terminated and not truncated and "Steps left: 1" in after
    assert info["feedback"].startswith("You waited")
    *_, truncated, _ = env.step("wait")
    assert truncated


def test_solving_terminates_with_reward_one_and_shaping_counts_goals() -> None:
    level = "######\n#@$ .#\n######"
    env = SokobanEnv(levels=level, shaped_reward=True, max_steps=5)
    env.reset(seed=0)
    _, reward, terminated, *_ = env.step("right")
    assert reward == 0.0 and not terminated
    _, reward, terminated, _, info = env.step("right")
    assert terminated and reward == pytest.approx(1.1) and info["feedback"].startswith("Solved!")


def test_feedback_levels() -> None:
    binary = SokobanEnv(levels=TWO_BOXES, feedback="binary", max_steps=10)
    binary.reset(seed=0)
    assert binary.step("up")[4]["feedback"] == "Not solved yet."
    hint = SokobanEnv(levels=TWO_BOXES, feedback="hint", max_steps=10)
    hint.reset(seed=0)
    feedback = hint.step("up")[4]["feedback"]
    assert "Hint: still solvable" in feedback
    plan = hint.leak_markers()[0]
    assert plan not in feedback


def test_format_turn_and_observation_shape() -> None:
    env = SokobanEnv(levels=TWO_BOXES, max_steps=10)
    observation, info = env.reset(seed=0)
    assert observation.startswith("Sokoban: push every box onto a goal.")
    assert "#@ $ .#" in observation and "Boxes on goals: 0/2. Steps left: 10." in observation
    assert info["privileged"] is not None and "Push-optimal plan" in info["privileged"]
    text, reward, *_, info = env.step("let me think")
    assert reward == pytest.approx(-0.1) and info["parse_error"] and "Sokoban: push" not in text
    no_legend = SokobanEnv(levels=TWO_BOXES, show_legend=False)
    assert no_legend.reset(seed=0)[0].startswith("#######")


def test_multi_move_plays_in_order_and_stops_at_a_block() -> None:
    env = SokobanEnv(levels=TWO_BOXES, multi_move=True, max_steps=10)
    env.reset(seed=0)
    *_, info = env.step("RRR")
    assert "You played 3 moves." in info["feedback"]
    assert "pushed a box right to row 3, column 6 onto a goal" in info["feedback"]
    _, *_, info = env.step("uuu")
    assert "You cannot push the box at row 2, column 5 up: a wall is behind it." in info["feedback"]
    assert "The 2 move(s) after it were not played." in info["feedback"]


def test_levels_from_a_file_pick_by_task_id(shared_data: Path) -> None:
    path = shared_data / "boxoban" / "unfiltered" / "train" / "000.txt"
    env = SokobanEnv(levels=str(path), max_steps=120)
    _, info = env.reset(seed=0, options={"task_id": "7"})
    assert info["task_id"] == "7" and info["privileged"] is not None
    _, other = env.reset(seed=1)
    assert other["task_id"] is not None


def test_a_loaded_level_longer_than_max_steps_warns_once_per_env() -> None:
    env = SokobanEnv(levels=[TWO_BOXES, TWO_BOXES], max_steps=2)
    with pytest.warns(UserWarning, match=r"level 0: its optimal plan takes \d+ moves, more than max_steps=2") as record:
        env.reset(options={"task_id": "0"})
        env.reset(options={"task_id": "1"})
    assert sum("max_steps" in str(warning.message) for warning in record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        SokobanEnv(levels=TWO_BOXES, max_steps=30).reset(seed=0)
        SokobanEnv(levels=TWO_BOXES, max_steps=2, multi_move=True).reset(seed=0)


def test_task_id_of_a_generated_level_replays_it() -> None:
    env = SokobanEnv(size=(8, 8), num_boxes=3, max_steps=60)
    observation, info = env.reset(seed=4)
    again, info_again = SokobanEnv(size=(8, 8), num_boxes=3, max_steps=60).reset(options={"task_id": info["task_id"]})
    assert again == observation and info_again["privileged"] == info["privileged"]


def test_bad_arguments_fail_clearly() -> None:
    with pytest.raises(ValueError, match="feedback"):
        SokobanEnv(feedback="loud")
    with pytest.raises(ValueError, match="no level"):
        SokobanEnv(levels="no level here\n")


def test_bad_levels_fail_at_construction_not_at_reset_or_step() -> None:
    from reflectgym.envs.sokoban.level import LevelFormatError

    for levels in ([], "####\n#@*#\n####", b"#####\n#@$.#\n#####"):
        with pytest.raises(LevelFormatError):
            SokobanEnv(levels=levels)  # type: ignore[arg-type]


def test_a_task_id_that_only_looks_like_an_index_is_a_clear_error() -> None:
    from reflectgym.envs.sokoban.level import LevelFormatError

    env = SokobanEnv(levels="#####\n#@$.#\n#####")
    for task_id in ("²", "9" * 5000):  # `isdigit` is true for both, `int` refuses both
        with pytest.raises(LevelFormatError, match="no level with title or index"):
            env.reset(options={"task_id": task_id})
    env.reset(options={"task_id": "0"})


def test_one_number_is_a_square_size() -> None:
    env = SokobanEnv(size=7, num_boxes=1)
    observation, _ = env.reset(seed=0)
    assert env.size == (7, 7) and observation.count("\n#######") >= 1
    env.close()


def test_a_loaded_level_without_a_solution_warns_once() -> None:
    stuck = "######\n#@ $.#\n#   $#\n#   .#\n######"  # a box in a corner off its goal: no solution
    env = SokobanEnv(levels=stuck)
    with pytest.warns(UserWarning, match="level 0: it has no solution .*the oracle cannot play it"):
        _, info = env.reset(seed=0)
    assert info["privileged"] is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.reset(seed=1)  # the same level again: said once
    assert env.task_ids() == ["0"]


def test_task_ids_play_every_loaded_level_once() -> None:
    numbered = "\n\n".join(f"; {n}\n#####\n#@$.#\n#####" for n in (1, 2, 3))  # titled as level files number them
    untitled = "#####\n#@$.#\n#####\n\n######\n#@$ .#\n######"
    for levels, expected in [(numbered, ["1", "2", "3"]), (untitled, ["0", "1"])]:
        env = SokobanEnv(levels=levels)
        ids = env.task_ids()
        assert ids == expected
        played = [env.reset(options={"task_id": task_id})[1]["task_id"] for task_id in ids]
        assert played == ids  # each level once, none twice
