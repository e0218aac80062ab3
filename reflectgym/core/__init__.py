"""The shared vocabulary of reflectgym: verdicts, turns, trajectories, snapshots, the `TextEnv` base, tasks and
the registry. `core` imports nothing else of reflectgym."""

from reflectgym.core.audit import LeakReport, audit_feedback_leaks
from reflectgym.core.checks import check_determinism, check_garbage_actions, check_snapshot_roundtrip
from reflectgym.core.env import EpisodeOverError, TextEnv
from reflectgym.core.registry import EnvInfo, env_info, list_envs, make, register, register_task_env
from reflectgym.core.snapshot import Snapshot
from reflectgym.core.spaces import FreeText
from reflectgym.core.task_env import TaskEnv
from reflectgym.core.tasks import (
    ListedTaskSource,
    RowError,
    Task,
    TaskFormatError,
    TaskList,
    TaskSource,
    generic_row,
    load_hf_dataset,
    load_jsonl,
    require,
    tasks_from_rows,
)
from reflectgym.core.trajectory import Trajectory, Turn, read_trajectories, write_trajectories
from reflectgym.core.types import FEEDBACK_LEVELS, ActionParseError, FeedbackLevel, Transition, Verdict

__all__ = [
    "FEEDBACK_LEVELS",
    "ActionParseError",
    "EnvInfo",
    "EpisodeOverError",
    "FeedbackLevel",
    "FreeText",
    "LeakReport",
    "ListedTaskSource",
    "RowError",
    "Snapshot",
    "Task",
    "TaskEnv",
    "TaskFormatError",
    "TaskList",
    "TaskSource",
    "TextEnv",
    "Trajectory",
    "Transition",
    "Turn",
    "Verdict",
    "audit_feedback_leaks",
    "check_determinism",
    "check_garbage_actions",
    "check_snapshot_roundtrip",
    "env_info",
    "generic_row",
    "list_envs",
    "load_hf_dataset",
    "load_jsonl",
    "make",
    "read_trajectories",
    "register",
    "register_task_env",
    "require",
    "tasks_from_rows",
    "write_trajectories",
]
