"""ExIt's task instances (TRAINERS.md §3): a task, the attempts made on it so far with the verifier's answers, and
the env state after them, so the next attempt is played from exactly there.

An instance is a point of a single-answer episode (an env made with `max_attempts` > its depth): k = 0 is the
task just reset, k > 0 the state after k attempts, where the env's next `step(reply)` is attempt k + 1 and returns
its reward and feedback. In memory an instance carries the env's `Snapshot`; on disk (a checkpoint's JSON) it keeps
the reset seed and options and its replies, and is rebuilt by replaying them (`restore`), which must give back the
observation it was stored with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym

from reflectgym.agents.policy import Message
from reflectgym.core.snapshot import Snapshot

Mode = Literal["solve", "improve", "diverge"]
"""How an instance is prompted: solve a fresh task (k = 0), improve the latest attempt, or improve it while taking
a significantly different approach."""

INSTRUCTIONS: dict[Mode, str] = {
    "solve": "",
    "improve": "Improve your current response.",
    "diverge": "Improve your current response, taking a significantly different approach from it.",
}
"""What each mode adds to the prompt's last user message (the paper's self-iteration prompts, paraphrased)."""


@dataclass(frozen=True)
class Attempt:
    """One reply to the task and what the env answered to it.

    Attributes:
        reply: The policy's reply text, as the env was stepped with it.
        observation: What the env showed after it (its feedback and what to do next).
        feedback: The verifier's feedback alone (`info["feedback"]`).
        reward: The env's reward for the reply (its quality).
    """

    reply: str
    observation: str
    feedback: str
    reward: float


@dataclass(frozen=True)
class Instance:
    """A task with k attempts made on it.

    Attributes:
        seed: The seed the episode was reset with.
        options: The reset options (JSON-able).
        opening: The task's first observation.
        attempts: The attempts so far, oldest first (k of them).
        snapshot: The env's state after them (`env.unwrapped.snapshot()`); None when the instance was read back
            from JSON and has not been replayed yet.
    """

    seed: int | None
    options: Mapping[str, Any]
    opening: str
    attempts: tuple[Attempt, ...] = ()
    snapshot: Snapshot | None = field(default=None, compare=False, repr=False)

    @property
    def k(self) -> int:
        """Attempts made so far (the instance's depth)."""
        return len(self.attempts)

    @property
    def observation(self) -> str:
        """What the env shows at this point: the latest attempt's answer, or the task."""
        return self.attempts[-1].observation if self.attempts else self.opening

    @property
    def quality(self) -> float:
        """The latest attempt's reward (0 for a fresh task): q_prev of the improvement reward."""
        return self.attempts[-1].reward if self.attempts else 0.0

    @property
    def key(self) -> tuple[Any, ...]:
        """What identifies the instance: the task (seed and options) and the replies played on it."""
        options = tuple(sorted((str(name), repr(value)) for name, value in self.options.items()))
        return (self.seed, options, tuple(attempt.reply for attempt in self.attempts))

    def child(self, attempt: Attempt, snapshot: Snapshot | None) -> Instance:
        """The instance one attempt deeper: these attempts and `attempt`, at the env state after it."""
        return dataclasses.replace(self, attempts=(*self.attempts, attempt), snapshot=snapshot)

    def messages(self, system: str, mode: Mode, shown_attempts: int | None = 1) -> list[Message]:
        """The prompt: the system prompt (if any), the task, the latest `shown_attempts` attempts (None: all) as
        assistant replies each answered by the env's observation, and the mode's instruction appended to the last
        user message.

        Raises:
            ValueError: If the mode does not fit the depth (solve is for k = 0, improve and diverge for k > 0).
        """
        if (mode == "solve") != (self.k == 0):
            raise ValueError(f"mode {mode!r} does not fit an instance with k = {self.k}")
        messages: list[Message] = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": self.opening})
        shown = self.attempts if shown_attempts is None else self.attempts[max(self.k - shown_attempts, 0) :]
        for attempt in shown:
            messages += [
                {"role": "assistant", "content": attempt.reply},
                {"role": "user", "content": attempt.observation},
            ]
        if INSTRUCTIONS[mode]:
            messages[-1] = {"role": "user", "content": f"{messages[-1]['content']}\n\n{INSTRUCTIONS[mode]}"}
        return messages

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the snapshot is left out: `restore` replays the attempts)."""
        return {
            "seed": self.seed,
            "options": dict(self.options),
            "opening": self.opening,
            "attempts": [dataclasses.asdict(attempt) for attempt in self.attempts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Instance:
        """Inverse of `to_dict` (without a snapshot)."""
        attempts = tuple(Attempt(**attempt) for attempt in data["attempts"])
        return cls(data["seed"], dict(data["options"]), str(data["opening"]), attempts)


@dataclass(frozen=True)
class Outcome:
    """What the env answered to one attempt played from an instance.

    Attributes:
        attempt: The reply with the env's observation, feedback and reward.
        passed: Whether the verifier passed it (the task is solved).
        ended: Whether the episode ended with it (solved, failed for good, or out of attempts).
        snapshot: The env state after it (None once the episode ended: there is nothing to continue).
    """

    attempt: Attempt
    passed: bool
    ended: bool
    snapshot: Snapshot | None


class ReplayMismatchError(RuntimeError):
    """Replaying an instance's replies did not give back the observations it was stored with (the env is not
    deterministic under its seed, or changed since)."""


def start(env: gym.Env[Any, Any], seed: int, options: Mapping[str, Any] | None = None) -> Instance:
    """A fresh task (k = 0): the env reset through Gymnasium with `seed`."""
    observation, _ = env.reset(seed=seed, options=dict(options or {}))
    return Instance(seed, dict(options or {}), str(observation), (), env.unwrapped.snapshot())  # type: ignore[attr-defined]


def restore(env: gym.Env[Any, Any], instance: Instance) -> Instance:
    """Puts `env` at `instance` and returns the instance with its snapshot: restored natively when it has one,
    else replayed (reset with its seed, its replies stepped again) and checked against the stored observations.

    Raises:
        ReplayMismatchError: If a replayed step shows something else than the instance recorded.
    """
    if instance.snapshot is not None:
        env.unwrapped.restore(instance.snapshot)  # type: ignore[attr-defined]
        return instance
    observation, _ = env.reset(seed=instance.seed, options=dict(instance.options))
    _check_replay(str(observation), instance.opening, 0)
    for index, attempt in enumerate(instance.attempts):
        observation, *_ = env.unwrapped.step(attempt.reply)
        _check_replay(str(observation), attempt.observation, index + 1)
    return dataclasses.replace(instance, snapshot=env.unwrapped.snapshot())  # type: ignore[attr-defined]


def _check_replay(seen: str, stored: str, k: int) -> None:
    if seen != stored:
        raise ReplayMismatchError(f"replaying the instance gave another observation at k = {k}: {seen[:80]!r}")


def play(env: gym.Env[Any, Any], instance: Instance, reply: str) -> Outcome:
    """Attempt k + 1: restores `instance` (which must carry its snapshot), steps the env once with `reply`.

    Snapshots hold the unwrapped env's state, so the attempt is stepped on the unwrapped env: a wrapper's own
    counters (Gymnasium's `TimeLimit`) are not part of a snapshot and would drift across restores."""
    if instance.snapshot is None:
        raise ValueError("restore() the instance first: it has no snapshot to play from")
    base = env.unwrapped
    base.restore(instance.snapshot)  # type: ignore[attr-defined]
    observation, reward, terminated, truncated, info = base.step(reply)
    verdict = info.get("verdict")
    passed = bool(verdict.passed) if verdict is not None else bool(terminated)
    ended = bool(terminated or truncated)
    attempt = Attempt(reply, str(observation), str(info.get("feedback", "")), float(reward))
    return Outcome(attempt, passed, ended, None if ended else base.snapshot())  # type: ignore[attr-defined]
