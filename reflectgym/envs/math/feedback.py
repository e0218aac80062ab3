"""Judging one extracted answer and saying so at the env's feedback level, never revealing the gold answer.

* `binary`: Correct. / Incorrect.
* `diagnostic`: what was read from the reply and how, whether it parsed, whether it is the right kind of object
  (number, tuple, interval, set, ...), how many values match for lists, and how close a number is (within one percent,
  within ten percent, further) — never the gold answer or anything computed from it beyond those buckets.
* `hint`: the diagnostic, plus the first intermediate quantity of a generated problem that the reply does not
  show correctly (named, never given), or the generator's advice on the last step.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from reflectgym.core.types import FeedbackLevel, Verdict
from reflectgym.envs.math.equivalence import AnswerChecker, Match, kind_of, values_equal
from reflectgym.envs.math.extract import HOW_FOUND, NUMBER_PATTERN, Extraction
from reflectgym.envs.math.values import Num, Seq, Value, read_answer

_NUMBER = re.compile(rf"(?<![\w.])(?:{NUMBER_PATTERN})")


def judge(
    extraction: Extraction,
    gold: str,
    reply: str,
    *,
    level: FeedbackLevel,
    checker: AnswerChecker,
    steps: Sequence[Mapping[str, Any]] = (),
    final_hint: str = "",
) -> Verdict:
    """The verdict on one answer: reward 1 when it equals `gold`, else 0 with feedback at `level`."""
    match = checker.check(extraction.answer, gold)
    details: dict[str, Any] = {
        "extracted": extraction.answer,
        "method": extraction.method,
        "status": match.status,
        "decided_by": match.method,
    }
    if match.equal:
        return Verdict(reward=1.0, passed=True, feedback="Correct.", details=details)
    if level == "binary":
        return Verdict(reward=0.0, passed=False, feedback="Incorrect.", details=details)
    lines = [diagnose(extraction, gold, match)]
    if level == "hint":
        lines.append(hint(reply, steps, final_hint))
    return Verdict(reward=0.0, passed=False, feedback="\n".join(line for line in lines if line), details=details)


def diagnose(extraction: Extraction, gold: str, match: Match) -> str:
    """What was read, whether it parsed, its kind against the expected kind, and how close it is."""
    lines = [f"Incorrect. Your final answer was read from {HOW_FOUND[extraction.method]}: {extraction.answer}"]
    if match.status == "unknown":
        reason = "the check ran out of time" if match.method == "timeout" else "it could not be parsed"
        lines.append(f"It could not be verified against the expected answer ({reason}), so it does not count.")
        return "\n".join(lines)
    answer_value, _ = read_answer(extraction.answer)
    gold_value, gold_norm = read_answer(gold)
    answer_kind, gold_kind = kind_of(answer_value), kind_of(gold_value)
    if answer_value is None:
        lines.append("It was parsed as an expression and is not equal to the expected answer.")
    elif answer_kind != gold_kind and gold_value is not None:
        lines.append(f"It reads as {answer_kind}, but the expected answer is {gold_kind}.")
    else:
        lines.append(f"It reads as {answer_kind}, the right kind of answer, but its value is wrong.")
    if answer_value is not None and gold_value is not None:
        closeness = _closeness(answer_value, gold_value, gold_norm.percent)
        if closeness:
            lines.append(closeness)
    return "\n".join(lines)


def _closeness(answer: Value, gold: Value, percent: bool) -> str:
    if isinstance(answer, Num) and isinstance(gold, Num):
        candidates = [gold.value, gold.value / 100] if percent else [gold.value]
        if not all(math.isfinite(value) for value in [answer.value, *candidates]):
            return ""
        error = min(abs(answer.value - value) / max(abs(value), 1e-12) for value in candidates)
        if error <= 0.01:
            return "It is numerically close: within one percent of the expected value. Check rounding and exactness."
        if error <= 0.1:
            return "It is within ten percent of the expected value."
        return "It is more than ten percent away from the expected value."
    if isinstance(answer, Seq) and isinstance(gold, Seq):
        if len(answer.items) != len(gold.items):
            return f"It has {len(answer.items)} value(s); the expected answer has {len(gold.items)}."
        matching = sum(any(values_equal(item, other) for other in gold.items) for item in answer.items)
        return f"{matching} of your {len(answer.items)} values appear in the expected answer."
    return ""


def shows(reply: str, value: str) -> bool:
    """Whether `reply` shows `value`: as one of its numbers when it is a number, else as text."""
    target = _as_fraction(value)
    if target is None:
        return " ".join(value.split()) in " ".join(reply.split())
    return any(_as_fraction(number) == target for number in _NUMBER.findall(reply))


def _as_fraction(text: str) -> Fraction | None:
    try:
        return Fraction(text.replace(",", "").strip())
    except (ValueError, ZeroDivisionError):
        return None


def hint(reply: str, steps: Sequence[Mapping[str, Any]], final_hint: str) -> str:
    """Points at the first intermediate quantity the reply does not show correctly (generated problems)."""
    for step in steps:
        if not shows(reply, str(step["value"])):
            return f"Hint: your work does not show {step['label']} correctly. {step['hint']}"
    if steps:
        return f"Hint: your intermediate steps look right; the mistake is in the last step. {final_hint}".strip()
    if final_hint:
        return f"Hint: {final_hint}"
    return "Hint: re-read what the question asks for (which quantity, which form, which units) and recheck each step."


def scored_verdict(
    extraction: Extraction, score: float, *, level: FeedbackLevel, equal: bool = False, unscorable: bool = False
) -> Verdict:
    """A verdict from a task source's own scorer (reasoning-gym): a score of 1 passes, and so does an answer the
    env found `equal` to an integer gold; anything else pays 0 (as a wrong answer does in every math task).
    `unscorable`: the scorer failed on the answer (raised), so it scores 0 and the feedback says it could not be
    read."""
    details = {"extracted": extraction.answer, "method": extraction.method, "score": score, "unscorable": unscorable}
    if score >= 1.0 or equal:
        return Verdict(reward=1.0, passed=True, feedback="Correct.", details=details)
    if level == "binary":
        return Verdict(reward=0.0, passed=False, feedback="Incorrect.", details=details)
    found = HOW_FOUND[extraction.method]
    if unscorable:
        text = (
            f"Incorrect. Your final answer was read from {found}: {extraction.answer}\n"
            "The task's scorer could not read it, so it scores 0."
        )
    else:
        text = f"Incorrect (score {score:.2f} of 1). Your final answer was read from {found}: {extraction.answer}"
    if level == "hint":
        text += "\nHint: re-read the format the question asks for, then recheck each step."
    return Verdict(reward=0.0, passed=False, feedback=text, details=details)
