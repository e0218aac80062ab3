"""The rollout engine: many episodes against many envs at once, one batched policy call per round.

Each env lives in its own worker thread, so resets and steps (a slow verifier, a browser) run while the policy
generates for every episode that is ready; the policy never waits for the slowest env. Episodes run in groups
(`group_size` episodes of the same seed, for GRPO), and a group is yielded as soon as its last episode ends.
Limits per episode: turns, wall seconds, sampled tokens, context tokens (by default the policy's own), and seconds
per env call. An exception in an env, or an env call past its time limit, ends that episode with the reason
recorded; the env is replaced and the batch goes on. So does a malformed env result (a non-text observation, an
old-Gym 4-tuple step), a chat template that fails on it, or a policy call that fails for its batch. Trajectories
carry every turn's text, sampled ids and log-probs, feedback and verdict, the privileged text, and (for token
policies) the whole conversation's ids, loss mask and log-probs (`TokenRecord`).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import gymnasium as gym

from reflectgym.agents.chat import ChatFormat, TokenLedger, TokenRecord, recent_turns
from reflectgym.agents.policy import Generation, Message, Policy, Sampling, TokenPolicy, derive_seed
from reflectgym.agents.prompts import system_prompt
from reflectgym.core.trajectory import Trajectory, Turn

EnvFactory = Callable[[], gym.Env[Any, Any]]
T = TypeVar("T")


class Rollouts(Protocol):
    """Plays groups of episodes and yields each group as it ends: `RolloutEngine` on this machine,
    `reflectgym.distributed.RayRolloutPool` across a Ray cluster."""

    def run(
        self, seeds: Iterable[int], options: dict[str, Any] | None = None, *, task_ids: Sequence[str] | None = None
    ) -> Iterator[list[Trajectory]]:
        """`group_size` episodes per seed; group i's trajectories carry `metadata["group"] == i`."""
        ...


def in_seed_order(groups: Iterable[list[Trajectory]]) -> list[Trajectory]:
    """The trajectories of groups that came in as they ended, in seed order (a group's episodes stay together)."""
    ordered = sorted(groups, key=lambda group: group[0].metadata["group"])
    return [trajectory for group in ordered for trajectory in group]


@dataclass(frozen=True)
class RolloutConfig:
    """What the engine runs and where it stops an episode."""

    num_envs: int = 8
    """Episodes in flight at once (one env and one worker thread each)."""
    group_size: int = 1
    """Episodes per seed; a group is yielded when all of its episodes have ended."""
    max_turns: int = 100
    """Turns per episode at most: an episode still running then ends, truncated (on top of the env's own limit)."""
    max_episode_seconds: float | None = None
    """Wall seconds per episode at most (checked before each policy call)."""
    max_episode_tokens: int | None = None
    """Sampled tokens per episode at most; each reply is capped to what is left."""
    max_context_tokens: int | None = None
    """Conversation tokens at most (token policies); the episode ends (`context_limit`) before a prompt would
    exceed it. Default: the policy's own limit when it knows it (its `max_context_tokens`: a transformers model's
    `max_position_embeddings`, vLLM's `max_model_len`), so no episode runs on positions the model never had."""
    env_timeout: float | None = 300.0
    """Seconds one reset or step may take; past it the env is abandoned and the episode ends with an error."""
    system_prompt: str | None = None
    """Overrides the per-family system prompt (`reflectgym.agents.prompts`); `""` sends none."""
    sampling: Sampling = field(default_factory=Sampling)
    """Sampling parameters of every policy call."""
    history_turns: int | None = None
    """Earlier exchanges (reply + answer) the policy sees besides the current observation: None keeps the whole
    episode in one growing context; k re-renders a window of the last k each turn (0: only the current
    observation, a Markov policy). Windowed episodes record one token segment per turn."""
    lockstep: bool = False
    """Wait for every in-flight env call before each policy call, so batches (and so sampled tokens) do not depend
    on thread timing: the same seeds give the same rollouts. Slower when env call times vary."""

    def __post_init__(self) -> None:
        for name in ("num_envs", "group_size", "max_turns"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.history_turns is not None and self.history_turns < 0:
            raise ValueError(f"history_turns must be None (whole episode) or >= 0; got {self.history_turns}")


class EnvWorker:
    """A daemon thread that owns one env and runs calls on it in order.

    A call that never returns strands only this worker: the engine abandons it and starts a fresh one.
    """

    def __init__(self, make_env: EnvFactory) -> None:
        self._make_env = make_env
        self.env: gym.Env[Any, Any] | None = None
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="reflectgym-env", daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[gym.Env[Any, Any]], Any]) -> Future[Any]:
        """Runs `call(env)` in the worker (making the env first if needed); returns its future."""
        future: Future[Any] = Future()

        def run() -> Any:
            if self.env is None:
                self.env = self._make_env()
            return call(self.env)

        self._calls.put((run, future))
        return future

    def discard_env(self) -> None:
        """Closes the env (in the worker, after queued calls) so the next call makes a fresh one; makes none when
        there is none (the failure may have been making it)."""
        self._calls.put((self._close_env, Future()))

    def stop(self, wait_s: float | None = None) -> None:
        """Closes the env and ends the thread once queued calls are done (an env still being made when this is
        called is closed too, once made); waits up to `wait_s` seconds for that (None: does not wait)."""
        self._calls.put(None)
        if wait_s is not None:
            self._thread.join(wait_s)

    def _close_env(self) -> None:
        env, self.env = self.env, None
        if env is not None:
            env.close()

    def _loop(self) -> None:
        while True:
            item = self._calls.get()
            if item is None:
                self._close_env()
                return
            run, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(run())
            except BaseException as error:  # handed to the engine, which ends the episode
                future.set_exception(error)


