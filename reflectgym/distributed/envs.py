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

An env that closes cleanly leaves its actor, and the env in it, to the next env the factory makes (up to
`max_envs` kept), so a trainer that makes its envs afresh each step does not start a process and a browser
again each time; Gymnasium's `OrderEnforcing` here still asks for a `reset` first.

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
import importlib
import inspect
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

try:
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError
except ImportError as missing:  # pragma: no cover - depends on the install
    raise ImportError("reflectgym.distributed needs Ray: pip install 'reflectgym[ray]'") from missing

from reflectgym.distributed.cluster import check_room, join_cluster


@dataclass(frozen=True)
class EnvActorConfig:
    """Where env actors run and what each reserves."""

    num_cpus: float = 1.0
    """CPUs Ray reserves for each env actor (its env, and the browser or sandboxes the env starts)."""
    call_timeout_s: float | None = 300.0
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

    def attribute(self, name: str) -> tuple[str, Any]:
        """("method", None) for a method (the caller calls it through `call`), ("value", its value) for any other
        attribute, ("missing", None) when the env has none by that name (a missing name is no fault of the env's:
        an `AttributeError` raised inside it is)."""
        try:
            value = inspect.getattr_static(self.base, name)
        except AttributeError:
            return ("missing", None)
        value = getattr(self.base, name)  # (bound, or a property's value)
        return ("method", None) if inspect.ismethod(value) else ("value", value)

    def close(self) -> None:
        self.env.close()


_REMOTE_HOST = ray.remote(EnvHost)

_LIVE_HOSTS: weakref.WeakValueDictionary[int, EnvHosts] = weakref.WeakValueDictionary()
"""The live factories' actors by key: what a `RemoteEnv` entry point names (each env holds its own reference)."""

Fault = Literal["raised", "lost"] | None
"""What went wrong with an env's actor: a call raised ("raised"), the actor died or hung ("lost"), or nothing."""


@dataclass(frozen=True)
class _Host:
    """An `EnvHost` actor and what its env told the caller's side when it started."""

    actor: Any
    described: tuple[Any, Any, dict[str, Any], str | None]


class EnvHosts:
    """One factory's env actors: started when an env is made and none is free; kept, their env open, when an env
    closes cleanly (up to `keep` of them), so the next env made skips the process start and the env's own start-up
    (a browser launch). An env whose call raised, or whose actor died or hung, is never kept.

    Args:
        spec: The env's own spec (sent to each actor, which makes the env from it).
        config: Where the actors run and their timeouts.
        keep: Free actors kept at most.
    """

    def __init__(self, spec: EnvSpec, config: EnvActorConfig, keep: int) -> None:
        self.spec, self.config, self.keep = spec, config, keep
        self.started = 0
        """Actors started so far."""
        self.methods: set[str] = set()
        """Names the env answered are methods (called at once next time, without asking again)."""
        self.closed = False
        """Set by `close`: from then on an env that closes takes its actor with it."""
        self._spec_ref = ray.put(spec)  # (sent once, not with every actor)
        self._free: list[_Host] = []
        self._lock = threading.Lock()

    def take(self, kwargs: dict[str, Any]) -> _Host:
        """A free actor, else a new one whose env is made with `kwargs` (the same for every env of a factory)."""
        with self._lock:
            if self._free:
                return self._free.pop()
            self.started += 1
        config = self.config
        options = {"num_cpus": config.num_cpus, "runtime_env": config.runtime_env}
        actor: Any = _REMOTE_HOST.options(**options).remote(self._spec_ref, kwargs)  # type: ignore[attr-defined]
        try:
            return _Host(actor, ray.get(actor.describe.remote(), timeout=config.start_timeout_s))
        except GetTimeoutError as error:
            ray.kill(actor)
            raise EnvActorError(
                f"the actor of {self.spec.id} was not placed within {config.start_timeout_s:g} s (the cluster has "
                f"{ray.available_resources()} free)"
            ) from error
        except RayError as error:  # (the env's constructor raised: the actor died as it started)
            ray.kill(actor)
            cause = error.cause if isinstance(error, RayTaskError) else error
            raise EnvActorError(f"{self.spec.id} could not be made in its actor: {cause}") from error

    def give_back(self, host: _Host, fault: Fault) -> None:
        """Keeps a sound actor for the next env while there is room; closes and kills any other (a lost one, dead
        or hung, is only killed: it would not close)."""
        with self._lock:
            if fault is None and not self.closed and len(self._free) < self.keep:
                self._free.append(host)
                return
        if fault == "lost":
            ray.kill(host.actor)
        else:
            _stop(host.actor)

    def close(self) -> None:
        """Closes and kills the free actors (envs still open keep theirs until they close, then it goes).
        Idempotent."""
        with self._lock:
            self.closed = True
            free, self._free = self._free, []
        for host in free:
            _stop(host.actor)


def _stop(actor: Any) -> None:
    """Closes the actor's env (briefly: it may be the env that hangs), then kills the actor."""
    with contextlib.suppress(Exception):  # a dead or hung actor: the kill below is what counts
        ray.get(actor.close.remote(), timeout=10)
    ray.kill(actor)


