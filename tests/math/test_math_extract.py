"""Answer extraction from model replies."""

from __future__ import annotations

import time

import pytest

from reflectgym.core.types import ActionParseError
from reflectgym.envs.math.env import MathEnv
from reflectgym.envs.math.extract import ExtractionConfig, boxed_contents, extract_answer, require_answer


@pytest.mark.parametrize(
    ("reply", "answer", "method"),
    [
        ("So the result is \\boxed{42}.", "42", "boxed"),
        ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}", "boxed"),
        ("first \\boxed{1} then \\boxed{\\{1, 2\\}}", "\\{1, 2\\}", "boxed"),
        ("\\boxed 7 is it", "7", "boxed"),
        ("\\fbox{x=3}", "x=3", "boxed"),
        ("She has 38 left.\n#### 38", "38", "gsm8k"),
        ("#### $1,050.", "$1,050", "gsm8k"),
        ("Thus the answer is 3/4.", "3/4", "answer_is"),
        ("Final answer: $x = 5$", "x = 5", "answer_is"),
        ("The answer is 42, since 6*7=42.", "42", "answer_is"),
        ("The answer is 42 because 6 times 7 is 42.", "42", "answer_is"),
        ("So the answer is **42**. Let me know if you need more.", "42", "answer_is"),
        ("So the answer is 12.\n\nHmm, that's wrong; 3*5 = 15.\n\nAnswer: 15", "15", "answer_is"),  # corrected
        ("Final answer: 12 ... The answer is 15.", "15", "answer_is"),
        ("The answer is approx. 3.5", "approx. 3.5", "answer_is"),
        ("The answer is 1, 2, and 3.", "1, 2, and 3", "answer_is"),
        ("I'll answer in <answer></answer> tags.\n\nSo \\boxed{5}", "5", "boxed"),
        ("İstanbul İzmir İ İ <answer>12</answer>", "12", "answer_tag"),
        ("Final Answer: The final answer is $42$. I hope it is correct.", "42", "answer_is"),
        ("The answer is 3.5.", "3.5", "answer_is"),
        ("The answer is 1, 2, 3.", "1, 2, 3", "answer_is"),
        ("The answer is $\\frac{1}{2}$, as shown", "\\frac{1}{2}", "answer_is"),
        ("the answer isn't 41, it's 42", "42", "last_number"),
        ("<answer>\\frac{1}{2}</answer>", "\\frac{1}{2}", "answer_tag"),
        ("<answer>42</answer>\nThat took 3 steps.", "42", "answer_tag"),
        ("<think>try \\boxed{41}</think><answer>42</answer>", "42", "answer_tag"),
        ("<ANSWER> \\boxed{5} </Answer> then 9", "5", "answer_tag"),
        ("<think>maybe \\boxed{41}</think>\nSo \\boxed{42}", "42", "boxed"),
        ("I computed 3 then 4 then 17", "17", "last_number"),
        ("the total is -2.5 meters", "-2.5", "last_number"),
        ("it costs 1,250 in total", "1,250", "last_number"),
        ("light covers about 3e8 metres a second", "3e8", "last_number"),
        ("so it takes 2.5E-3 s, not 3 eggs", "3", "last_number"),
        ("it takes 2.5E-3 seconds", "2.5E-3", "last_number"),
    ],
)
def test_finds_the_final_answer(reply: str, answer: str, method: str) -> None:
    extraction = extract_answer(reply)
    assert extraction is not None
    assert (extraction.answer, extraction.method) == (answer, method)


@pytest.mark.parametrize(
    ("reply", "answer", "method"),
    [
        ("So x = \u22125", "-5", "last_number"),
        ("The answer is \u22123.", "-3", "answer_is"),
        ("\\boxed{\u22122}", "-2", "boxed"),
    ],
)
def test_a_unicode_minus_sign_is_read_as_a_minus(reply: str, answer: str, method: str) -> None:
    extraction = extract_answer(reply)
    assert extraction is not None
    assert (extraction.answer, extraction.method) == (answer, method)


