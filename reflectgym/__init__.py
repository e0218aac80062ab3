"""reflectgym: Gymnasium environments whose sandboxed verifiers answer in text feedback, and trainers that
learn from it.

Importing the package registers the built-in environments (without importing any browser, torch or docker)::

    import gymnasium as gym
    import reflectgym

    env = gym.make("reflectgym/Sokoban-v0", feedback="hint")
"""

from reflectgym.core import (
    ActionParseError,
    Task,
    TaskEnv,
    TextEnv,
    Trajectory,
    Transition,
    Turn,
    Verdict,
    audit_feedback_leaks,
    env_info,
    list_envs,
    make,
    register,
    register_task_env,
)
from reflectgym.envs import catalogue as _catalogue

__version__ = "0.1.0"

__all__ = [
    "ActionParseError",
    "Task",
    "TaskEnv",
    "TextEnv",
    "Trajectory",
    "Transition",
    "Turn",
    "Verdict",
    "__version__",
    "audit_feedback_leaks",
    "env_info",
    "list_envs",
    "make",
    "register",
    "register_task_env",
]

_catalogue.register_builtin_envs()
