"""Rollouts across a Ray cluster: rollout workers as Ray actors, each a `RolloutEngine` with its own policy and envs.

For when one machine's envs are the bound (browsers, sandboxes, CPU-heavy verifiers) or a policy per GPU is
wanted: the driver splits the seeds into shards, hands each idle actor the next one, and yields every group of
episodes as its shard comes back, numbered (and so seeded) as `RolloutEngine.run` numbers them for the whole seed
list. Inside an actor everything is the engine's: batched policy calls, an env thread per episode, per-episode
limits, and an env's failure ending only its episode.

An actor that dies (its node lost, killed, out of memory) takes only the shard it was running: a fresh actor runs
that shard again (`max_shard_retries`), and past that its episodes come back as trajectories that say so
(`stop_reason` "error"), so a run never loses the rest of its data. So do a shard whose run raised in its actor
and an episode whose trajectory cannot be sent back (an env that put a lock or a handle in its info). An actor
that cannot start (its policy or env factory raises, or the cluster cannot place it within `start_timeout_s`) is a
`WorkerStartError`, raised at once.

Policies and envs are built inside the actors from factories (`make_policy`, `make_env`), which Ray pickles
(cloudpickle); so a policy is loaded once per actor, where its GPU is (`num_gpus_per_worker`), or points at a
shared OpenAI-compatible server.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

try:
    import ray
    from ray.cloudpickle import cloudpickle
    from ray.exceptions import GetTimeoutError, RayError, RayTaskError
except ImportError as missing:  # pragma: no cover - depends on the install
    raise ImportError("reflectgym.distributed needs Ray: pip install 'reflectgym[ray]'") from missing

from reflectgym.agents.policy import Policy
from reflectgym.agents.rollout import EnvFactory, RolloutConfig, RolloutEngine, in_seed_order
from reflectgym.core.trajectory import Trajectory
from reflectgym.distributed.cluster import check_room, join_cluster

PolicyFactory = Callable[[], Policy]


@dataclass(frozen=True)
class RayRolloutConfig:
    """How many rollout actors there are, what each reserves, and how seeds are shared among them."""

    num_workers: int = 2
    """Rollout actors (each runs `RolloutConfig.num_envs` episodes at once)."""
    num_cpus_per_worker: float = 1.0
    """CPUs Ray reserves for each actor (its env threads, sandboxes and browsers run there)."""
    num_gpus_per_worker: float = 0.0
    """GPUs Ray reserves for each actor: a local transformers or vLLM policy per actor; 0 for a served policy."""
    seeds_per_shard: int = 8
    """Seeds handed to an actor at a time: smaller shards balance load better and lose less with a dead actor,
    larger ones fill the policy's batches better."""
    max_shard_retries: int = 1
    """Times a shard lost with its actor runs again on a fresh actor before its episodes come back as errors."""
    runtime_env: dict[str, Any] | None = None
    """Ray runtime environment of the actors (environment variables, working dir, pip); None: the driver's."""
    address: str | None = None
    """Cluster to join when Ray is not initialised yet ("auto", "ray://head:10001"); None starts a local one
    (or joins `RAY_ADDRESS`), as `ray.init()` does."""
    start_timeout_s: float = 600.0
    """Seconds the actors may take to start (placed by the cluster, the policy loaded) before it is an error."""

    def __post_init__(self) -> None:
        if self.num_workers < 1 or self.seeds_per_shard < 1:
            raise ValueError(
                f"num_workers ({self.num_workers}) and seeds_per_shard ({self.seeds_per_shard}) must be >= 1"
            )
        if self.max_shard_retries < 0 or self.num_cpus_per_worker < 0 or self.num_gpus_per_worker < 0:
            raise ValueError("max_shard_retries, num_cpus_per_worker and num_gpus_per_worker must be >= 0")
        if not self.start_timeout_s > 0:
            raise ValueError(f"start_timeout_s must be positive; got {self.start_timeout_s}")


class WorkerStartError(RuntimeError):
    """A rollout actor could not start: its policy or env factory raised, or the cluster could not place it."""


@dataclass(frozen=True)
class _Shard:
    """Consecutive seeds of the run: group `first + i` plays `seeds[i]`."""

    first: int
    seeds: tuple[int, ...]
    task_ids: tuple[str, ...] | None
    tries: int = 0


