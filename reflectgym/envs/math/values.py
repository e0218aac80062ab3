"""The fast path of answer checking: normalises answer text and reads it into exact values without a CAS.

`read_answer` turns `"\\$1,000"`, `"1\\,000"`, `"x = \\frac{1}{2}"`, `"(1, 2]"`, `"\\{3, -1\\}"` or
`"x = 3 \\text{ or } x = -1"` into small frozen values (numbers kept as exact fractions while they can be, tuples,
intervals, sets, unordered lists, words). Anything it cannot read for certain (variables, functions, matrices) is
`None`, and the checker hands it to the symbolic library. Work is bounded: long inputs and huge powers are refused
rather than computed.
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
FAR_LOG2 = 1100
"""A power whose magnitude is beyond 2^±FAR_LOG2 is beyond every float, so it is no number the fast path reads."""


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
        text: The answer with dollars, spacing commands, units, `x =` prefixes and `\\left`/`\\right` removed, and the
            conjunctions between its values made commas (see `_split_conjunctions`).
        percent: Whether it carried a percent sign (then `50` and `0.5` both match).
        scale: The power of ten of a number word after it (`3.5 million`: 6; then `3.5` and `3500000` both match).
        mixed: Whether it is a whole number "and" a proper fraction (`2\\text{ and }\\frac{1}{2}`): read as the two
            values, and also as the mixed number they may spell (then `2, 1/2` and `2.5` both match).
    """

    text: str
    percent: bool = False
    scale: int = 0
    mixed: bool = False


class UnreadableError(ValueError):
    """The fast path cannot read this text for certain (the symbolic library may)."""


class OversizedError(UnreadableError):
    """A power of nonzero constants too large to compute whose magnitude is beyond 2^±`FAR_LOG2` (`9^{9^{9}}`,
    `2^{-5000}`). `span` is the tokens it covers (a whole answer, or one part of a bigger expression, which may
    cancel it out), and `large` whether it is huge rather than tiny (what a power of it, a tower, becomes)."""

    def __init__(self, large: bool, span: tuple[int, int] = (0, 0)) -> None:
        super().__init__("a power too large for the fast path")
        self.large = large
        self.span = span


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
_AFTER_UNIT = re.compile(r"\s*(?:\.?\s*$|[,;)\]]|\\\})")
"""What may follow a unit that is dropped: the end of the answer, or the end of one of its items."""
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree|\\circ")
_TRAILING_WORDS = re.compile(r"(.*?[\d}.])\s+([A-Za-z][A-Za-z .]+?)\.?")
_MULTIPLIERS = {"hundred": 2, "thousand": 3, "million": 6, "billion": 9, "trillion": 12}
"""Number words read as powers of ten after a number (`3 million` is 3000000), never dropped as a unit."""
_MATH_WORDS = frozenset(
    {"sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh"}
    | {"log", "ln", "lg", "exp", "sqrt", "mod", "gcd", "lcm", "max", "min", "pi", "inf", "infinity"}
)
"""Trailing words that are mathematics, not units: with these (or a one-letter variable) the words are kept."""
_PI_WORD = re.compile(r"(?<![A-Za-z\\])pi(?![A-Za-z])")
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
    s, mixed = _split_conjunctions(s)
    s = _UNIT_POWER.sub(_unit_gap, s).strip()
    whole_text = _TEXT_COMMAND.fullmatch(s)
    if whole_text:
        s = whole_text.group(1).strip()
    s = _TEXT_COMMAND.sub(lambda match: match.group(1), s).strip()
    percent = s.endswith("%")
    s = s.rstrip("%").strip()
    s = re.sub(r"\s+(?:degrees?|percent)\.?$", "", s)
    s, scale = _strip_trailing_words(_PI_WORD.sub(r"\\pi", s))
    s = s.rstrip(".").strip()
    if s.endswith("%"):
        percent = True
        s = s.rstrip("%").strip()
    equation = _EQUATION_LHS.fullmatch(s)
    if equation and "," not in s and "=" not in equation.group(1):
        s = equation.group(1).strip()
    s = _SPACED_THOUSANDS.sub("", s)
    return Normalised(text=" ".join(s.split()), percent=percent, scale=scale, mixed=mixed)


