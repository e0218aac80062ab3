"""The fast path of answer checking: normalises answer text and reads it into exact values without a CAS.

`read_answer` turns `"\\$1,000"`, `"1\\,000"`, `"x = \\frac{1}{2}"`, `"(1, 2]"` or `"\\{3, -1\\}"` into small
frozen values (numbers kept as exact fractions while they can be, tuples, intervals, sets, unordered lists,
words). Anything it cannot read for certain (variables, functions, matrices) is `None`, and the checker hands it
to the symbolic library. Work is bounded: long inputs and huge powers are refused rather than computed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Literal

MAX_CHARS = 300
"""Answers longer than this are not read by the fast path."""
_MAX_EXPONENT = 4096
_MAX_EXACT_BITS = 20_000


@dataclass(frozen=True)
class Num:
    """A real number: exact when it is rational, otherwise a float (`exact` is None)."""

    value: float
    exact: Fraction | None = None


SeqKind = Literal["pair", "tuple", "interval", "set", "list"]


@dataclass(frozen=True)
class Seq:
    """Several values: an ordered `tuple`, an ambiguous `(a, b)` `pair` (point or open interval), an `interval`
    with its closed ends, a `set` in braces, or a bare comma `list` (order does not matter)."""

    kind: SeqKind
    items: tuple[Value, ...]
    left_closed: bool = False
    right_closed: bool = False


@dataclass(frozen=True)
class Union:
    """A union of intervals."""

    parts: tuple[Value, ...]


@dataclass(frozen=True)
class Word:
    """A word answer ("Monday", "(C)", "odd"), compared case-insensitively."""

    text: str


Value = Num | Seq | Union | Word


@dataclass(frozen=True)
class Normalised:
    """Answer text with presentation removed.

    Attributes:
        text: The answer with dollars, spacing commands, units, `x =` prefixes and `\\left`/`\\right` removed.
        percent: Whether it carried a percent sign (then `50` and `0.5` both match).
    """

    text: str
    percent: bool = False


class UnreadableError(ValueError):
    """The fast path cannot read this text for certain (the symbolic library may)."""


# ------------------------------------------------------------------------------------------------ normalising
_DROP = (
    "\\left",
    "\\right",
    "\\displaystyle",
    "\\!",
    "\\,",
    "\\;",
    "\\:",
    "\\quad",
    "\\qquad",
    "\\ ",
    "~",
    "\\$",
    "$",
    "\\(",
    "\\)",
    "\\[",
    "\\]",
)
_TEXT_COMMAND = re.compile(r"\\(?:text|textbf|textit|mathrm|mbox|operatorname|mathbf)\s*\{([^{}]*)\}")
_UNIT_POWER = re.compile(r"(?<=[\d}])\s*\\(?:text|mathrm|mbox)\s*\{\s*[A-Za-z][A-Za-z .]*\}(?:\s*\^\s*\{?\d\}?)?")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\\circ")
_TRAILING_WORDS = re.compile(r"(.*?[\d}.])\s+([A-Za-z][A-Za-z .]+?)\.?")
_EQUATION_LHS = re.compile(r"(?:[A-Za-z]|\\[a-z]+)(?:_\{?\w+\}?)?\s*(?:=|\\in)\s*(.+)", re.DOTALL)
_SPACED_THOUSANDS = re.compile(r"(?<=\d) (?=\d{3}(?!\d))")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")


def normalise(text: str) -> Normalised:
    """Removes presentation that never changes an answer's value."""
    s = text.strip()
    s = _strip_wrapper(s, "\\boxed{")
    for token in _DROP:
        s = s.replace(token, " " if token in ("\\ ", "~", "\\quad", "\\qquad") else "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("{,}", ",").replace("\\%", "%")
    s = s.replace("\\cdot", "*").replace("\\times", "*").replace("×", "*").replace("\\div", "/").replace("÷", "/")
    s = s.replace("−", "-")
    s = _DEGREES.sub("", s)
    s = _UNIT_POWER.sub("", s).strip()
    whole_text = _TEXT_COMMAND.fullmatch(s)
    if whole_text:
        s = whole_text.group(1).strip()
    s = _TEXT_COMMAND.sub(lambda match: match.group(1), s).strip()
    percent = s.endswith("%")
    s = s.rstrip("%").strip()
    s = re.sub(r"\s+(?:degrees?|percent)\.?$", "", s)
    trailing = _TRAILING_WORDS.fullmatch(s)
    if trailing and len(trailing.group(2).replace(" ", "").replace(".", "")) >= 2:
        s = trailing.group(1).strip()
    s = s.rstrip(".").strip()
    if s.endswith("%"):
        percent = True
        s = s.rstrip("%").strip()
    equation = _EQUATION_LHS.fullmatch(s)
    if equation and "," not in s and "=" not in equation.group(1):
        s = equation.group(1).strip()
    s = _SPACED_THOUSANDS.sub("", s)
    return Normalised(text=" ".join(s.split()), percent=percent)


def _strip_wrapper(s: str, opener: str) -> str:
    if s.startswith(opener) and s.endswith("}") and _closing(s, len(opener) - 1) == len(s) - 1:
        return s[len(opener) : -1].strip()
    return s


def _closing(s: str, start: int) -> int:
    """Index of the bracket closing the one at `start`, or -1."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    depth = 0
    for index in range(start, len(s)):
        char = s[index]
        if char in pairs:
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return index
    return -1


def split_top(s: str, separator: str = ",") -> list[str]:
    """Splits at `separator` outside brackets (`\\{`/`\\}` count as brackets)."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    index = 0
    while index < len(s):
        char = s[index]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if depth == 0 and s.startswith(separator, index):
            parts.append("".join(current).strip())
            current = []
            index += len(separator)
            continue
        current.append(char)
        index += 1
    parts.append("".join(current).strip())
    return parts


# ------------------------------------------------------------------------------------------------ reading
@lru_cache(maxsize=65536)
def read_answer(text: str) -> tuple[Value | None, Normalised]:
    """Reads answer text into a value, or `None` when the fast path cannot be sure; also returns the normalised
    text. Results are cached: a gold answer is read once however many samples are checked against it."""
    normalised = normalise(text)
    if not normalised.text or len(normalised.text) > MAX_CHARS:
        return None, normalised
    try:
        return _read(normalised.text), normalised
    except (UnreadableError, ZeroDivisionError, OverflowError, ValueError, RecursionError):
        return None, normalised


_WORD = re.compile(r"\(?([A-Za-z][A-Za-z']*(?: [A-Za-z']+)*)\)?")
_ITEM_NAME = re.compile(r"(?:[A-Za-z]|\\[a-z]+)(?:_\{?\w+\}?)?\s*=\s*(.+)")


def _is_word(text: str, parenthesised: bool) -> bool:
    """Words, not products of variables: a word of 3+ letters, yes/no, or a choice letter like `(C)`."""
    lowered = text.lower()
    if parenthesised and len(text) == 1:
        return True
    return lowered in ("yes", "no") or any(len(part) >= 3 for part in lowered.split())


def _read(s: str) -> Value:
    if _THOUSANDS.fullmatch(s):
        return _number(Fraction(s.replace(",", "")))
    if s.startswith("\\{") and s.endswith("\\}"):
        return Seq("set", tuple(_read(item) for item in split_top(s[2:-2]) if item))
    if "\\cup" in s:
        parts = tuple(_read(part) for part in split_top(s, "\\cup"))
        if len(parts) > 1 and all(isinstance(part, Seq) and part.kind in ("interval", "pair") for part in parts):
            return Union(parts)
        raise UnreadableError(s)
    word = _WORD.fullmatch(s)
    if word and _is_word(word.group(1), parenthesised=s.startswith("(") and s.endswith(")")):
        return Word(" ".join(word.group(1).lower().split()))
    if s[0] in "([" and s[-1] in ")]" and _closing(s, 0) == len(s) - 1:
        items = split_top(s[1:-1])
        if len(items) == 1:
            return _read(items[0])
        values = tuple(_read(item) for item in items)
        if len(values) == 2:
            kind: SeqKind = "pair" if s[0] == "(" and s[-1] == ")" else "interval"
            return Seq(kind, values, left_closed=s[0] == "[", right_closed=s[-1] == "]")
        return Seq("tuple", values)
    items = split_top(s)
    if len(items) > 1:
        named = [_ITEM_NAME.fullmatch(item) for item in items]
        if all(named):
            return Seq("tuple", tuple(_read(match.group(1).strip()) for match in named if match))
        return Seq("list", tuple(_read(item) for item in items))
    if "\\pm" in s:
        left, _, right = s.partition("\\pm")
        base = _evaluate(left) if left.strip() else Num(0.0, Fraction(0))
        spread = _evaluate(right)
        return Seq("list", (_add(base, spread), _add(base, _neg(spread))))
    return _evaluate(s)


# ------------------------------------------------------------------------------------------------ arithmetic
def _number(value: Fraction) -> Num:
    return Num(float(value), value)


def _add(a: Num, b: Num) -> Num:
    if a.exact is not None and b.exact is not None:
        return _number(a.exact + b.exact)
    return Num(a.value + b.value)


def _neg(a: Num) -> Num:
    return _number(-a.exact) if a.exact is not None else Num(-a.value)


def _mul(a: Num, b: Num) -> Num:
    if a.exact is not None and b.exact is not None:
        return _number(a.exact * b.exact)
    return Num(a.value * b.value)


def _div(a: Num, b: Num) -> Num:
    if b.value == 0 and (b.exact is None or b.exact == 0):
        raise UnreadableError("division by zero")
    if a.exact is not None and b.exact is not None:
        return _number(a.exact / b.exact)
    return Num(a.value / b.value)


def _exact_root(value: Fraction, degree: int) -> Fraction | None:
    if value < 0 and degree % 2 == 0:
        return None
    sign = -1 if value < 0 else 1
    numerator, denominator = abs(value.numerator), value.denominator
    root_n, root_d = round(numerator ** (1 / degree)), round(denominator ** (1 / degree))
    for candidate_n in (root_n - 1, root_n, root_n + 1):
        for candidate_d in (root_d - 1, root_d, root_d + 1):
            if (
                candidate_n >= 0
                and candidate_d > 0
                and candidate_n**degree == numerator
                and candidate_d**degree == denominator
            ):
                return sign * Fraction(candidate_n, candidate_d)
    return None


def _pow(base: Num, exponent: Num) -> Num:
    if base.exact is not None and exponent.exact is not None:
        power = exponent.exact
        if abs(power.numerator) > _MAX_EXPONENT or power.denominator > 64:
            raise UnreadableError("exponent too large for the fast path")
        bits = max(base.exact.numerator.bit_length(), base.exact.denominator.bit_length())
        if bits * abs(power.numerator) > _MAX_EXACT_BITS:
            raise UnreadableError("power too large for the fast path")
        if base.exact == 0 and power < 0:
            raise UnreadableError("division by zero")
        if power.denominator == 1:
            return _number(base.exact**power.numerator)
        root = _exact_root(base.exact, power.denominator)
        if root is not None:
            return _number(root**power.numerator) if root != 0 or power > 0 else Num(math.inf)
    if base.value < 0 and (exponent.exact is None or exponent.exact.denominator % 2 == 0):
        raise UnreadableError("not a real number")
    if base.value < 0:
        assert exponent.exact is not None
        magnitude = (-base.value) ** exponent.value
        return Num(-magnitude if exponent.exact.numerator % 2 else magnitude)
    return Num(float(base.value**exponent.value))


# ------------------------------------------------------------------------------------------------ expressions
_TOKEN = re.compile(r"\s*(\d+\.?\d*|\.\d+|\\[A-Za-z]+|\S)")
_FRAC_SHORTHAND = re.compile(r"\\frac\s*(\d)\s*(\d)")
_FRAC_FIRST_DIGIT = re.compile(r"\\frac\s*(\d)")
_SQRT_SHORTHAND = re.compile(r"\\sqrt\s*(\d)")
_POWER_SHORTHAND = re.compile(r"\^\s*(-?\d+)")
_CONSTANTS = {"\\pi": Num(math.pi), "\\infty": Num(math.inf), "π": Num(math.pi), "∞": Num(math.inf)}
_ATOM_START = ("(", "{", "\\frac", "\\sqrt", "\\pi", "π", "\\infty")


def _evaluate(s: str) -> Num:
    s = _FRAC_SHORTHAND.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_FIRST_DIGIT.sub(r"\\frac{\1}", s)
    s = _SQRT_SHORTHAND.sub(r"\\sqrt{\1}", s)
    s = _POWER_SHORTHAND.sub(r"^{\1}", s)
    tokens = [token for token in _TOKEN.findall(s) if token.strip()]
    parser = _Parser(tokens)
    value = parser.expression()
    if parser.position != len(tokens):
        raise UnreadableError(f"unexpected {tokens[parser.position]!r}")
    if math.isnan(value.value):
        raise UnreadableError("not a number")
    return value


ROUNDED_DIGITS = 15
"""A decimal with this many significant digits or more (trailing zeros aside) is taken for a rounded float."""


def decimal_value(token: str) -> Fraction:
    """An unsigned decimal's value: exact, unless it has `ROUNDED_DIGITS` significant digits or more, the mark of a
    float printed in full (`0.3333333333333333`); that is read as the simplest fraction within one unit of its last
    digit (1/3: a float's shortest repr, `0.6666666666666666` for 2/3, may be that far off), so it equals the value
    it stands for and nothing measurably further away."""
    value = Fraction(token)
    whole, _, decimals = token.partition(".")
    decimals = decimals.rstrip("0")
    if len((whole + decimals).lstrip("0")) < ROUNDED_DIGITS or not decimals:
        return value
    unit = Fraction(1, 10 ** len(decimals))
    return simplest_between(value - unit, value + unit)


def simplest_between(low: Fraction, high: Fraction) -> Fraction:
    """The fraction with the smallest denominator in `[low, high]` (0 <= low <= high), by continued fractions."""
    if math.ceil(low) <= high:
        return Fraction(math.ceil(low))
    whole = math.floor(low)  # (the same for `high`: no integer lies between them)
    return whole + 1 / simplest_between(1 / (high - whole), 1 / (low - whole))


def _is_number(token: str) -> bool:
    return token[0].isdigit() or token[0] == "."


class _Parser:
    """Recursive descent over constant arithmetic: + - * / ^, \\frac, \\sqrt, \\pi, \\infty, implicit products."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise UnreadableError(f"expected {expected or 'more'}")
        self.position += 1
        return token

    def expression(self) -> Num:
        value = self.term()
        while self.peek() in ("+", "-"):
            operator = self.take()
            right = self.term()
            value = _add(value, right if operator == "+" else _neg(right))
        return value

    def term(self) -> Num:
        value = self.unary()
        while True:
            token = self.peek()
            if token in ("*", "/"):
                self.take()
                right = self.unary()
                value = _mul(value, right) if token == "*" else _div(value, right)
            elif token is not None and (token in _ATOM_START or token[0].isdigit() or token[0] == "."):
                previous = self.tokens[self.position - 1]
                if _is_number(previous) and _is_number(token):  # "2 3", or "3 \text{ft} 4 \text{in}" unitless
                    raise UnreadableError("two numbers side by side")
                right = self.unary()
                mixed = token == "\\frac" and previous[0].isdigit() and value.exact is not None and value.exact > 0
                value = _add(value, right) if mixed else _mul(value, right)  # 2\frac{1}{2} is a mixed number
            else:
                return value

    def unary(self) -> Num:
        if self.peek() == "-":
            self.take()
            return _neg(self.unary())
        if self.peek() == "+":
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> Num:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            return _pow(base, self.unary())
        return base

    def group(self) -> Num:
        self.take("{")
        value = self.expression()
        self.take("}")
        return value

    def atom(self) -> Num:
        token = self.take()
        if token[0].isdigit() or token[0] == ".":
            if len(token) > 40:
                raise UnreadableError("number too long for the fast path")
            return _number(decimal_value(token))
        if token in _CONSTANTS:
            return _CONSTANTS[token]
        if token in ("(", "{"):
            value = self.expression()
            self.take(")" if token == "(" else "}")
            return value
        if token == "\\frac":
            return _div(self.group(), self.group())
        if token == "\\sqrt":
            degree = Num(2.0, Fraction(2))
            if self.peek() == "[":
                self.take()
                degree = self.expression()
                self.take("]")
            radicand = self.group() if self.peek() == "{" else self.atom()
            return _pow(radicand, _div(Num(1.0, Fraction(1)), degree))
        raise UnreadableError(f"cannot read {token!r} without a CAS")
