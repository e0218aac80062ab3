"""`TextEnv`: the base of every reflectgym environment — text in, text out, feedback in words.

The base owns the Gymnasium mechanics every family shares, so a family writes only its rules:

* actions are the model's raw text; `step()` rejects non-strings with a `TypeError` (a caller bug) but never
  raises on bad text: an `ActionParseError` from `parse_action` becomes a turn with a format penalty and
  feedback saying what was expected;
* `info` always carries `feedback`, `verdict`, `privileged`, `task_id`, `parse_error` and `turn`;
* the turn limit (`max_steps` in sequential families, `max_attempts` in single-answer ones) truncates;
* `snapshot()` / `restore()` copy the episode state natively when a family names it (`episode_fields`) or
  overrides `_save_state` / `_load_state`, and replay the episode's actions otherwise (which re-runs whatever a
  turn runs: a family whose turns run code or call out should name its state instead).

Subclass hooks: `_begin`, `parse_action`, `_apply`, `observation`, and optionally `task_id`, `privileged`,
`_save_state`/`_load_state`, `oracle_action`, `leak_markers`.
"""

from __future__ import annotations

import copy
import re
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

import gymnasium as gym
from gymnasium.error import ResetNeeded

from reflectgym.core.snapshot import Snapshot
from reflectgym.core.spaces import FreeText
from reflectgym.core.tasks import ListedTaskSource
from reflectgym.core.types import ActionParseError, FeedbackLevel, Transition, Verdict, check_feedback_level

ActionT = TypeVar("ActionT")


class EpisodeOverError(ResetNeeded, RuntimeError):
    """Raised when `step()` is called with no episode running: before the first `reset()`, after the episode
    ended, or after a `reset()` that failed.

    It is a Gymnasium `ResetNeeded` (what a wrapped env raises before its first reset) and a `RuntimeError`.
    """


WAIT_REPLY = "ok."
"""What an env that takes the `wait` action answers to it (`TextEnv(wait_action=True)`)."""

_WAIT = re.compile(r"(?:\A|\n)[ \t]*(?:action:[ \t]*)?wait[ \t]*\.?\s*\Z", re.IGNORECASE)
"""A reply whose last line is the action `wait` (`Action: wait`, or `wait` alone)."""