class TimedEnv:
    """One env in an `EnvWorker` of its own, for callers outside the engine: `call(fn)` runs `fn(env)` there and
    waits at most `timeout` seconds.

    A call past it abandons the worker (its env is closed if the call ever returns) and raises `TimeoutError`; a
    call that raises discards the env (it may be broken), unless its exception is one of `keep_env_on`. Either
    way the next call makes a fresh env, as does a call after `close`.
    """

    def __init__(self, make_env: EnvFactory, timeout: float | None) -> None:
        self._make_env = make_env
        self.timeout = timeout
        self._worker: EnvWorker | None = None

    def call(self, fn: Callable[[gym.Env[Any, Any]], T], keep_env_on: tuple[type[BaseException], ...] = ()) -> T:
        if self._worker is None:
            self._worker = EnvWorker(self._make_env)
        worker = self._worker
        future = worker.submit(fn)
        try:
            wait([future], timeout=self.timeout)
            if not future.done():
                worker.stop()  # (it exits, closing the env, if the call ever returns)
                self._worker = None
                raise TimeoutError(f"an env call took over {self.timeout} s; the env was abandoned")
            return future.result()
        except keep_env_on:
            raise
        except Exception:
            if self._worker is worker:
                worker.discard_env()
            raise

    def close(self, wait_s: float = 30.0) -> None:
        """Closes the env once queued calls are done, waiting up to `wait_s` seconds for it, and ends the worker's
        thread (a later call starts anew)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop(wait_s)


@dataclass
class _Episode:
    group: int
    index: int
    seed: int
    worker: EnvWorker
    trajectory: Trajectory
    started: float = 0.0
    observation: str = ""
    messages: list[Message] = field(default_factory=list)
    ledger: TokenLedger | None = None
    segments: list[TokenRecord] = field(default_factory=list)
    pending: Future[Any] | None = None
    pending_since: float = 0.0
    reply: Generation | None = None
    env_failed: bool = False
    sampled_tokens: int = 0
    env_seconds: float = 0.0
    policy_seconds: float = 0.0


class RolloutEngine:
    """Plays episodes of one env with one policy.

    Args:
        policy: Any `Policy`; a `TokenPolicy` gets token-exact multi-turn contexts (`reflectgym.agents.chat`).
        make_env: Makes a fresh env (called in the worker threads).
        env_id: The env's id, for records and the system prompt.
        config: Concurrency and limits.
    """

    def __init__(self, policy: Policy, make_env: EnvFactory, env_id: str, config: RolloutConfig | None = None):
        self.policy = policy
        self.make_env = make_env
        self.env_id = env_id
        self.config = config or RolloutConfig()
        self._chat = ChatFormat(policy.tokenizer) if isinstance(policy, TokenPolicy) else None
        limit = self.config.max_context_tokens
        self.max_context_tokens = limit if limit is not None else context_limit(policy)
        """The context limit in force: the config's, else the policy's own (None: no limit)."""
        self.stats = {"policy_seconds": 0.0, "policy_calls": 0, "steps": 0}
        """Totals over this engine's runs: seconds inside the policy, policy calls, env steps."""

    def collect(
        self, seeds: Iterable[int], options: dict[str, Any] | None = None, *, task_ids: Sequence[str] | None = None
    ) -> list[Trajectory]:
        """Every trajectory of `run(seeds)`, in seed order (groups stay together)."""
        return in_seed_order(self.run(seeds, options, task_ids=task_ids))

    def run(
        self,
        seeds: Iterable[int],
        options: dict[str, Any] | None = None,
        *,
        task_ids: Sequence[str] | None = None,
        first_group: int = 0,
    ) -> Iterator[list[Trajectory]]:
        """Plays `group_size` episodes per seed; yields each group (episodes in order) as soon as it ends.
        `options` go to every `reset`; with `task_ids` (one per seed), group i plays task `task_ids[i]`. Groups are
        numbered from `first_group` (a shard of a larger run), which also keys their sampling seeds."""
        config = self.config
        seeds = list(seeds)
        if task_ids is not None and len(task_ids) != len(seeds):
            raise ValueError(f"{len(task_ids)} task ids for {len(seeds)} seeds: give one per seed")
        group_options = [
            options if task_ids is None else {**(options or {}), "task_id": task_ids[group]}
            for group in range(len(seeds))
        ]
        todo = [(group, index, seed) for group, seed in enumerate(seeds) for index in range(config.group_size)]
        todo.reverse()
        workers = [EnvWorker(self.make_env) for _ in range(min(config.num_envs, len(todo)))]
        free = list(workers)
        active: list[_Episode] = []
        done_in_group: dict[int, list[Trajectory]] = {}
        try:
            while todo or active:
                while free and todo:
                    group, index, seed = todo.pop()
                    episode = self._start(free.pop(), first_group + group, index, seed, group_options[group])
                    active.append(episode)
                ready, ended = self._advance(active)
                for episode in ended:
                    active.remove(episode)
                    free.append(self._replace_if_stuck(episode, workers))
                    finished = done_in_group.setdefault(episode.group, [])
                    finished.append(episode.trajectory)
                    if len(finished) == config.group_size:
                        yield sorted(done_in_group.pop(episode.group), key=lambda t: t.metadata["index"])
                if ready:
                    self._act(ready)
        finally:
            for worker in workers:
                worker.stop()

    # ------------------------------------------------------------------------------------------- phases
    def _start(self, worker: EnvWorker, group: int, index: int, seed: int, options: dict[str, Any] | None) -> _Episode:
        trajectory = Trajectory(
            env_id=self.env_id,
            task_id=None,
            seed=seed,
            metadata={"policy": self.policy.name, "group": group, "index": index},
        )
        episode = _Episode(group, index, seed, worker, trajectory, started=time.perf_counter())
        episode.pending = worker.submit(lambda env: _timed(lambda: (env.reset(seed=seed, options=options), env)))
        episode.pending_since = time.perf_counter()
        return episode

    def _advance(self, active: list[_Episode]) -> tuple[list[_Episode], list[_Episode]]:
        """Waits for at least one env call, then sorts episodes into ready-to-act and ended."""
        pending = [episode.pending for episode in active if episode.pending is not None]
        if pending and all(episode.pending is not None for episode in active):
            when = ALL_COMPLETED if self.config.lockstep else FIRST_COMPLETED
            wait(pending, timeout=self._wait_timeout(active), return_when=when)
        ready: list[_Episode] = []
        ended: list[_Episode] = []
        now = time.perf_counter()
        for episode in active:
            future = episode.pending
            if future is None:
                continue
            if not future.done():
                if self.config.env_timeout is not None and now - episode.pending_since > self.config.env_timeout:
                    episode.env_failed = True
                    self._end(episode, "error", error=f"env call took more than {self.config.env_timeout:g} s")
                    ended.append(episode)
                continue
            episode.pending = None
            try:
                result, seconds = future.result()
            except _PolicyError as error:
                self._end(episode, "error", error=str(error), trace=error.trace)
                ended.append(episode)
                continue
            except Exception as error:
                episode.env_failed = True
                self._end(episode, "error", error=f"{type(error).__name__}: {error}", trace=_trace(error))
                ended.append(episode)
                continue
            episode.env_seconds += seconds
            try:  # a malformed env result or a chat template that fails ends this episode, not the run
                stop = self._observe(episode, result)
            except Exception as error:
                self._end(episode, "error", error=f"{type(error).__name__}: {error}", trace=_trace(error))
                ended.append(episode)
                continue
            if stop is None:
                stop = self._limit_reached(episode, now)
            if stop is not None:
                self._end(episode, stop)
                ended.append(episode)
            else:
                ready.append(episode)
        return ready, ended

    def _observe(self, episode: _Episode, result: Any) -> str | None:
        """Takes a reset or step result into the episode; returns why it ended, if it did."""
        if episode.reply is None:  # a reset
            (observation, info), env = _reset_result(result)
            trajectory = episode.trajectory
            trajectory.task_id = info.get("task_id")
            trajectory.privileged = info.get("privileged")
            prompt = self.config.system_prompt
            if prompt is None:
                prompt = system_prompt(self.env_id, getattr(env.unwrapped, "action_format", None))
            episode.messages = [{"role": "system", "content": prompt}] if prompt else []
            episode.messages.append({"role": "user", "content": observation})
            if self._chat is not None:
                episode.ledger = TokenLedger(self._chat, episode.messages)
            episode.observation = observation
            return None
        observation, reward, terminated, truncated, info = _step_result(result)
        reply = episode.reply
        episode.reply = None
        self.stats["steps"] += 1
        turns = episode.trajectory.turns
        turn = Turn(
            observation=episode.observation,
            action=reply.text,
            reward=float(reward),
            feedback=info.get("feedback", ""),
            terminated=bool(terminated),
            truncated=bool(truncated),
            parse_error=info.get("parse_error"),
            verdict=info.get("verdict"),
            action_token_ids=reply.token_ids,
            action_logprobs=reply.logprobs,
        )
        if terminated or truncated:
            turns.append(turn)
            return "terminated" if terminated else "truncated"
        if len(turns) + 1 >= self.config.max_turns:
            turns.append(dataclasses.replace(turn, truncated=True))
            return "turn_limit"
        turns.append(turn)
        episode.observation = observation
        episode.messages.append({"role": "user", "content": observation})
        if self.config.history_turns is not None:  # a fresh context: the window of recent turns
            episode.messages = recent_turns(episode.messages, self.config.history_turns)
            if episode.ledger is not None and self._chat is not None:
                episode.segments.append(episode.ledger.record())
                episode.ledger = TokenLedger(self._chat, episode.messages)
        elif episode.ledger is not None:
            episode.ledger.add_observation(observation)
        return None

    def _limit_reached(self, episode: _Episode, now: float) -> str | None:
        config = self.config
        if config.max_episode_seconds is not None and now - episode.started > config.max_episode_seconds:
            return "time_limit"
        if config.max_episode_tokens is not None and episode.sampled_tokens >= config.max_episode_tokens:
            return "token_limit"
        limit = self.max_context_tokens
        if limit is not None and episode.ledger is not None and len(episode.ledger) + 1 > limit:
            return "context_limit"
        return None

    def _act(self, ready: list[_Episode]) -> None:
        """One batched policy call for every ready episode, then their steps go to the workers."""
        by_budget: dict[int, list[_Episode]] = {}
        for episode in ready:
            by_budget.setdefault(self._token_budget(episode), []).append(episode)
        for budget, episodes in by_budget.items():
            sampling = dataclasses.replace(self.config.sampling, max_new_tokens=budget, seeds=self._seeds(episodes))
            start = time.perf_counter()
            try:
                if self._chat is not None:
                    contexts = [episode.ledger.context for episode in episodes if episode.ledger is not None]
                    replies = self.policy.generate_ids(contexts, sampling)  # type: ignore[attr-defined]
                else:
                    replies = self.policy.generate([episode.messages for episode in episodes], sampling)
                if len(replies) != len(episodes):
                    raise ValueError(f"the policy returned {len(replies)} generations for {len(episodes)} requests")
            except Exception as error:  # a policy failure ends these episodes, not the run
                for episode in episodes:
                    self._fail_reply(episode, f"policy: {type(error).__name__}: {error}", _trace(error))
                continue
            seconds = time.perf_counter() - start
            self.stats["policy_seconds"] += seconds
            self.stats["policy_calls"] += 1
            for episode, reply in zip(episodes, replies, strict=True):
                episode.policy_seconds += seconds / len(episodes)
                if reply.finish_reason == "error":
                    self._fail_reply(episode, f"policy: {reply.error or 'generation failed'}", None)
                    continue
                self._send(episode, reply)

    def _seeds(self, episodes: list[_Episode]) -> tuple[int, ...] | None:
        """Each request's seed, from the sampling seed and its episode's group, index and turn: the samples of a
        group differ, and the same run gives the same samples whichever batch a request lands in."""
        base = self.config.sampling.seed
        if base is None:
            return None
        return tuple(derive_seed(base, e.group, e.index, len(e.trajectory.turns)) for e in episodes)

    def _send(self, episode: _Episode, reply: Generation) -> None:
        episode.reply = reply
        episode.sampled_tokens += reply.num_tokens
        episode.messages.append({"role": "assistant", "content": reply.text})
        if episode.ledger is not None:
            episode.ledger.add_reply(reply)
        text = reply.text
        episode.pending = episode.worker.submit(lambda env: _timed(lambda: env.step(text)))
        episode.pending_since = time.perf_counter()

    def _fail_reply(self, episode: _Episode, error: str, trace: str | None) -> None:
        """Ends an episode whose reply failed: it is handed back through a finished future."""
        future: Future[Any] = Future()
        future.set_exception(_PolicyError(error, trace))
        episode.pending = future

    def _token_budget(self, episode: _Episode) -> int:
        budget = self.config.sampling.max_new_tokens
        if self.config.max_episode_tokens is not None:
            budget = min(budget, max(1, self.config.max_episode_tokens - episode.sampled_tokens))
        if self.max_context_tokens is not None and episode.ledger is not None:
            budget = min(budget, max(1, self.max_context_tokens - len(episode.ledger)))
        return budget

    def _end(self, episode: _Episode, reason: str, error: str | None = None, trace: str | None = None) -> None:
        trajectory = episode.trajectory
        trajectory.final_observation = episode.observation
        metadata = trajectory.metadata
        metadata.update(
            stop_reason=reason,
            seconds=time.perf_counter() - episode.started,
            env_seconds=episode.env_seconds,
            policy_seconds=episode.policy_seconds,
            sampled_tokens=episode.sampled_tokens,
            sampling=self.config.sampling.to_dict(),
        )
        if error is not None:
            metadata["error"] = error
            if trace:
                metadata["traceback"] = trace
        if episode.ledger is not None and self.config.history_turns is not None:
            records = [*episode.segments, episode.ledger.record()]
            metadata["token_segments"] = [record.to_dict() for record in records]
        elif episode.ledger is not None:
            metadata["tokens"] = episode.ledger.record().to_dict()

    def _replace_if_stuck(self, episode: _Episode, workers: list[EnvWorker]) -> EnvWorker:
        """The worker for the next episode: the same one, a fresh env after an error, or a new thread if stuck."""
        worker = episode.worker
        if not episode.env_failed:
            return worker
        if episode.pending is not None and not episode.pending.done():  # stuck in the env: abandon the thread
            worker.stop()  # it exits if the call ever returns
            fresh = EnvWorker(self.make_env)
            workers[workers.index(worker)] = fresh
            return fresh
        worker.discard_env()
        return worker

    def _wait_timeout(self, active: list[_Episode]) -> float | None:
        limits = [self.config.env_timeout, self.config.max_episode_seconds]
        return min((limit for limit in limits if limit is not None), default=None)


