"""Answer equivalence: the labelled suite, the fast path alone, and the time limit on symbolic work."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from reflectgym.envs.math.equivalence import AnswerChecker, EquivalenceConfig
from reflectgym.envs.math.symbolic import SymbolicVerifier, symbolic_available

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
    assert checker.check("9^{9^{9^{9}}}", "1").status == "unknown"
    assert checker.check("2^{100000}", "2^{100001}").status == "unknown"
    assert time.perf_counter() - start < 0.5


@needs_math_verify
def test_pathological_expression_returns_could_not_verify_within_the_limit() -> None:
    verifier = SymbolicVerifier(timeout_s=1.0)
    try:
        assert verifier.equal("x+1", "1+x") is True  # starts the worker
        start = time.perf_counter()
        assert verifier.equal("9^{9^{9}} + x", "x + 1") is None
        assert time.perf_counter() - start < 3.0
        assert verifier.restarts == 1
        assert verifier.equal("(x+1)^2", "x^2+2x+1") is True  # a fresh worker answers again
    finally:
        verifier.close()


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


@pytest.mark.parametrize(
    "answer",
    ["2 3", "1 2 3", "3 \\text{ feet } 4 \\text{ inches}", "2 \\text{ hours and } 30 \\text{ minutes}"],
)
def test_numbers_side_by_side_name_no_value_and_are_never_multiplied(answer: str) -> None:
    for gold in ("6", "12", "60", "230"):
        assert AnswerChecker().check(answer, gold).status == "unknown", (answer, gold)


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
