"""`SokobanEnv`: Sokoban as a text environment with feedback in words."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

from reflectgym.core import TextEnv, Transition, Verdict
from reflectgym.envs.sokoban import feedback as words
from reflectgym.envs.sokoban.actions import WAIT, parse_moves
from reflectgym.envs.sokoban.board import MOVE_LETTERS, MOVE_NAMES
from reflectgym.envs.sokoban.deadlock import Deadlock, dead_squares, deadlock_at
from reflectgym.envs.sokoban.game import Outcome, SokobanGame
from reflectgym.envs.sokoban.generator import generate_level
from reflectgym.envs.sokoban.level import Level, LevelFormatError, load_levels, parse_level
from reflectgym.envs.sokoban.solver import SokobanSolver, Solution

SOLVE_SECONDS = 10.0
"""Time the solver gets for a loaded level's plan, a hint or an oracle move."""

BOXOBAN_MAX_STEPS = 120
"""The step limit of DeepMind's own Boxoban environment, which its levels are made for (suggested in warnings)."""

SHAPING = 0.1
"""Shaped reward per box put on a goal (taken back when it leaves the goal)."""

_INDEX = re.compile(r"[0-9]{1,9}")
"""A level index as a task_id: ASCII digits only (`str.isdigit` also takes '²', which `int` refuses)."""


