"""Demonstrations for supervised fine-tuning: episodes played by a scripted solver or read from JSONL, turned
into `TrainingSequence`s with the loss on the demonstrator's replies only.

A demonstration is rendered exactly as the rollout engine would show it to the policy (same system prompt, same
token-exact growth of the conversation through `TokenLedger`), so what behaviour cloning teaches is what the
policy sees when it later acts in the env. Trajectories that a token policy recorded (`TokenRecord` in their
metadata) are used as recorded, token for token, when that is what the student would have been shown (see
`student_records`); otherwise they are rendered anew from their text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym

from reflectgym.agents.chat import ChatFormat, TokenLedger, TokenRecord, recent_turns
from reflectgym.agents.evaluation import run_episode
from reflectgym.agents.policy import Generation, Message
from reflectgym.agents.prompts import system_prompt
from reflectgym.agents.scripted import ScriptedAgent
from reflectgym.core.trajectory import Trajectory
from reflectgym.trainers.batching import TrainingSequence


def play_demonstrations(
    make_env: Callable[[], gym.Env[Any, Any]],
    agent: ScriptedAgent,
    seeds: Iterable[int],
    *,
    env_id: str,
    successful_only: bool = True,
) -> list[Trajectory]:
    """Plays one episode per seed with a scripted agent (e.g. `OracleAgent`); keeps the solved ones by default."""
    env = make_env()
    try:
        episodes = [run_episode(env, agent, seed, env_id) for seed in seeds]
    finally:
        env.close()
    return [episode for episode in episodes if episode.success or not successful_only]


def demonstration_files(path: str | Path) -> list[Path]:
    """The JSONL files `path` names: itself, or every `trajectories.jsonl` under a folder (an eval `--out`)."""
    source = Path(path)
    if not source.exists():
        raise FileNotFoundError(f"demonstrations: no such file or folder: {source}")
    if not source.is_dir():
        return [source]
    files = sorted(source.rglob("trajectories.jsonl"))
    if not files:
        raise FileNotFoundError(f"demonstrations: no trajectories.jsonl under {source}")
    return files


def read_demonstrations(path: str | Path) -> tuple[list[Trajectory], list[str]]:
    """The trajectories of a JSONL file (or of every `trajectories.jsonl` under a folder), and one line per
    unreadable row saying where and why (a broken row is left out, never the end of the run)."""
    episodes: list[Trajectory] = []
    skipped: list[str] = []
    for file in demonstration_files(path):
        with open(file, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    episodes.append(Trajectory.from_json(line))
                except (ValueError, KeyError, TypeError) as error:
                    skipped.append(f"{file}:{number}: not a trajectory: {error}")
    return episodes, skipped


def opening_messages(system: str, observation: str) -> list[Message]:
    """The conversation an episode starts with: the system prompt (when not empty) and the first observation."""
    messages: list[Message] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": observation})
    return messages


def env_system_prompt(env_id: str, env: gym.Env[Any, Any], override: str | None = None) -> str:
    """The system prompt the rollout engine gives `env_id` (`override` wins; `""` means none)."""
    if override is not None:
        return override
    return system_prompt(env_id, getattr(env.unwrapped, "action_format", None))


def demonstration_sequences_of(
    trajectory: Trajectory, chat: ChatFormat, system: str, stop_id: int, history_turns: int | None = None
) -> list[TrainingSequence]:
    """One episode as training sequences: loss on every reply's tokens and its stop token, nowhere else.

    Args:
        trajectory: A played episode; its recorded token segments are used when they fit (`student_records`).
        chat: The student's chat template.
        system: The system prompt to open with (`""`: none), as the rollout engine would.
        stop_id: The token that ends a reply (the student learns to stop).
        history_turns: The rollout engine's history window (`RolloutConfig.history_turns`): None gives one
            sequence for the whole episode, k one sequence per turn holding the last k exchanges.

    Raises:
        ValueError: If the trajectory has no turns.
    """
    recorded = student_records(trajectory, chat, system, history_turns)
    if recorded is not None:
        return [TrainingSequence.from_record(record) for record in recorded]
    if not trajectory.turns:
        raise ValueError(f"episode (seed {trajectory.seed}) has no turns to learn from")
    messages = opening_messages(system, trajectory.turns[0].observation)
    ledger = TokenLedger(chat, messages)
    records: list[TokenRecord] = []
    for index, turn in enumerate(trajectory.turns):
        if index > 0:
            messages.append({"role": "user", "content": turn.observation})
            if history_turns is None:
                ledger.add_observation(turn.observation)
            else:
                records.append(ledger.record())
                messages = recent_turns(messages, history_turns)
                ledger = TokenLedger(chat, messages)
        ledger.add_reply(Generation(turn.action, (*chat.encode(turn.action), stop_id), None, "stop"))
        messages.append({"role": "assistant", "content": turn.action})
    records.append(ledger.record())
    return [TrainingSequence.from_record(record) for record in records]


def student_records(
    trajectory: Trajectory, chat: ChatFormat, system: str, history_turns: int | None
) -> list[TokenRecord] | None:
    """The episode's recorded token segments if the student would have been shown them: they open with the
    student's own rendering of the first observation (its chat template, its system prompt) and are cut by the
    same history window (one segment for the whole episode, or one per turn). Else None: ids recorded through
    another tokenizer, template or prompt would teach the student a context it never sees."""
    recorded = TokenRecord.segments_of(trajectory)
    if not recorded or not trajectory.turns:
        return None
    if len(recorded) != (1 if history_turns is None else len(trajectory.turns)):
        return None
    opening = tuple(chat.prompt_ids(opening_messages(system, trajectory.turns[0].observation)))
    return recorded if recorded[0].input_ids[: len(opening)] == opening else None


def demonstration_sequences(
    trajectories: Sequence[Trajectory],
    chat: ChatFormat,
    system: str,
    stop_id: int,
    history_turns: int | None = None,
) -> tuple[list[TrainingSequence], list[str]]:
    """Sequences of every usable episode, and one line per skipped episode saying why (a broken row never
    stops a run)."""
    sequences: list[TrainingSequence] = []
    skipped: list[str] = []
    for index, trajectory in enumerate(trajectories):
        try:
            sequences.extend(demonstration_sequences_of(trajectory, chat, system, stop_id, history_turns))
        except (ValueError, KeyError, TypeError) as error:
            skipped.append(f"episode {index} (seed {trajectory.seed}): {error}")
    return sequences, skipped