def _strip_trailing_words(s: str) -> tuple[str, int]:
    """`s` without the words after its last number when they name a unit or thing (`18 dollars`, `5 apples`,
    `9 a.m.`, `3 times a day`), and the power of ten of a number word among them (`3.5 million`: 6, see
    `Normalised.scale`); kept when one is a variable, function or constant (`2 x y`, `5 sin x`: stripping would
    leave a different answer)."""
    trailing = _TRAILING_WORDS.fullmatch(s)
    if not trailing or len(trailing.group(2).replace(" ", "").replace(".", "")) < 2:
        return s, 0
    number, words = trailing.group(1).strip(), [word.strip(".") for word in trailing.group(2).lower().split()]
    if any((len(word) == 1 and word != "a") or word in _MATH_WORDS for word in words):  # ("a": an article)
        return s, 0
    return number, _MULTIPLIERS.get(words[0], 0)


def _unit_gap(unit: re.Match[str]) -> str:
    """What a unit after a number becomes: nothing where it ends the answer or one of its items (`18\\text{ cm}`,
    `(3\\text{ cm}, 4\\text{ cm})`), else a space, so that text between two numbers (`2\\text{ and }3`,
    `3\\text{ft}4\\text{in}`) leaves them side by side, naming no one value, instead of gluing them into 23 or 34."""
    if not _AFTER_UNIT.match(unit.string, unit.end()):
        return " "
    word = _TEXT_COMMAND.search(unit.group(0))
    named = word.group(1).strip().lower() if word is not None else ""
    return f" {named}" if named in _MULTIPLIERS else ""  # (`3.5\\text{ million}` reads as `3.5 million`)


_CONJUNCTION = re.compile(
    r"\\(?:text|textrm|textit|textbf|mathrm|mbox)\s*\{\s*,?\s*(and|or)\s*,?\s*\}|(?<![A-Za-z\\])(and|or)(?![A-Za-z])"
)
"""A conjunction word between values, bare or alone in a text command (`1 and 2`, `1\\text{ or }2`, `\\text{, and}`)."""
_MAX_CONJUNCTION_CHARS = 4 * MAX_CHARS
_LEADING_HEDGE = re.compile(r"^(?:both|either)\s+", re.IGNORECASE)
_END_UNIT = re.compile(r"(.*?[\d}.])\s*\\(?:text|mathrm|mbox)\s*\{\s*([A-Za-z][A-Za-z .]*?)\s*\}(\s*\^\s*\{?\d\}?)?")
_WHOLE = re.compile(r"[1-9]\d*")
_PROPER_FRACTION = re.compile(r"\\frac\s*\{?\s*(\d+)\s*\}?\s*\{?\s*(\d+)\s*\}?|(\d+)\s*/\s*(\d+)")


def _split_conjunctions(s: str) -> tuple[str, bool]:
    """`s` with the conjunction words between its values made commas (`1 \\text{ and } 2`, `x = 1 \\text{ or } x = 2`,
    `2, 3, \\text{and } 5`: a comma list, so unordered), and whether it is a whole number "and" a proper fraction (see
    `Normalised.mixed`).

    Only words outside brackets, between values that all read as values, split an answer; `s` is left as it is when
    any part is empty or a word (`Alice and Bob`, `1 or more`), or when parts carry different units (`2\\text{ hours}
    \\text{ and } 30\\text{ minutes}`: one mixed quantity, not two answers). A unit inside the words (`2\\text{ hours
    and }30\\text{ minutes}`) makes them no bare conjunction, so such text is never split. Intervals (a square
    bracket or an infinite end) joined by "or" become their union (`(-\\infty, 1) \\text{ or } (2, \\infty)`); joined by
    "and" (an intersection, or a union) they are left as they are. Pairs `(a, b)` joined by either word are a list of
    points, as they are joined by commas.
    """
    if len(s) > _MAX_CONJUNCTION_CHARS or not _CONJUNCTION.search(s):
        return s, False
    depths = _depths(s)
    parts: list[str] = []
    words: list[str] = []
    start = 0
    for found in _CONJUNCTION.finditer(s):
        if depths[found.start()] == 0:
            parts.append(s[start : found.start()].strip().removesuffix(",").strip())
            words.append((found.group(1) or found.group(2)).lower())
            start = found.end()
    if not words:
        return s, False
    parts.append(s[start:].strip())
    parts[0] = _LEADING_HEDGE.sub("", parts[0], count=1)
    items = [item for part in parts for item in split_top(part)]
    unitless = [_without_unit(item) for item in items]
    values = [value for value, _ in unitless]
    if len({unit for _, unit in unitless if unit}) > 1 or any(not value or _reads_as_word(value) for value in values):
        return s, False
    shapes = {_bracket_shape(value) for value in values}
    if "interval" in shapes:
        if set(words) == {"or"} and shapes <= {"interval", "pair"}:
            return " \\cup ".join(values), False
        return s, False
    return ", ".join(values), words == ["and"] and _whole_and_proper_fraction(values)


