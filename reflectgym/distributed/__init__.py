"""reflectgym.distributed: scale-out on Ray (rollout workers as actors). Needs the `ray` extra."""

from reflectgym.distributed.rollouts import RayRolloutConfig, RayRolloutPool, RolloutWorker, WorkerStartError

__all__ = ["RayRolloutConfig", "RayRolloutPool", "RolloutWorker", "WorkerStartError"]
