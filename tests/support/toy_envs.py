"""Small TextEnvs for testing the base class: a counter with native snapshots, and one without."""

from __future__ import annotations

from typing import Any, ClassVar

from reflectgym.core import ActionParseError, TextEnv, Transition, Verdict


class CounterEnv(TextEnv[int]):
    """Reach the target by adding 1, 2 or 3; the target is drawn from the seed."""

    action_format: ClassVar[str] = "one of: add 1, add 2, add 3"
    action_examples: ClassVar[tuple[str, ...]] = ("add 1", "add 2", "add 3")

    def __init__(self, *, native: bool = True, max_steps: int = 10, **kwargs: Any) -> None:
        super().__init__(max_turns=max_steps, **kwargs)
        self.native = native
        self.total = 0
        self.target = 0

    def _begin(self, options: dict[str, Any]) -> str:
        self.total = 0
        self.target = int(options.get("target", self.np_random.integers(5, 12)))
        return self.observation()

    def observation(self) -> str:
        return f"Total {self.total}; reach {self.target}."

    def parse_action(self, text: str) -> int:
        words = text.strip().lower().split()
        if len(words) != 2 or words[0] != "add" or words[1] not in {"1", "2", "3"}:
            raise ActionParseError(f"{text[:20]!r} is not 'add N' with N in 1..3")
        return int(words[1])

    def _apply(self, action: int) -> Transition:
        self.total += action
        # consume randomness on every step, so snapshots must carry the generator too
        noise = int(self.np_random.integers(100))
        passed = self.total == self.target
        over = self.total > self.target
        text = "Reached it." if passed else ("Overshot." if over else f"Not yet ({noise}).")
        verdict = Verdict(reward=float(passed), passed=passed, feedback=text)
        return Transition(observation=f"{text} {self.observation()}", verdict=verdict, terminated=passed or over)

    def privileged(self) -> str | None:
        return f"the plan is to add up to {self.target} exactly"

    def oracle_action(self) -> str:
        return f"add {min(3, self.target - self.total)}"

    def _save_state(self) -> Any:
        return (self.total, self.target) if self.native else None

    def _load_state(self, state: Any) -> None:
        self.total, self.target = state


class LeakyCounterEnv(CounterEnv):
    """Breaks the rule on purpose: the feedback quotes the privileged plan."""

    def _apply(self, action: int) -> Transition:
        transition = super()._apply(action)
        verdict = Verdict(
            reward=transition.verdict.reward,
            passed=transition.verdict.passed,
            feedback=f"{transition.verdict.feedback} ({self.privileged()})",
        )
        return Transition(transition.observation, verdict, transition.terminated)