def _depths(s: str) -> list[int]:
    """The bracket depth at each index of `s`, as `split_top` counts it."""
    depths: list[int] = []
    depth = 0
    for char in s:
        if char in ")]}":
            depth -= 1
        depths.append(depth)  # (a bracket has the depth outside it)
        if char in "([{":
            depth += 1
    return depths


def _whole_and_proper_fraction(values: list[str]) -> bool:
    """Whether `values` are a positive whole number and a proper fraction of integers (`2`, `\\frac{1}{2}`)."""
    fraction = _PROPER_FRACTION.fullmatch(values[-1]) if len(values) == 2 else None
    if fraction is None or not _WHOLE.fullmatch(values[0]):
        return False
    numerator, denominator = fraction.group(1, 2) if fraction.group(1) else fraction.group(3, 4)
    return 0 < int(numerator) < int(denominator)


def _without_unit(item: str) -> tuple[str, str]:
    """An item of a list without the unit after its number, and that unit lowercased ("" when it has none; a number
    word such as `million` is no unit and stays)."""
    text_unit = _END_UNIT.fullmatch(item)
    if text_unit:
        unit = text_unit.group(2).lower()
        if unit not in _MULTIPLIERS:
            return text_unit.group(1).strip(), unit + "".join((text_unit.group(3) or "").split())
        return item, ""
    number, scale = _strip_trailing_words(item)
    if number == item or scale:
        return item, ""
    return number, item[len(number) :].strip().rstrip(".").lower()


def _reads_as_word(text: str) -> bool:
    """Whether `_read` would read `text` as a `Word` (`Bob`, `(C)`), not a value that a conjunction may join."""
    word = _WORD.fullmatch(text)
    return bool(word) and _is_word(word.group(1), parenthesised=text.startswith("(") and text.endswith(")"))


def _bracket_shape(text: str) -> str:
    """`interval` for a bracketed pair that only an interval can be (a square bracket or an infinite end), `pair` for
    `(a, b)` (a point or an open interval), else `other`."""
    if not (text[:1] in ("(", "[") and text[-1:] in (")", "]") and _closing(text, 0) == len(text) - 1):
        return "other"
    if len(_items(text[1:-1])) != 2:
        return "other"
    if text[0] == "[" or text[-1] == "]" or "\\infty" in text or "∞" in text:
        return "interval"
    return "pair"


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
_ITEM_NAME = re.compile(r"((?:[A-Za-z]|\\[a-z]+)(?:_\{?\w+\}?)?)\s*=\s*(.+)")


def _is_word(text: str, parenthesised: bool) -> bool:
    """Words, not products of variables: a word of 3+ letters, yes/no, or a choice letter like `(C)`."""
    lowered = text.lower()
    if parenthesised and len(text) == 1:
        return True
    return lowered in ("yes", "no") or any(len(part) >= 3 for part in lowered.split())


def _items(s: str) -> list[str]:
    """The comma-separated items of `s` outside brackets, empty ones dropped: a trailing comma (`5,`, `1, 2,`) or
    a doubled one names no value, in a reply or in a gold answer alike."""
    return [item for item in split_top(s) if item]


