"""Answer equivalence: the labelled suite, the fast path alone, and the time limit on symbolic work."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from reflectgym.envs.math.equivalence import AnswerChecker, EquivalenceConfig, Match
from reflectgym.envs.math.symbolic import symbolic_available

CASES = [json.loads(line) for line in (Path(__file__).parent / "data" / "equivalence_cases.jsonl").open()]
needs_math_verify = pytest.mark.skipif(not symbolic_available(), reason="math-verify is not installed")


def test_suite_is_large_and_balanced() -> None:
    assert len(CASES) >= 150
    assert 40 <= sum(not case["equal"] for case in CASES) <= len(CASES) - 40


@needs_math_verify
def test_every_labelled_case() -> None:
    checker = AnswerChecker()
    wrong = [
        (case["answer"], case["gold"], case["equal"], checker.check(case["answer"], case["gold"]))
        for case in CASES
        if checker.check(case["answer"], case["gold"]).equal != case["equal"]
    ]
    assert not wrong, "\n".join(map(str, wrong))


def test_fast_path_alone_is_right_or_says_unknown() -> None:
    """Without the symbolic library the checker never guesses: each verdict is right, or `unknown`."""
    checker = AnswerChecker(EquivalenceConfig(symbolic=False))
    decided = 0
    for case in CASES:
        match = checker.check(case["answer"], case["gold"])
        if match.status != "unknown":
            decided += 1
            assert match.equal == case["equal"], case
    assert decided >= 120


def test_symmetric_on_decided_pairs() -> None:
    checker = AnswerChecker(EquivalenceConfig(symbolic=False))
    for case in CASES:
        forward = checker.check(case["answer"], case["gold"]).status
        backward = checker.check(case["gold"], case["answer"]).status
        if "unknown" not in (forward, backward):
            assert forward == backward, case


def test_huge_powers_never_stall_the_fast_path() -> None:
    checker = AnswerChecker(EquivalenceConfig(symbolic=False))
    start = time.perf_counter()
    assert checker.check("9^{9^{9^{9}}}", "1").status == "not_equal"  # (far beyond any float: see below)
    assert checker.check("2^{100000}", "2^{100001}").status == "unknown"
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("9^{9^{9}}", "5"),
        ("\\boxed{10^{10^{10}}}", "5"),
        ("-10^{10^{10}}", "-3.5"),
        ("2^{2^{2^{2^{2}}}}", "0"),
        ("2^{-9^{9^{9}}}", "0"),
        ("1, 9^{9^{9}}", "1"),
        ("5", "9^{9^{9}}"),
    ],
)
def test_a_power_too_large_to_compute_is_not_equal_to_an_ordinary_number_at_once(answer: str, gold: str) -> None:
    checker = AnswerChecker(EquivalenceConfig(timeout_s=10))
    start = time.perf_counter()
    assert checker.check(answer, gold) == Match("not_equal", "fast")
    assert time.perf_counter() - start < 0.1


@pytest.mark.parametrize(
    ("answer", "gold"),
    [("1^{10^{10}}", "1"), ("9^{9^{9}} - 9^{9^{9}}", "0"), ("(-1)^{10^{10}}", "1"), ("2^{9^{-9^{9}}}", "1")],
)
def test_a_huge_power_that_may_equal_an_ordinary_number_is_left_undecided_by_the_fast_path(
    answer: str, gold: str
) -> None:
    assert AnswerChecker(EquivalenceConfig(symbolic=False)).check(answer, gold).status == "unknown"


@needs_math_verify
def test_checker_reports_timeout_as_unknown() -> None:
    checker = AnswerChecker(EquivalenceConfig(timeout_s=0.5))
    match = checker.check("9^{9^{9}} + y", "y + 2")
    assert (match.status, match.method) == ("unknown", "timeout")
    assert not match.equal


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        EquivalenceConfig(timeout_s=0)
    with pytest.raises(ValueError, match="rel_tol"):
        EquivalenceConfig(rel_tol=2)
    with pytest.raises(ValueError, match="symbolic_workers"):
        EquivalenceConfig(symbolic_workers=0)


@pytest.mark.parametrize(
    "answer",
    ["2 3", "1 2 3", "3 \\text{ feet } 4 \\text{ inches}", "2 \\text{ hours and } 30 \\text{ minutes}"],
)
def test_numbers_side_by_side_name_no_value_and_are_never_multiplied(answer: str) -> None:
    for gold in ("6", "12", "60", "230"):
        assert AnswerChecker().check(answer, gold).status == "unknown", (answer, gold)


@pytest.mark.parametrize(
    ("answer", "glued"),
    [("3\\text{ft}4\\text{in}", "34"), ("2\\text{ hours and }30\\text{ minutes}", "230")],
)
def test_text_between_two_numbers_never_glues_them_into_one(answer: str, glued: str) -> None:
    assert AnswerChecker().check(answer, glued).status == "unknown"


def test_two_numbers_joined_by_a_conjunction_are_two_values_never_one_glued() -> None:
    """`2\\text{ and }3` is the list 2, 3 (see below): surely not 23, and not unknown as units between numbers are."""
    checker = AnswerChecker()
    assert checker.check("2\\text{ and }3", "23").status == "not_equal"
    assert checker.check("23", "2\\text{ and }3").status == "not_equal"


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("1\\text{ and }2", "1, 2"),
        ("1 and 2", "\\{2,1\\}"),
        ("1 \\text{ or } 2", "1,2"),
        ("1\\mbox{ and }2", "2, 1"),
        ("2, 3, \\text{and } 5", "\\{5, 3, 2\\}"),
        ("2, 3 and 5", "2,3,5"),
        ("2\\text{, }3\\text{, and }5", "3, 5, 2"),
        ("x=1 \\text{ or } x=2", "\\{1,2\\}"),
        ("$x = -2$ or $x = 1$", "-2, 1"),
        ("x = 1 \\text{ or } 2", "2, 1"),
        ("either 1 or -1", "\\pm 1"),
        ("\\frac{1}{2} \\text{ or } -3", "-3, \\frac12"),
        ("\\sqrt2 \\text{ and } \\pi", "\\pi, \\sqrt{2}"),
        ("1 \\pm \\sqrt{5} \\text{ and } -2", "\\{1\\pm\\sqrt{5},-2\\}"),
        ("30^\\circ \\text{ and } 150^\\circ", "150, 30"),
        ("3\\text{ cm} \\text{ and } 4\\text{ cm}", "3, 4"),
        ("3 cm and 4 cm", "4, 3"),
        ("\\$5 and \\$7", "7, 5"),
        ("(1, 2) \\text{ and } (3, 4)", "(3, 4), (1, 2)"),
        ("(1, 2) \\text{ or } (3, 4)", "(3,4),(1,2)"),
        ("(-\\infty, 1) \\text{ or } [2, \\infty)", "(-\\infty, 1) \\cup [2, \\infty)"),
    ],
)
def test_values_joined_by_conjunctions_match_the_same_values_as_a_list_or_set(answer: str, gold: str) -> None:
    """A conjunction between complete values ("and", "or", ", and"; bare or in `\\text{}`) makes the answer an unordered
    list, compared as comma lists and sets are; pairs keep their order inside, and intervals joined by "or" are their
    union. Both directions: a gold may be written either way too."""
    checker = AnswerChecker(EquivalenceConfig(symbolic=False))
    assert [checker.check(answer, gold).status, checker.check(gold, answer).status] == ["equal", "equal"]


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("1 \\text{ and } 3", "1, 2"),  # a different value
        ("1 \\text{ or } 2", "\\{1, 2, 3\\}"),  # a value missing
        ("1, 2, \\text{and } 3", "1, 2"),  # an extra value
        ("1 \\text{ or } 2", "2"),  # a hedge is not the answer
        ("x = 1 \\text{ or } x = 2", "1, 1"),  # a multiset: each value counts once
        ("(1, 2) \\text{ and } (4, 3)", "(1, 2), (3, 4)"),  # points keep their order
        ("2 \\text{ and } 1", "(1, 2)"),  # so does an ordered pair
        ("1 \\text{ and } 2", "[1, 2]"),  # and an interval is no list
        ("(-\\infty, 1) \\text{ or } (2, \\infty)", "(-\\infty, 1) \\cup [2, \\infty)"),
    ],
)
def test_values_joined_by_conjunctions_do_not_match_other_values(answer: str, gold: str) -> None:
    checker = AnswerChecker(EquivalenceConfig(symbolic=False))
    assert [checker.check(answer, gold).status, checker.check(gold, answer).status] == ["not_equal", "not_equal"]


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("2\\text{ hours}\\text{ and }30\\text{ minutes}", "2, 30"),  # different units: one mixed quantity
        ("5 feet and 3 inches", "5, 3"),
        ("[0, 1] \\text{ and } [2, 3]", "[0, 1], [2, 3]"),  # intervals joined by "and": an intersection, or a union
    ],
)
def test_a_mixed_quantity_or_intervals_joined_by_and_are_not_split_into_a_list(answer: str, gold: str) -> None:
    assert AnswerChecker(EquivalenceConfig(symbolic=False)).check(answer, gold).status == "unknown"


def test_words_joined_by_a_conjunction_stay_one_word_answer() -> None:
    checker = AnswerChecker(EquivalenceConfig(symbolic=False))
    assert checker.check("Alice and Bob", "\\text{Alice and Bob}").status == "equal"
    assert checker.check("Alice and Bob", "\\text{Bob}").status == "not_equal"


def test_a_whole_number_and_a_proper_fraction_is_both_two_values_and_a_mixed_number() -> None:
    """`2\\text{ and }\\frac{1}{2}`: the roots 2 and 1/2, or 2 1/2 as it is said aloud; either gold matches."""
    checker = AnswerChecker(EquivalenceConfig(symbolic=False))
    statuses = [checker.check("2 \\text{ and } \\frac{1}{2}", gold).status for gold in ("2.5", "\\frac12, 2", "2", "3")]
    assert statuses == ["equal", "equal", "not_equal", "not_equal"]
    assert checker.check("-2 \\text{ and } \\frac{1}{2}", "-1.5").status == "not_equal"  # (no sign: no mixed number)


@pytest.mark.parametrize(
    ("answer", "gold", "status"),
    [
        ("x = 1, x = 2", "2, 1", "equal"),  # one unknown: its values, unordered
        ("x = 1, 2", "2, 1", "equal"),
        ("x = 1, y = 2", "2, 1", "not_equal"),  # two unknowns: the point (1, 2)
        ("x = 1, y = 2", "(1, 2)", "equal"),
        ("\\{1\\pm\\sqrt{5},-2\\}", "-2, 1-\\sqrt5, 1+\\sqrt5", "equal"),  # a \\pm item is two values of a set
        ("\\{1\\pm\\sqrt{5},-2\\}", "1-\\sqrt5, 1+\\sqrt5", "not_equal"),
        ("2 \\pm 1, 5", "1, 3, 5", "equal"),
    ],
)
def test_named_values_of_one_unknown_and_plus_minus_items_are_unordered_values(
    answer: str, gold: str, status: str
) -> None:
    assert AnswerChecker(EquivalenceConfig(symbolic=False)).check(answer, gold).status == status


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        ("18\\text{ cm}.", "18"),
        ("(3\\text{ cm}, 4\\text{ cm})", "(3, 4)"),
        ("\\{3\\,\\text{m}, 4\\text{ m}\\}", "3, 4"),
    ],
)
def test_a_unit_ending_an_answer_or_one_of_its_items_is_dropped(answer: str, gold: str) -> None:
    assert AnswerChecker(EquivalenceConfig(symbolic=False)).check(answer, gold).status == "equal"


@pytest.mark.parametrize(
    ("answer", "gold", "status"),
    [
        ("-3\\frac{1}{2}", "-3.5", "equal"),
        ("-3\\frac{1}{2}", "-\\frac{3}{2}", "not_equal"),
        ("2\\cdot 3\\frac{1}{2}", "7", "equal"),
        ("10\\frac{\\sqrt{3}}{2}", "5\\sqrt{3}", "equal"),
        ("10\\frac{\\sqrt{3}}{2}", "10+\\frac{\\sqrt{3}}{2}", "not_equal"),
        ("4\\frac{\\pi}{3}", "\\frac{4\\pi}{3}", "equal"),
    ],
)
def test_only_a_whole_number_then_a_fraction_of_integers_is_a_mixed_number(answer: str, gold: str, status: str) -> None:
    assert AnswerChecker(EquivalenceConfig(symbolic=False)).check(answer, gold).status == status


@pytest.mark.parametrize(
    ("answer", "gold"),
    [("x^2 + 2 x y", "x^2+2"), ("\\frac{1}{2} a b", "\\frac12"), ("5 sin x", "5"), ("2 pi", "2")],
)
def test_trailing_variables_functions_and_constants_are_not_dropped_as_units(answer: str, gold: str) -> None:
    assert AnswerChecker(EquivalenceConfig(symbolic=False)).check(answer, gold).status != "equal"


@pytest.mark.parametrize(
    ("answer", "gold"),
    [
        *[("3 million", "3000000"), ("2.5 million people", "2500000"), ("3.5\\text{ million}", "3500000")],
        *[("3.5 million", "3.5"), ("\\$2 billion", "2"), ("3.5\\text{ million}", "3.5")],  # (a gold in millions)
        *[("2 pi", "2\\pi"), ("18 dollars", "18"), ("9 a.m.", "9"), ("3 times a day", "3")],
    ],
)
def test_number_words_and_pi_are_read_and_unit_words_dropped(answer: str, gold: str) -> None:
    """A number word stands for both readings: the number scaled (`3.5 million` is 3500000) and the number in those
    units (a gold of 3.5 where the question counts in millions)."""
    assert AnswerChecker(EquivalenceConfig(symbolic=False)).check(answer, gold).status == "equal"


def test_a_number_word_does_not_make_any_other_number_equal() -> None:
    checker = AnswerChecker(EquivalenceConfig(symbolic=False))
    assert [checker.check("3 million", gold).status for gold in ("3000", "30000000", "4")] == ["not_equal"] * 3


@pytest.mark.parametrize(
    ("answer", "gold", "status"),
    [
        ("1.5e3", "1500", "equal"),
        ("1e5", "100000", "equal"),
        ("1.5E3", "1500", "equal"),
        ("2.5e-2", "2.5\\%", "equal"),
        ("1e-3", "0.001", "equal"),
        ("1.5e3", "150", "not_equal"),
    ],
)
def test_e_notation_is_read_by_the_fast_path_in_either_case(answer: str, gold: str, status: str) -> None:
    assert AnswerChecker(EquivalenceConfig(symbolic=False)).check(answer, gold).status == status


def test_spaced_thousands_and_implicit_products_still_read() -> None:
    checker = AnswerChecker(EquivalenceConfig(symbolic=False))
    assert [checker.check(a, g).status for a, g in [("1 000", "1000"), ("2(3)", "6"), ("2\\cdot 3", "6")]] == [
        "equal"
    ] * 3


def test_a_float_gold_with_all_its_digits_matches_the_exact_value_it_rounds() -> None:
    checker = AnswerChecker(EquivalenceConfig(symbolic=False))
    assert checker.check("\\frac{1}{3}", "0.3333333333333333").status == "equal"
    assert checker.check("0.33", "0.3333333333333333").status == "not_equal"
    assert checker.check("\\frac{2}{3}", "0.6666666666666666").status == "equal"  # (a float's shortest repr)
    assert checker.check("123456789012345678", "123456789012345679").status == "not_equal"  # integers stay exact
    for written, other in [("1000000000.00000", "1000000001"), ("12345678901200.00", "12345678901234")]:
        assert checker.check(written, other).status == "not_equal"  # (trailing zeros are not digits of a float)
    assert checker.check("1.00000000000000", "1.0000000001").status == "not_equal"


@pytest.mark.parametrize(
    ("answer", "gold", "status"),
    [
        ("5,", "5", "equal"),
        ("5", "5,", "equal"),
        ("1, 2, ", "2, 1", "equal"),
        ("\\{1, 2,\\}", "1, 2", "equal"),
        ("(1, 2,)", "(1, 2)", "equal"),
        ("1,,2", "1, 2", "equal"),
        ("5,", "6", "not_equal"),
        (",", "5", "unknown"),
        ("()", "5", "unknown"),
    ],
)
def test_empty_list_items_are_dropped_alike_in_answer_and_gold(answer: str, gold: str, status: str) -> None:
    assert AnswerChecker(EquivalenceConfig(symbolic=False)).check(answer, gold).status == status
