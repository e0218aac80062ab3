"""reflectgym.distributed: scale-out on Ray (rollout workers as actors, or each env in an actor of its own while
the caller keeps the policy). Needs the `ray` extra."""

from reflectgym.distributed.envs import EnvActorConfig, EnvActorError, RemoteEnv, remote_env_factory
from reflectgym.distributed.rollouts import RayRolloutConfig, RayRolloutPool, RolloutWorker, WorkerStartError

__all__ = [
    "EnvActorConfig",
    "EnvActorError",
    "RayRolloutConfig",
    "RayRolloutPool",
    "RemoteEnv",
    "RolloutWorker",
    "WorkerStartError",
    "remote_env_factory",
]