def _read(s: str) -> Value:
    if not s:
        raise UnreadableError("nothing to read")
    if _THOUSANDS.fullmatch(s):
        return _number(Fraction(s.replace(",", "")))
    if s.startswith("\\{") and s.endswith("\\}"):
        return _collection("set", [_read(item) for item in _items(s[2:-2])])
    if "\\cup" in s:
        parts = tuple(_read(part) for part in split_top(s, "\\cup"))
        if len(parts) > 1 and all(isinstance(part, Seq) and part.kind in ("interval", "pair") for part in parts):
            return Union(parts)
        raise UnreadableError(s)
    word = _WORD.fullmatch(s)
    if word and _is_word(word.group(1), parenthesised=s.startswith("(") and s.endswith(")")):
        return Word(" ".join(word.group(1).lower().split()))
    if s[0] in "([" and s[-1] in ")]" and _closing(s, 0) == len(s) - 1:
        items = _items(s[1:-1])
        if not items:
            raise UnreadableError("empty brackets")
        if len(items) == 1:
            return _read(items[0])
        values = tuple(_read(item) for item in items)
        if len(values) == 2:
            kind: SeqKind = "pair" if s[0] == "(" and s[-1] == ")" else "interval"
            return Seq(kind, values, left_closed=s[0] == "[", right_closed=s[-1] == "]")
        return Seq("tuple", values)
    items = _items(s)
    if len(items) == 1 and items[0] != s:
        return _read(items[0])
    if len(items) > 1:
        names = [_ITEM_NAME.fullmatch(item) for item in items]
        unknowns = {name.group(1).replace(" ", "") for name in names if name}
        if all(names) and len(unknowns) > 1:  # `x = 2, y = 3`: the point (2, 3)
            return Seq("tuple", tuple(_read(name.group(2).strip()) for name in names if name))
        if names[0] and len(unknowns) == 1:  # `x = 1, x = 2` or `x = 1, 2`: the values of one unknown
            items = [name.group(2).strip() if name else item for name, item in zip(names, items, strict=True)]
        return _collection("list", [_read(item) for item in items])
    if "\\pm" in s:
        left, _, right = s.partition("\\pm")
        base = _evaluate(left) if left.strip() else Num(0.0, Fraction(0))
        spread = _evaluate(right)
        return Seq("list", (_add(base, spread), _add(base, _neg(spread))))
    return _evaluate(s)


def _collection(kind: Literal["set", "list"], values: list[Value]) -> Seq:
    """An unordered collection in which a `\\pm` item counts as its two values (`\\{1 \\pm \\sqrt{5}, -2\\}` has three:
    `_read` makes a `\\pm` a list, and no other item of a set or comma list can be one)."""
    flat: list[Value] = []
    for value in values:
        flat.extend(value.items if isinstance(value, Seq) and value.kind == "list" else (value,))
    return Seq(kind, tuple(flat))


@lru_cache(maxsize=4096)
def far_from_every_number(text: str) -> bool:
    """Whether answer text is a power of constants too large to compute whose magnitude is beyond 2^±`FAR_LOG2`
    (`9^{9^{9}}`, `-10^{10^{10}}`), or a structure holding one: it then equals no number the fast path reads, a
    verdict that needs neither the value nor the symbolic library (which spends its whole time limit on it)."""
    normalised = normalise(text)
    if not normalised.text or len(normalised.text) > MAX_CHARS:
        return False
    try:
        _read(normalised.text)
    except OversizedError:
        return True
    except (UnreadableError, ZeroDivisionError, OverflowError, ValueError, RecursionError):
        return False
    return False


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


def _too_large(base: Fraction, power: Fraction) -> UnreadableError:
    """The error for an exact power too large to compute: `OversizedError` when its magnitude is surely beyond
    2^±`FAR_LOG2`, so that it equals no ordinary number, else a plain `UnreadableError`."""
    if base == 0 or abs(base) == 1 or power.denominator > 64:
        return UnreadableError("power too large for the fast path")
    log2_base = math.log2(abs(base.numerator)) - math.log2(base.denominator)
    log2_value = float(power) * log2_base
    if abs(log2_value) <= FAR_LOG2:
        return UnreadableError("power too large for the fast path")
    return OversizedError(large=log2_value > 0)