class RemoteEnv(gym.Env[Any, Any]):
    """A base env whose work is done by an `EnvHost` actor; made by a `RemoteEnvFactory`'s `gym.make`.

    Args:
        hosts_key: Names the factory's actors (a free one is taken, else one is started); a key, not the
            object, so that Gymnasium can copy the spec that holds it.
        kwargs: The env's keyword arguments, for an actor started for it (`max_episode_steps` and the other
            `gym.make` options are applied by the wrappers on this side).
    """

    def __init__(self, hosts_key: int, **kwargs: Any) -> None:
        hosts = _LIVE_HOSTS.get(hosts_key)
        if hosts is None:
            raise EnvActorError("the factory of this remote env is gone (a spec copied into another process?)")
        self._config = hosts.config
        self._hosts = hosts
        self._host: _Host | None = hosts.take(kwargs)
        self._fault: Fault = None
        """Set once a call failed: the env may be broken ("raised") or its actor dead or hung ("lost"), so the
        actor is not kept."""
        self.observation_space, self.action_space, self.metadata, self.render_mode = self._host.described

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        return self._call("reset", seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        return self._call("step", action)

    def render(self) -> Any:
        return self._call("render")

    def close(self) -> None:
        """Hands the actor back to the factory, which keeps it for the next env when no call raised and else
        closes the env there and kills it. Idempotent."""
        host, self._host = self._host, None
        if host is not None:
            self._hosts.give_back(host, self._fault)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Runs the base env's method in the actor. The env's own exception is raised here as an instance of its
        class (Ray's error subclasses it; an exception Ray cannot pickle back arrives as Ray's
        `UnserializableException`); a dead actor is an `EnvActorError`, a call past the timeout a `TimeoutError`."""
        return self._ask(name, "call", name, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        """Public attributes and methods the actor's env has and this one does not (only called for those). A
        method is a call through Ray; any other attribute is read once per access (a copy: setting it here does
        not reach the actor)."""
        if name.startswith("_") or self.__dict__.get("_host") is None:
            raise AttributeError(name)
        if name in self._hosts.methods:  # (one round trip per call, not two)
            return functools.partial(self._call, name)
        kind, value = self._ask(name, "attribute", name)
        if kind == "missing":
            raise AttributeError(f"{self._env_id} (in a Ray actor) has no attribute {name!r}")
        if kind == "method":
            self._hosts.methods.add(name)
            return functools.partial(self._call, name)
        return value

    def _ask(self, name: str, method: str, *args: Any) -> Any:
        """`actor.<method>(*args)`, waited for up to the call timeout; any failure marks the env as faulty."""
        if self._host is None:
            raise RuntimeError(f"this remote env of {self._env_id} is closed")
        try:
            return ray.get(getattr(self._host.actor, method).remote(*args), timeout=self._config.call_timeout_s)
        except RayActorError as error:
            self._fault = "lost"
            raise EnvActorError(
                f"the Ray actor of {self._env_id} died during {name}() (its process crashed or was killed, or its "
                f"node was lost): {str(error).splitlines()[0]}"
            ) from error
        except GetTimeoutError as error:
            self._fault = "lost"
            raise TimeoutError(
                f"{self._env_id}: {name}() took over {self._config.call_timeout_s:g} s in its Ray actor"
            ) from error
        except BaseException:
            self._fault = "raised"
            raise

    @property
    def _env_id(self) -> str:
        return getattr(self.spec, "id", None) or "the env"


class RemoteEnvFactory:
    """Makes `env_id` envs whose base env runs in a Ray actor (see the module docstring); an `EnvFactory`.

    Args:
        env_id: A registered env id.
        env_kwargs: `gym.make` keyword arguments of every env made.
        config: Where the actors run and their timeouts.
        max_envs: Envs open at once at most: the cluster must hold that many actors (an error on a local
            cluster started here, a warning on one that may grow), and as many free actors are kept.
    """

    def __init__(
        self, env_id: str, env_kwargs: dict[str, Any] | None = None, config: EnvActorConfig | None = None,
        max_envs: int = 1,
    ) -> None:  # fmt: skip
        self.config = config or EnvActorConfig()
        module, _, name = env_id.rpartition(":")
        if module:  # (`module:Name-v0`: the module registers the env, as `gym.make` does)
            importlib.import_module(module)
        spec = gym.spec(name)
        fixed = join_cluster(self.config.address, self.config.runtime_env)
        wait_s = self.config.start_timeout_s
        check_room(max_envs, {"CPU": self.config.num_cpus}, f"{max_envs} env actors", fixed, wait_s)
        self.hosts = EnvHosts(spec, self.config, keep=max_envs)
        _LIVE_HOSTS[id(self.hosts)] = self.hosts
        make_base: Callable[..., gym.Env[Any, Any]] = functools.partial(RemoteEnv, id(self.hosts))
        self._spec = dataclasses.replace(spec, entry_point=make_base)  # (its kwargs reach the actor merged)
        self._kwargs = dict(env_kwargs or {})

    def __call__(self) -> gym.Env[Any, Any]:
        return gym.make(self._spec, **self._kwargs)

    def close(self) -> None:
        """Kills the free actors, their envs closed first; an env still open has its actor closed and killed when
        it closes. Idempotent."""
        self.hosts.close()


def remote_env_factory(
    env_id: str, env_kwargs: dict[str, Any] | None = None, config: EnvActorConfig | None = None, max_envs: int = 1
) -> RemoteEnvFactory:
    """`RemoteEnvFactory(env_id, env_kwargs, config, max_envs)`: a stand-in for `lambda: gym.make(env_id,
    **env_kwargs)` whose envs run in Ray actors."""
    return RemoteEnvFactory(env_id, env_kwargs, config, max_envs)