class RolloutWorker:
    """One rollout actor's state: a policy and a `RolloutEngine` over its own envs (run inside a Ray actor)."""

    def __init__(self, make_policy: PolicyFactory, make_env: EnvFactory, env_id: str, config: RolloutConfig) -> None:
        self.engine = RolloutEngine(make_policy(), make_env, env_id, config)

    def policy_name(self) -> str:
        """The policy's name (and a sign that the actor started)."""
        return self.engine.policy.name

    def run_shard(
        self, seeds: Sequence[int], options: dict[str, Any] | None, task_ids: Sequence[str] | None, first_group: int
    ) -> list[list[Trajectory]]:
        """Every group of the shard, numbered from `first_group`; a trajectory that cannot be sent back is replaced
        by one that says why (the others still go)."""
        groups = list(self.engine.run(seeds, options, task_ids=task_ids, first_group=first_group))
        return [[_sendable(trajectory) for trajectory in group] for group in groups]

    def stats(self) -> dict[str, float]:
        """The engine's totals: seconds inside the policy, policy calls, env steps."""
        return dict(self.engine.stats)


class RayRolloutPool:
    """Plays episodes of one env with one policy on Ray actors; `run` and `collect` as `RolloutEngine`'s.

    Args:
        make_policy: Builds the policy inside each actor.
        make_env: Makes a fresh env (inside each actor, on its env threads).
        env_id: The env's id, for records and the system prompt.
        rollout: Each actor's engine: envs in flight, group size, limits, sampling.
        config: Actors, their resources and the shards.
    """

    def __init__(
        self,
        make_policy: PolicyFactory,
        make_env: EnvFactory,
        env_id: str,
        rollout: RolloutConfig | None = None,
        config: RayRolloutConfig | None = None,
    ) -> None:
        self.rollout = rollout or RolloutConfig()
        self.config = config or RayRolloutConfig()
        self.env_id = env_id
        fixed = join_cluster(self.config.address, self.config.runtime_env)
        wanted = {"CPU": self.config.num_cpus_per_worker, "GPU": self.config.num_gpus_per_worker}
        check_room(
            self.config.num_workers,
            wanted,
            f"{self.config.num_workers} rollout workers",
            fixed,
            self.config.start_timeout_s,
        )
        self._actor_class = ray.remote(RolloutWorker).options(
            num_cpus=self.config.num_cpus_per_worker,
            num_gpus=self.config.num_gpus_per_worker,
            runtime_env=self.config.runtime_env,
        )
        self._args = (make_policy, make_env, env_id, self.rollout)
        self.policy_name = ""
        """The policy's name, as the actors report it."""
        self.lost_actors = 0
        """Actors that died during runs and were replaced."""
        self._actors: list[Any] = [None] * self.config.num_workers
        """Live actors; None where one was killed and is started again at the next run."""
        self._start_missing_actors()

    def _start_missing_actors(self) -> None:
        """Starts an actor in every empty slot, all at once; raises `WorkerStartError` (with an actor's own error)
        when one cannot start."""
        slots = [slot for slot, actor in enumerate(self._actors) if actor is None]
        for slot in slots:
            self._actors[slot] = self._actor_class.remote(*self._args)
        try:
            refs = [self._actors[slot].policy_name.remote() for slot in slots]
            names = ray.get(refs, timeout=self.config.start_timeout_s)
        except GetTimeoutError as error:
            for slot in slots:
                self._drop_actor(slot)
            raise WorkerStartError(
                f"rollout workers did not start within {self.config.start_timeout_s:g} s "
                f"(the cluster has {ray.available_resources()} free)"
            ) from error
        except RayError as error:
            for slot in slots:
                self._drop_actor(slot)
            raise WorkerStartError(f"a rollout worker could not start: {_cause(error)}") from error
        self.policy_name = names[0] if names else self.policy_name

    def collect(
        self, seeds: Iterable[int], options: dict[str, Any] | None = None, *, task_ids: Sequence[str] | None = None
    ) -> list[Trajectory]:
        """Every trajectory of `run(seeds)`, in seed order (groups stay together)."""
        return in_seed_order(self.run(seeds, options, task_ids=task_ids))

    def run(
        self, seeds: Iterable[int], options: dict[str, Any] | None = None, *, task_ids: Sequence[str] | None = None
    ) -> Iterator[list[Trajectory]]:
        """Plays `group_size` episodes per seed on the actors; yields each shard's groups as the shard comes back.
        `options` go to every `reset`; with `task_ids` (one per seed), group i plays task `task_ids[i]`."""
        seeds = list(seeds)
        if task_ids is not None and len(task_ids) != len(seeds):
            raise ValueError(f"{len(task_ids)} task ids for {len(seeds)} seeds: give one per seed")
        if not self._actors:
            raise RuntimeError("this RayRolloutPool is closed")
        self._start_missing_actors()
        step = self.config.seeds_per_shard
        todo = [
            _Shard(start, tuple(seeds[start : start + step]), _slice(task_ids, start, step))
            for start in range(0, len(seeds), step)
        ]
        todo.reverse()
        idle = list(range(len(self._actors)))
        running: dict[Any, tuple[_Shard, int]] = {}
        try:
            while todo or running:
                while idle and todo:
                    shard, slot = todo.pop(), idle.pop()
                    actor = self._actors[slot]
                    ref = actor.run_shard.remote(list(shard.seeds), options, shard.task_ids, shard.first)
                    running[ref] = (shard, slot)
                done, _ = ray.wait(list(running), num_returns=1)
                shard, slot = running.pop(done[0])
                try:
                    groups = ray.get(done[0])
                except RayTaskError as error:  # the shard's run raised in a live actor: its episodes are errors
                    idle.append(slot)
                    yield from self._error_groups(shard, f"the shard's run failed in its Ray actor: {_cause(error)}")
                    continue
                except RayError as error:  # the actor is gone (killed, out of memory, its node lost), with the shard
                    self._drop_actor(slot)
                    self.lost_actors += 1
                    self._start_missing_actors()
                    idle.append(slot)
                    if shard.tries < self.config.max_shard_retries:
                        todo.append(dataclasses.replace(shard, tries=shard.tries + 1))
                    else:
                        yield from self._error_groups(shard, f"the Ray actor running this episode died: {error}")
                    continue
                idle.append(slot)
                yield from groups
        finally:  # stopped early (the caller broke off, an interrupt): actors still busy are killed, started anew later
            for _, slot in running.values():
                self._drop_actor(slot)

    def _drop_actor(self, slot: int) -> None:
        actor, self._actors[slot] = self._actors[slot], None
        if actor is not None:
            ray.kill(actor)

    def _error_groups(self, shard: _Shard, error: str) -> Iterator[list[Trajectory]]:
        """Trajectories that record the shard's episodes as ended by `error`."""
        for offset, seed in enumerate(shard.seeds):
            task_id = None if shard.task_ids is None else shard.task_ids[offset]
            metadata = {"policy": self.policy_name, "group": shard.first + offset}
            yield [
                _error_trajectory(self.env_id, task_id, seed, {**metadata, "index": index}, error)
                for index in range(self.rollout.group_size)
            ]

    def stats(self) -> dict[str, float]:
        """The engines' totals over all live actors: seconds inside the policy, policy calls, env steps."""
        totals: dict[str, float] = {}
        for stats in ray.get([actor.stats.remote() for actor in self._actors if actor is not None]):
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value
        return totals

    def close(self) -> None:
        """Kills the actors (their envs close with their processes); the Ray cluster stays up. Idempotent."""
        for actor in self._actors:
            if actor is not None:
                ray.kill(actor)
        self._actors = []

    def __enter__(self) -> RayRolloutPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _slice(task_ids: Sequence[str] | None, start: int, count: int) -> tuple[str, ...] | None:
    return None if task_ids is None else tuple(task_ids[start : start + count])


