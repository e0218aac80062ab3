"""MathEnv: conformance, oracle, self-correction attempts, feedback levels, and no gold answer in feedback."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import reflectgym
from reflectgym.core import (
    TaskFormatError,
    audit_feedback_leaks,
    check_determinism,
    check_garbage_actions,
    check_snapshot_roundtrip,
)
from reflectgym.envs.math.env import MathEnv
from reflectgym.envs.math.tool import MathToolEnv
from reflectgym.envs.math.values import Num, read_answer

DATA = Path(__file__).parent / "data"
ENV_ID = "reflectgym/MathTest-v0"


@pytest.fixture(scope="module")
def env_id() -> Iterator[str]:
    reflectgym.register(
        ENV_ID,
        "reflectgym.envs.math.env:MathEnv",
        family="math",
        reference="worked solution",
        kwargs={"generator": "mixed", "difficulty": 1},
    )
    yield ENV_ID
    gym.registry.pop(ENV_ID, None)


@pytest.mark.parametrize("feedback", ["binary", "diagnostic", "hint"])
def test_conformance(env_id: str, feedback: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        check_env(gym.make(env_id, feedback=feedback, max_attempts=3).unwrapped)
    check_determinism(lambda: gym.make(env_id, feedback=feedback, max_attempts=3), seeds=(0, 3), turns=4)
    check_snapshot_roundtrip(gym.make(env_id, feedback=feedback, max_attempts=3))
    check_garbage_actions(gym.make(env_id, feedback=feedback, max_attempts=3), turns=12)
    report = audit_feedback_leaks(gym.make(env_id, feedback=feedback, max_attempts=3), episodes=10)
    assert report.ok, str(report)


def test_oracle_solves_every_generator_and_level() -> None:
    for generator in ("arithmetic", "fractions", "linear", "systems", "polynomial_roots", "modular", "counting"):
        for difficulty in range(1, 6):
            env = MathEnv(generator=generator, difficulty=difficulty)
            env.reset(seed=difficulty)
            _, reward, terminated, _, info = env.step(env.oracle_action())
            assert (reward, terminated, info["feedback"]) == (1.0, True, "Correct."), info


def test_dataset_tasks_and_task_id(tmp_path: Path) -> None:
    env = MathEnv(tasks=DATA / "gsm8k_sample.jsonl")
    observation, info = env.reset(options={"task_id": "1"})
    assert "Tom saves" in observation and info["task_id"] == "1"
    _, reward, terminated, _, info = env.step("He saves \\$1,050 in all. #### 1,050")
    assert (reward, terminated) == (1.0, True)
    assert "#### 1,050" in info["privileged"]
    env = MathEnv(tasks=DATA / "math_sample.jsonl")
    env.reset(options={"task_id": "2"})
    assert env.step("so it is \\boxed{\\sqrt{50}}")[1] == 1.0


def test_symbolic_settings_reach_the_checker() -> None:
    """`timeout_s` and `symbolic_workers` pick the process's shared math-verify pool (`symbolic.shared_verifier`)."""
    for make in (MathEnv, MathToolEnv):
        config = make(timeout_s=2.0, symbolic_workers=2).checker.config
        assert (config.timeout_s, config.symbolic_workers) == (2.0, 2)


def test_self_correction_episode() -> None:
    env = MathEnv(tasks=[{"question": "What is 6 * 7?", "answer": "42"}], max_attempts=3, feedback="diagnostic")
    env.reset(seed=0)
    observation, reward, terminated, truncated, info = env.step("\\boxed{41}")
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert "within ten percent" in info["feedback"] and "Attempt 2 of 3" in observation
    observation, reward, *_ = env.step("no idea")
    assert reward == pytest.approx(-0.1) and info is not None and "Attempt 3 of 3" in observation
    *_, terminated, truncated, _ = env.step("\\boxed{40}")
    assert (terminated, truncated) == (False, True)
    env.reset(seed=0)
    env.step("\\boxed{41}")
    assert env.step("I fixed it: \\boxed{42}")[2] is True


def test_feedback_levels_say_more_as_they_go() -> None:
    replies = {}
    for level in ("binary", "diagnostic", "hint"):
        env = MathEnv(generator="linear", difficulty=2, feedback=level)
        env.reset(seed=11)
        replies[level] = env.step("x = \\boxed{(1, 2)}")[4]["feedback"]
    assert replies["binary"] == "Incorrect."
    assert "ordered pair" in replies["diagnostic"] and "the expected answer is a number" in replies["diagnostic"]
    assert replies["hint"].startswith(replies["diagnostic"]) and "Hint: your work does not show" in replies["hint"]


def test_hint_points_at_the_first_wrong_intermediate_quantity() -> None:
    env = MathEnv(generator="linear", difficulty=2, feedback="hint")
    env.reset(seed=4)
    steps = env.task.data["steps"]
    coefficient = steps[0]["value"]
    shown_first = f"Collecting terms: {coefficient}x = 999, so \\boxed{{12345}}"
    feedback = env.step(shown_first)[4]["feedback"]
    assert steps[1]["label"] in feedback and steps[0]["label"] not in feedback
    env.reset(seed=4)
    all_shown = f"{coefficient}x = {steps[1]['value']}, so \\boxed{{12345}}"
    assert "last step" in env.step(all_shown)[4]["feedback"]


