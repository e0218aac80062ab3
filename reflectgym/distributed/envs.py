"""Envs in Ray actors: each env's base env runs in an actor of its own, anywhere on the cluster, while the
caller (a trainer, its policy on the GPU, the rollout engine) and Gymnasium's wrappers stay in this process.

For runs whose envs, not the policy, are what one machine cannot hold enough of: browsers, sandboxed code,
CPU-heavy verifiers. `remote_env_factory(env_id, env_kwargs)` stands in for `lambda: gym.make(env_id,
**env_kwargs)`. Every env it makes is `gym.make` of the env's own spec with the entry point swapped for a
`RemoteEnv`, so:

* the wrappers the spec names (time limit, order enforcing, the passive env checker, its additional wrappers) run
  here, exactly as for a local env;
* `env.unwrapped` is the `RemoteEnv`, and any public attribute or method it does not have itself (`snapshot`,
  `restore`, `max_attempts`, `oracle_action`, ...) is the actor's env's, read or called through Ray. Values
  travel by pickle, so a snapshot must be picklable (reflectgym's are).

The spec itself is sent to the actor, so an env registered at run time (a script's `register_task_env`, a class
defined in `__main__`) is made there too; a spec whose entry point is a module path needs that module importable
on every node (Ray's `runtime_env`).

Failures stay with their env: an actor that dies (its node lost, the env's process crashed or was killed for
memory) raises an `EnvActorError` from that env's call, and a call past `call_timeout_s` a `TimeoutError`; the
rollout engine records either as that episode's error and makes a fresh env (a new actor) for the next one. An
actor that cannot be placed within `start_timeout_s`, or whose env's constructor raises, is an `EnvActorError`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

try:
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError
except ImportError as missing:  # pragma: no cover - depends on the install
    raise ImportError("reflectgym.distributed needs Ray: pip install 'reflectgym[ray]'") from missing

from reflectgym.agents.rollout import EnvFactory
from reflectgym.distributed.cluster import check_room, join_cluster


@dataclass(frozen=True)
class EnvActorConfig:
    """Where env actors run and what each reserves."""

    num_cpus: float = 1.0
    """CPUs Ray reserves for each env actor (its env, and the browser or sandboxes the env starts)."""
    call_timeout_s: float | None = 600.0
    """Seconds one call on the env (reset, step, snapshot, ...) may take before it raises, so a hung actor is
    killed with its env rather than kept (None: wait for ever; the rollout engine's `env_timeout` still ends the
    episode, but the actor then lives as long as the process)."""
    start_timeout_s: float = 600.0
    """Seconds an actor may take to be placed by the cluster and make its env before it is an error."""
    address: str | None = None
    """Cluster to join when Ray is not initialised yet ("auto", "ray://head:10001"); None starts a local one (or
    joins `RAY_ADDRESS`), as `ray.init()` does."""
    runtime_env: dict[str, Any] | None = None
    """Ray runtime environment of the actors (environment variables, working dir, pip); None: the driver's."""

    def __post_init__(self) -> None:
        if self.num_cpus < 0:
            raise ValueError(f"num_cpus must be >= 0; got {self.num_cpus}")
        for name in ("call_timeout_s", "start_timeout_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive; got {value}")


class EnvActorError(RuntimeError):
    """An env actor could not start (the cluster could not place it, or the env's constructor raised), or died."""


class EnvHost:
    """The actor's side: one env made from its spec; calls and attribute reads go to its base env (the wrappers
    run on the caller's side)."""

    def __init__(self, spec: EnvSpec, kwargs: dict[str, Any]) -> None:
        self.env = gym.make(spec, **kwargs)
        self.base = self.env.unwrapped

    def describe(self) -> tuple[Any, Any, dict[str, Any], str | None]:
        """The spaces, metadata and render mode, which the caller's side keeps as its own."""
        base = self.base
        return base.observation_space, base.action_space, dict(base.metadata), base.render_mode

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """`base.<name>(*args, **kwargs)`."""
        return getattr(self.base, name)(*args, **kwargs)

    def attribute(self, name: str) -> tuple[bool, Any]:
        """(True, None) for a method (the caller calls it through `call`), else (False, its value)."""
        value = getattr(self.base, name)
        return (True, None) if callable(value) else (False, value)

    def close(self) -> None:
        self.env.close()