def _sendable(trajectory: Trajectory) -> Trajectory:
    """`trajectory`, or, when it cannot be pickled, a trajectory of the same episode that says why."""
    try:
        cloudpickle.dumps(trajectory)  # what Ray sends the result with
    except Exception as error:
        metadata = {key: trajectory.metadata[key] for key in ("policy", "group", "index") if key in trajectory.metadata}
        why = f"the trajectory could not be sent back from its Ray actor: {type(error).__name__}: {error}"
        return _error_trajectory(trajectory.env_id, trajectory.task_id, trajectory.seed, metadata, why)
    return trajectory


def _error_trajectory(
    env_id: str, task_id: str | None, seed: int | None, metadata: dict[str, Any], error: str
) -> Trajectory:
    """An episode without turns that ended in `error` (`stop_reason` "error", as the engine records one)."""
    return Trajectory(env_id, task_id, seed, metadata={**metadata, "stop_reason": "error", "error": error})


_EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception)\b.*)$", re.MULTILINE)


def _cause(error: BaseException) -> str:
    """The actor's own exception line out of a Ray error (which carries the remote traceback), else its first line."""
    text = str(error)
    lines = _EXCEPTION_LINE.findall(text)
    return lines[-1].strip() if lines else (text.strip().splitlines() or [type(error).__name__])[0]
