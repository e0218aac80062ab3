"""LoRA without a second copy of the model: the KL's reference is the trained model with its adapters disabled (its
base model), and a sampler is sent merged weights computed layer by layer; both give what a merged copy gave."""

from __future__ import annotations

import copy
import dataclasses
import gc
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")
pytest.importorskip("transformers", reason="transformers is not installed")
pytest.importorskip("peft", reason="peft is not installed (pip install 'reflectgym[train]')")

import torch
from support.torchrun import untimed

import reflectgym
from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.agents.tiny import TinyModelConfig, build_tiny_model
from reflectgym.core import Task
from reflectgym.trainers.batching import target_logprobs
from reflectgym.trainers.grpo import GRPOConfig, GRPOTrainer, as_reference
from reflectgym.trainers.session import export_model, trained_weights

WIDTH = 40
"""The tiny model's hidden size here: no other test's, so its embedding's shape finds this model's copies alone."""


def length_share(task: Task, answer: str) -> float:
    """Dense: a tiny model's reply lengths vary, so nearly every group carries signal."""
    return min(len(answer.strip()), 6) / 6


ENV_ID = reflectgym.register_task_env(
    "LoraTalk-v0", [{"id": "a", "prompt": "Talk.", "answer": "aaaaaa"}], length_share, max_attempts=1
)
IDS = torch.tensor([[5, 77, 120, 9, 33, 200, 14, 61], [101, 3, 250, 42, 42, 7, 88, 19]])
MASK = torch.ones_like(IDS)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lora") / "model"
    return build_tiny_model(folder, TinyModelConfig(hidden_size=WIDTH, seed=3))


def lora_config(run_dir: Path, **changes: object) -> GRPOConfig:
    config = GRPOConfig(
        env_id=ENV_ID, output_dir=str(run_dir), steps=3, tasks_per_step=2, group_size=4, lr=3e-2, max_new_tokens=6,
        save_every=0, progress=False, device="cpu", lora_rank=4, kl_coef=0.5, drop_zero_variance_groups=False,
    )  # fmt: skip
    return dataclasses.replace(config, **changes)


def copies_of(weight: torch.Tensor) -> int:
    """Distinct storages alive now of tensors shaped as `weight` (the tiny model's embedding, tied to its output
    layer: no other test's model has its shape)."""
    gc.collect()
    tensors = [thing for thing in gc.get_objects() if issubclass(type(thing), torch.Tensor)]
    return len({tensor.untyped_storage().data_ptr() for tensor in tensors if tensor.shape == weight.shape})