class SokobanEnv(TextEnv[tuple[int, ...]]):
    """Sokoban: push every box onto a goal, by text.

    ## Description
    The classic warehouse puzzle. Levels are generated (a random room, boxes scrambled by playing backwards,
    then confirmed and measured by a push-optimal solver, so every level is solvable within the step limit) or
    loaded from level files (XSB, SOK, Boxoban, SLC XML; see `level`). The same seed gives the same level.

    ## Observation
    The grid in XSB notation (`#` wall, `@` you, `+` you on a goal, `$` box, `*` box on a goal, `.` goal,
    space floor), then `Boxes on goals: k/n. Steps left: s.` The first observation starts with the rules and
    legend (unless `show_legend=False`); every later one starts with this turn's feedback.

    ## Actions
    Text. `up`, `down`, `left`, `right` (also `north/south/west/east`, arrows, or `U D L R` when the reply is
    only moves), and `wait`, a no-op that still costs a step. An `<answer>…</answer>`, `\\boxed{…}` or
    `Action: …` part is read if present; in free text the last move word counts. With `multi_move=True` a turn
    may hold several moves (`"up up left"`, `"UUL"`; in free text the last run of move words, as in "so left,
    then up"), played in order until one is blocked or the level is solved. Text without a move is a turn with a
    format penalty.

    ## Feedback
    `binary`: solved or not. `diagnostic`: what the move did — moved, pushed a box to row R, column C (onto a
    goal?), hit a wall, could not push a box into a wall or into another box — and whether the push made a
    deadlock: a box on a dead square or a freeze (which box, where, and the boxes frozen with it); boxes on
    goals count. `hint`: diagnostic plus the solver's word on the position — still solvable in N pushes and a
    good next move, or lost — never the whole plan.

    ## Reward
    1 on the turn the last box reaches its goal, else 0; minus the format penalty (0.1) for a turn without a
    move. With `shaped_reward=True`, also +0.1 for each box pushed onto a goal and -0.1 for each pushed off one.

    ## Episode end
    Terminated when every box is on a goal. Truncated after `max_steps` turns. A deadlock does not end the
    episode (the feedback says it is lost; `reset()` starts over).

    ## Arguments
    * `size` — `(rows, cols)` of generated levels, outer walls included, or one number for a square (default
      `(6, 6)`).
    * `num_boxes` — boxes in generated levels (default 2).
    * `max_steps` — turns per episode (default 40); generated levels are solvable in that many moves. A loaded
      level whose optimal plan is longer is played all the same, with a warning: most Boxoban levels need more than
      40 moves (Boxoban's own env allows 120).
    * `levels` — play these instead of generating: a path to an XSB / SOK / Boxoban / SLC file, XSB text of one
      or more levels (run-length encoded or `|`-joined rows too), or a list of level texts.
      `reset(options={"task_id": ...})` picks one by title or index, else the seed does.
    * `min_solution_length` — least number of pushes in a generated level's optimal solution (difficulty;
      default: two per box).
    * `feedback` — `"binary"`, `"diagnostic"` (default) or `"hint"`.
    * `shaped_reward` — add the box-on-goal shaping above (default False).
    * `multi_move` — allow several moves per turn (default False).
    * `render_mode` — `"ansi"` or `"human"`.
    * `show_legend` — put the rules and legend in the first observation (default True).
    * `wait_action` — take `Action: wait` as a no-op that costs a step and is answered "ok." (Agent-R's revision
      turn; default False).

    `info["privileged"]` holds the push-optimal plan from the start in LURD notation (teachers only).

    ## Version history
    * v0: first version.
    """

    action_format: ClassVar[str] = (
        "a move: up, down, left, right or wait (e.g. 'up' or '<answer>left</answer>'; "
        "several in one turn, like 'up up left', only with multi_move=True)"
    )
    action_examples: ClassVar[tuple[str, ...]] = ("up", "down", "left", "right", "wait")

    def __init__(
        self,
        *,
        size: int | tuple[int, int] | list[int] = (6, 6),
        num_boxes: int = 2,
        max_steps: int | None = 40,
        levels: str | Path | Iterable[str] | None = None,
        min_solution_length: int | None = None,
        feedback: str = "diagnostic",
        shaped_reward: bool = False,
        multi_move: bool = False,
        render_mode: str | None = None,
        show_legend: bool = True,
        wait_action: bool = False,
    ) -> None:
        super().__init__(feedback=feedback, max_turns=max_steps, render_mode=render_mode, wait_action=wait_action)
        rows, cols = (int(size), int(size)) if isinstance(size, int) else (int(value) for value in size)
        self.size = (rows, cols)
        self.num_boxes = int(num_boxes)
        self.max_steps = max_steps
        self.min_solution_length = min_solution_length
        self.shaped_reward = bool(shaped_reward)
        self.multi_move = bool(multi_move)
        self.show_legend = bool(show_legend)
        self.levels: list[Level] | None = None if levels is None else load_levels(levels)
        self._solutions: dict[int, Solution] = {}
        self._level: Level | None = None
        self._task_id: str | None = None
        self._game: SokobanGame | None = None
        self._solver: SokobanSolver | None = None
        self._dead = 0
        self._start_plan: str | None = None
        self._plan_left: str | None = None
        self._lost: Deadlock | None = None
        self._unsolvable = False
        self._gave_up_at: tuple[int, int] | None = None
        self._warned_too_long = False

    # ----------------------------------------------------------------- episode start
    def _begin(self, options: dict[str, Any]) -> str:
        level, task_id, solution = self._choose_level(options.get("task_id"))
        self._start(level, task_id, solution)
        observation = self.observation()
        return f"{words.LEGEND}\n\n{observation}" if self.show_legend else observation

    def task_ids(self) -> list[str] | None:
        """The loaded levels' ids as `reset` reports them: each level's title where the titles tell the levels apart
        (level files number them from 1), else its index (None for generated levels). Titles win over indices
        when a task id is looked up, so indices alone would be off by one in a file titled 1, 2, 3..."""
        if self.levels is None:
            return None
        titles = [level.title for level in self.levels]
        if all(title is not None for title in titles) and len(set(titles)) == len(titles):
            return [str(title) for title in titles]
        if any(title is not None and _INDEX.fullmatch(title) for title in titles):
            raise LevelFormatError(
                "some levels are titled with numbers and titles repeat or are missing: an index could name another "
                "level; give every level a distinct title"
            )
        return [str(index) for index in range(len(self.levels))]

    def _choose_level(self, task_id: Any) -> tuple[Level, str, Solution | None]:
        if self.levels is not None and (task_id is None or not _looks_like_level(task_id) or self._titled(task_id)):
            index = self._level_index(task_id)
            level = self.levels[index]
            if index not in self._solutions:
                solution = SokobanSolver(level).solve(time_limit=SOLVE_SECONDS)
                self._solutions[index] = solution
                if not solution.solved:
                    name = level.title if level.title is not None else f"level {index}"
                    why = "it has no solution" if solution.status == "unsolvable" else "the solver gave up on it"
                    warnings.warn(
                        f"{name}: {why} ({solution.status} after {solution.seconds:.1f} s): episodes of it have no "
                        "teacher solution and the oracle cannot play it",
                        stacklevel=2,
                    )
                self._warn_if_too_long(
                    f"level {level.title!r}" if level.title is not None else f"level {index}", solution
                )
            return level, self._id_of(index), self._solutions[index]
        if task_id is not None:
            if not _looks_like_level(task_id):
                raise ValueError(f"task_id {task_id!r} is not a level; without levels= it must be XSB rows joined by |")
            level = parse_level(str(task_id))
            solution = SokobanSolver(level).solve(time_limit=SOLVE_SECONDS)
            self._warn_if_too_long("the level given as task_id", solution)
            return level, level.one_line(), solution
        max_moves = None if self.multi_move else self.max_steps
        generated = generate_level(
            self.np_random, self.size, self.num_boxes, min_pushes=self.min_solution_length, max_moves=max_moves
        )
        return generated.level, generated.level.one_line(), generated.solution

    def _titled(self, task_id: Any) -> bool:
        """Whether a loaded level has this title (titles like `Boxxle #1` hold a `#` but name no level text)."""
        return self.levels is not None and any(level.title == str(task_id) for level in self.levels)

    def _id_of(self, index: int) -> str:
        """The task id `reset` reports for a loaded level, as `task_ids` lists it: its title where the titles tell
        the levels apart, else its index (two levels titled "Level" must not report the same id)."""
        assert self.levels is not None
        titles = [level.title for level in self.levels]
        title = titles[index]
        unique = title is not None and None not in titles and len(set(titles)) == len(titles)
        return str(title) if unique else str(index)

    def _warn_if_too_long(self, name: str, solution: Solution) -> None:
        """Warns, once per env, when a loaded level's optimal plan has more moves than `max_steps` turns: its
        episodes are truncated before even a perfect player can solve them, and nothing else would say so (most
        Boxoban levels need more than the default 40 moves; Boxoban's own env allows 120). With `multi_move` a turn
        holds several moves, so any plan may fit."""
        plan = solution.plan if solution.solved else None
        if plan is None or self.multi_move or self.max_steps is None or len(plan) <= self.max_steps:
            return
        if self._warned_too_long:
            return
        self._warned_too_long = True
        warnings.warn(
            f"{name}: its optimal plan takes {len(plan)} moves, more than max_steps={self.max_steps}, so its episodes "
            "end before it can be solved; pass a larger max_steps (Boxoban's own env uses "
            f"{BOXOBAN_MAX_STEPS}) or multi_move=True. Other levels too long for max_steps are not warned about again.",
            stacklevel=3,
        )

    def _level_index(self, task_id: Any) -> int:
        assert self.levels is not None
        if task_id is None:
            return int(self.np_random.integers(len(self.levels)))
        for index, level in enumerate(self.levels):
            if level.title is not None and level.title == str(task_id):
                return index
        if _INDEX.fullmatch(str(task_id)) and int(task_id) < len(self.levels):
            return int(task_id)
        raise LevelFormatError(f"no level with title or index {task_id!r} among the {len(self.levels)} loaded")

    def _start(self, level: Level, task_id: str, solution: Solution | None) -> None:
        if self._level is level and self._game is not None:
            self._game = SokobanGame(level, self._game.board)
        else:
            self._game = SokobanGame(level)
            self._solver = None
            self._dead = dead_squares(self._game.board)
        self._level, self._task_id = level, task_id
        plan = solution.plan if solution is not None and solution.solved else None
        self._start_plan = self._plan_left = plan
        self._lost = None
        self._unsolvable = solution is not None and solution.status == "unsolvable"

    # ----------------------------------------------------------------- hooks
    def parse_action(self, text: str) -> tuple[int, ...]:
        return parse_moves(text, multi_move=self.multi_move)

    def _apply(self, action: tuple[int, ...]) -> Transition:
        game = self._require_game()
        board = game.board
        before = game.on_goals
        notes: list[str] = []
        for number, code in enumerate(action):
            if code == WAIT:
                notes.append("You waited; nothing moved.")
                continue
            player = game.player
            outcome = game.move(code)
            if outcome >= Outcome.WALL:
                notes.append(words.blocked(board, outcome, code, player))
                if number + 1 < len(action):
                    notes.append(f"The {len(action) - number - 1} move(s) after it were not played.")
                break
            self._follow_plan(code)
            if outcome == Outcome.PUSHED:
                box = game.player + board.steps[code]
                notes.append(words.pushed(board, code, box))
                if self._lost is None:
                    found = deadlock_at(board, self._dead, game.boxes, box)
                    if found is not None:
                        self._lost = found
                        notes.append(words.deadlock(board, found))
            elif len(action) == 1:
                notes.append(f"You moved {MOVE_NAMES[code]}.")
            if game.solved:
                break
        solved = game.solved
        reward = 1.0 if solved else 0.0
        if self.shaped_reward:
            reward += SHAPING * (game.on_goals - before)
        text = self._feedback(notes, solved, len(action))
        verdict = Verdict(
            reward=reward,
            passed=solved,
            feedback=text,
            details={"boxes_on_goals": game.on_goals, "deadlock": self._lost.kind if self._lost else None},
        )
        return Transition(observation=f"{text}\n\n{self.observation()}", verdict=verdict, terminated=solved)

    def _feedback(self, notes: list[str], solved: bool, moves: int) -> str:
        game = self._require_game()
        total = len(game.level.boxes)
        if solved:
            return f"Solved! All {total} boxes are on goals."
        if self.feedback == "binary":
            return "Not solved yet."
        if moves > 1:
            notes.insert(0, f"You played {moves} moves.")
        if self._lost is not None and not any(note.startswith("Deadlock") for note in notes):
            notes.append("The level is deadlocked since an earlier push and can no longer be solved.")
        notes.append(f"Boxes on goals: {game.on_goals}/{total}.")
        if self.feedback == "hint":
            notes.append(self._hint())
        return " ".join(notes)

    def observation(self) -> str:
        game = self._require_game()
        left = "" if self.max_turns is None else f" Steps left: {self.max_turns - len(self._actions)}."
        return f"{game.text()}\nBoxes on goals: {game.on_goals}/{len(game.level.boxes)}.{left}"

    @property
    def task_id(self) -> str | None:
        return self._task_id

    def privileged(self) -> str | None:
        if self._start_plan is None:
            return None
        pushes = sum(letter.isupper() for letter in self._start_plan)
        return (
            f"Push-optimal plan from the start ({pushes} pushes, {len(self._start_plan)} moves; lowercase walks, "
            f"uppercase pushes): {self._start_plan}"
        )

    def leak_markers(self) -> list[str]:
        plan = self._start_plan
        return [plan] if plan is not None and len(plan) >= self.min_leak_marker_length else []

    def oracle_action(self) -> str:
        """The next move of a push-optimal plan from the current position (`wait` if none exists)."""
        plan = self._ensure_plan()[1]
        return "wait" if not plan else MOVE_NAMES[MOVE_LETTERS.index(plan[0].lower())]

    # ----------------------------------------------------------------- snapshots
    def _save_state(self) -> Any:
        game = self._require_game()
        return {
            "level": self._level,
            "task_id": self._task_id,
            "game": game.state(),
            "start_plan": self._start_plan,
            "plan_left": self._plan_left,
            "lost": self._lost,
            "unsolvable": self._unsolvable,
        }

    def _load_state(self, state: Any) -> None:
        level: Level = state["level"]
        if self._level != level or self._game is None:
            self._game = SokobanGame(level)
            self._solver = None
            self._dead = dead_squares(self._game.board)
        self._level, self._task_id = level, state["task_id"]
        self._game.set_state(state["game"])
        self._start_plan, self._plan_left = state["start_plan"], state["plan_left"]
        self._lost, self._unsolvable = state["lost"], state["unsolvable"]

    # ----------------------------------------------------------------- solver help
    def _follow_plan(self, code: int) -> None:
        plan = self._plan_left
        if plan and plan[0].lower() == MOVE_LETTERS[code]:
            self._plan_left = plan[1:]
        else:
            self._plan_left = None

    def _ensure_plan(self) -> tuple[Solution | None, str | None]:
        """An optimal plan from here: the cached remainder, or a fresh solve."""
        game = self._require_game()
        if self._plan_left is not None:
            pushes = sum(letter.isupper() for letter in self._plan_left)
            return Solution("solved", self._plan_left, pushes, 0, 0.0), self._plan_left
        if self._lost is not None or self._unsolvable:
            return Solution("unsolvable", None, None, 0, 0.0), None
        if self._gave_up_at == (game.boxes, game.player):
            return Solution("gave_up", None, None, 0, 0.0), None
        if self._solver is None:
            self._solver = SokobanSolver(game.level, game.board)
        solution = self._solver.solve(game.boxes, game.player, time_limit=SOLVE_SECONDS)
        if solution.status == "gave_up":  # don't spend the budget again on the same position
            self._gave_up_at = (game.boxes, game.player)
        if solution.solved:
            self._plan_left = solution.plan
        elif solution.status == "unsolvable":
            self._unsolvable = True
        return solution, solution.plan

    def _hint(self) -> str:
        solution, plan = self._ensure_plan()
        assert solution is not None
        move = MOVE_NAMES[MOVE_LETTERS.index(plan[0].lower())] if plan else None
        return words.hint(solution, move)

    def _require_game(self) -> SokobanGame:
        if self._game is None:
            raise RuntimeError("call reset() first")
        return self._game


def _looks_like_level(task_id: Any) -> bool:
    return isinstance(task_id, str) and "#" in task_id
