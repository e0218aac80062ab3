"""A sampler named in a run's config (`sampler: hf | vllm`) generates the rollouts instead of the trained model and
is sent every new weight: the run is the one the model would have sampled itself."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")
pytest.importorskip("transformers", reason="transformers is not installed")

import torch
from support.fake_vllm import FakeVLLM
from torch.utils._python_dispatch import TorchDispatchMode

import reflectgym
from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.agents.policy import Generation
from reflectgym.agents.tiny import TinyModelConfig, build_tiny_model, build_tokenizer
from reflectgym.agents.vllm_policy import VLLMPolicy
from reflectgym.core import Task
from reflectgym.trainers.config import ConfigError
from reflectgym.trainers.data_parallel import World
from reflectgym.trainers.exit import ExItConfig
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer
from reflectgym.trainers.registry import build_from_config
from reflectgym.trainers.samplers import build_sampler, model_copy


def length_share(task: Task, answer: str) -> float:
    """Dense: a tiny model's reply lengths vary, so nearly every group carries signal."""
    return min(len(answer.strip()), 6) / 6


ENV_ID = reflectgym.register_task_env(
    "SamplerTalk-v0", [{"id": "a", "prompt": "Talk.", "answer": "aaaaaa"}], length_share, max_attempts=2
)
TIMING = {"rollout_seconds", "step_seconds", "update_seconds", "seconds"}


def run_config(run_dir: Path, trainer: str, sampler: str) -> Path:
    """A tiny run's YAML, as a user writes it."""
    path = run_dir.with_suffix(".yaml")
    path.write_text(
        f"trainer: {trainer}\nmodel: tiny\nenv_id: {ENV_ID}\noutput_dir: {run_dir}\nsteps: 2\ntasks_per_step: 2\n"
        f"group_size: 4\nlr: 0.003\nmax_new_tokens: 6\nprogress: false\ndevice: cpu\nsystem_prompt: ''\n"
        f"sampler: {sampler}\n"
    )
    return path


def never(*_: Any) -> list[Generation]:
    raise AssertionError("the trained policy sampled")


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.named_parameters()}


def without_timing(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{key: value for key, value in step.items() if key not in TIMING} for step in history]


@pytest.mark.parametrize("trainer", ["grpo", "exit"])
def test_an_hf_sampler_from_the_config_plays_the_run_the_policy_would_have(tmp_path: Path, trainer: str) -> None:
    _, plain = build_from_config(run_config(tmp_path / "plain", trainer, "policy"), [])
    plain_history = plain.train()
    _, sampled = build_from_config(run_config(tmp_path / "sampled", trainer, "hf"), [])
    assert isinstance(sampled.sampler, HFPolicy) and sampled.sampler.model is not sampled.model
    sampled.policy.generate_ids = never  # the trained model must not sample
    sampled.policy.generate = never
    history = sampled.train()
    assert any("loss" in step for step in history), "no update: the weights never moved, nothing was tested"
    assert without_timing(history) == without_timing(plain_history)
    trained = weights(sampled.model)
    assert all(torch.equal(trained[name], value) for name, value in weights(plain.model).items())
    assert all(torch.equal(trained[name], value) for name, value in weights(sampled.sampler.model).items())


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> FakeVLLM:
    fake = FakeVLLM(build_tokenizer())
    monkeypatch.setattr("reflectgym.agents.vllm_policy.import_vllm", lambda: fake)
    return fake


def grpo_config(run_dir: Path, **changes: Any) -> GRPOConfig:
    config = GRPOConfig(
        env_id=ENV_ID, output_dir=str(run_dir), steps=1, tasks_per_step=1, group_size=2, max_new_tokens=4,
        progress=False, device="cpu",
    )  # fmt: skip
    return dataclasses.replace(config, **changes)


def test_a_vllm_sampler_starts_from_the_model_folder_and_is_sent_its_weights(
    tmp_path: Path, fake_vllm: FakeVLLM
) -> None:
    folder = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=1))
    config = grpo_config(tmp_path / "run", sampler="vllm", sampler_gpu_memory_utilization=0.25, seed=7)
    trainer = GRPOTrainer(config, HFPolicy.from_pretrained(folder))
    assert isinstance(trainer.sampler, VLLMPolicy) and trainer.engine.policy is trainer.sampler
    [(_, engine)] = [call for call in fake_vllm.calls if call[0] == "LLM"]
    assert engine["model"] == str(folder.resolve()) or Path(engine["model"]).resolve() == folder.resolve()
    assert engine["gpu_memory_utilization"] == 0.25 and engine["seed"] == 7
    [(_, loaded)] = [call for call in fake_vllm.calls if call[0] == "load_weights"]
    sent = dict(loaded)
    assert set(sent) == set(weights(trainer.model))
    assert all(torch.equal(sent[name], value) for name, value in weights(trainer.model).items())


