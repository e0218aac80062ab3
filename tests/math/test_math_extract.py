"""Answer extraction from model replies."""

from __future__ import annotations

import pytest

from reflectgym.envs.math.extract import ExtractionConfig, boxed_contents, extract_answer


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
        ("I computed 3 then 4 then 17", "17", "last_number"),
        ("the total is -2.5 meters", "-2.5", "last_number"),
        ("it costs 1,250 in total", "1,250", "last_number"),
    ],
)
def test_finds_the_final_answer(reply: str, answer: str, method: str) -> None:
    extraction = extract_answer(reply)
    assert extraction is not None
    assert (extraction.answer, extraction.method) == (answer, method)


def test_boxed_beats_every_other_form() -> None:
    extraction = extract_answer("The answer is 3.\n#### 4\n\\boxed{5}")
    assert extraction is not None and extraction.answer == "5"


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
