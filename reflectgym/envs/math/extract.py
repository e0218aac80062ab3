"""Answer extraction: finds the final answer in a model's reply.

Tried in order, the first that matches wins: the last `\\boxed{...}` (nested braces balanced), a GSM8K `#### n`
line, an "answer is ..." / "Answer: ..." phrase, and, when enabled, the last number in the reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ExtractionMethod = Literal["boxed", "gsm8k", "answer_is", "last_number"]

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_GSM8K = re.compile(r"####\s*([^\n]*)")
_ANSWER_IS = re.compile(
    r"(?:final answer|the answer|answer)\s*(?:is|:|=)\s*:?\s*(.+?)\s*(?:\n|$)",
    re.IGNORECASE,
)
NUMBER_PATTERN = r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?(?:/\d+)?|-?\.\d+"
_NUMBER = re.compile(rf"(?<![\w.])(?:{NUMBER_PATTERN})")
_MAX_ANSWER_CHARS = 400


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
    found: list[str] = []
    for match in _BOXED.finditer(text):
        start = match.end()
        if start < len(text) and text[start] == "{":
            depth = 0
            for index in range(start, len(text)):
                char = text[index]
                if char == "{" and text[index - 1] != "\\":
                    depth += 1
                elif char == "}" and text[index - 1] != "\\":
                    depth -= 1
                    if depth == 0:
                        found.append(text[start + 1 : index].strip())
                        break
        else:  # `\boxed 5`: one token
            token = re.match(r"[^\s$]+", text[start:])
            if token:
                found.append(token.group(0))
    return found


def _clean_phrase(answer: str) -> str:
    answer = answer.strip().strip("*").strip()
    if answer.startswith("$") and answer.endswith("$") and len(answer) > 1:
        answer = answer.strip("$").strip()
    return answer.rstrip(".").strip()


def extract_answer(text: str, config: ExtractionConfig | None = None) -> Extraction | None:
    """Finds the final answer in `text`, or `None` when there is none."""
    config = config or ExtractionConfig()
    boxed = [content for content in boxed_contents(text) if content]
    if boxed:
        return _checked(Extraction(boxed[-1], "boxed"), config)
    gsm8k = [found.strip() for found in _GSM8K.findall(text) if found.strip()]
    if gsm8k:
        return _checked(Extraction(_clean_phrase(gsm8k[-1]), "gsm8k"), config)
    phrases = [_clean_phrase(found) for found in _ANSWER_IS.findall(text)]
    phrases = [phrase for phrase in phrases if phrase]
    if phrases:
        return _checked(Extraction(phrases[-1], "answer_is"), config)
    if config.last_number_fallback:
        numbers = _NUMBER.findall(text)
        if numbers:
            return _checked(Extraction(numbers[-1], "last_number"), config)
    return None


def _checked(extraction: Extraction, config: ExtractionConfig) -> Extraction | None:
    return extraction if 0 < len(extraction.answer) <= config.max_answer_chars else None
