"""Answer extraction: finds the final answer in a model's reply.

Reasoning in `<think>...</think>` is not read: only what follows the last `</think>` (DeepSeek-R1 and its kin).
Then, tried in order, the first that matches wins: the last non-empty `<answer>...</answer>` (the R1 /
reasoning-gym convention; a `\\boxed{}` inside it is unwrapped), the last `\\boxed{...}` (nested braces balanced), a
GSM8K `#### n` line, the last "answer is ..." / "Answer: ..." phrase (up to the end of its sentence: "The answer is
42, since ..." reads 42; "Final Answer: The final answer is $42$." too), and, when enabled, the last number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from reflectgym.core.types import ActionParseError

ExtractionMethod = Literal["answer_tag", "boxed", "gsm8k", "answer_is", "last_number"]

HOW_FOUND: dict[ExtractionMethod, str] = {
    "answer_tag": "the last <answer>...</answer>",
    "boxed": "the last \\boxed{...}",
    "gsm8k": "the '####' line",
    "answer_is": "the 'answer is' phrase",
    "last_number": "the last number in your reply",
}
"""Where each method reads the answer, as feedback says it."""
NO_ANSWER = "no final answer found (no <answer>...</answer>, \\boxed{...}, '####' line or 'the answer is')"

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_BRACE = re.compile(r"(?<!\\)[{}]")
_TOKEN_END = re.compile(r"[\s$]")
_GSM8K = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS = re.compile(r"(?:final answer|the answer|answer)[^\S\n]*(?:is\b|:|=)[^\S\n]*:?", re.IGNORECASE)
"""An "answer is" phrase; its answer is the rest of its line, up to the end of its sentence."""
_SENTENCE_END = re.compile(
    r"\.(?=\s+[A-Z]|\s*$)"
    r"|(?<!\s)[,;]?\s+(?:since|because|as|which|so|given|from|by|where|when|thus|hence)\b"
    r"|(?<!\s)[,;]\s+but\b"
)
"""Where an "answer is" phrase's sentence ends: a full stop before a capital or the end (not a decimal point, not
"approx. 3.5"), or a clause that explains the answer. (`(?<!\\s)`: a run of spaces is tried once, not from each.)"""
_THINK_END = re.compile(r"</think>", re.IGNORECASE)
_TAG_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_TAG_CLOSE = re.compile(r"</answer>", re.IGNORECASE)

NUMBER_PATTERN = r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+|/\d+)?|-?\.\d+(?:[eE][+-]?\d+)?"
_NUMBER = re.compile(rf"(?<![\w.])(?:{NUMBER_PATTERN})")
_MAX_ANSWER_CHARS = 400
_UNICODE_MINUS = "\u2212"
"""The minus sign `−` (U+2212), read as `-` before any answer is looked for: the last-number fallback would
otherwise read `x = −5` as 5."""


@dataclass(frozen=True)
class ExtractionConfig:
    """Which ways of finding an answer are accepted."""

    last_number_fallback: bool = True
    """When no boxed, `####` or "answer is" answer is found, take the last number in the reply."""
    max_answer_chars: int = _MAX_ANSWER_CHARS
    """Longer extracted answers are refused (a format error), so a runaway reply cannot stall the checker."""


@dataclass(frozen=True)
class Extraction:
    """An answer found in a reply.

    Attributes:
        answer: The answer text, stripped.
        method: How it was found.
    """

    answer: str
    method: ExtractionMethod


def boxed_contents(text: str) -> list[str]:
    """The contents of every `\\boxed{...}` / `\\fbox{...}` in `text`, braces balanced; unclosed ones are skipped."""
    return [_content(text, span) for span in _boxed_spans(text)]


def last_boxed(text: str) -> str | None:
    """The last non-empty content of `boxed_contents(text)`, without building the others (they can nest deeply)."""
    for span in reversed(_boxed_spans(text)):
        content = _content(text, span)
        if content:
            return content
    return None


def _content(text: str, span: tuple[int, int, bool]) -> str:
    start, end, braced = span
    return text[start:end].strip() if braced else text[start:end]


def _boxed_spans(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, braced) of every box's content, in order, in one pass over the text.

    A braced box runs to its balancing `}` (a brace after a backslash does not count); `\\boxed 5` is one token,
    up to the next space or `$`. One pass, so unclosed boxes and long tokens are not rescanned from each box.
    """
    boxes = [match.end() for match in _BOXED.finditer(text)]
    braced = [start for start in boxes if text.startswith("{", start)]
    closes = _closing_braces(text, braced[0]) if braced else {}
    spans: list[tuple[int, int, bool]] = []
    stop = -1  # the end of the token at the latest box, reused by the boxes inside that token
    for start in boxes:
        if text.startswith("{", start):
            if start in closes:
                spans.append((start + 1, closes[start], True))
            continue
        if stop < start:
            found = _TOKEN_END.search(text, start)
            stop = found.start() if found else len(text)
        if stop > start:
            spans.append((start, stop, False))
    return spans


