"""Dataclass configs from YAML plus overrides, with errors that say what to change."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from reflectgym.trainers.config import ConfigError, add_config_help, field_docs, load_config, parse_overrides


@dataclass
class ToyConfig:
    lr: float = 1e-4
    """Learning rate of the optimiser."""
    group_size: int = 8
    """Rollouts per task."""
    normalisation: Literal["token", "sequence"] = "token"
    """How the loss is averaged."""
    lora: bool = False
    """Train LoRA adapters instead of all weights."""
    size: tuple[int, ...] = (6, 6)
    """Room size."""
    output: str | None = None
    """Where to write."""

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ConfigError(f"group_size must be at least 2 for group-normalised advantages; got {self.group_size}")


def test_yaml_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("lr: 3.0e-5\ngroup_size: 4\nsize: [8, 8]\n")
    config = load_config(ToyConfig, path, ["--lr", "1e-5", "--normalisation=sequence", "--lora", "--output", "none"])
    assert config == ToyConfig(lr=1e-5, group_size=4, normalisation="sequence", lora=True, size=(8, 8), output=None)


def test_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(ConfigError, match=r"'group_sise' \(did you mean 'group_size'\?\)"):
        load_config(ToyConfig, overrides=["--group-sise", "4"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--group-size", "2.5"], "group_size: expected an integer"),
        (["--lr", "fast"], "lr: expected float"),
        (["--normalisation", "batch"], "normalisation: 'batch' is not one of 'token', 'sequence'"),
        (["--lora", "maybe"], "lora: expected true or false"),
        (["--group-size", "1"], "group_size must be at least 2"),
        (["lr", "1"], "expected --option value"),
    ],
)
def test_bad_values_say_what_to_change(override: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(ToyConfig, overrides=override)


def test_field_docstrings_become_help() -> None:
    assert field_docs(ToyConfig)["lr"] == "Learning rate of the optimiser."
    parser = argparse.ArgumentParser()
    add_config_help(parser, ToyConfig)
    text = parser.format_help()
    assert "--group-size" in text and "Rollouts per task." in text and "(default: 8)" in text


def test_parse_overrides_flags() -> None:
    assert parse_overrides(["--a", "--b", "x", "--c=y"]) == {"a": "true", "b": "x", "c": "y"}


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(ToyConfig, path)


def test_a_project_trainer_joins_the_built_in_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch", reason="the built-in trainers need torch")
    from reflectgym.trainers import registry

    monkeypatch.setattr(registry, "TRAINERS", {})
    registry.register_trainer("mine", ToyConfig, lambda config: config, "a project's own trainer")
    assert registry.trainer_spec("mine").summary == "a project's own trainer"
    assert registry.trainer_spec("grpo").config.__name__ == "GRPOConfig"
    registry.register_trainer("sft", ToyConfig, lambda config: config, "a project's SFT")  # replaces the built-in one
    assert registry.trainer_spec("sft").config is ToyConfig


def test_invalid_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("lr: 1e-4\nsize: [1\n")
    with pytest.raises(ConfigError, match=r"run.yaml: line \d+: invalid YAML: .*line 2"):
        load_config(ToyConfig, path)


@dataclass
class FactoryConfig:
    kwargs: dict[str, int] = field(default_factory=dict)
    """Env arguments."""
    steps: int = 3
    """Steps."""


def test_help_shows_factory_defaults_placeholders_and_the_files_values() -> None:
    parser = argparse.ArgumentParser(add_help=False)
    add_config_help(parser, FactoryConfig, {"steps": 7})
    text = parser.format_help()
    assert "required" not in text and "(default: {})" in text
    assert "--kwargs MAPPING" in text and "--steps N" in text
    assert "(default: 7, from the config file)" in text


def test_values_of_the_wrong_type_given_in_python_say_which_field() -> None:
    from reflectgym.trainers.config import check_field_types

    check_field_types(ToyConfig(lr=1, output=None))  # an int is a float; None where None is allowed
    check_field_types(ToyConfig(group_size=8.0, output=Path("runs/x"), lora=np.True_))  # as before: accepted
    for bad, message in [
        (ToyConfig(lr="1e-4"), "lr: expected float, got str '1e-4'"),  # type: ignore[arg-type]
        (ToyConfig(group_size=8.5), "group_size: expected int, got float 8.5"),  # type: ignore[arg-type]
        (ToyConfig(lora="yes"), "lora: expected bool"),  # type: ignore[arg-type]
        (ToyConfig(lora=1), "lora: expected bool, got int 1"),  # type: ignore[arg-type]
        (ToyConfig(output=3), "output: expected str, got int 3"),  # type: ignore[arg-type]
    ]:
        with pytest.raises(ConfigError, match=message):
            check_field_types(bad)
    pytest.importorskip("torch")
    from reflectgym.trainers.grpo import GRPOConfig

    with pytest.raises(ConfigError, match="lr: expected float"):
        GRPOConfig(lr="1e-4")  # type: ignore[arg-type]


def test_env_ids_are_checked_as_gym_make_finds_them() -> None:
    pytest.importorskip("torch")
    import gymnasium as gym

    from reflectgym.trainers.session import check_env_id

    check_env_id("reflectgym/Sokoban-v0")
    check_env_id("reflectgym:reflectgym/Sokoban-v0")  # `module:id` imports the module first, as gym.make does
    with pytest.raises(gym.error.Error, match="Nope"):
        check_env_id("reflectgym/Nope-v0")
    with pytest.raises(ModuleNotFoundError):
        check_env_id("no_such_module_here:reflectgym/Sokoban-v0")