class TextEnv(gym.Env[str, str], Generic[ActionT]):
    """Base class for text environments with verifiers that answer in words.

    Args:
        feedback: How much the verifier says: `"binary"`, `"diagnostic"` or `"hint"`.
        max_turns: Turns before the episode is truncated (`None` for no limit).
        format_penalty: Subtracted from the reward of a turn whose text held no valid action.
        render_mode: `"ansi"` (render returns the last observation) or `"human"` (prints it).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 4}  # type: ignore[misc]
    action_format: ClassVar[str] = "a reply in the format the task asks for"
    """One line saying what a valid action looks like; quoted in format feedback."""
    action_examples: ClassVar[tuple[str, ...]] = ()
    """A few valid actions (shown by `reflectgym play`, sampled by the random scripted agent)."""
    min_leak_marker_length: ClassVar[int] = 8
    """Privileged strings shorter than this (a bare number, one move) are not audited: they occur innocently."""
    episode_fields: ClassVar[tuple[str, ...]] = ()
    """Attributes that hold the episode's whole state beyond the base's (the task, counters): snapshots copy
    them instead of replaying the actions. Empty: replay."""

    def __init__(
        self,
        *,
        feedback: FeedbackLevel | str = "diagnostic",
        max_turns: int | None = None,
        format_penalty: float = 0.1,
        render_mode: str | None = None,
        wait_action: bool = False,
    ) -> None:
        if max_turns is not None and max_turns < 1:
            raise ValueError(f"the turn limit must be at least 1 (or None for no limit); got {max_turns}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None; got {render_mode!r}")
        if format_penalty < 0:
            raise ValueError(f"format_penalty is subtracted from the reward, so it must be >= 0; got {format_penalty}")
        self.feedback: FeedbackLevel = check_feedback_level(feedback)
        self.max_turns = max_turns
        self.format_penalty = float(format_penalty)
        self.render_mode = render_mode
        self.wait_action = bool(wait_action)
        """Take a reply whose action is `wait` as a no-op that costs a turn (the env answers "ok."): Agent-R's
        revision turn, "Thought: ...\nAction: wait", which its trained models then write."""
        self.observation_space = FreeText()
        self.action_space = FreeText()
        self._seed: int | None = None
        self._options: dict[str, Any] = {}
        self._start_rng_state: Mapping[str, Any] | None = None
        self._actions: list[str] = []
        self._episode_over = True
        self._not_running = "no episode has begun"
        self._last_observation = ""

    # ----------------------------------------------------------------- hooks for families
    @abstractmethod
    def _begin(self, options: dict[str, Any]) -> str:
        """Starts an episode (randomness from `self.np_random`) and returns the first observation."""

    @abstractmethod
    def parse_action(self, text: str) -> ActionT:
        """Reads an action from model text; raises `ActionParseError` saying what was wrong."""

    @abstractmethod
    def _apply(self, action: ActionT) -> Transition:
        """Plays a parsed action and judges it."""

    @abstractmethod
    def observation(self) -> str:
        """The current state as text, re-shown after a turn whose text held no action."""

    @property
    def episode_over(self) -> bool:
        """Whether the episode ended (or never began): `step()` needs a `reset()` first."""
        return self._episode_over

    @property
    def actions(self) -> tuple[str, ...]:
        """The raw action texts played since the last reset."""
        return tuple(self._actions)

    @property
    def on_last_turn(self) -> bool:
        """Whether the turn being played (or the one just played) is the last the turn limit allows: it truncates
        the episode unless the episode terminates. Families whose unsolved end is scored read it in `_apply`."""
        return self.max_turns is not None and len(self._actions) >= self.max_turns

    @property
    def task_id(self) -> str | None:
        """The id of the task being played, for families with task ids."""
        return None

    def task_ids(self) -> list[str] | None:
        """Every id `reset(options={"task_id": ...})` takes, in order, when the env plays a finite list of tasks
        (None for a generator): what an evaluation walks through to play each task once. By default the ids of
        a `tasks` attribute that lists them (a `ListedTaskSource`: `TaskList`, `ReasoningGymTasks`)."""
        tasks = getattr(self, "tasks", None)
        return tasks.ids() if isinstance(tasks, ListedTaskSource) else None

    def privileged(self) -> str | None:
        """Teacher-only text for this episode (reference solution, optimal plan); students never see it."""
        return None

    def leak_markers(self) -> list[str]:
        """Strings a student must never see in observations or feedback (checked by the leak audit).

        The default is the privileged text when it is long enough to be specific.
        """
        reference = self.privileged()
        if reference is None or len(reference.strip()) < self.min_leak_marker_length:
            return []
        return [reference.strip()]

    def _save_state(self) -> Any:
        """A picklable copy of the episode state (by default the `episode_fields`), or `None` to make snapshots
        replay actions instead."""
        if not self.episode_fields:
            return None
        return {name: getattr(self, name) for name in self.episode_fields}

    def _load_state(self, state: Any) -> None:
        """Puts back a state made by `_save_state`."""
        if not self.episode_fields:
            raise TypeError(f"{type(self).__name__} saves no native state, so it cannot load one")
        for name in self.episode_fields:
            setattr(self, name, state[name])

    # ----------------------------------------------------------------- Gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Starts a new episode; `options={"task_id": ...}` picks a task where the family has ids.

        The episode counts as started only once `_begin` succeeded: if it raises (an unknown task id), the env
        is left with no episode, so `step()` and `snapshot()` refuse as before a first reset.
        """
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(f"reset() options must be a dict or None; got {type(options).__name__}")
        super().reset(seed=seed)
        self._end_episode("the last reset() failed")
        start_options = dict(options or {})
        start_rng_state = copy.deepcopy(self.np_random.bit_generator.state)
        observation = self._begin(dict(start_options))
        self._seed = seed
        self._options = start_options
        self._start_rng_state = start_rng_state
        self._episode_over = False
        self._last_observation = observation
        self._render_if_human()
        return observation, self._info(verdict=None, parse_error=None)

    def _end_episode(self, reason: str) -> None:
        """Forgets the episode so nothing can step, snapshot or pay for it again; `reason` is said on `step()`."""
        self._actions = []
        self._episode_over = True
        self._not_running = reason
        self._start_rng_state = None

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Plays one turn of model text; bad text is a format-penalty turn, never an exception."""
        if not isinstance(action, str):
            raise TypeError(
                f"{type(self).__name__}.step() takes the model's text as a str; got {type(action).__name__}. "
                "Decode token ids to text before stepping."
            )
        if self._episode_over:
            raise EpisodeOverError(f"{self._not_running}; call reset() before step()")
        self._actions.append(action)
        parse_error: str | None = None
        if self.wait_action and _WAIT.search(action):
            transition = Transition(WAIT_REPLY, Verdict(reward=0.0, passed=False, feedback=WAIT_REPLY), False)
        else:
            try:
                parsed = self.parse_action(action)
            except ActionParseError as error:
                parse_error = str(error) or "no action found"
                transition = self._format_turn(parse_error)
            else:
                transition = self._apply(parsed)
        terminated = bool(transition.terminated)
        truncated = not terminated and self.on_last_turn
        self._episode_over = terminated or truncated
        self._not_running = "the episode is over"
        self._last_observation = transition.observation
        self._render_if_human()
        info = self._info(verdict=transition.verdict, parse_error=parse_error)
        return transition.observation, float(transition.verdict.reward), terminated, truncated, info

    def render(self) -> str | None:  # type: ignore[override]
        """`ansi`: returns the last observation; `human`: prints it (done on every reset/step)."""
        if self.render_mode == "ansi":
            return self._last_observation
        return None

    # ----------------------------------------------------------------- snapshots
    def snapshot(self) -> Snapshot:
        """A picklable point in the current episode (native state copy when the family has one)."""
        if self._start_rng_state is None:
            raise RuntimeError("nothing to snapshot: call reset() first")
        return Snapshot(
            seed=self._seed,
            options=dict(self._options),
            actions=tuple(self._actions),
            state=copy.deepcopy(self._save_state()),
            start_rng_state=copy.deepcopy(self._start_rng_state),
            rng_state=copy.deepcopy(self.np_random.bit_generator.state),
            episode_over=self._episode_over,
            last_observation=self._last_observation,
        )

    def restore(self, snapshot: Snapshot) -> str:
        """Puts the env back at `snapshot` and returns the observation the agent saw there.

        If restoring fails, the env is left with no episode (as after a failed `reset()`), never half-restored.
        """
        try:
            self._restore(snapshot)
        except BaseException:
            self._end_episode("the last restore() failed")
            raise
        return self._last_observation

    def _restore(self, snapshot: Snapshot) -> None:
        self._seed = snapshot.seed
        self._options = dict(snapshot.options)
        if snapshot.state is not None:
            self._load_state(copy.deepcopy(snapshot.state))
            if snapshot.rng_state is not None:
                self.np_random.bit_generator.state = copy.deepcopy(snapshot.rng_state)
            self._actions = list(snapshot.actions)
            self._episode_over = snapshot.episode_over
            self._not_running = "the episode is over"
            self._last_observation = snapshot.last_observation
        else:
            self._replay(snapshot)
        self._start_rng_state = copy.deepcopy(snapshot.start_rng_state)

    def _replay(self, snapshot: Snapshot) -> None:
        if snapshot.start_rng_state is not None:
            self.np_random.bit_generator.state = copy.deepcopy(snapshot.start_rng_state)
        self._actions = []
        self._episode_over = True
        self._last_observation = self._begin(dict(self._options))
        self._episode_over = False
        for action in snapshot.actions:
            self.step(action)

    # ----------------------------------------------------------------- shared machinery
    def _format_turn(self, error: str) -> Transition:
        feedback = f"Could not read an action from your reply: {error}. Expected {self.action_format}."
        verdict = Verdict(reward=-self.format_penalty, passed=False, feedback=feedback, details={"parse_error": error})
        return Transition(observation=f"{feedback}\n\n{self.observation()}", verdict=verdict, terminated=False)

    def _info(self, verdict: Verdict | None, parse_error: str | None) -> dict[str, Any]:
        return {
            "feedback": verdict.feedback if verdict is not None else "",
            "verdict": verdict,
            "privileged": self.privileged(),
            "task_id": self.task_id,
            "parse_error": parse_error,
            "turn": len(self._actions),
        }

    def _render_if_human(self) -> None:
        if self.render_mode == "human":
            print(self._last_observation)
