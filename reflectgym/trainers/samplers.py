"""The sampler a config names: what generates a trainer's rollouts (`sampler: vllm` in a run's YAML).

GRPO (with Skill-SD and RLTF on it) and ExIt can generate with an engine other than the model they train, as TRL's
`use_vllm` does: a vLLM engine colocated on the trainer's GPU, or a second transformers copy (on another device, say).
Either starts with the trained model's weights and is sent the new ones after every update that changed them
(`trained_weights`), so it samples from the current policy. Scripts may pass any `WeightSyncedSampler` instead.
A transformers copy is made on its own device weight by weight (`model_copy`), never whole on the trainer's first.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from reflectgym.agents.hf_policy import HFPolicy, HFPolicyConfig, checkpoint_folder, resolve_device
from reflectgym.trainers.config import ConfigError
from reflectgym.trainers.data_parallel import current_world
from reflectgym.trainers.session import TINY_MODEL, WeightSyncedSampler, export_model, trained_weights

SamplerKind = Literal["policy", "vllm", "hf"]


@dataclass
class SamplerOptions:
    """The config fields that choose a trainer's sampler (a base of the configs of the trainers that take one; it
    comes before `TrainerConfig` among their bases, so its checks run before the shared ones)."""

    sampler: SamplerKind = "policy"
    """What generates the rollouts: `policy` (the trained model itself), `vllm` (a vLLM engine on the GPU, started
    from the model and sent its weights after every update; needs vllm) or `hf` (a transformers copy of the model on
    `sampler_device`, sent them too)."""
    sampler_device: str | None = None
    """Device of an `hf` sampler, e.g. "cuda:1" (default: the trained model's)."""
    sampler_gpu_memory_utilization: float = 0.3
    """Share of the GPU's memory a `vllm` sampler takes for its weights and KV cache; the trainer keeps the rest."""

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        if not 0 < self.sampler_gpu_memory_utilization <= 1 or math.isnan(self.sampler_gpu_memory_utilization):
            raise ConfigError(
                f"sampler_gpu_memory_utilization must be in (0, 1]; got {self.sampler_gpu_memory_utilization}"
            )
        if self.sampler_device is not None and self.sampler != "hf":
            raise ConfigError(
                f"sampler_device places an `hf` sampler; the sampler is {self.sampler!r} (a `vllm` sampler runs on "
                "the visible GPU: choose it with CUDA_VISIBLE_DEVICES)"
            )


def build_sampler(
    options: SamplerOptions, policy: HFPolicy, output_dir: str | Path, seed: int, given: WeightSyncedSampler | None
) -> WeightSyncedSampler | None:
    """The run's sampler: `given` (a script's), else the one `options` names, holding `policy`'s weights (None: the
    policy samples itself). Call it before LoRA wraps the policy's model (an `hf` copy is of the plain model)."""
    if given is not None:
        if options.sampler != "policy":
            raise ConfigError(f"a sampler was passed in and the config names sampler {options.sampler!r}: pick one")
        return given
    if options.sampler == "hf":
        device = options.sampler_device or str(policy.device)
        model = model_copy(policy.model, resolve_device(device))
        return HFPolicy(model, policy.tokenizer, HFPolicyConfig(device=device, batch_size=policy.config.batch_size))
    if options.sampler == "vllm":
        from reflectgym.agents.vllm_policy import VLLMConfig, VLLMPolicy

        launcher = "external_launcher" if current_world().distributed else None  # (each rank's engine on its GPU)
        share = options.sampler_gpu_memory_utilization
        engine = VLLMConfig(gpu_memory_utilization=share, seed=seed, distributed_executor_backend=launcher)
        sampler = VLLMPolicy(starting_checkpoint(policy, Path(output_dir)), engine)
        sampler.update_weights(trained_weights(policy.model))  # (a script's policy may differ from its checkpoint)
        return sampler
    return None


def model_copy(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A deep copy of `model` whose parameters and buffers are made on `device`, one at a time (tied weights stay
    tied): a deep copy moved afterwards was a second whole model on `model`'s device first (a 7B model in float32:
    28 GB more on the training GPU, for a moment, with an `hf` sampler on another GPU)."""
    placed: dict[int, Any] = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        copied = tensor.detach().to(device, copy=True)
        is_parameter = isinstance(tensor, torch.nn.Parameter)
        placed[id(tensor)] = torch.nn.Parameter(copied, tensor.requires_grad) if is_parameter else copied
    return copy.deepcopy(model, placed)  # (deepcopy takes the memo's copy of each tensor)


def starting_checkpoint(policy: HFPolicy, output_dir: Path) -> str:
    """A checkpoint folder (or hub name) an engine can start from with `policy`'s architecture and tokenizer: the one
    it was loaded from, else (the built-in tiny model, or a policy built in a script) the policy saved under
    `output_dir/sampler-start`."""
    if policy.source is not None and policy.source != TINY_MODEL:
        folder = checkpoint_folder(policy.source)
        return str(folder) if folder is not None else policy.source
    world = current_world()
    folder = output_dir / ("sampler-start" if world.size == 1 else f"sampler-start-rank-{world.rank}")
    return str(export_model(policy.model, policy.tokenizer, folder))
