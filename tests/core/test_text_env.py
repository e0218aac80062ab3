"""The TextEnv base contract: info keys, format turns, type errors, limits, snapshots, rendering."""

from __future__ import annotations

import pickle

import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env
from support.toy_envs import CounterEnv

from reflectgym.core import EpisodeOverError, check_determinism, check_garbage_actions, check_snapshot_roundtrip

INFO_KEYS = {"feedback", "verdict", "privileged", "task_id", "parse_error", "turn"}


def test_counter_env_passes_gymnasium_check_env() -> None:
    check_env(CounterEnv(), skip_render_check=True)


def test_reset_and_step_info_carry_the_contract_keys() -> None:
    env = CounterEnv()
    _, info = env.reset(seed=3)
    assert set(info) >= INFO_KEYS and info["verdict"] is None and info["turn"] == 0
    _, _, _, _, info = env.step("add 1")
    assert set(info) >= INFO_KEYS
    assert info["verdict"].feedback == info["feedback"] and info["parse_error"] is None and info["turn"] == 1


def test_garbage_text_is_a_format_turn_with_penalty_and_the_expected_format() -> None:
    env = CounterEnv(format_penalty=0.25)
    env.reset(seed=0)
    observation, reward, terminated, truncated, info = env.step("jump around")
    assert reward == -0.25 and not terminated and not truncated
    assert info["parse_error"] and "add 1, add 2, add 3" in info["feedback"]
    assert observation.endswith(env.observation()), "the state is shown again after a format turn"


@pytest.mark.parametrize("action", [3, None, b"add 1", ["add 1"]])
def test_non_string_action_is_a_type_error(action: object) -> None:
    env = CounterEnv()
    env.reset(seed=0)
    with pytest.raises(TypeError, match="takes the model's text as a str"):
        env.step(action)  # type: ignore[arg-type]


def test_turn_limit_truncates_and_stepping_after_the_end_is_refused() -> None:
    env = CounterEnv(max_steps=2)
    env.reset(seed=0, options={"target": 100})
    assert env.step("add 1")[3] is False
    *_, terminated, truncated, _ = env.step("add 1")
    assert truncated and not terminated
    with pytest.raises(EpisodeOverError):
        env.step("add 1")


def test_feedback_level_is_validated() -> None:
    with pytest.raises(ValueError, match="binary"):
        CounterEnv(feedback="verbose")


def test_same_seed_same_episode() -> None:
    check_determinism(CounterEnv)


@pytest.mark.parametrize("native", [True, False], ids=["native", "replay"])
def test_snapshot_roundtrip(native: bool) -> None:
    check_snapshot_roundtrip(CounterEnv(native=native, max_steps=20), prefix=2, suffix=4)


@pytest.mark.parametrize("native", [True, False], ids=["native", "replay"])
def test_restore_into_a_fresh_env_continues_identically(native: bool) -> None:
    env = CounterEnv(native=native)
    env.reset(seed=5, options={"target": 11})
    env.step("add 3")
    snapshot = pickle.loads(pickle.dumps(env.snapshot()))
    expected = env.step("add 2")
    fresh = CounterEnv(native=native)
    assert fresh.restore(snapshot) == snapshot.last_observation
    assert fresh.actions == ("add 3",)
    assert fresh.step("add 2")[:4] == expected[:4]


def test_garbage_never_raises() -> None:
    check_garbage_actions(CounterEnv(max_steps=50))


def test_ansi_render_returns_the_last_observation() -> None:
    env = CounterEnv(render_mode="ansi")
    observation, _ = env.reset(seed=1)
    assert env.render() == observation


def test_oracle_solves() -> None:
    env = CounterEnv()
    env.reset(seed=2)
    for _ in range(10):
        *_, terminated, truncated, info = env.step(env.oracle_action())
        if terminated or truncated:
            break
    assert info["verdict"].passed


@pytest.mark.parametrize("native", [True, False], ids=["native", "replay"])
def test_a_failed_reset_leaves_no_episode_to_play_or_snapshot(native: bool) -> None:
    env = CounterEnv(native=native)
    env.reset(seed=0, options={"target": 1})
    assert env.step("add 1")[1:3] == (1.0, True)
    with pytest.raises(ValueError):
        env.reset(options={"target": "not a number"})  # _begin raises
    assert env.episode_over and env.actions == ()
    with pytest.raises(EpisodeOverError, match="reset"):
        env.step("add 1")  # the finished episode does not pay again
    with pytest.raises(ResetNeeded):
        env.step("add 1")  # the same kind of error as a wrapped env before its first reset
    with pytest.raises(RuntimeError, match="call reset"):
        env.snapshot()
    env.reset(seed=0, options={"target": 2})
    assert env.step("add 2")[1:3] == (1.0, True)


def test_reset_options_must_be_a_dict() -> None:
    with pytest.raises(TypeError, match="options must be a dict or None"):
        CounterEnv().reset(options="notadict")  # type: ignore[arg-type]


@pytest.mark.parametrize("reply", ["Thought: I went wrong. Let me revise.\nAction: wait", "wait", "ACTION: Wait."])
def test_a_wait_action_is_a_no_op_turn_answered_ok_when_the_env_takes_it(reply: str) -> None:
    env = CounterEnv(wait_action=True, max_steps=2, native=False)
    env.reset(seed=0, options={"target": 5})
    observation, reward, terminated, truncated, info = env.step(reply)
    assert (observation, reward, terminated, truncated, info["parse_error"]) == ("ok.", 0.0, False, False, None)
    snapshot = env.snapshot()  # (replayed: the wait is replayed as a no-op too)
    assert env.step("add 2")[0].endswith("Total 2; reach 5.")  # the wait changed nothing
    assert env.restore(snapshot) == "ok." and env.step("add 3")[3]  # and it cost a turn: the second one truncates
    plain = CounterEnv()
    plain.reset(seed=0)
    assert plain.step(reply)[4]["parse_error"]  # an env not told to take it reads it as a bad action


def test_sokoban_takes_the_wait_action_when_asked() -> None:
    import gymnasium as gym

    env, plain = gym.make("reflectgym/Sokoban-v0", wait_action=True), gym.make("reflectgym/Sokoban-v0")
    env.reset(seed=3)
    plain.reset(seed=3)
    assert env.step("Thought: that push was a mistake.\nAction: wait")[0] == "ok."
    waited, moved = env.step("Action: left")[0], plain.step("Action: left")[0]
    assert waited.split("teps left")[0] == moved.split("teps left")[0]  # the board did not change
    assert waited != moved  # the wait cost a step
    env.close()
    plain.close()