def _closing_braces(text: str, start: int) -> dict[int, int]:
    """Where each unescaped `{` from `start` on is closed: one stack over the text, not one scan per box."""
    closes: dict[int, int] = {}
    opened: list[int] = []
    for match in _BRACE.finditer(text, start):
        if match.group() == "{":
            opened.append(match.start())
        elif opened:
            closes[opened.pop()] = match.start()
    return closes


def _clean_phrase(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    if answer.startswith("$") and answer.endswith("$") and len(answer) > 1:
        answer = answer.strip("$").strip()
    return answer.rstrip(".").strip()


def extract_answer(text: str, config: ExtractionConfig | None = None) -> Extraction | None:
    """Finds the final answer in `text`, or `None` when there is none (or it is empty or too long)."""
    try:
        return require_answer(text, config)
    except ActionParseError:
        return None


def require_answer(text: str, config: ExtractionConfig | None = None) -> Extraction:
    """The final answer in `text`.

    Raises:
        ActionParseError: saying why there is none: nothing found, or an answer over `max_answer_chars`.
    """
    config = config or ExtractionConfig()
    found = _find_answer(text.replace(_UNICODE_MINUS, "-"), config)
    if found is None or not found.answer:
        fallback = ", nor a number to take as the answer" if config.last_number_fallback else ""
        raise ActionParseError(f"{NO_ANSWER[:-1]}{fallback})")
    if len(found.answer) > config.max_answer_chars:
        raise ActionParseError(
            f"your final answer, read from {HOW_FOUND[found.method]}, is {len(found.answer)} characters long; "
            f"at most {config.max_answer_chars} are read (give only the final answer there, not the working)"
        )
    return found


def _find_answer(text: str, config: ExtractionConfig) -> Extraction | None:
    """The first form that matches wins, even when its answer is then refused (empty or too long)."""
    text = after_thinking(text)
    inside = last_answer_tag(text)
    if inside:  # (an empty tag is a model naming the format: "I'll answer in <answer></answer> tags")
        boxed = last_boxed(inside)
        return Extraction(boxed if boxed is not None else _clean_phrase(inside), "answer_tag")
    boxed = last_boxed(text)
    if boxed is not None:
        return Extraction(boxed, "boxed")
    gsm8k = [found.strip() for found in _GSM8K.findall(text) if found.strip()]
    if gsm8k:
        return Extraction(_clean_phrase(gsm8k[-1]), "gsm8k")
    phrase = _answer_phrase(text)
    if phrase:
        return Extraction(phrase, "answer_is")
    if config.last_number_fallback:
        numbers = _NUMBER.findall(text)
        if numbers:
            return Extraction(numbers[-1], "last_number")
    return None


def after_thinking(text: str) -> str:
    """What follows the last `</think>`: the reply without its reasoning (all of it when there is no `</think>`)."""
    end = _last(_THINK_END, text, len(text))
    return text if end is None else text[end.end() :]


def last_answer_tag(text: str) -> str | None:
    """The content of the last `<answer>...</answer>`, stripped; None when there is none (linear in the text)."""
    close = _last(_TAG_CLOSE, text, len(text))
    start = _last(_TAG_OPEN, text, close.start()) if close is not None else None
    return None if start is None or close is None else text[start.end() : close.start()].strip()


def _last(pattern: re.Pattern[str], text: str, end: int) -> re.Match[str] | None:
    """The last match of `pattern` in `text[:end]` (a case-insensitive search: `lower()` can change lengths)."""
    last = None
    for match in pattern.finditer(text, 0, end):
        last = match
    return last


def _answer_phrase(text: str) -> str | None:
    """The answer of the last "answer is" phrase with one (models correct themselves; Minerva's "Final Answer: The
    final answer is $42$." reads 42), cut at the end of its sentence. Only the phrases from the last one back to
    the first with an answer are cut, so many phrases on one long line cost linear time."""
    for match in reversed(list(_ANSWER_IS.finditer(text))):
        line_end = text.find("\n", match.end())
        rest = text[match.end() : line_end if line_end >= 0 else len(text)].strip()
        end = _SENTENCE_END.search(rest)
        answer = _clean_phrase(rest[: end.start()] if end else rest)
        if answer:
            return answer
    return None
