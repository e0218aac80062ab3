"""Math answer checking: reflectgym's AnswerChecker against Hugging Face math-verify, side by side in one run.

Measures (1) accuracy on the labelled suite tests/math/data/equivalence_cases.jsonl, (2) throughput on
GSM8K-style answer pairs, (3) throughput on MATH-style LaTeX answer pairs (about a quarter need symbolic work).
Baseline: `math_verify.verify(parse("\\boxed{gold}"), parse("\\boxed{answer}"))`, its documented use, in this
process. Every pair is distinct, so neither side's caches help. One process, one core for the checker.

    .venv/bin/python benchmarks/math_equivalence.py [--pairs 3000]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from reflectgym.envs.math.equivalence import AnswerChecker
from reflectgym.envs.math.values import read_answer

CASES = Path(__file__).resolve().parents[1] / "tests" / "math" / "data" / "equivalence_cases.jsonl"


def math_verify_equal() -> Callable[[str, str], bool]:
    from math_verify import parse, verify

    def equal(answer: str, gold: str) -> bool:
        try:
            return bool(verify(parse(f"\\boxed{{{gold}}}"), parse(f"\\boxed{{{answer}}}")))
        except Exception:
            return False

    return equal


def gsm8k_pairs(count: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    pairs = []
    for index in range(count):
        gold = int(rng.integers(1, 100_000)) * 1000 + index % 1000  # distinct golds
        form = index % 6
        answer = [
            str(gold), f"{gold:,}", f"\\${gold}", f"{gold}.00", str(gold + int(rng.integers(1, 50))), f"{gold} dollars"
        ][form]  # fmt: skip
        pairs.append((answer, str(gold)))
    return pairs


def latex_pairs(count: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    pairs = []
    for index in range(count):
        a, b, c = (int(value) for value in rng.integers(2, 400, size=3))
        b += index * 400  # distinct
        kind = index % 8
        if kind == 0:
            pairs.append((f"\\frac{{{a * 2}}}{{{b * 2}}}", f"\\frac{{{a}}}{{{b}}}"))
        elif kind == 1:
            pairs.append((f"{a}\\sqrt{{{c}}}", f"\\sqrt{{{a * a * c}}}"))
        elif kind == 2:
            pairs.append((f"\\frac{{{a}\\pi}}{{{b}}}", f"\\frac{{{a + 1}\\pi}}{{{b}}}"))
        elif kind == 3:
            pairs.append((f"({a}, {b}]", f"\\left({a}, {b}\\right]"))
        elif kind == 4:
            pairs.append((f"\\left( {a}, -{b} \\right)", f"({a},-{b})"))
        elif kind == 5:
            pairs.append((f"x = {a}", f"{a}"))
        elif kind == 6:
            pairs.append((f"{a}x^2 + {b}x + {c}", f"{c} + {b}x + {a}x^2"))
        else:
            pairs.append((f"(x+{a})(x-{b})", f"x^2 + {a - b}x - {a * b}"))
    return pairs


def throughput(equal: Callable[[str, str], bool], pairs: list[tuple[str, str]]) -> tuple[float, list[bool]]:
    start = time.perf_counter()
    results = [equal(answer, gold) for answer, gold in pairs]
    return len(pairs) / (time.perf_counter() - start), results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3000, help="GSM8K-style pairs (LaTeX pairs: a fifth of it)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    baseline = math_verify_equal()
    checker = AnswerChecker()
    ours = lambda answer, gold: checker.check(answer, gold).equal  # noqa: E731
    ours("x+1", "1+x")  # start the symbolic worker outside the timings (once per process)

    cases = [json.loads(line) for line in CASES.open()]
    our_right = [ours(case["answer"], case["gold"]) == case["equal"] for case in cases]
    base_right = [baseline(case["answer"], case["gold"]) == case["equal"] for case in cases]
    only_base = sum(b and not o for o, b in zip(our_right, base_right, strict=True))
    print(f"suite: {len(cases)} labelled cases")
    print(f"  reflectgym  right on {sum(our_right)}/{len(cases)}")
    print(f"  math-verify right on {sum(base_right)}/{len(cases)}")
    print(f"  cases math-verify gets right and reflectgym wrong: {only_base}")

    rng = np.random.default_rng(0)
    for name, pairs in (
        ("GSM8K-style", gsm8k_pairs(args.pairs, rng)),
        ("LaTeX (MATH-style)", latex_pairs(max(args.pairs // 5, 80), rng)),
    ):
        read_answer.cache_clear()
        base_rate, base_results = throughput(baseline, pairs)
        our_rate, our_results = throughput(ours, pairs)
        agree = sum(x == y for x, y in zip(base_results, our_results, strict=True))
        print(
            f"{name}: {len(pairs)} pairs  reflectgym {our_rate:,.0f} pairs/s  math-verify {base_rate:,.0f} pairs/s  "
            f"ratio {our_rate / base_rate:.1f}x  (verdicts agree on {agree}/{len(pairs)})"
        )


if __name__ == "__main__":
    main()