class RemoteEnv(gym.Env[Any, Any]):
    """A base env whose work is done by an `EnvHost` actor; made by `remote_env_factory`'s `gym.make`.

    Args:
        spec: The env's own spec (sent to the actor, which makes the env from it).
        config: Where the actor runs and its timeouts.
        kwargs: `gym.make` keyword arguments for the env (`max_episode_steps` and other `gym.make` options are
            applied by the wrappers on this side).
    """

    def __init__(self, spec: EnvSpec, config: EnvActorConfig, **kwargs: Any) -> None:
        self._config = config
        host = ray.remote(EnvHost).options(num_cpus=config.num_cpus, runtime_env=config.runtime_env)
        self._actor: Any = host.remote(spec, kwargs)
        try:
            described = ray.get(self._actor.describe.remote(), timeout=config.start_timeout_s)
        except GetTimeoutError as error:
            self.close()
            raise EnvActorError(
                f"the actor of {spec.id} was not placed within {config.start_timeout_s:g} s (the cluster has "
                f"{ray.available_resources()} free)"
            ) from error
        except RayError as error:  # (the env's constructor raised: the actor died as it started)
            self.close()
            cause = error.cause if isinstance(error, RayTaskError) else error
            raise EnvActorError(f"{spec.id} could not be made in its actor: {cause}") from error
        self.observation_space, self.action_space, self.metadata, self.render_mode = described

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        return self._call("reset", seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        return self._call("step", action)

    def render(self) -> Any:
        return self._call("render")

    def close(self) -> None:
        """Closes the env in its actor (briefly: it may be the env that hangs), then kills the actor. Idempotent."""
        actor, self._actor = self._actor, None
        if actor is None:
            return
        with contextlib.suppress(Exception):  # a dead or hung actor: the kill below is what counts
            ray.get(actor.close.remote(), timeout=10)
        ray.kill(actor)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Runs the base env's method in the actor. The env's own exception is raised here as itself (Ray's error
        is an instance of its class); a dead actor is an `EnvActorError`, a call past the timeout a
        `TimeoutError`."""
        if self._actor is None:
            raise RuntimeError("this remote env is closed")
        try:
            return ray.get(self._actor.call.remote(name, args, kwargs), timeout=self._config.call_timeout_s)
        except RayActorError as error:
            raise EnvActorError(
                f"the Ray actor of {self._env_id} died during {name}() (its process crashed or was killed, or its "
                f"node was lost): {str(error).splitlines()[0]}"
            ) from error
        except GetTimeoutError as error:
            raise TimeoutError(
                f"{self._env_id}: {name}() took over {self._config.call_timeout_s:g} s in its Ray actor"
            ) from error

    @property
    def _env_id(self) -> str:
        return getattr(self.spec, "id", None) or "the env"

    def __getattr__(self, name: str) -> Any:
        """Public attributes and methods the actor's env has and this one does not (only called for those)."""
        if name.startswith("_") or self.__dict__.get("_actor") is None:
            raise AttributeError(name)
        try:
            is_method, value = ray.get(self._actor.attribute.remote(name), timeout=self._config.call_timeout_s)
        except AttributeError as error:  # (the actor's AttributeError, raised as itself)
            raise AttributeError(f"{self._env_id} (in a Ray actor) has no attribute {name!r}") from error
        return functools.partial(self._call, name) if is_method else value


def remote_env_factory(
    env_id: str, env_kwargs: dict[str, Any] | None = None, config: EnvActorConfig | None = None, max_envs: int = 1
) -> EnvFactory:
    """A factory of `env_id` envs whose base env runs in a Ray actor each (see the module docstring); joins or
    starts the Ray cluster first, and checks that it can hold `max_envs` actors at once (an error on a local
    cluster started here, a warning on one that may grow)."""
    config = config or EnvActorConfig()
    spec = gym.spec(env_id)
    fixed = join_cluster(config.address, config.runtime_env)
    check_room(max_envs, {"CPU": config.num_cpus}, f"{max_envs} env actors", fixed, config.start_timeout_s)
    make_base: Callable[..., gym.Env[Any, Any]] = functools.partial(RemoteEnv, spec, config)
    local_spec = dataclasses.replace(spec, entry_point=make_base, kwargs={})  # (the actor merges spec.kwargs)
    kwargs = dict(env_kwargs or {})
    return lambda: gym.make(local_spec, **kwargs)
