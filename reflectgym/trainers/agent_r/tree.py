"""Agent-R's tree search: Monte Carlo tree search over env snapshots, expanded by the actor's own samples.

Agent-R (Yuan et al., 2025, "Agent-R: Training Language Model Agents to Reflect via Iterative Self-Training";
official code: bytedance/Agent-R), as TRAINERS.md §1 specifies it. One walk goes from the root down by selection
(an unvisited non-terminal child first, ties broken at random, else the largest Q/N + c·sqrt(ln N_parent / N))
until it reaches a terminal node, expanding every node without children on its way: `branching` replies sampled
at temperature 1 from the conversation that leads there, the env stepped from the node's snapshot for each
distinct reply. A child is terminal when its episode ended, when it is deeper than `max_depth`, or when the env
answered with a negative reward (its score is clamped to 0 and it is marked a disaster). Every terminal child
backs its score up to the root (visits +1, value + score): there is no random rollout and no value model. A node
whose children are all terminal becomes terminal itself; the search stops after `walks` walks or when the root
is terminal.

Deviations from the paper's code: the score of a terminal child is the env's reward of its last step clamped to
[0, 1] (reflectgym's envs pay 1 for a solved task); children are deduplicated on their reply text with
surrounding whitespace removed; a sample the policy failed to produce (`finish_reason` "error") is dropped, and a
node none of whose samples came back stays open for a later walk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from reflectgym.agents.policy import Message, Policy, Sampling, derive_seed
from reflectgym.agents.rollout import TimedEnv


@dataclass(frozen=True)
class SearchConfig:
    """How wide, deep and long one task's tree search is."""

    branching: int = 4
    """Replies sampled at each expansion (N_GEN); distinct ones become children."""
    max_depth: int = 10
    """A node deeper than this (actions from the root) is terminal."""
    walks: int = 20
    """Walks from the root per task (the paper's iterations per task), unless the root turns terminal first."""
    exploration: float = 0.25
    """c in Q/N + c·sqrt(ln N_parent / N)."""
    temperature: float = 1.0
    """Sampling temperature of expansions."""
    max_new_tokens: int = 256
    """Tokens per sampled reply."""

    def __post_init__(self) -> None:
        if self.branching < 1 or self.max_depth < 1 or self.walks < 1:
            raise ValueError("branching, max_depth and walks must be at least 1")
        if self.exploration < 0 or self.temperature <= 0:
            raise ValueError("exploration must be >= 0 and temperature > 0")


@dataclass(eq=False)
class Node:
    """A point of the episode: the reply that led here, what the env answered, and the search's statistics."""

    snapshot: Any
    """The env's snapshot here (`env.unwrapped.snapshot()`): restoring it gives back `observation`."""
    observation: str
    """What the env showed after the reply (at the root: the task's first observation)."""
    response: str = ""
    """The actor's raw reply that led here ("" at the root)."""
    reward: float = 0.0
    """The env's reward for that reply."""
    depth: int = 0
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    terminal: bool = False
    ended: bool = False
    """The episode ended here (terminated or truncated by the env)."""
    disaster: bool = False
    """The env answered with a negative reward: terminal, scored 0."""
    visits: int = 0
    value: float = 0.0
    """Sum of the scores backed up through this node (its terminal descendants', and its own if terminal)."""

    @property
    def score(self) -> float:
        """What a terminal node backs up: its reward clamped to [0, 1]."""
        return min(1.0, max(0.0, self.reward))

    @property
    def mean_value(self) -> float:
        """Q/N (0 before any visit)."""
        return self.value / self.visits if self.visits else 0.0

    def path(self) -> list[Node]:
        """The nodes from the root's first child down to this one (empty at the root)."""
        nodes: list[Node] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


def reset_to_snapshot(env: gym.Env[Any, Any], seed: int, options: dict[str, Any] | None) -> tuple[str, Any]:
    """Resets `env`; its first observation and the snapshot there."""
    observation, _ = env.reset(seed=seed, options=options)
    return str(observation), env.unwrapped.snapshot()  # type: ignore[attr-defined]


def step_from(env: gym.Env[Any, Any], snapshot: Any, action: str) -> tuple[str, float, bool, Any]:
    """Restores `snapshot` and plays `action`: the observation, reward, whether the episode ended, and the snapshot
    after it."""
    env.unwrapped.restore(snapshot)  # type: ignore[attr-defined]
    observation, reward, terminated, truncated, _ = env.step(action)
    ended = bool(terminated or truncated)
    return str(observation), float(reward), ended, env.unwrapped.snapshot()  # type: ignore[attr-defined]


