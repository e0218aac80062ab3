"""Answer equivalence: a fast exact/numeric path in front, math-verify behind it with a hard time limit.

The fast path (`values.read_answer`) decides most pairs in microseconds: integers with thousands separators,
currency and units, decimals against fractions, radicals and pi numerically, percentages, degrees, `x = 2`
against `2`, tuples, intervals, sets and comma lists. Pairs it cannot read for certain (variables, functions,
matrices) go to the symbolic path; when that is not installed or runs out of time the result is `unknown`
("could not verify"), never a guess and never a hang.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import product
from typing import Literal

from reflectgym.envs.math.symbolic import shared_verifier, symbolic_available
from reflectgym.envs.math.values import (
    Normalised,
    Num,
    Seq,
    Union,
    Value,
    Word,
    far_from_every_number,
    read_answer,
)

MatchStatus = Literal["equal", "not_equal", "unknown"]
MatchMethod = Literal["identical", "fast", "text", "symbolic", "timeout", "unreadable"]


@dataclass(frozen=True)
class EquivalenceConfig:
    """How answers are compared."""

    rel_tol: float = 1e-9
    """Relative tolerance for irrational values compared as floats (rationals are compared exactly)."""
    symbolic: bool = True
    """Send pairs the fast path cannot read to math-verify (needs `reflectgym[math]`)."""
    timeout_s: float = 3.0
    """Wall-clock limit for one symbolic check; past it the verdict is `unknown`."""
    symbolic_workers: int | None = None
    """The most math-verify processes checking at once for the envs of a process (None: one per core, up to 4)."""

    def __post_init__(self) -> None:
        if not 0 <= self.rel_tol < 1:
            raise ValueError(f"rel_tol must be in [0, 1); got {self.rel_tol}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive; got {self.timeout_s}")
        if self.symbolic_workers is not None and self.symbolic_workers < 1:
            raise ValueError(f"symbolic_workers must be at least 1 (None: one per core); got {self.symbolic_workers}")


@dataclass(frozen=True)
class Match:
    """The result of comparing an answer with the gold answer.

    Attributes:
        status: `equal`, `not_equal`, or `unknown` (could not verify either way).
        method: Which path decided: `identical`, `fast`, `text`, `symbolic`, `timeout` or `unreadable`.
    """

    status: MatchStatus
    method: MatchMethod

    @property
    def equal(self) -> bool:
        """True only for a verified match."""
        return self.status == "equal"


_SIDE_BY_SIDE = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s+\.?\d")
_SPACED_THOUSANDS = re.compile(r"(?<![\w.])\d{1,3}(?: \d{3})+(?![\d.])")


def side_by_side(text: str) -> bool:
    """Whether two numbers stand with only space between them ("2 3"; "3 \\text{ft} 4 \\text{in}" once its units
    are dropped), other than a number grouped in thousands ("1 000 000")."""
    return bool(_SIDE_BY_SIDE.search(_SPACED_THOUSANDS.sub(lambda found: found.group().replace(" ", ""), text)))


class AnswerChecker:
    """Compares answers with gold answers: fast path first, math-verify (time-limited) for the rest.

    Args:
        config: Tolerances and the symbolic path's settings.
    """

    def __init__(self, config: EquivalenceConfig | None = None) -> None:
        self.config = config or EquivalenceConfig()

    def check(self, answer: str, gold: str) -> Match:
        """Compares one answer with one gold answer."""
        if answer.strip() == gold.strip():
            return Match("equal", "identical")
        answer_value, answer_norm = read_answer(answer)
        gold_value, gold_norm = read_answer(gold)
        if side_by_side(answer_norm.text) and not side_by_side(gold_norm.text):
            return Match("unknown", "unreadable")  # "2 3" names no one value (math-verify would multiply)
        same_text = bool(answer_norm.text) and answer_norm.text.replace(" ", "") == gold_norm.text.replace(" ", "")
        if same_text and (answer_norm.percent == gold_norm.percent or not _decidable(answer_value)):
            return Match("equal", "identical")
        if isinstance(answer_value, Word) and isinstance(gold_value, Word):
            return Match("equal" if answer_value == gold_value else "not_equal", "text")
        if _decidable(answer_value) and _decidable(gold_value):
            assert answer_value is not None and gold_value is not None
            answers = _variants(answer_value, answer_norm)
            golds = _variants(gold_value, gold_norm)
            same = any(values_equal(a, g, self.config.rel_tol) for a, g in product(answers, golds))
            return Match("equal" if same else "not_equal", "fast")
        if _far_and_ordinary(answer, answer_value, gold, gold_value):
            return Match("not_equal", "fast")
        if not self.config.symbolic or not symbolic_available():
            return Match("unknown", "unreadable")
        result = shared_verifier(self.config.timeout_s, self.config.symbolic_workers).equal(answer, gold)
        if result is None:
            return Match("unknown", "timeout")
        return Match("equal" if result else "not_equal", "symbolic")

    def check_many(self, pairs: Sequence[tuple[str, str]]) -> list[Match]:
        """Compares `(answer, gold)` pairs in order."""
        return [self.check(answer, gold) for answer, gold in pairs]


_ORDINARY_LOG2 = 1000
"""An ordinary number: zero, or a magnitude within 2^±_ORDINARY_LOG2 (a float's range, near enough)."""


def _ordinary(value: Value | None) -> bool:
    """A finite number that no power beyond 2^±`values.FAR_LOG2` can equal."""
    if not isinstance(value, Num) or not math.isfinite(value.value):
        return False
    if value.value == 0:
        return value.exact == 0
    return abs(math.log2(abs(value.value))) <= _ORDINARY_LOG2


def _far_and_ordinary(answer: str, answer_value: Value | None, gold: str, gold_value: Value | None) -> bool:
    """One side is a power too large to compute (`9^{9^{9}}`) and the other an ordinary number: they differ, and
    saying so here spares the symbolic path its whole time limit and a worker restart."""
    if answer_value is None and _ordinary(gold_value):
        return far_from_every_number(answer)
    return gold_value is None and _ordinary(answer_value) and far_from_every_number(gold)


def _decidable(value: Value | None) -> bool:
    """Numbers and structures of numbers: the fast path's verdict on them is final."""
    if isinstance(value, Num):
        return True
    if isinstance(value, Seq):
        return all(_decidable(item) for item in value.items)
    if isinstance(value, Union):
        return all(_decidable(part) for part in value.parts)
    return False


def _variants(value: Value, normalised: Normalised) -> list[Value]:
    """The values an answer may stand for: with a percent sign, itself and a hundredth of it (`50%`: 50 and 0.5);
    with a number word, itself and its scaled value (`3.5 million`: 3.5 and 3500000); a whole number "and" a proper
    fraction, the two values and the mixed number (`2 and 1/2`: 2, 1/2 and 5/2)."""
    if isinstance(value, Seq) and normalised.mixed and len(value.items) == 2:
        whole, fraction = value.items
        if isinstance(whole, Num) and isinstance(fraction, Num) and whole.exact is not None and fraction.exact:
            return [value, Num(whole.value + fraction.value, whole.exact + fraction.exact)]
    if not isinstance(value, Num):
        return [value]
    variants: list[Value] = [value]
    for factor in ([Fraction(1, 100)] if normalised.percent else []) + (
        [Fraction(10) ** normalised.scale] if normalised.scale else []
    ):
        variants.append(Num(value.value * float(factor), value.exact * factor if value.exact is not None else None))
    return variants


def numbers_equal(a: Num, b: Num, rel_tol: float) -> bool:
    """Rationals exactly; anything irrational within `rel_tol`."""
    if a.exact is not None and b.exact is not None:
        return a.exact == b.exact
    if math.isinf(a.value) or math.isinf(b.value):
        return a.value == b.value
    return math.isclose(a.value, b.value, rel_tol=rel_tol, abs_tol=1e-12)


def values_equal(a: Value, b: Value, rel_tol: float = 1e-9) -> bool:
    """Structural equality of read answers (see `values.Seq` for what each kind means)."""
    if isinstance(a, Seq) and len(a.items) == 1 and a.kind in ("list", "set"):
        a = a.items[0]
    if isinstance(b, Seq) and len(b.items) == 1 and b.kind in ("list", "set"):
        b = b.items[0]
    if isinstance(a, Num) and isinstance(b, Num):
        return numbers_equal(a, b, rel_tol)
    if isinstance(a, Word) or isinstance(b, Word):
        return a == b
    if isinstance(a, Union) and isinstance(b, Union):
        return _same_multiset(a.parts, b.parts, rel_tol)
    if isinstance(a, Seq) and isinstance(b, Seq):
        return _sequences_equal(a, b, rel_tol)
    return False


def _sequences_equal(a: Seq, b: Seq, rel_tol: float) -> bool:
    if len(a.items) != len(b.items):
        return False
    kinds = {a.kind, b.kind}
    if kinds <= {"set", "list"}:
        return _same_multiset(a.items, b.items, rel_tol)
    if "interval" in kinds:
        if not kinds <= {"interval", "pair"}:
            return False
        if (a.left_closed, a.right_closed) != (b.left_closed, b.right_closed):
            return False
    elif "set" in kinds:
        return False
    return all(values_equal(x, y, rel_tol) for x, y in zip(a.items, b.items, strict=True))


def _same_multiset(a: Sequence[Value], b: Sequence[Value], rel_tol: float) -> bool:
    if len(a) != len(b):
        return False
    unused = list(b)
    for item in a:
        for index, candidate in enumerate(unused):
            if values_equal(item, candidate, rel_tol):
                del unused[index]
                break
        else:
            return False
    return True


def kind_of(value: Value | None) -> str:
    """What kind of mathematical object a read answer is, in words (for diagnostic feedback)."""
    if isinstance(value, Num):
        return "a number"
    if isinstance(value, Word):
        return "a word"
    if isinstance(value, Union):
        return "a union of intervals"
    if isinstance(value, Seq):
        return {
            "pair": "an ordered pair or open interval",
            "tuple": f"an ordered tuple of {len(value.items)} values",
            "interval": "an interval",
            "set": f"a set of {len(value.items)} values",
            "list": f"a list of {len(value.items)} values",
        }[value.kind]
    return "an expression"
