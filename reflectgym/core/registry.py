"""The reflectgym catalogue: `register`, `make`, `list_envs` over Gymnasium's registry, in one namespace.

Everything registered here is an ordinary Gymnasium env: `gymnasium.make("reflectgym/<Env>-v0")` works after
`import reflectgym`, and `gymnasium.make("reflectgym:reflectgym/<Env>-v0")` without it. The catalogue adds
what Gymnasium's registry does not keep: a one-line description, the family, what the env's privileged
reference is (for the leak audit), and the resources it needs (so tests skip what cannot run here).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from reflectgym.core.task_env import ExtractFn, TaskEnv, VerifyFn, whole_reply
from reflectgym.core.tasks import Task, TaskSource, as_task_source
from reflectgym.core.types import check_feedback_level

NAMESPACE = "reflectgym"

Resource = str
"""A resource an env needs to run: "browser", "docker", "gpu"."""


@dataclass(frozen=True)
class EnvInfo:
    """What the catalogue knows about a registered env.

    Attributes:
        id: The full Gymnasium id, e.g. `reflectgym/Sokoban-v0`.
        description: One line for `reflectgym envs`.
        family: `sokoban`, `code`, `math`, `web` or `custom`.
        reference: What `info["privileged"]` carries (e.g. "optimal plan"), the thing the leak audit guards.
        requires: Resources it needs beyond Python (e.g. `("browser",)`).
    """

    id: str
    description: str
    family: str
    reference: str
    requires: tuple[Resource, ...]


_CATALOGUE: dict[str, EnvInfo] = {}
_BUILT_IN: set[str] = set()
"""Ids `import reflectgym` registered (see `seal_built_ins`): `register` refuses to replace them."""


def qualify(env_id: str) -> str:
    """`Sokoban-v0` → `reflectgym/Sokoban-v0`; ids already in the namespace pass through; others are refused."""
    if "/" not in env_id:
        return f"{NAMESPACE}/{env_id}"
    namespace, _, _ = env_id.partition("/")
    if namespace != NAMESPACE:
        raise ValueError(f"reflectgym ids live in the {NAMESPACE!r} namespace; got {env_id!r}")
    return env_id


def register(
    env_id: str,
    entry_point: str | Callable[..., gym.Env[Any, Any]],
    *,
    description: str = "",
    family: str = "custom",
    reference: str = "reference solution",
    requires: Sequence[Resource] = (),
    kwargs: Mapping[str, Any] | None = None,
    max_episode_steps: int | None = None,
    nondeterministic: bool = False,
) -> str:
    """Registers an env with Gymnasium under the `reflectgym/` namespace and returns its full id.

    Args:
        env_id: `Name-vN`, with or without the `reflectgym/` prefix.
        entry_point: `"module:Class"` (imported only on make) or a callable returning an env.
        description: One line shown by `reflectgym envs`.
        family: The env family, for grouping.
        reference: What the env's privileged text is.
        requires: Resources needed beyond Python ("browser", "docker", "gpu").
        kwargs: Default constructor arguments (a preset); `make(id, **overrides)` overrides them.
        max_episode_steps: Gymnasium's `TimeLimit`, for plain step limits the env does not count itself.
        nondeterministic: Tell `check_env` not to expect same-seed determinism.
    """
    full_id = qualify(env_id)
    if full_id in _BUILT_IN:
        raise ValueError(
            f"{full_id!r} is a built-in env: register yours under another name (e.g. "
            f"{full_id.replace('-v', 'Custom-v', 1)!r}); make({full_id!r}, **kwargs) changes a built-in's settings"
        )
    gym.register(
        id=full_id,
        entry_point=entry_point,
        kwargs=dict(kwargs or {}),
        max_episode_steps=max_episode_steps,
        nondeterministic=nondeterministic,
    )
    _CATALOGUE[full_id] = EnvInfo(
        id=full_id, description=description, family=family, reference=reference, requires=tuple(requires)
    )
    return full_id


def seal_built_ins() -> None:
    """Marks every env registered so far as built-in (`import reflectgym` calls it once its envs are in): code
    that registers an env of its own under a built-in's id gets an error instead of silently replacing it for
    everyone in the process. Re-registering one's own env (a notebook cell run twice) stays allowed."""
    _BUILT_IN.update(_CATALOGUE)


def register_task_env(
    env_id: str,
    tasks: str | os.PathLike[str] | Sequence[Mapping[str, Any] | Task] | TaskSource,
    verify: VerifyFn,
    *,
    description: str = "",
    extract: ExtractFn = whole_reply,
    instructions: str = "",
    max_attempts: int = 1,
    feedback: str = "diagnostic",
    reference: str = "reference answer",
) -> str:
    """Turns a task list and a verify function into a registered env (see `TaskEnv`) and returns its id.

    The tasks are loaded now, so a broken task file fails at registration with its file, line and field.

    `verify(task, answer)` (or `verify(task, answer, feedback=level)`) returns a `Verdict`, a bool (pass or
    fail) or a finite real score (passed at >= 1; numpy scalars such as `np.float32` or `np.bool_` are fine).
    If it raises, or returns a non-finite score or anything else, the answer counts as one that could not be
    verified: reward 0, not passed, feedback saying so with the error (except at the `binary` level), and the
    episode goes on until the attempts run out; a `RuntimeWarning` reports the error.
    """
    source = as_task_source(tasks)
    check_feedback_level(feedback)  # (a bad level fails here, with the tasks, not at the first `make`)
    return register(
        env_id,
        TaskEnv,
        description=description or f"custom tasks judged by {getattr(verify, '__name__', 'a verify function')}",
        family="custom",
        reference=reference,
        kwargs={
            "tasks": source,
            "verify": verify,
            "extract": extract,
            "instructions": instructions,
            "max_attempts": max_attempts,
            "feedback": feedback,
        },
    )


def make(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """`gymnasium.make` with the namespace filled in: `reflectgym.make("Sokoban-v0", feedback="hint")`."""
    return gym.make(qualify(env_id), **kwargs)


def list_envs(family: str | None = None) -> list[EnvInfo]:
    """Every env in the catalogue (built-in and user-registered), sorted by id, optionally one family."""
    infos = sorted(_CATALOGUE.values(), key=lambda info: info.id)
    return [info for info in infos if family is None or info.family == family]


def env_info(env_id: str) -> EnvInfo:
    """The catalogue entry of one env; `KeyError` names the known ids when there is none."""
    full_id = qualify(env_id)
    if full_id not in _CATALOGUE:
        known = ", ".join(sorted(_CATALOGUE)) or "none"
        raise KeyError(f"no reflectgym env {full_id!r}; registered: {known}")
    return _CATALOGUE[full_id]
