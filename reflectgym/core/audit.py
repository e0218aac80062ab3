"""The feedback-leak audit: nothing a student sees may contain what only `info["privileged"]` may carry.

Over many seeds the audit plays random text and, where the env has one, its oracle's actions, and checks every
observation and every feedback text against the env's `leak_markers()` (by default its privileged reference).
A marker that also appears in the student's own action that turn is not a leak: the env may quote the answer
back. Use it on your own envs: `audit_feedback_leaks("reflectgym/MyEnv-v0")`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from reflectgym.core.env import TextEnv
from reflectgym.core.spaces import FreeText


@dataclass(frozen=True)
class Leak:
    """One place where a student-visible text contained a privileged marker."""

    seed: int
    turn: int
    where: str
    marker: str

    def __str__(self) -> str:
        shown = self.marker if len(self.marker) <= 60 else self.marker[:57] + "..."
        return f"seed {self.seed}, turn {self.turn}: {self.where} contains privileged text {shown!r}"


@dataclass
class LeakReport:
    """The audit's findings.

    Attributes:
        env_id: What was audited.
        episodes: Episodes played.
        turns: Turns played in all.
        markers_checked: How many distinct privileged markers were checked against.
        leaks: Every leak found.
    """

    env_id: str
    episodes: int = 0
    turns: int = 0
    markers_checked: int = 0
    leaks: list[Leak] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing leaked."""
        return not self.leaks

    def __str__(self) -> str:
        head = (
            f"{self.env_id}: {self.episodes} episodes, {self.turns} turns, {self.markers_checked} markers checked, "
            f"{len(self.leaks)} leak(s)"
        )
        return "\n".join([head, *(f"  {leak}" for leak in self.leaks[:10])])


ActionChooser = Callable[[TextEnv[Any], np.random.Generator], str]
"""Picks the next action text for the audit, given the (unwrapped) env and a generator."""


def random_or_oracle(env: TextEnv[Any], rng: np.random.Generator) -> str:
    """Half the time the env's oracle action (when it has one), otherwise random text."""
    oracle = getattr(env, "oracle_action", None)
    if oracle is not None and rng.random() < 0.5:
        try:
            return str(oracle())
        except Exception:  # an oracle with nothing to say here still leaves random text to try
            pass
    space = FreeText(sample_max_length=48, seed=int(rng.integers(2**31)))
    return space.sample()


def audit_feedback_leaks(
    env: str | gym.Env[Any, Any],
    *,
    episodes: int = 20,
    max_turns: int = 20,
    seed: int = 0,
    choose_action: ActionChooser = random_or_oracle,
    **make_kwargs: Any,
) -> LeakReport:
    """Plays `episodes` episodes and reports every student-visible text containing a privileged marker."""
    owned = isinstance(env, str)
    instance = gym.make(env, **make_kwargs) if isinstance(env, str) else env
    base = instance.unwrapped
    if not isinstance(base, TextEnv):
        raise TypeError(f"the leak audit needs a reflectgym TextEnv; got {type(base).__name__}")
    env_id = instance.spec.id if instance.spec is not None else type(base).__name__
    report = LeakReport(env_id=env_id)
    rng = np.random.default_rng(seed)
    markers_seen: set[str] = set()
    try:
        for episode in range(episodes):
            episode_seed = seed + episode
            observation, info = instance.reset(seed=episode_seed)
            markers = [marker for marker in base.leak_markers() if marker]
            markers_seen.update(markers)
            _check(report, markers, episode_seed, 0, {"observation": observation}, action="")
            for turn in range(1, max_turns + 1):
                action = choose_action(base, rng)
                observation, _, terminated, truncated, info = instance.step(action)
                texts = {"observation": observation, "feedback": str(info.get("feedback", ""))}
                _check(report, markers, episode_seed, turn, texts, action=action)
                report.turns += 1
                if terminated or truncated:
                    break
            report.episodes += 1
    finally:
        if owned:
            instance.close()
    report.markers_checked = len(markers_seen)
    return report


def _normalise(text: str) -> str:
    """Whitespace and case folded: "PARIS" leaks "Paris" as much as "Paris" does."""
    return " ".join(text.split()).casefold()


def _check(report: LeakReport, markers: list[str], seed: int, turn: int, texts: dict[str, str], action: str) -> None:
    said = _normalise(action)
    for marker in markers:
        needle = _normalise(marker)
        if not needle or needle in said:
            continue
        for where, text in texts.items():
            if needle in _normalise(text):
                report.leaks.append(Leak(seed=seed, turn=turn, where=where, marker=marker))