class TreeSearch:
    """Builds one task's search tree with the actor.

    Args:
        policy: The actor; its samples expand the tree (one batched call per expansion).
        make_env: Makes the env (a `TextEnv` underneath: its snapshots are what the tree branches from).
        system: The system prompt of the actor's conversations ("" for none).
        config: Width, depth and length of the search.
        seed: Seeds tie-breaks and sampling.
        env_timeout: Seconds one env call may take; past it the search of that task stops with a `TimeoutError`
            (the env is abandoned). None: no limit.
    """

    def __init__(
        self,
        policy: Policy,
        make_env: Callable[[], gym.Env[Any, Any]],
        system: str,
        config: SearchConfig | None = None,
        seed: int = 0,
        env_timeout: float | None = None,
    ) -> None:
        self.policy = policy
        self.make_env = make_env
        self.system = system
        self.config = config or SearchConfig()
        self.seed = seed
        self.env_timeout = env_timeout

    def search(self, task_seed: int, options: dict[str, Any] | None = None) -> Node:
        """The tree of the task that `reset(seed=task_seed, options=options)` draws."""
        env = TimedEnv(self.make_env, self.env_timeout)
        try:
            observation, snapshot = env.call(partial(reset_to_snapshot, seed=task_seed, options=options))
            root = Node(snapshot=snapshot, observation=observation)
            rng = np.random.default_rng([self.seed, task_seed])
            for walk in range(self.config.walks):
                if root.terminal:
                    break
                self._walk(root, env, rng, derive_seed(self.seed, task_seed, walk))
            return root
        finally:
            env.close()

    def conversation(self, node: Node) -> list[Message]:
        """The actor's conversation that ends at `node`: the system prompt, the first observation, then each reply
        and the env's answer to it."""
        root = node
        while root.parent is not None:
            root = root.parent
        messages: list[Message] = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": root.observation})
        for step in node.path():
            messages.append({"role": "assistant", "content": step.response})
            messages.append({"role": "user", "content": step.observation})
        return messages

    def _walk(self, root: Node, env: TimedEnv, rng: np.random.Generator, seed: int) -> None:
        """One walk: down from the root by `choose_child`, expanding every node without children on the way, until
        it reaches a terminal node (or a node whose samples all failed, left open for a later walk)."""
        node = root
        while not node.terminal:
            if not node.children:
                self._expand(node, env, derive_seed(seed, node.depth))
                if not node.children:
                    return
            child = choose_child(node, self.config.exploration, rng)
            if child is None:  # every child terminal (then `close_upward` closed this node already)
                return
            node = child

    def _expand(self, node: Node, env: TimedEnv, seed: int) -> None:
        config = self.config
        sampling = Sampling(temperature=config.temperature, max_new_tokens=config.max_new_tokens, seed=seed)
        replies = self.policy.generate([self.conversation(node)] * config.branching, sampling)
        seen: set[str] = set()
        for reply in replies:
            key = reply.text.strip()
            if reply.finish_reason == "error" or key in seen:
                continue
            seen.add(key)
            played = env.call(partial(step_from, snapshot=node.snapshot, action=reply.text))
            observation, reward, ended, snapshot = played
            child = Node(
                snapshot=snapshot,
                observation=observation,
                response=reply.text,
                reward=reward,
                depth=node.depth + 1,
                parent=node,
                ended=ended,
                disaster=reward < 0,
            )
            child.terminal = child.ended or child.disaster or child.depth > config.max_depth
            node.children.append(child)
            if child.terminal:
                back_up(child, child.score)
        if node.children:  # (a node whose samples all failed stays open: a later walk samples it again)
            close_upward(node)


def choose_child(node: Node, exploration: float, rng: np.random.Generator) -> Node | None:
    """The child a walk goes on to: an unvisited non-terminal one first (at random), else the non-terminal one
    with the largest Q/N + c·sqrt(ln N_parent / N); None when every child is terminal."""
    open_children = [child for child in node.children if not child.terminal]
    if not open_children:
        return None
    unvisited = [child for child in open_children if child.visits == 0]
    if unvisited:
        return unvisited[int(rng.integers(len(unvisited)))]
    parent_visits = max(node.visits, 1)

    def ucb(child: Node) -> float:
        return child.mean_value + exploration * math.sqrt(math.log(parent_visits) / child.visits)

    return max(open_children, key=ucb)


def close_upward(node: Node) -> None:
    """Marks `node` terminal when it was expanded and every child is terminal (or no reply could be played), and so
    on up the tree."""
    current: Node | None = node
    while current is not None and all(child.terminal for child in current.children):
        current.terminal = True
        current = current.parent


def back_up(node: Node, score: float) -> None:
    """Adds one visit and `score` to `node` and every node above it."""
    current: Node | None = node
    while current is not None:
        current.visits += 1
        current.value += score
        current = current.parent