def test_boxed_beats_every_other_form() -> None:
    extraction = extract_answer("The answer is 3.\n#### 4\n\\boxed{5}")
    assert extraction is not None and extraction.answer == "5"


def test_reasoning_before_the_end_of_thinking_is_not_read() -> None:
    assert extract_answer("<think>the answer is \\boxed{41}</think>") is None
    assert extract_answer("an unclosed <think> \\boxed{41}") is not None  # (no end of thinking: all of it is read)


def test_hostile_tags_and_phrases_are_read_in_linear_time() -> None:
    started = time.perf_counter()
    for reply in (
        "<answer>" * 20000,
        "</think>" * 20000,
        "The answer is " * 20000,
        ("answer: " * 60 + "\n") * 2000,
        "answer: 1" + " " * 20000 + "x",
        "answer is 1," + " " * 20000 + "so",
    ):
        extract_answer(reply)
    assert time.perf_counter() - started < 2.0


def test_unclosed_box_is_skipped() -> None:
    assert boxed_contents("\\boxed{1} and \\boxed{2") == ["1"]


def test_no_answer_is_none() -> None:
    assert extract_answer("I do not know.") is None
    assert extract_answer("") is None


def test_last_number_fallback_can_be_turned_off() -> None:
    config = ExtractionConfig(last_number_fallback=False)
    assert extract_answer("it is 12", config) is None
    assert extract_answer("it is \\boxed{12}", config) is not None


def test_runaway_answers_are_refused() -> None:
    assert extract_answer("\\boxed{" + "1+" * 1000 + "1}") is None


def test_deeply_nested_braces() -> None:
    assert extract_answer("\\boxed{" + "{" * 50 + "3" + "}" * 50 + "}") is not None


def test_nested_and_escaped_braces_balance() -> None:
    assert boxed_contents("\\boxed{a{b}c} \\boxed{\\{x\\}} \\boxed{\\boxed{7}}") == [
        "a{b}c",
        "\\{x\\}",
        "\\boxed{7}",
        "7",
    ]
    assert boxed_contents("\\boxed 5$ and \\boxed{} \\boxed $") == ["5", ""]


def test_hostile_boxes_are_read_in_linear_time() -> None:
    # Each took 6-20 s when every unclosed box or unbraced token was rescanned to the end of the reply.
    started = time.perf_counter()
    assert extract_answer("\\boxed{" * 16_000) is None
    assert boxed_contents("\\boxed{" * 16_000 + "1") == []
    nested = extract_answer("\\boxed{" * 16_000 + "7" + "}" * 16_000)
    assert nested is not None and nested.answer == "7"
    unbraced = extract_answer("\\boxed" * 32_000)  # each box's token runs to the end; the last one's is `\boxed`
    assert unbraced is not None and unbraced.answer == "\\boxed"
    assert time.perf_counter() - started < 5


def test_a_too_long_answer_says_so_rather_than_none_found() -> None:
    with pytest.raises(ActionParseError, match=r"\\boxed\{\.\.\.\}, is 2001 characters long; at most 400"):
        require_answer("\\boxed{" + "1+" * 1000 + "1}")
    with pytest.raises(ActionParseError, match=r"no final answer found .*nor a number to take as the answer\)"):
        require_answer("I do not know.")
    with pytest.raises(ActionParseError, match=r"'the answer is'\)$"):  # without the fallback, not mentioned
        require_answer("I do not know.", ExtractionConfig(last_number_fallback=False))
    env = MathEnv()
    env.reset(seed=0)
    observation, reward, _, _, info = env.step("\\boxed{" + "1+" * 1000 + "1}")
    assert reward == pytest.approx(-0.1) and info["parse_error"]
    assert "2001 characters long" in observation and "no final answer found" not in observation


def test_a_hostile_reply_is_a_quick_format_turn_in_the_env() -> None:
    env = MathEnv()
    env.reset(seed=0)
    started = time.perf_counter()
    observation, reward, _, _, _ = env.step("\\boxed{" * 16_000)
    assert reward == pytest.approx(-0.1) and "no final answer found" in observation
    assert time.perf_counter() - started < 5
