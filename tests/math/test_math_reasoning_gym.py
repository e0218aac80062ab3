"""The reasoning-gym adapter: seeded tasks by id, and the dataset's own scorer as the verifier."""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("reasoning_gym")

from reflectgym.core import check_determinism, check_snapshot_roundtrip
from reflectgym.core.tasks import Task
from reflectgym.envs.math.env import MathEnv
from reflectgym.envs.math.extract import Extraction
from reflectgym.envs.math.feedback import scored_verdict
from reflectgym.envs.math.reasoning_gym import ReasoningGymTasks


def test_tasks_are_reproducible_and_addressable() -> None:
    source = ReasoningGymTasks("basic_arithmetic", size=20, seed=3)
    task = source.sample(np.random.default_rng(0))
    assert source.get(task.id) == task
    assert ReasoningGymTasks("basic_arithmetic", size=20, seed=3).get(task.id) == task
    with pytest.raises(KeyError, match="basic_arithmetic-<index>"):
        source.get("basic_arithmetic-99")
    for bad in ("basic_arithmetic-²", "basic_arithmetic-" + "9" * 5000):  # `int` refuses both
        with pytest.raises(KeyError, match="basic_arithmetic-<index>"):
            source.get(bad)


def test_scorer_judges_the_env() -> None:
    source = ReasoningGymTasks("basic_arithmetic", size=20, seed=3)
    env = MathEnv(tasks=source, max_attempts=2)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("\\boxed{123456789}")
    assert (reward, terminated) == (0.0, False) and "score 0.00" in info["feedback"]
    _, reward, terminated, _, _ = env.step(env.oracle_action())
    assert (reward, terminated) == (1.0, True)
    check_determinism(lambda: MathEnv(tasks=ReasoningGymTasks("basic_arithmetic", size=20, seed=3)), seeds=(0, 1))
    check_snapshot_roundtrip(MathEnv(tasks=source, max_attempts=4))


def test_an_answer_equal_to_the_gold_passes_whatever_the_scorer_says_and_a_partial_score_pays_nothing() -> None:
    source = ReasoningGymTasks("basic_arithmetic", size=20, seed=3)
    env = MathEnv(tasks=source, max_attempts=3)
    env.reset(seed=0)
    marked_down = f"{env.gold}.0"
    assert 0 < source.score(env.task, marked_down) < 1  # (this scorer gives a trailing .0 partial credit)
    _, reward, terminated, _, info = env.step(f"\\boxed{{{int(env.gold) + 1}}}")
    assert (reward, terminated) == (0.0, False) and "score 0.00" in info["feedback"]
    _, reward, terminated, _, _ = env.step(f"\\boxed{{{marked_down}}}")
    assert (reward, terminated) == (1.0, True)


def test_a_partial_score_is_shown_but_pays_nothing() -> None:
    extraction = Extraction("a, c", "answer_tag")
    verdict = scored_verdict(extraction, 0.5, level="diagnostic")
    assert (verdict.reward, verdict.passed) == (0.0, False) and "score 0.50 of 1" in verdict.feedback


def test_an_evaluation_can_play_every_entry_once() -> None:
    env = MathEnv(tasks=ReasoningGymTasks("basic_arithmetic", size=5, seed=3))
    assert env.task_ids() == [f"basic_arithmetic-{index}" for index in range(5)]


@pytest.mark.parametrize(
    ("dataset", "wrong_form"), [("fraction_simplification", "double"), ("word_sorting", "reverse")]
)
def test_a_gold_whose_form_counts_keeps_the_datasets_verdict(dataset: str, wrong_form: str) -> None:
    source = ReasoningGymTasks(dataset, size=5, seed=1)
    env = MathEnv(tasks=source, max_attempts=2)
    env.reset(seed=0)
    gold = env.gold
    if wrong_form == "double":  # 138/583 as 276/1166: equal, not simplest
        numerator, denominator = (int(part) for part in re.findall(r"\d+", gold))
        answer = f"$\\frac{{{2 * numerator}}}{{{2 * denominator}}}$"
    else:  # the words in reverse order
        answer = ", ".join(reversed([word.strip() for word in gold.split(",")]))
    assert source.score(env.task, answer) < 1
    assert env.step(f"<answer>{answer}</answer>")[1] == 0.0


@pytest.mark.parametrize(
    ("dataset", "reply"),
    [
        ("prime_factorization", "\\boxed{2 x 3 x 7}"),
        ("prime_factorization", "\\boxed{(}"),
        ("prime_factorization", "\\boxed{nan}"),
        ("prime_factorization", "\\boxed{1e999}"),
    ],
)
def test_a_scorer_that_cannot_read_the_answer_scores_it_zero_and_says_so(dataset: str, reply: str) -> None:
    source = ReasoningGymTasks(dataset, size=5)
    env = MathEnv(tasks=source, max_attempts=2)
    env.reset(seed=1)
    _, reward, terminated, _, info = env.step(reply)
    assert (reward, terminated) == (0.0, False)
    assert "scorer could not read it" in info["feedback"] and info["verdict"].details["unscorable"]
    assert env.step(env.oracle_action())[1:3] == (1.0, True)


def test_a_scorer_that_raises_still_passes_an_answer_equal_to_an_integer_gold() -> None:
    class Raising(ReasoningGymTasks):
        def score(self, task: Task, answer: str) -> float:
            raise ValueError(answer)

    env = MathEnv(tasks=Raising("basic_arithmetic", size=5, seed=3))
    env.reset(seed=0)
    assert env.step(f"\\boxed{{{env.gold}.0}}")[1:3] == (1.0, True)