def _reveals(text: str, gold: str, said: str, prompt: str) -> bool:
    """Whether `text` shows the gold answer — as a standalone token, or as a number equal to it — other than in
    the student's own answer quoted back or in numbers copied from the problem (which is public)."""
    text = text.replace(f": {said}", ": ", 1)
    public = set(re.findall(r"\d+", prompt))
    text = re.sub(r"\d+", lambda match: " " if match.group(0) in public else match.group(0), text)
    if re.search(rf"(?<![\w.\\/]){re.escape(gold)}(?![\w./])", text):
        return True
    gold_value, _ = read_answer(gold)
    if not isinstance(gold_value, Num) or gold_value.exact is None:
        return False
    for token in re.findall(r"-?\d+(?:\.\d+)?(?:/\d+)?", text):
        try:
            if Fraction(token) == gold_value.exact:
                return True
        except ZeroDivisionError:
            continue
    return False


@pytest.mark.parametrize("level", ["diagnostic", "hint"])
def test_feedback_never_contains_the_gold_answer(level: str) -> None:
    """Near misses are where feedback is tempted to leak: off by one, wrong sign, reduced wrong, wrong kind."""
    rng = np.random.default_rng(0)
    checked = 0
    for generator in ("arithmetic", "fractions", "linear", "systems", "polynomial_roots", "modular", "counting"):
        for difficulty in range(1, 6):
            env = MathEnv(generator=generator, difficulty=difficulty, feedback=level, max_attempts=6)
            env.reset(seed=int(rng.integers(10_000)))
            gold = env.gold
            value, _ = read_answer(gold)
            near = ["\\boxed{0}", "\\boxed{(1, 2)}", "#### 7", "I think it's \\boxed{x+1}"]
            if isinstance(value, Num) and value.exact is not None:
                near = [f"\\boxed{{{value.exact + 1}}}", f"\\boxed{{{-value.exact - 1}}}", *near]
            for reply in near:
                _, _, terminated, truncated, info = env.step(reply)
                answer = info["verdict"].details.get("extracted", "")
                assert not _reveals(info["feedback"], gold, answer, env.task.prompt), (gold, reply, info["feedback"])
                checked += 1
                if terminated or truncated:
                    break
    assert checked > 150


def test_leak_markers_guard_specific_golds() -> None:
    env = MathEnv(tasks=[{"question": "Simplify 50/120.", "answer": "\\frac{5}{12}"}])
    env.reset(seed=0)
    assert "\\frac{5}{12}" in env.leak_markers()
    env = MathEnv(tasks=[{"question": "What is 1000 + 0?", "answer": "1000"}])
    env.reset(seed=0)
    assert "1000" not in env.leak_markers()  # it is in the problem already, so showing it reveals nothing


def test_unparseable_reply_is_a_format_turn() -> None:
    env = MathEnv(last_number_fallback=False)
    env.reset(seed=0)
    observation, reward, terminated, _, info = env.step("the result is seventeen")
    assert reward == pytest.approx(-0.1) and not terminated
    assert info["parse_error"] and "\\boxed" in observation


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        MathEnv(max_attempts=0)
    with pytest.raises(ValueError, match="difficulty"):
        MathEnv(difficulty=7)


def test_a_failed_reset_does_not_replay_the_finished_episode() -> None:
    env = gym.make("reflectgym/Math-v0")
    env.reset(seed=0)
    oracle = env.unwrapped.oracle_action()  # type: ignore[attr-defined]
    assert env.step(oracle)[1:3] == (1.0, True)
    with pytest.raises(KeyError):
        env.reset(options={"task_id": "nope"})
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.step(oracle)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b'{"id": "b", "question": "caf\xe9", "answer": "1"}', "not UTF-8"),
        (b'{"id": "b", "question": "q", "answer": ' + b"1" * 5000 + b"}", "4300 digits"),
        (b'{"id": "b", "question": "q", "answer": "1", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested"),
        (b'{"id": "a", "question": "q", "answer": "1"}', "duplicate task id 'a'"),
        (b'{"id": "b", "question": "q\\ud800", "answer": "1"}', "field 'question'.*surrogate"),
    ],
    ids=["non-utf8", "huge-int", "deep", "duplicate-id", "surrogate"],
)
def test_a_hostile_task_file_line_is_a_located_task_format_error(tmp_path: Path, line: bytes, message: str) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_bytes(b'{"id": "a", "question": "1+0?", "answer": "1"}\n' + line + b"\n")
    with pytest.raises(TaskFormatError, match=rf"tasks\.jsonl:2: .*{message}"):
        gym.make("reflectgym/Math-v0", tasks=str(path))


@pytest.mark.parametrize(
    ("gold", "reply", "reward"),
    [
        ("5", "\\boxed{5,}", 1.0),
        ("5", "#### 5,", 1.0),
        ("5,", "\\boxed{5}", 1.0),
        ("5", "The answer is 1, 2, ", 0.0),
        ("5", "\\boxed{(1,)}", 0.0),
        ("5", "\\boxed{()}", 0.0),
        ("5", "\\boxed{(,)}", 0.0),
    ],
)
def test_an_answer_or_gold_with_an_empty_list_item_is_judged_not_raised(gold: str, reply: str, reward: float) -> None:
    env = MathEnv(tasks=[{"id": "t", "question": "2+3?", "answer": gold}])
    env.reset(seed=0)
    assert env.step(reply)[1] == reward
