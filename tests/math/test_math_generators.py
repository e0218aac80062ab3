"""Procedural generators: reproducible ids, and gold answers checked independently by substitution (SymPy)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from reflectgym.envs.math.generators import GENERATORS, GeneratedTasks, generate

sympy = pytest.importorskip("sympy")
from sympy.parsing.sympy_parser import (  # noqa: E402
    convert_xor,
    implicit_multiplication_application,
    parse_expr,
    standard_transformations,
)

TRANSFORMS = (*standard_transformations, implicit_multiplication_application, convert_xor)
SEEDS = range(40)
LEVELS = range(1, 6)


def expr(text: str):
    return parse_expr(text.replace("×", "*").replace("÷", "/"), transformations=TRANSFORMS)


def gold_numbers(answer: str) -> list:
    return [sympy.Rational(part) for part in answer.strip("()").split(",")]


@pytest.mark.parametrize("level", LEVELS)
def test_arithmetic_and_fractions_evaluate_to_the_gold(level: int) -> None:
    for seed in SEEDS:
        for name in ("arithmetic", "fractions"):
            problem = generate(name, level, seed)
            expression = re.fullmatch(r"Compute (.+?)\. Give.*", problem.prompt)
            assert expression, problem.prompt
            assert sympy.nsimplify(expr(expression.group(1))) == sympy.Rational(problem.answer), problem


@pytest.mark.parametrize("level", LEVELS)
def test_linear_gold_satisfies_the_equation(level: int) -> None:
    x = sympy.Symbol("x")
    for seed in SEEDS:
        problem = generate("linear", level, seed)
        equation = re.search(r"Solve for x: (.+?) = (.+?)\. Give", problem.prompt)
        assert equation
        left, right = expr(equation.group(1)), expr(equation.group(2))
        assert sympy.simplify((left - right).subs(x, sympy.Rational(problem.answer))) == 0, problem
        assert sympy.Rational(problem.answer).q == sympy.Rational(problem.answer).q  # lowest terms by construction


@pytest.mark.parametrize("level", LEVELS)
def test_system_gold_satisfies_every_equation(level: int) -> None:
    for seed in SEEDS:
        problem = generate("systems", level, seed)
        lines = [line for line in problem.prompt.splitlines() if "=" in line]
        names = sympy.symbols("x y z")[: len(lines)]
        values = dict(zip(names, gold_numbers(problem.answer), strict=True))
        for line in lines:
            left, right = line.split("=")
            assert (expr(left) - expr(right)).subs(values) == 0, (problem.prompt, problem.answer)


@pytest.mark.parametrize("level", LEVELS)
def test_polynomial_gold_lists_every_root(level: int) -> None:
    x = sympy.Symbol("x")
    for seed in SEEDS:
        problem = generate("polynomial_roots", level, seed)
        polynomial = expr(re.search(r"p\(x\) = (.+?)\. Give", problem.prompt).group(1))  # type: ignore[union-attr]
        roots = gold_numbers(problem.answer)
        assert all(polynomial.subs(x, root) == 0 for root in roots)
        assert len(roots) == sympy.degree(polynomial, x)


@pytest.mark.parametrize("level", LEVELS)
def test_modular_and_counting_gold_by_brute_force(level: int) -> None:
    for seed in range(15):
        problem = generate("modular", level, seed)
        numbers = list(map(int, re.findall(r"\d+", problem.prompt)))
        answer = int(problem.answer)
        if level == 1:
            assert answer == numbers[0] % numbers[1]
        elif level == 2:
            assert answer == (numbers[0] * numbers[1] + numbers[2]) % numbers[3]
        elif level == 3:
            assert answer == pow(numbers[0], numbers[1], numbers[2])
        elif level == 4:
            a, m = numbers[0], numbers[1]
            assert 0 <= answer < m and a * answer % m == 1
        else:
            m, a, b = numbers[1], numbers[2], numbers[3]
            assert [x for x in range(m) if a * x % m == b % m] == [answer]
        counting = generate("counting", level, seed)
        if level == 5:
            number = int(re.search(r"does (\d+) have", counting.prompt).group(1))  # type: ignore[union-attr]
            assert int(counting.answer) == sum(number % d == 0 for d in range(1, number + 1))
        if level == 4:
            right, up = map(int, re.search(r"to \((\d+), (\d+)\)", counting.prompt).groups())  # type: ignore[union-attr]
            assert int(counting.answer) == math.comb(right + up, up)


def test_ids_rebuild_the_same_task_and_differ_across_seeds() -> None:
    source = GeneratedTasks("mixed", difficulty=3)
    first = source.sample(np.random.default_rng(5))
    assert source.get(first.id) == first
    assert GeneratedTasks("linear").get(first.id) == first  # ids carry their generator and level
    ids = {source.sample(np.random.default_rng(seed)).id for seed in range(50)}
    assert len(ids) == 50
    assert {task_id.split("-")[0] for task_id in ids} == set(GENERATORS)


def test_every_step_value_differs_from_nothing_and_hints_carry_no_gold() -> None:
    for name in GENERATORS:
        for level in LEVELS:
            for seed in range(10):
                problem = generate(name, level, seed)
                for step in problem.steps:
                    assert not re.search(rf"(?<![\d/]){re.escape(problem.answer)}(?![\d/])", step.hint), step


def test_bad_ids_and_arguments_are_readable_errors() -> None:
    with pytest.raises(KeyError, match="ids look like"):
        GeneratedTasks().get("nonsense")
    with pytest.raises(KeyError, match="difficulty"):
        GeneratedTasks().get("linear-d9-1")
    with pytest.raises(ValueError, match="unknown generator"):
        GeneratedTasks("calculus")
    with pytest.raises(ValueError, match="difficulty"):
        GeneratedTasks("linear", difficulty=0)
