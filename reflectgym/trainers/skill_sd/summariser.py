"""The summariser of Skill-SD: an LLM call that turns an episode into a skill (TRAINERS.md §2).

By default the trained policy summarises, between its rollouts and its update. Any other `Policy` (an
OpenAI-compatible server, a larger model) can, and then runs in a background thread while the step's update runs:
its skills join the bank at the end of the step, before the next one retrieves any.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from reflectgym.agents.policy import Message, Policy, Sampling
from reflectgym.core.trajectory import Trajectory
from reflectgym.trainers.skill_sd.skills import Skill, parse_skill

SUMMARY_SYSTEM_PROMPT = (
    "You review an agent's attempt at a task and write down a skill that helps on the next attempt at the same task."
)
"""The summariser's system prompt."""

SUMMARY_REQUEST = (
    "Reply with only a JSON object with three string keys: "
    '"success_analysis" (what worked and why), '
    '"mistake_analysis" (what went wrong and how to avoid it), '
    '"golden_workflow" (the steps to follow next time). For example: '
    '{"success_analysis": "...", "mistake_analysis": "...", "golden_workflow": "..."}'
)
"""What the summariser is asked for, after the episode."""


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summary_conversation(trajectory: Trajectory, max_turns: int = 40, max_chars: int = 600) -> list[Message]:
    """The summariser's conversation for one episode: the task (its first observation), its last `max_turns`
    actions with the env's feedback, and the outcome; each text cut at `max_chars`."""
    turns = trajectory.turns
    task = turns[0].observation if turns else trajectory.final_observation
    shown = turns[-max_turns:]
    lines = [f"Task:\n{_clip(task, 4 * max_chars)}", ""]
    outcome = "solved" if trajectory.success else "not solved"
    lines.append(f"The agent's attempt ({len(turns)} steps, return {trajectory.total_reward:.3g}, {outcome}):")
    if len(shown) < len(turns):
        lines.append(f"(the first {len(turns) - len(shown)} steps are left out)")
    for number, turn in enumerate(shown, start=len(turns) - len(shown) + 1):
        lines.append(f"Step {number} action: {_clip(turn.action.strip(), max_chars)}")
        if turn.feedback:
            lines.append(f"Step {number} feedback: {_clip(turn.feedback.strip(), max_chars)}")
    lines += ["", SUMMARY_REQUEST]
    return [{"role": "system", "content": SUMMARY_SYSTEM_PROMPT}, {"role": "user", "content": "\n".join(lines)}]


@dataclass(frozen=True)
class Summary:
    """A summariser's answer for one task: the skill, or None when the reply held none (or `failed`: the
    generation itself failed)."""

    task: str
    skill: Skill | None
    failed: bool = False


class Summariser:
    """Asks a policy for skills, one episode per task.

    Args:
        policy: The model that writes skills.
        sampling: Its sampling settings (a seed makes summaries reproducible).
        background: Run each request in a background thread (`submit` returns at once); for a policy other than
            the one being trained.
        max_turns: Turns of an episode shown at most (the last ones).
    """

    def __init__(self, policy: Policy, sampling: Sampling, *, background: bool, max_turns: int = 40) -> None:
        self.policy = policy
        self.sampling = sampling
        self.background = background
        self.max_turns = max_turns
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="summariser") if background else None

    def submit(
        self, episodes: Sequence[tuple[str, Trajectory]], sampling: Sampling | None = None
    ) -> Future[list[Summary]]:
        """Summarises (task, episode) pairs in one batched call; the future holds one `Summary` per pair."""
        conversations = [summary_conversation(episode, self.max_turns) for _, episode in episodes]
        tasks = [task for task, _ in episodes]
        chosen = sampling or self.sampling

        def call() -> list[Summary]:
            if not conversations:
                return []
            replies = self.policy.generate(conversations, chosen)
            return [
                Summary(task, None, failed=True)
                if reply.finish_reason == "error"
                else Summary(task, parse_skill(reply.text))
                for task, reply in zip(tasks, replies, strict=True)
            ]

        if self._pool is not None:
            return self._pool.submit(call)
        future: Future[list[Summary]] = Future()
        try:
            future.set_result(call())
        except Exception as error:  # the caller decides: a failed summary must not end the run
            future.set_exception(error)
        return future

    def close(self) -> None:
        """Stops the background thread (after its request, if one runs)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
