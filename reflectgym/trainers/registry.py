"""Trainers by name, so a run is chosen by its config: `trainer: grpo` in the YAML (or `--trainer grpo`).

`reflectgym train config.yaml --lr 1e-5` reads the file, applies the overrides, picks the trainer named in it,
and runs it. Projects add their own with `register_trainer`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflectgym.trainers.config import ConfigError, add_config_help, from_dict, load_values


@dataclass(frozen=True)
class TrainerSpec:
    """A trainer's config class and how to build the trainer from a config."""

    config: type
    """The dataclass of its options."""
    build: Callable[[Any], Any]
    """config → an object with `train()`."""
    summary: str
    """One line for `reflectgym train --help`."""


TRAINERS: dict[str, TrainerSpec] = {}
"""Registered trainers by name (the built-in ones join on first lookup: importing them pulls in torch)."""


def register_trainer(name: str, config: type, build: Callable[[Any], Any], summary: str) -> None:
    """Makes `trainer: NAME` in a config build `build(config_class(...))`."""
    TRAINERS[name] = TrainerSpec(config, build, summary)


def _builtin_trainers() -> dict[str, TrainerSpec]:
    from reflectgym.trainers.agent_r.trainer import AgentRConfig, AgentRTrainer
    from reflectgym.trainers.exit import ExItConfig, ExItTrainer
    from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer
    from reflectgym.trainers.rltf.trainer import RLTFConfig, RLTFTrainer
    from reflectgym.trainers.sft import SFTConfig, SFTTrainer
    from reflectgym.trainers.skill_sd.trainer import SkillSDConfig, SkillSDTrainer

    return {
        "agent_r": TrainerSpec(
            AgentRConfig, lambda config: AgentRTrainer(config), "Agent-R: revision data from search trees, then SFT"
        ),
        "exit": TrainerSpec(
            ExItConfig,
            lambda config: ExItTrainer(config),
            "ExIt: GRPO on single self-improvement steps over a buffer of the model's own partial histories",
        ),
        "grpo": TrainerSpec(GRPOConfig, lambda config: GRPOTrainer(config), "GRPO on an env's reward (DeepSeekMath)"),
        "rltf": TrainerSpec(
            RLTFConfig,
            lambda config: RLTFTrainer(config),
            "RLTF: GRPO on two-turn feedback episodes + self-distillation of revisions (SD) / critique modelling (FM)",
        ),
        "sft": TrainerSpec(SFTConfig, lambda config: SFTTrainer(config), "behaviour cloning on demonstrations"),
        "skill_sd": TrainerSpec(
            SkillSDConfig,
            lambda config: SkillSDTrainer(config),
            "Skill-SD: GRPO + self-distillation from a skill-conditioned teacher",
        ),
    }


def trainer_spec(name: str | None) -> TrainerSpec:
    """The spec of `name`, or a `ConfigError` listing the known trainers. A project's trainer registered under a
    built-in name replaces the built-in one."""
    if name is None or name not in TRAINERS:
        for builtin, spec in _builtin_trainers().items():
            TRAINERS.setdefault(builtin, spec)
    known = ", ".join(sorted(TRAINERS))
    if name is None:
        raise ConfigError(f"say which trainer to run: `trainer: NAME` in the config or --trainer NAME ({known})")
    if name not in TRAINERS:
        raise ConfigError(f"unknown trainer {name!r}; known: {known}")
    return TRAINERS[name]


def build_from_config(path: str | Path | None, overrides: Sequence[str] = ()) -> tuple[str, Any]:
    """Reads a run config (YAML + `--name value` overrides) and builds its trainer; returns (name, trainer)."""
    values = load_values(path, overrides)
    name = values.pop("trainer", None)
    spec = trainer_spec(None if name is None else str(name))
    return str(name), spec.build(from_dict(spec.config, values))


def options_help(name: str, values: Mapping[str, Any] | None = None, source: str | Path | None = None) -> str:
    """Every option of trainer `name` with its default and docstring; the values of a config file (`values`,
    read from `source`) are shown as the defaults they become."""
    spec = trainer_spec(name)
    parser = argparse.ArgumentParser(
        prog="reflectgym train",
        usage=f"reflectgym train {source or 'CONFIG'} [--NAME VALUE ...]   (trainer: {name})",
        add_help=False,
    )
    shown = {key: value for key, value in (values or {}).items() if key != "trainer"}
    add_config_help(parser, spec.config, shown)
    return parser.format_help()