def _pow(base: Num, exponent: Num) -> Num:
    if base.exact is not None and exponent.exact is not None:
        power = exponent.exact
        if abs(power.numerator) > _MAX_EXPONENT or power.denominator > 64:
            raise _too_large(base.exact, power)
        bits = max(base.exact.numerator.bit_length(), base.exact.denominator.bit_length())
        if bits * abs(power.numerator) > _MAX_EXACT_BITS:
            raise _too_large(base.exact, power)
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
_TOKEN = re.compile(r"\s*((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|\\[A-Za-z]+|\S)")
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
    try:
        value = parser.expression()
    except OversizedError as error:  # far from every ordinary number only when it is the whole answer
        whole = (1 if tokens[0] in ("-", "+") else 0, len(tokens))
        if error.span != whole:
            raise UnreadableError("part of the expression is too large for the fast path") from error
        raise
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


def _closing_token(tokens: list[str], start: int) -> int:
    """Index of the `}` token closing the `{` token at `start`, or -1."""
    if start >= len(tokens) or tokens[start] != "{":
        return -1
    depth = 0
    for index in range(start, len(tokens)):
        depth += {"{": 1, "}": -1}.get(tokens[index], 0)
        if depth == 0:
            return index
    return -1


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
                value = _mul(value, self.unary())  # (a mixed number, 2\frac{1}{2}, is one atom: see `atom`)
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
        start = self.position
        base = self.atom()
        if self.peek() != "^":
            return base
        self.take()
        exponent_start = self.position
        try:
            exponent = self.unary()
        except OversizedError as error:
            raise self.tower(start, base, exponent_start, error) from error
        try:
            return _pow(base, exponent)
        except OversizedError as error:
            error.span = (start, self.position)
            raise

    def tower(self, start: int, base: Num, exponent_start: int, error: OversizedError) -> UnreadableError:
        """The error for `base^{E}` where `E` is itself too large (`9^{9^{9}}`): when `E` is one huge power, the
        whole exponent, and `base` is clearly neither 0 nor ±1, the tower is beyond 2^±`FAR_LOG2` too."""
        close = _closing_token(self.tokens, exponent_start)
        inner = exponent_start + 1
        negative = inner < len(self.tokens) and self.tokens[inner] == "-"
        inner += 1 if inner < len(self.tokens) and self.tokens[inner] in ("-", "+") else 0
        magnitude = abs(base.value)
        if close < 0 or error.span != (inner, close) or not error.large or not 0 < magnitude < math.inf:
            return UnreadableError("a power too large for the fast path")
        if abs(math.log2(magnitude)) < 1e-9:
            return UnreadableError("a power too large for the fast path")
        self.position = close + 1
        return OversizedError(large=(magnitude > 1) != negative, span=(start, close + 1))

    def group(self) -> Num:
        self.take("{")
        value = self.expression()
        self.take("}")
        return value

    def mixed_fraction(self) -> Num | None:
        """The `\\frac{p}{q}` of two integers right after a whole number, which makes it a mixed number, taken;
        None when none follows. One atom, so a sign is the whole number's (`-3\\frac{1}{2}` is -3.5, as math-verify
        reads it) and anything else after a number is a product (`10\\frac{\\sqrt{3}}{2}` is 5 sqrt 3)."""
        ahead = self.tokens[self.position : self.position + 7]
        if len(ahead) < 7 or ahead[0] != "\\frac" or ahead[1::3] != ["{", "{"] or ahead[3::3] != ["}", "}"]:
            return None
        if not (ahead[2].isdigit() and ahead[5].isdigit()):
            return None
        self.position += 7
        return _div(_number(Fraction(int(ahead[2]))), _number(Fraction(int(ahead[5]))))

    def atom(self) -> Num:
        token = self.take()
        if token[0].isdigit() or token[0] == ".":
            if len(token) > 40:
                raise UnreadableError("number too long for the fast path")
            mantissa, _, exponent = token.lower().partition("e")
            number = _number(decimal_value(mantissa))
            if exponent:  # e-notation, 1.5e3 or 1E-3: a power of ten, bounded as any power is
                return _mul(number, _pow(_number(Fraction(10)), _number(Fraction(int(exponent)))))
            fraction = self.mixed_fraction() if token.isdigit() else None
            return number if fraction is None else _add(number, fraction)
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