def test_under_torchrun_each_ranks_vllm_engine_runs_in_its_process_on_its_gpu(
    tmp_path: Path, fake_vllm: FakeVLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vLLM's `external_launcher` executor (as TRL's colocated vLLM): without it every rank's engine would start its
    own worker on the first GPU."""
    policy = HFPolicy.from_pretrained(build_tiny_model(tmp_path / "model", TinyModelConfig(seed=1)))
    options = grpo_config(tmp_path / "run", sampler="vllm")
    build_sampler(options, policy, tmp_path / "one", 0, None)
    monkeypatch.setattr("reflectgym.trainers.samplers.current_world", lambda: World(rank=1, size=2, local_rank=1))
    build_sampler(options, policy, tmp_path / "two", 0, None)
    alone, ranked = (call[1] for call in fake_vllm.calls if call[0] == "LLM")
    assert "distributed_executor_backend" not in alone
    assert ranked["distributed_executor_backend"] == "external_launcher"


def test_a_vllm_sampler_of_the_tiny_model_starts_from_a_saved_copy(tmp_path: Path, fake_vllm: FakeVLLM) -> None:
    GRPOTrainer(grpo_config(tmp_path / "run", sampler="vllm", model="tiny"))
    [(_, engine)] = [call for call in fake_vllm.calls if call[0] == "LLM"]
    assert Path(engine["model"]) == tmp_path / "run" / "sampler-start"
    assert (Path(engine["model"]) / "config.json").is_file()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sampler": "vlm"}, "not one of"),
        ({"sampler": "vllm", "sampler_device": "cuda:1"}, "sampler_device places an `hf` sampler"),
        ({"sampler": "vllm", "sampler_gpu_memory_utilization": 0.0}, r"in \(0, 1\]"),
        ({"sampler": "vllm", "sampler_gpu_memory_utilization": 1.5}, r"in \(0, 1\]"),
    ],
)
def test_sampler_options_that_cannot_work_are_config_errors(tmp_path: Path, changes: dict, message: str) -> None:
    for config_class in (GRPOConfig, ExItConfig):
        with pytest.raises(ConfigError, match=message):
            config_class(output_dir=str(tmp_path), **changes)


def test_a_sampler_passed_in_and_one_in_the_config_is_a_config_error(tmp_path: Path) -> None:
    folder = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=1))
    with pytest.raises(ConfigError, match="pick one"):
        GRPOTrainer(
            grpo_config(tmp_path / "run", sampler="hf"),
            HFPolicy.from_pretrained(folder),
            HFPolicy.from_pretrained(folder),
        )


class MadeTensors(TorchDispatchMode):
    """Records the device and size of every tensor an operation makes while it is on (views of one are not made)."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for value in out if isinstance(out, tuple | list) else (out,):
            if isinstance(value, torch.Tensor) and not func.is_view:
                self.made.append((value.device.type, value.numel()))
        return out


def test_an_hf_sampler_on_another_device_is_made_there_not_copied_here_first(tmp_path: Path) -> None:
    """The copy's weights are made on the sampler's device ("meta" stands in for a second GPU): no copy of a weight
    on the trained model's device, even for a moment."""
    policy = HFPolicy.from_pretrained(build_tiny_model(tmp_path / "model", TinyModelConfig(seed=1)))
    largest = max(parameter.numel() for parameter in policy.model.parameters())
    with MadeTensors() as mode:
        sampler = build_sampler(grpo_config(tmp_path / "run", sampler="hf", sampler_device="meta"), policy, "", 0, None)
    assert isinstance(sampler, HFPolicy) and sampler.device == torch.device("meta")
    assert {tensor.device.type for tensor in [*sampler.model.parameters(), *sampler.model.buffers()]} == {"meta"}
    assert not [size for device, size in mode.made if device == "cpu" and size == largest], "a weight copied on CPU"


def test_a_model_copy_holds_the_same_weights_in_tensors_of_its_own_with_ties_kept(tmp_path: Path) -> None:
    model = HFPolicy.from_pretrained(build_tiny_model(tmp_path / "model", TinyModelConfig(seed=1))).model
    copied = model_copy(model, torch.device("cpu"))
    assert copied.get_input_embeddings().weight is copied.get_output_embeddings().weight, "the tie is kept"
    ours, theirs = dict(model.named_parameters()), dict(copied.named_parameters())
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():
        assert torch.equal(tensor, ours[name]) and tensor.data_ptr() != ours[name].data_ptr(), name
        assert tensor.requires_grad == ours[name].requires_grad, name
    for (name, buffer), (_, original) in zip(copied.named_buffers(), model.named_buffers(), strict=True):
        assert torch.equal(buffer, original) and buffer.data_ptr() != original.data_ptr(), name