class _PolicyError(RuntimeError):
    def __init__(self, message: str, trace: str | None) -> None:
        super().__init__(message)
        self.trace = trace


def context_limit(policy: Policy) -> int | None:
    """The policy's own context length (`max_context_tokens`), when it has a positive one."""
    limit = getattr(policy, "max_context_tokens", None)
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None


def _reset_result(result: Any) -> tuple[tuple[str, dict[str, Any]], Any]:
    """A reset's `((observation, info), env)`, checked: the observation must be text and info a dict."""
    (reset, env) = result
    if not isinstance(reset, tuple) or len(reset) != 2:
        raise TypeError(f"env.reset must return (observation, info); got {_shape(reset)}")
    observation, info = reset
    return (_text(observation, "reset"), _info(info, "reset")), env


def _step_result(result: Any) -> tuple[str, Any, Any, Any, dict[str, Any]]:
    """A step's `(observation, reward, terminated, truncated, info)`, checked: an old-Gym 4-tuple or a non-text
    observation would otherwise fail later, far from its cause."""
    if not isinstance(result, tuple) or len(result) != 5:
        raise TypeError(
            f"env.step must return (observation, reward, terminated, truncated, info) (Gymnasium's API); "
            f"got {_shape(result)}"
        )
    observation, reward, terminated, truncated, info = result
    return _text(observation, "step"), reward, terminated, truncated, _info(info, "step")


def _text(observation: Any, call: str) -> str:
    if not isinstance(observation, str):
        raise TypeError(f"env.{call} returned a {type(observation).__name__} observation; a text env returns a str")
    return observation


def _info(info: Any, call: str) -> dict[str, Any]:
    if not isinstance(info, dict):
        raise TypeError(f"env.{call} returned a {type(info).__name__} info; Gymnasium's info is a dict")
    return info


def _shape(value: Any) -> str:
    """`a tuple of 4 values`, or the type's name: what an env call returned, for an error."""
    return f"a tuple of {len(value)} values" if isinstance(value, tuple) else f"a {type(value).__name__}"


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def _trace(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__, limit=6))
