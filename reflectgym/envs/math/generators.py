"""Procedural math problems with computed gold answers: unlimited, reproducible training tasks.

Seven generators (arithmetic, fractions, linear equations, 2x2/3x3 systems, polynomial roots, modular arithmetic,
counting) at difficulties 1-5. A task id names generator, difficulty and seed (`linear-d3-1234567`), so
`GeneratedTasks.get(id)` rebuilds exactly the same problem anywhere. Every problem carries the intermediate
quantities of its solution (`Step`s), which the hint feedback uses to point at the first one a reply gets wrong.
Prompts write math in plain text that SymPy can parse (`3x^2 - 5x + 2`), so tests check gold answers by
substitution, independently of the generator.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np

from reflectgym.core.tasks import Task

MIN_DIFFICULTY, MAX_DIFFICULTY = 1, 5


@dataclass(frozen=True)
class Step:
    """One intermediate quantity of a solution.

    Attributes:
        label: What it is, in words from the problem ("the coefficient of x after collecting terms").
        value: Its value, as text (never shown to the student).
        hint: How to get it right, without numbers that give the answer away.
    """

    label: str
    value: str
    hint: str


@dataclass(frozen=True)
class Problem:
    """A generated problem.

    Attributes:
        prompt: The question, ending with how to write the answer.
        answer: The gold answer, computed.
        solution: A worked solution (teacher-only).
        steps: Intermediate quantities in solution order.
        final_hint: What to recheck when every intermediate quantity is right but the answer is not.
    """

    prompt: str
    answer: str
    solution: str
    steps: tuple[Step, ...]
    final_hint: str


Generator = Callable[[np.random.Generator, int], Problem]


def _int(rng: np.random.Generator, low: int, high: int, nonzero: bool = False) -> int:
    """Uniform integer in [low, high]; optionally never 0."""
    while True:
        value = int(rng.integers(low, high + 1))
        if value or not nonzero:
            return value


def fmt(value: Fraction | int) -> str:
    """`3`, `-3/4`: how gold numbers are written."""
    value = Fraction(value)
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _signed(coefficient: int, term: str, first: bool) -> str:
    """One term of a polynomial in plain text: `- 3x`, `+ x^2`, `5`."""
    magnitude = abs(coefficient)
    body = (str(magnitude) if magnitude != 1 or not term else "") + term
    if first:
        return f"-{body}" if coefficient < 0 else body
    return f"- {body}" if coefficient < 0 else f"+ {body}"


def polynomial_text(coefficients: Sequence[int], variable: str = "x") -> str:
    """Highest degree first: `[1, -3, 2]` → `x^2 - 3x + 2`."""
    degree = len(coefficients) - 1
    terms: list[str] = []
    for index, coefficient in enumerate(coefficients):
        if coefficient == 0:
            continue
        power = degree - index
        term = "" if power == 0 else variable if power == 1 else f"{variable}^{power}"
        terms.append(_signed(coefficient, term, first=not terms))
    return " ".join(terms) or "0"


# ------------------------------------------------------------------------------------------------ generators
def arithmetic(rng: np.random.Generator, difficulty: int) -> Problem:
    """An integer expression with + - * and parentheses; more and larger operands with difficulty."""
    high = (9, 20, 50, 99, 999)[difficulty - 1]
    expression, value, steps = _arithmetic_tree(rng, difficulty + 1, high)
    expression = expression[1:-1]  # the outermost parentheses
    solution = "\n".join(f"{step.label[len('the value of ') :]} = {step.value}" for step in steps)
    return Problem(
        prompt=f"Compute {expression}. Give the answer as an integer.",
        answer=str(value),
        solution=f"Work from the innermost parentheses out:\n{solution}\nAnswer: {value}",
        steps=steps[:-1],  # the last step is the answer itself
        final_hint="Do multiplication before addition and subtraction, and watch the signs.",
    )


def _arithmetic_tree(rng: np.random.Generator, operations: int, high: int) -> tuple[str, int, tuple[Step, ...]]:
    if operations == 0:
        number = _int(rng, 1, high)
        return str(number), number, ()
    left_ops = _int(rng, 0, operations - 1)
    left, left_value, left_steps = _arithmetic_tree(rng, left_ops, high)
    right, right_value, right_steps = _arithmetic_tree(rng, operations - 1 - left_ops, high)
    operator = "+-*"[_int(rng, 0, 2)]
    value = {"+": left_value + right_value, "-": left_value - right_value, "*": left_value * right_value}[operator]
    text = f"({left} {operator} {right})"
    step = Step(
        label=f"the value of {text}",
        value=str(value),
        hint="Evaluate the inner parentheses first and combine the two results with the operator between them.",
    )
    return text, value, (*left_steps, *right_steps, step)


def fractions(rng: np.random.Generator, difficulty: int) -> Problem:
    """Two or more fractions combined with + - × ÷; the answer in lowest terms."""
    high = (6, 9, 12, 15, 20)[difficulty - 1]
    count = 2 if difficulty < 4 else 3
    operators = "+-" if difficulty == 1 else "+-*/"
    written = [(_int(rng, 1, high), _int(rng, 2, high)) for _ in range(count)]
    terms = [Fraction(numerator, denominator) for numerator, denominator in written]
    ops = [operators[_int(rng, 0, len(operators) - 1)] for _ in range(count - 1)]
    value = terms[0]
    steps: list[Step] = []
    text = _fraction_text(*written[0])
    for operator, term, shown in zip(ops, terms[1:], written[1:], strict=True):
        value = {"+": value + term, "-": value - term, "*": value * term, "/": value / term}[operator]
        symbol = {"+": "+", "-": "-", "*": "×", "/": "÷"}[operator]
        text = f"({text} {symbol} {_fraction_text(*shown)})"
        steps.append(
            Step(
                label=f"the value of {text}",
                value=fmt(value),
                hint={
                    "+": "Rewrite both fractions over a common denominator before adding the numerators.",
                    "-": "Rewrite both fractions over a common denominator before subtracting the numerators.",
                    "*": "Multiply numerators together and denominators together.",
                    "/": "Dividing by a fraction is multiplying by its reciprocal.",
                }[operator],
            )
        )
    expression = text[1:-1] if text.startswith("(") else text
    solution = "\n".join(f"{step.label[len('the value of ') :]} = {step.value}" for step in steps)
    return Problem(
        prompt=f"Compute {expression}. Give the answer as a fraction in lowest terms (or an integer).",
        answer=fmt(value),
        solution=f"{solution}\nAnswer: {fmt(value)}",
        steps=tuple(steps[:-1]),  # the last step is the answer itself
        final_hint="Reduce the result to lowest terms by dividing out the greatest common divisor.",
    )


def _fraction_text(numerator: int, denominator: int) -> str:
    return f"({numerator}/{denominator})"


def linear(rng: np.random.Generator, difficulty: int) -> Problem:
    """`ax + b = cx + d`; integer solutions up to difficulty 2, fractions from 3 on."""
    high = (5, 9, 12, 15, 25)[difficulty - 1]
    while True:
        a, c = _int(rng, -high, high, nonzero=True), _int(rng, -high, high) if difficulty > 1 else 0
        if a != c:
            break
    slope = a - c
    x = Fraction(_int(rng, -high, high), abs(slope)) if difficulty >= 3 else Fraction(_int(rng, -high, high))
    b = _int(rng, -3 * high, 3 * high)
    d_value = slope * x + b  # an integer: the denominator of x divides the slope
    d = int(d_value)
    left = polynomial_text([a, b])
    right = polynomial_text([c, d]) if c else str(d)
    steps = (
        Step("the coefficient of x after moving every x term to the left side", str(slope),
             "Subtract the right side's x term from both sides and combine the coefficients of x."),
        Step("the constant on the right side after moving every constant there", str(d - b),
             "Subtract the left side's constant from both sides."),
    )  # fmt: skip
    return Problem(
        prompt=f"Solve for x: {left} = {right}. Give x as an integer or a fraction in lowest terms.",
        answer=fmt(x),
        solution=f"{slope}x = {d - b}\nx = ({d - b})/({slope}) = {fmt(x)}\nAnswer: {fmt(x)}",
        steps=steps,
        final_hint="Divide the constant by the coefficient of x and reduce the fraction.",
    )


def systems(rng: np.random.Generator, difficulty: int) -> Problem:
    """A linear system with an integer solution: 2 unknowns up to difficulty 3, 3 unknowns from 4 on."""
    size = 2 if difficulty <= 3 else 3
    high = (3, 5, 9, 6, 9)[difficulty - 1]
    names = "xyz"[:size]
    while True:
        matrix = np.array([[_int(rng, -high, high) for _ in range(size)] for _ in range(size)], dtype=np.int64)
        if round(float(np.linalg.det(matrix))) != 0:
            break
    solution = [_int(rng, -high * 2, high * 2) for _ in range(size)]
    rhs = [int(sum(int(matrix[i][j]) * solution[j] for j in range(size))) for i in range(size)]
    equations = [_linear_form(list(matrix[i]), names) + f" = {rhs[i]}" for i in range(size)]
    answer = "(" + ", ".join(map(str, solution)) + ")"
    steps = tuple(
        Step(f"the value of {name}", str(value),
             f"Eliminate the other unknowns (add multiples of one equation to another) to isolate {name}.")
        for name, value in zip(names, solution, strict=True)
    )  # fmt: skip
    ordered = ", ".join(names)
    return Problem(
        prompt="Solve the system of equations:\n" + "\n".join(equations)
        + f"\nGive the solution as an ordered tuple ({ordered}).",
        answer=answer,
        solution="By elimination: " + ", ".join(f"{n} = {v}" for n, v in zip(names, solution, strict=True))
        + f"\nAnswer: {answer}",
        steps=steps,
        final_hint=f"Write the values in the order ({ordered}) and substitute them back into every equation.",
    )  # fmt: skip


def _linear_form(coefficients: Sequence[int], names: str) -> str:
    terms: list[str] = []
    for coefficient, name in zip(coefficients, names, strict=True):
        if coefficient:
            terms.append(_signed(int(coefficient), name, first=not terms))
    return " ".join(terms) or "0"


def polynomial_roots(rng: np.random.Generator, difficulty: int) -> Problem:
    """A monic polynomial with distinct integer roots (degree 2, 3 or 4); the answer lists every root."""
    degree = (2, 2, 3, 3, 4)[difficulty - 1]
    high = (5, 9, 6, 10, 8)[difficulty - 1]
    roots: list[int] = []
    while len(roots) < degree:
        root = _int(rng, -high, high)
        if root not in roots:
            roots.append(root)
    coefficients = [1]
    for root in roots:  # multiply by (x - root)
        coefficients = [*coefficients, 0]
        for index in range(len(coefficients) - 1, 0, -1):
            coefficients[index] -= root * coefficients[index - 1]
    ordered = sorted(roots)
    answer = ", ".join(map(str, ordered))
    steps = (
        Step("the sum of the roots", str(sum(roots)),
             "By Vieta's formulas the roots of a monic polynomial add up to minus its second coefficient."),
        Step("the product of the roots", str(math.prod(roots)),
             "By Vieta's formulas the product of the roots is the constant term, negated when the degree is odd."),
    )  # fmt: skip
    factored = "".join(f"(x {'-' if r >= 0 else '+'} {abs(r)})" for r in ordered)
    return Problem(
        prompt=f"Find all roots of p(x) = {polynomial_text(coefficients)}. Give them as a comma-separated list.",
        answer=answer,
        solution=f"p(x) = {factored}\nAnswer: {answer}",
        steps=steps,
        final_hint="Substitute each of your values into p(x): every root must give zero, and there are "
        "as many roots as the degree.",
    )


def modular(rng: np.random.Generator, difficulty: int) -> Problem:
    """Remainders, modular powers, inverses and linear congruences."""
    primes = (7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47)
    if difficulty == 1:
        a, m = _int(rng, 20, 999), _int(rng, 3, 15)
        answer = a % m
        steps: tuple[Step, ...] = ()
        prompt = f"What is the remainder when {a} is divided by {m}?"
        solution = f"{a} = {m} * {a // m} + {answer}"
    elif difficulty == 2:
        a, b, c, m = _int(rng, 10, 99), _int(rng, 10, 99), _int(rng, 1, 99), _int(rng, 5, 20)
        answer = (a * b + c) % m
        steps = (Step(f"{a} * {b} mod {m}", str(a * b % m), "Reduce each factor modulo the modulus first."),)
        prompt = f"Compute ({a} * {b} + {c}) mod {m}."
        solution = f"{a} * {b} = {a * b} ≡ {a * b % m}; + {c} ≡ {answer} (mod {m})"
    elif difficulty == 3:
        a, k, m = _int(rng, 2, 50), _int(rng, 10, 200), _int(rng, 5, 50)
        answer = pow(a, k, m)
        squares = [(2**i, pow(a, 2**i, m)) for i in range(1, k.bit_length())]
        steps = tuple(
            Step(f"{a} squared {_TIMES[i]} modulo {m}", str(value), "Square the previous result and reduce it modulo "
                 "the modulus before squaring again.")
            for i, (_, value) in enumerate(squares)
        )  # fmt: skip
        prompt = f"Compute {a}^{k} mod {m}."
        solution = "Repeated squaring: " + ", ".join(f"{a}^{p} ≡ {v}" for p, v in squares) + f"; {a}^{k} ≡ {answer}"
    elif difficulty == 4:
        m = primes[_int(rng, 0, len(primes) - 1)]
        a = _int(rng, 2, m - 1)
        answer = pow(a, -1, m)
        steps = ()
        prompt = f"Find the inverse of {a} modulo {m}: the integer x with 0 <= x < {m} and {a}x ≡ 1 (mod {m})."
        solution = f"{a} * {answer} = {a * answer} = {m} * {a * answer // m} + 1"
    else:
        m = primes[_int(rng, 4, len(primes) - 1)]
        a, x = _int(rng, 2, m - 1), _int(rng, 0, m - 1)
        b = a * x % m
        inverse = pow(a, -1, m)
        answer = x
        steps = (Step(f"the inverse of {a} modulo {m}", str(inverse), "Use the extended Euclidean algorithm."),)
        prompt = f"Find the integer x with 0 <= x < {m} such that {a}x ≡ {b} (mod {m})."
        solution = f"The inverse of {a} mod {m} is {inverse}; x ≡ {inverse} * {b} ≡ {x} (mod {m})"
    return Problem(
        prompt=f"{prompt} Give the answer as an integer.",
        answer=str(answer),
        solution=f"{solution}\nAnswer: {answer}",
        steps=steps,
        final_hint="The answer must be a remainder: at least zero and less than the modulus.",
    )


_TIMES = ("once", "twice", "three times", "four times", "five times", "six times", "seven times", "eight times")
_WORDS = ("BANANA", "LETTER", "BALLOON", "COMMITTEE", "MISSISSIPPI", "STATISTICS", "ADDRESS", "PEPPER")


def counting(rng: np.random.Generator, difficulty: int) -> Problem:
    """Choices, arrangements, words with repeated letters, lattice paths and divisor counts."""
    if difficulty == 1:
        n = _int(rng, 5, 15)
        k = _int(rng, 2, n - 2)
        answer = math.comb(n, k)
        prompt = f"In how many ways can a committee of {k} be chosen from {n} people?"
        steps = (Step(f"the number of ordered choices of {k} from {n}", str(math.perm(n, k)),
                      "Count ordered choices first, then divide by the orders of the same committee."),)  # fmt: skip
        solution = f"C({n}, {k}) = {math.perm(n, k)} / {k}! = {answer}"
    elif difficulty == 2:
        n = _int(rng, 5, 12)
        k = _int(rng, 2, min(5, n))
        answer = math.perm(n, k)
        prompt = f"In how many ways can the first {k} places of a race be awarded to {n} runners (no ties)?"
        steps = ()
        solution = f"P({n}, {k}) = {answer}"
    elif difficulty == 3:
        word = _WORDS[_int(rng, 0, len(_WORDS) - 1)]
        counts = Counter(word)
        answer = math.factorial(len(word))
        for count in counts.values():
            answer //= math.factorial(count)
        repeats = math.prod(math.factorial(count) for count in counts.values())
        prompt = f"How many distinct arrangements of the letters of {word} are there?"
        steps = (
            Step("the number of orderings of all the letters as if all were different",
                 str(math.factorial(len(word))), "Count orderings of distinct objects with a factorial."),
            Step("the product of the factorials of the letter multiplicities", str(repeats),
                 "Divide by the orderings of each repeated letter among itself."),
        )  # fmt: skip
        solution = f"{len(word)}! / {repeats} = {answer}"
    elif difficulty == 4:
        right, up = _int(rng, 3, 8), _int(rng, 3, 8)
        answer = math.comb(right + up, up)
        prompt = f"How many shortest paths on a grid go from (0, 0) to ({right}, {up}) moving only right or up?"
        steps = (Step("the number of moves in a shortest path", str(right + up),
                      "A shortest path makes every right move and every up move exactly once each."),)  # fmt: skip
        solution = f"C({right + up}, {up}) = {answer}"
    else:
        exponents = {2: _int(rng, 1, 5), 3: _int(rng, 0, 3), 5: _int(rng, 0, 2), 7: _int(rng, 0, 2)}
        number = math.prod(prime**power for prime, power in exponents.items())
        answer = math.prod(power + 1 for power in exponents.values())
        prompt = f"How many positive divisors does {number} have?"
        factorisation = " * ".join(f"{p}^{e}" for p, e in exponents.items() if e)
        steps = (Step(f"the prime factorisation of {number}", factorisation,
                      "Divide out each prime as many times as it goes."),)  # fmt: skip
        solution = f"{number} = {factorisation}; divisors: " + " * ".join(f"({e} + 1)" for e in exponents.values() if e)
    return Problem(
        prompt=f"{prompt} Give the answer as an integer.",
        answer=str(answer),
        solution=f"{solution}\nAnswer: {answer}",
        steps=steps,
        final_hint="Check whether order matters and whether anything is counted twice.",
    )


GENERATORS: dict[str, Generator] = {
    "arithmetic": arithmetic,
    "fractions": fractions,
    "linear": linear,
    "systems": systems,
    "polynomial_roots": polynomial_roots,
    "modular": modular,
    "counting": counting,
}
"""Every generator by name; `generator="mixed"` draws from all of them."""

_TASK_ID = re.compile(r"(?P<name>[a-z_]+)-d(?P<difficulty>\d+)-(?P<seed>\d+)")


class GeneratedTasks:
    """A `TaskSource` of generated problems; ids (`linear-d3-1234567`) rebuild the same problem anywhere.

    Args:
        generator: A generator name, a list of names, or `"mixed"` for all of them.
        difficulty: 1 (easiest) to 5.
    """

    def __init__(self, generator: str | Sequence[str] = "mixed", difficulty: int = 1) -> None:
        names = (
            list(GENERATORS) if generator == "mixed" else [generator] if isinstance(generator, str) else list(generator)
        )
        unknown = [name for name in names if name not in GENERATORS]
        if unknown or not names:
            raise ValueError(f"unknown generator(s) {unknown}; choose from 'mixed', {', '.join(GENERATORS)}")
        if not MIN_DIFFICULTY <= difficulty <= MAX_DIFFICULTY:
            raise ValueError(f"difficulty must be {MIN_DIFFICULTY} to {MAX_DIFFICULTY}; got {difficulty}")
        self.names = tuple(names)
        self.difficulty = difficulty

    def sample(self, rng: np.random.Generator) -> Task:
        """Draws a generator and a seed from `rng`."""
        name = self.names[int(rng.integers(len(self.names)))]
        return self.get(f"{name}-d{self.difficulty}-{int(rng.integers(2**31))}")

    def get(self, task_id: str) -> Task:
        """Rebuilds the task named by `task_id` (any generator and difficulty, not only this source's)."""
        match = _TASK_ID.fullmatch(str(task_id))
        if match is None or match["name"] not in GENERATORS:
            raise KeyError(f"no generated task {task_id!r}: ids look like 'linear-d3-1234' (generator-dLEVEL-seed)")
        difficulty = int(match["difficulty"])
        if not MIN_DIFFICULTY <= difficulty <= MAX_DIFFICULTY:
            raise KeyError(f"no generated task {task_id!r}: difficulty must be {MIN_DIFFICULTY} to {MAX_DIFFICULTY}")
        problem = generate(match["name"], difficulty, int(match["seed"]))
        return Task(
            id=str(task_id),
            prompt=problem.prompt,
            reference=problem.solution,
            data={
                "gold": problem.answer,
                "generator": match["name"],
                "difficulty": difficulty,
                "steps": [asdict(step) for step in problem.steps],
                "final_hint": problem.final_hint,
            },
        )


def generate(name: str, difficulty: int, seed: int) -> Problem:
    """The problem a generator makes at `difficulty` from `seed`."""
    return GENERATORS[name](np.random.default_rng(seed), difficulty)