@pytest.fixture(scope="module")
def runs(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A short LoRA run with the KL as trained now, and the same run with the frozen copy the KL used to score with."""
    folder = tmp_path_factory.mktemp("lora-runs")
    frozen_base = HFPolicy.from_pretrained(model_dir).model.eval().requires_grad_(False)
    trainer = GRPOTrainer(lora_config(folder / "adapters-off"), HFPolicy.from_pretrained(model_dir))
    copies = copies_of(frozen_base.get_input_embeddings().weight) - 1  # (less frozen_base's own)
    history = trainer.train()
    copied = GRPOTrainer(lora_config(folder / "copy"), HFPolicy.from_pretrained(model_dir))
    copied.reference = copy.deepcopy(copied.model).eval().requires_grad_(False)  # the way it was
    return {
        "trainer": trainer,
        "history": history,
        "copies": copies,
        "frozen_base": frozen_base,
        "copied": copied,
        "copied_history": copied.train(),
    }


def test_under_lora_the_kl_reference_is_the_trained_model_itself(runs: dict[str, Any]) -> None:
    assert runs["copies"] == 1, "the base weights are held more than once"
    assert runs["trainer"].reference is runs["trainer"].model


def test_the_reference_log_probs_are_the_frozen_base_models(runs: dict[str, Any]) -> None:
    """After training moved the adapters, the model with its adapters off scores as the base model it started from,
    and the adapters are back on (and trainable) afterwards."""
    model = runs["trainer"].model
    adapted = target_logprobs(model, IDS, MASK).detach()
    with torch.no_grad(), as_reference(model):
        reference = target_logprobs(model, IDS, MASK)
    assert torch.allclose(reference, target_logprobs(runs["frozen_base"], IDS, MASK), atol=1e-7, rtol=0)
    assert not torch.allclose(reference, adapted, atol=1e-3), "the adapters did not move: nothing was tested"
    assert torch.equal(target_logprobs(model, IDS, MASK), adapted)
    assert all(parameter.requires_grad for name, parameter in model.named_parameters() if "lora_" in name)


def test_a_run_with_the_base_model_as_reference_is_the_run_with_a_frozen_copy(runs: dict[str, Any]) -> None:
    history, copied_history = untimed(runs["history"]), untimed(runs["copied_history"])
    assert history[-1]["kl"] > 0, "no drift from the reference: nothing was tested"
    assert len(history) == len(copied_history)
    for step, copied_step in zip(history, copied_history, strict=True):
        assert step.keys() == copied_step.keys()
        for key, value in copied_step.items():
            assert step[key] == pytest.approx(value, rel=0, abs=1e-6), key
    weights = dict(runs["copied"].model.named_parameters())
    for name, value in runs["trainer"].model.named_parameters():
        assert torch.allclose(value, weights[name], atol=1e-6, rtol=0), name


def merged_copy(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """What a sampler was sent before: the weights of a merged copy of the model."""
    return [(name, tensor.detach()) for name, tensor in copy.deepcopy(model).merge_and_unload().named_parameters()]


def assert_same_weights(ours: list[tuple[str, torch.Tensor]], theirs: list[tuple[str, torch.Tensor]]) -> None:
    assert [name for name, _ in ours] == [name for name, _ in theirs]
    for (name, tensor), (_, expected) in zip(ours, theirs, strict=True):
        assert torch.allclose(tensor, expected, atol=1e-6, rtol=0), name


def test_merged_weights_for_a_sampler_are_a_merged_copys_without_copying_the_model(runs: dict[str, Any]) -> None:
    model = runs["trainer"].model
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    outputs = target_logprobs(model, IDS, MASK).detach()
    weights = trained_weights(model)
    assert_same_weights(weights, merged_copy(model))
    own = {parameter.data_ptr() for parameter in model.parameters()}
    adapted = [name for name, tensor in weights if tensor.data_ptr() not in own]
    assert sorted(adapted) == sorted(f"model.layers.{layer}.self_attn.{kind}_proj.weight" for layer in range(2)
                                     for kind in "qkvo"), "only the adapted layers are new tensors"  # fmt: skip
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, before[name]), f"{name} changed"
    assert torch.equal(target_logprobs(model, IDS, MASK), outputs)


def test_the_exported_model_is_the_merged_copys_without_copying_the_model(runs: dict[str, Any], tmp_path: Path) -> None:
    """`export_model` writes what saving a merged copy wrote (same tensors, same names), and the folder loads."""
    from safetensors.torch import load_file

    trainer = runs["trainer"]
    export_model(trainer.model, trainer.policy.tokenizer, tmp_path / "ours")
    copy.deepcopy(trainer.model).merge_and_unload().save_pretrained(tmp_path / "copy", safe_serialization=True)
    ours, theirs = (load_file(tmp_path / name / "model.safetensors") for name in ("ours", "copy"))
    assert sorted(ours) == sorted(theirs)
    assert all(torch.allclose(ours[name], theirs[name], atol=1e-6, rtol=0) for name in theirs)
    loaded = HFPolicy.from_pretrained(tmp_path / "ours").model
    merged = copy.deepcopy(trainer.model).merge_and_unload()
    assert torch.allclose(target_logprobs(loaded, IDS, MASK), target_logprobs(merged, IDS, MASK), atol=1e-5)


def test_adapters_peft_merges_otherwise_are_merged_into_a_copy_as_before(model_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model

    base = HFPolicy.from_pretrained(model_dir).model
    model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], use_dora=True))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    assert_same_weights(trained_weights(model), merged_copy(model))
