"""What every trainer's run shares, composed into each trainer rather than inherited: the options
(`TrainerConfig`), the model to train (optionally LoRA adapters through `peft`), the optimiser, precision,
seeding or exact resume, metrics, the progress bar and atomic checkpoints (`TrainingSession`).
"""

from __future__ import annotations

import copy
import importlib
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from tqdm.auto import tqdm

from reflectgym.agents.hf_policy import (
    HFPolicy,
    HFPolicyConfig,
    native_bf16,
    resolve_device,
    silence_library_bars,
)
from reflectgym.agents.policy import TokenPolicy
from reflectgym.agents.rollout import EnvFactory
from reflectgym.trainers.batching import TrainingSequence
from reflectgym.trainers.checkpoint import (
    CheckpointError,
    capture_rng_state,
    clear_checkpoints,
    load_checkpoint,
    resume_checkpoint,
    save_checkpoint,
    saved_checkpoints,
)
from reflectgym.trainers.config import ConfigError, check_field_types, to_dict
from reflectgym.trainers.data_parallel import (
    barrier,
    close_world,
    current_world,
    gather_to_main,
    init_world,
    wrap_for_training,
)
from reflectgym.trainers.losses import Normalisation
from reflectgym.trainers.metrics import MetricsLogger, require_sinks
from reflectgym.trainers.sharding import full_model_state, full_optimizer_state, gather, is_sharded, scattered, shard
from reflectgym.trainers.update import LossFn, UpdateResult, optimizer_step

TINY_MODEL = "tiny"
"""`TrainerConfig.model` value that builds a tiny byte-level model offline (`reflectgym.agents.tiny`)."""

PROGRESS_KEYS = ("reward", "success", "loss")
"""Metrics shown live beside the progress bar when a step logs them."""


@dataclass
class TrainerConfig:
    """Options every trainer shares; each trainer's config adds its own fields to these."""

    model: str = TINY_MODEL
    """The policy to train: a checkpoint folder, a hub name, a .gguf file, or "tiny" (a tiny model built offline)."""
    output_dir: str = "runs/train"
    """Where metrics, checkpoints, the final model and the report go."""
    steps: int = 20
    """Optimiser steps."""
    lr: float = 1e-5
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    minibatch_size: int = 8
    """Sequences per forward pass (gradients accumulate over a step)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0: no clipping)."""
    env_actors: bool = False
    """Run each env in a Ray actor of its own (on the cluster at `RAY_ADDRESS`, else a local one) while the policy
    trains here: for envs one machine cannot hold enough of (browsers, sandboxed code). Needs the `ray` extra."""
    env_actor_cpus: float = 1.0
    """CPUs Ray reserves for each env actor (with `env_actors`)."""
    env_timeout: float | None = 300.0
    """Seconds one env call (a reset, a step, a restore) may take; past it the env is abandoned for a fresh one and
    that episode, reply or task ends as an error (None: no limit)."""
    normalisation: Normalisation = "token"
    """What the loss averages over: all valid tokens of the step (`token`), or each sequence's tokens, then the
    sequences (`sequence`: every sequence counts the same, however long)."""
    seed: int = 0
    """Seeds data order, sampling and initialisation."""
    save_every: int = 10
    """Steps between checkpoints (0: only at the end)."""
    resume: bool = False
    """Continue from the latest checkpoint in `output_dir`, exactly where it stopped (from step 0 when there is
    none yet; an error when `latest` names a checkpoint that is gone)."""
    overwrite_output_dir: bool = False
    """Start afresh in an `output_dir` that holds an earlier run's checkpoints, deleting them first (as in
    Hugging Face's Trainer scripts). Without it such a run stops and says so, rather than mixing with them."""
    fsdp: bool = False
    """Under `torchrun`, shard the weights, their gradients and AdamW's state across the ranks for the update (PyTorch's
    FSDP2, one unit per transformer block) instead of keeping all of them on every rank (DDP); the weights are
    gathered whole on every rank between updates, for rollouts (see `reflectgym.trainers.sharding`). One process
    ignores it. Full fine-tuning only (LoRA's trained weights are small already)."""
    lora_rank: int = 0
    """Rank of LoRA adapters trained instead of the full model (0: full fine-tuning). Needs `peft`."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_rank)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA input (SFT only: GRPO's update runs without dropout, as its sampler does)."""
    lora_target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    """Module names that get adapters (Llama/Qwen/SmolLM attention projections by default)."""
    bf16: bool | None = None
    """Run training forward passes under bfloat16 autocast (weights stay float32); default: on a GPU that computes
    in bfloat16 natively (compute capability 8.0 on: A100, H100...), else float32 (see `training_autocast`)."""
    device: str | None = None
    """Where the model trains and samples: "cpu", "cuda", "cuda:1"; default: CUDA when available (under `torchrun`,
    unset or "cuda": each rank's own GPU, cuda:LOCAL_RANK)."""
    tensorboard: bool = False
    """Also write TensorBoard event files under `output_dir/tensorboard`."""
    wandb_project: str | None = None
    """Also log to this Weights & Biases project."""
    progress: bool = True
    """Show a progress bar with live reward, success and loss."""

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("steps", "minibatch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1; got {getattr(self, name)}")
        if not 0 < self.lr < math.inf:
            raise ConfigError(f"lr must be positive and finite; got {self.lr}")
        for name in ("weight_decay", "max_grad_norm"):  # (a negative clipping norm would flip every gradient)
            if not 0 <= getattr(self, name) < math.inf:
                raise ConfigError(f"{name} must be 0 or positive and finite; got {getattr(self, name)}")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout must be in [0, 1); got {self.lora_dropout}")
        if self.lora_rank < 0:
            raise ConfigError(f"lora_rank must be 0 (full fine-tuning) or positive; got {self.lora_rank}")
        if self.save_every < 0:
            raise ConfigError(f"save_every must be 0 (only at the end) or positive; got {self.save_every}")
        if self.env_timeout is not None and not 0 < self.env_timeout < math.inf:
            raise ConfigError(f"env_timeout must be positive and finite, or None; got {self.env_timeout}")
        if not 0 <= self.env_actor_cpus < math.inf:
            raise ConfigError(f"env_actor_cpus must be 0 or positive and finite; got {self.env_actor_cpus}")
        if self.fsdp and self.lora_rank:
            raise ConfigError("fsdp shards full fine-tuning; with LoRA (lora_rank > 0) train with DDP (fsdp: false)")
        if self.resume and self.overwrite_output_dir:
            raise ConfigError("resume continues the run in output_dir, overwrite_output_dir deletes it: pick one")


def checkpoint_to_resume(config: TrainerConfig, is_main: bool = True) -> Path | None:
    """The checkpoint a run continues from (None: a fresh start). A fresh run into an `output_dir` that holds
    an earlier run's checkpoints stops with a `CheckpointError` unless `overwrite_output_dir` (then they are
    deleted once the run begins: see `clear_earlier_run`): new checkpoints pruned among old ones would make a
    later resume restart."""
    run_dir = Path(config.output_dir)
    if config.resume:
        checkpoint = resume_checkpoint(run_dir)
        if checkpoint is None and is_main:
            print(f"resume: no checkpoint in {run_dir} yet; starting at step 0", file=sys.stderr)
        return checkpoint
    earlier = saved_checkpoints(run_dir)
    if earlier and not config.overwrite_output_dir:
        raise CheckpointError(
            f"{run_dir} holds checkpoints of an earlier run (up to {earlier[-1].name}): continue it with resume: "
            "true (--resume true), delete them and start over with overwrite_output_dir: true "
            "(--overwrite-output-dir true), or choose another output_dir"
        )
    return None


def clear_earlier_run(run_dir: Path) -> None:
    """Deletes an earlier run's checkpoints (`overwrite_output_dir`), saying so. Called when the new run begins,
    after the trainer was built: a config that cannot run (a typo in an env id, a missing file, a logging sink
    not installed) stops before anything of the earlier run is gone."""
    earlier = saved_checkpoints(run_dir)
    if earlier:
        clear_checkpoints(run_dir)
        print(f"overwrite_output_dir: deleted {len(earlier)} earlier checkpoint(s) in {run_dir}", file=sys.stderr)


def check_env_id(env_id: str) -> None:
    """Raises Gymnasium's error for an env id `gym.make` would not find; `module:Name-v0` imports the module first,
    as `gym.make` does."""
    module, _, name = env_id.rpartition(":")
    if module:
        importlib.import_module(module)
    gym.spec(name)


def env_factory(env_id: str, env_kwargs: Mapping[str, Any], config: TrainerConfig, max_envs: int) -> EnvFactory:
    """What makes the run's envs: `gym.make(env_id, **env_kwargs)` here, or with `config.env_actors` the same env
    with its base env in a Ray actor (`reflectgym.distributed.envs`), for at most `max_envs` envs at once, whose
    calls fail past `config.env_timeout` (so a hung actor goes with the env abandoned). An unknown id stops here,
    before the run begins and an overwrite deletes anything. `close_env_factory` releases it."""
    check_env_id(env_id)
    kwargs = dict(env_kwargs)
    if not config.env_actors:
        return lambda: gym.make(env_id, **kwargs)
    try:  # (imported here: Ray is an optional extra, needed only for env actors)
        from reflectgym.distributed.envs import EnvActorConfig, remote_env_factory
    except ImportError as missing:
        raise ConfigError(f"env_actors needs Ray: pip install 'reflectgym[ray]' ({missing})") from None
    try:
        actors = EnvActorConfig(num_cpus=config.env_actor_cpus, call_timeout_s=config.env_timeout)
        return remote_env_factory(env_id, kwargs, actors, max_envs)
    except ValueError as error:  # (a local cluster too small for the envs in flight)
        raise ConfigError(f"env_actors: {error} (num_envs, env_actor_cpus)") from None


def close_env_factory(make_env: EnvFactory) -> None:
    """Releases what an `env_factory` holds between envs (env actors kept for the next env); nothing for a plain
    `gym.make` factory."""
    close = getattr(make_env, "close", None)
    if callable(close):
        close()


def check_attempts(env: gym.Env[Any, Any], env_id: str, trainer: str) -> int:
    """The env's attempts per episode; `ConfigError` unless it is a single-answer env (code, math, a task env)
    with a second attempt: `trainer` trains revisions of an answer after its feedback, which a multi-step env
    (Sokoban, web: `max_steps`) has no notion of."""
    attempts = getattr(env.unwrapped, "max_attempts", None)
    if not isinstance(attempts, int):
        raise ConfigError(
            f"{trainer} revises a single answer after its feedback: {env_id} has no attempts (a multi-step env); use "
            "a single-answer env (code, math, a task env) with env_kwargs max_attempts of 2 or more"
        )
    if attempts < 2:
        raise ConfigError(f"{trainer} needs a second attempt; {env_id} allows {attempts}: set env_kwargs max_attempts")
    return attempts


def run_record(config: Any, policy: HFPolicy, trainer: str | None) -> dict[str, Any]:
    """The config as `config.json` records it: with the trainer's name, and the model the policy was loaded from
    (a policy a script passed in may not be `config.model`)."""
    record = {"trainer": trainer, **to_dict(config)} if trainer else to_dict(config)
    if policy.source is not None and "model" in record:
        record["model"] = policy.source
    return record


def load_policy(config: TrainerConfig) -> HFPolicy:
    """The policy named by `config.model`, in float32 (mixed precision comes from autocast, see `bf16`); under
    `torchrun` with CUDA (device unset or "cuda"), on this rank's GPU, `cuda:LOCAL_RANK`."""
    if not config.progress:
        silence_library_bars()
    source: str | os.PathLike[str] = config.model
    world = current_world()
    device = config.device
    if device in (None, "cuda") and world.distributed and torch.cuda.is_available():  # this rank's own GPU
        visible = torch.cuda.device_count()
        if world.local_rank >= visible:
            raise ConfigError(
                f"local rank {world.local_rank} has no GPU of its own ({visible} visible): launch at most {visible} "
                "processes per node, or train on CPU with device: cpu"
            )
        device = f"cuda:{world.local_rank}"
    if config.model == TINY_MODEL:
        from reflectgym.agents.tiny import build_tiny_model

        folder = Path(config.output_dir) / "tiny-model"
        if world.is_main:
            build_tiny_model(folder)
        if world.distributed:  # the other ranks wait for rank 0's folder (the group's backend: the training device's)
            init_world(world, resolve_device(device))
            barrier()
        source = folder
    try:
        policy = HFPolicy.from_pretrained(source, HFPolicyConfig(device=device, dtype="float32"))
    except FileNotFoundError as error:
        raise FileNotFoundError(f"model: {error}") from error
    policy.source = config.model  # what the config named (`tiny` stays `tiny` in the run's record)
    return policy


def warn_if_half_precision(trainable: Sequence[torch.nn.Parameter]) -> None:
    """Warns when the weights being trained are not float32: AdamW's small updates would be rounded away (bfloat16
    keeps 8 bits of mantissa). `HFPolicy` loads bfloat16 or float16 on a GPU for inference; `load_policy` loads
    float32."""
    dtypes = sorted({str(parameter.dtype).removeprefix("torch.") for parameter in trainable} - {"float32"})
    if dtypes:
        warnings.warn(
            f"training {'/'.join(dtypes)} weights: updates smaller than their precision are lost. Load the policy "
            'with HFPolicyConfig(dtype="float32") for float32 master weights (bf16 autocast still applies).',
            stacklevel=3,
        )


def training_autocast(bf16: bool | None, device: torch.device) -> torch.dtype | None:
    """The training passes' autocast dtype: bfloat16 when `bf16` is on (None: on a GPU that computes in it natively,
    `native_bf16`), else none (float32). On older GPUs (V100, T4) torch emulates bfloat16 several times slower, and
    float16 autocast would need loss scaling, which the update does not do: they train in float32."""
    on = bf16 if bf16 is not None else device.type == "cuda" and native_bf16(device)
    return torch.bfloat16 if on else None


def with_lora(model: torch.nn.Module, config: TrainerConfig) -> torch.nn.Module:
    """`model` with LoRA adapters on `config.lora_target_modules` (only they train), or `model` when rank is 0."""
    if config.lora_rank == 0:
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ImportError("lora_rank > 0 needs peft: pip install 'reflectgym[train]' (or pip install peft)") from error
    torch.manual_seed(config.seed)  # the adapters' initialisation follows the run's seed
    lora = LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)  # type: ignore[arg-type]


def is_lora(model: torch.nn.Module) -> bool:
    """Whether `model` is a `peft` model: adapters (`with_lora`) on a base model that does not train."""
    return hasattr(model, "merge_and_unload") and hasattr(model, "disable_adapter")


def named_weights(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """`model`'s parameters by name, detached (tied weights once, under their first name)."""
    return [(name, tensor.detach()) for name, tensor in model.named_parameters()]


def trained_weights(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The model's weights under their plain Hugging Face names, for a sampler: with LoRA, merged as
    `merge_and_unload` merges them, without a copy of the model (`merged_lora_weights`)."""
    return merged_lora_weights(model) if is_lora(model) else named_weights(model)


def merged_lora_weights(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """A LoRA model's weights as `copy.deepcopy(model).merge_and_unload()` has them (the same names, order and bits),
    without that copy (a second model on the GPU at every weight sync: 28 GB for a 7B model in float32): an adapted
    layer's weight is W plus each active adapter's ΔW (peft's `get_delta_weight`, added as its merge adds it), a new
    tensor; every other weight is the model's own. The model is not touched (merging in place and unmerging would
    leave W + ΔW - ΔW, not W). Adapters peft merges otherwise (variants such as DoRA, a LoRA bias, adapters already
    merged) are merged into a copy, as before."""
    from peft.tuners.lora import LoraLayer
    from peft.tuners.tuners_utils import BaseTunerLayer

    base: torch.nn.Module = model.get_base_model()  # type: ignore[operator]
    layers: list[Any] = [module for module in base.modules() if isinstance(module, BaseTunerLayer)]
    if not all(isinstance(layer, LoraLayer) and plainly_merged(layer) for layer in layers):
        return named_weights(copy.deepcopy(model).merge_and_unload())  # type: ignore[operator]
    merged: dict[int, torch.Tensor] = {id(layer.get_base_layer().weight): merged_weight(layer) for layer in layers}
    kept = {id(tensor) for layer in layers for tensor in layer.get_base_layer().parameters()}
    adapters = {id(tensor) for layer in layers for tensor in layer.parameters()} - kept
    return [
        (name.replace(".base_layer.", "."), merged.get(id(tensor), tensor.detach()))
        for name, tensor in base.named_parameters()
        if id(tensor) not in adapters
    ]


def plainly_merged(layer: Any) -> bool:
    """Whether merging a LoRA layer's active adapters only adds their ΔW to its weight (no variant such as DoRA, no
    LoRA bias, nothing merged yet)."""
    variants, dora, bias = (getattr(layer, name, {}) for name in ("lora_variant", "use_dora", "lora_bias"))
    return not layer.merged and not any(
        adapter in variants or dora.get(adapter) or bias.get(adapter) for adapter in layer.active_adapters
    )


def merged_weight(layer: Any) -> torch.Tensor:
    """A LoRA layer's weight with its active adapters' ΔW added, in the order and the arithmetic of peft's merge."""
    weight = layer.get_base_layer().weight.detach()
    with torch.no_grad():
        for adapter in layer.active_adapters:
            if adapter in layer.lora_A or adapter in layer.lora_embedding_A:
                weight = weight + layer.get_delta_weight(adapter)
    return weight


class WeightSyncedSampler(TokenPolicy, Protocol):
    """A sampling engine that takes new weights in place (`VLLMPolicy`, `HFPolicy`)."""

    def update_weights(self, weights: Iterable[tuple[str, Any]]) -> None:
        """Loads `(name, tensor)` pairs into the engine's model."""
        ...


def export_model(
    model: torch.nn.Module, tokenizer: Any, folder: str | Path, state: Mapping[str, torch.Tensor] | None = None
) -> Path:
    """Writes a folder `HFPolicy.from_pretrained` loads, the tokenizer beside: with LoRA, the weights merged as a
    sampler is sent them (`merged_lora_weights`, no copy of the model: a run on a full GPU does not fail at its end);
    `state`: the whole weights of a sharded model (`full_model_state`), written in its place."""
    out = Path(folder)
    if is_lora(model):
        base: Any = model.get_base_model()  # type: ignore[operator]
        base.save_pretrained(out, state_dict=plain_state_dict(model), safe_serialization=True)
    else:
        saved = dict(state) if state is not None else None
        model.save_pretrained(out, state_dict=saved, safe_serialization=True)  # type: ignore[operator]
    tokenizer.save_pretrained(out)
    return out


def plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A LoRA model's state dict as `merge_and_unload` leaves it: the merged weights under their plain names, and the
    base model's persistent buffers (no adapter tensors)."""
    state = dict(trained_weights(model))
    base: Any = model.get_base_model()  # type: ignore[operator]
    parameters = {name for name, _ in base.named_parameters(remove_duplicate=False)}
    for name, tensor in base.state_dict().items():
        plain = name.replace(".base_layer.", ".")
        if name not in parameters and "lora_" not in name and plain not in state:
            state[plain] = tensor
    return state


class TrainingSession:
    """One training run's shared machinery.

    Args:
        config: The run's shared options.
        policy: The policy whose model trains in place; with LoRA, its model is replaced by the adapted one.
        describe: The full config to record beside the metrics (a trainer's own config).
        trainer: The trainer's registered name, recorded with it: `reflectgym train RUN/config.json` reruns it.
    """

    def __init__(
        self, config: TrainerConfig, policy: HFPolicy, describe: Any | None = None, trainer: str | None = None
    ) -> None:
        self.config = config
        self.policy = policy
        if not config.progress:
            silence_library_bars()  # (the final model's save)
        if is_sharded(policy.model):  # (its gathered parameters are not the ones an update steps)
            raise ValueError(
                "the policy's model was sharded by an earlier fsdp run: load that run's output_dir/model into a new "
                "policy to train it further"
            )
        policy.model = with_lora(policy.model, config).eval()  # (peft leaves it training: dropout in rollouts)
        self.model: torch.nn.Module = policy.model
        self.world = current_world()
        """This process's place in a `torchrun` launch (rank 0 of 1 otherwise)."""
        init_world(self.world, policy.device)
        self.sharded = config.fsdp and self.world.distributed
        """Whether `model` is trained fully sharded (FSDP2): made so by `begin`, after the trainer has built what it
        copies from the plain model (a KL reference, a sampler)."""
        self.train_model = self.model if self.sharded else wrap_for_training(self.model, self.world, policy.device)
        """What training passes run through: DDP around `model` when several ranks train, else `model` (sharded
        in place under `fsdp`)."""
        self.pad_id = int(policy.tokenizer.pad_token_id)
        warn_if_half_precision(self._trainable())
        self.optimizer = self._new_optimizer()
        self.autocast_dtype = training_autocast(config.bf16, policy.device)
        self.run_dir = Path(config.output_dir)
        self._resume_from = checkpoint_to_resume(config, self.world.is_main)
        if self.world.is_main:
            require_sinks(tensorboard=config.tensorboard, wandb=config.wandb_project is not None)
        self.step = 0
        self._describe = run_record(describe if describe is not None else config, policy, trainer)
        self._logger: MetricsLogger | None = None
        self._bar: Any = None

    def _trainable(self) -> list[torch.nn.Parameter]:
        return [parameter for parameter in self.model.parameters() if parameter.requires_grad]

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self._trainable(), lr=self.config.lr, weight_decay=self.config.weight_decay)

    def begin(self, title: str) -> dict[str, Any]:
        """Shards the model under `fsdp` (the optimiser is remade over the shards); restores the latest checkpoint
        when resuming, else seeds every generator; opens metrics and the progress bar. Returns the restored trainer
        state (`{}` on a fresh start)."""
        if self.sharded and not is_sharded(self.model):
            shard(self.model, self.policy.device)
            self.optimizer = self._new_optimizer()
        checkpoint = self._resume_from
        state: dict[str, Any] = {}
        own_generators = False
        if checkpoint is not None:
            world = self.world
            state = load_checkpoint(
                checkpoint, model=self.model, optimizer=self.optimizer, rank=world.rank, world_size=world.size
            )
            self.step = int(state["step"])
            self._take_optimiser_settings()
            own_generators = int(state.get("world_size", 1)) == world.size
        else:
            torch.manual_seed(self.config.seed)
            np.random.seed(self.config.seed)
        if self.sharded:
            gather(self.model)  # (rollouts come first)
        if self.world.rank > 0 and not own_generators:  # other ranks sample differently from rank 0
            torch.manual_seed(self.config.seed * 1_000_003 + self.world.rank * 7919 + self.step)
        if not self.world.is_main:
            return state
        if checkpoint is None and self.config.overwrite_output_dir:
            clear_earlier_run(self.run_dir)
        self._logger = MetricsLogger(
            self.run_dir,
            tensorboard=self.config.tensorboard,
            wandb_project=self.config.wandb_project,
            config=self._describe,
            resumed_at=self.step if checkpoint is not None else None,
        )
        self._bar = tqdm(
            total=self.config.steps, initial=self.step, desc=title, disable=not self.config.progress, unit="step"
        )
        return state

    def _take_optimiser_settings(self) -> None:
        """After a resume, the optimiser's learning rate and weight decay are this run's config (loading its state
        put back the checkpoint's); a change is said once, so that a resumed run is not silently another one."""
        wanted = {"lr": self.config.lr, "weight_decay": self.config.weight_decay}
        saved = self.optimizer.param_groups[0]
        changed = [f"{name} {saved[name]} -> {value}" for name, value in wanted.items() if saved[name] != value]
        if changed and self.world.is_main:
            print(f"resume: the config changes the optimiser's {', '.join(changed)}", file=sys.stderr)
        for group in self.optimizer.param_groups:
            group.update(wanted)

    @property
    def done(self) -> bool:
        """Whether the configured steps are all taken."""
        return self.step >= self.config.steps

    def update(
        self, sequences: Sequence[TrainingSequence], loss_fn: LossFn, dropout: bool = True, temperature: float = 1.0
    ) -> UpdateResult:
        """One optimiser step over `sequences` with the run's minibatching, clipping and precision (and dropout, unless
        `dropout=False`; log-probs at `temperature`: see `optimizer_step`). A sharded model is scattered for it and
        gathered again after."""
        if self.sharded and not is_sharded(self.model):
            raise RuntimeError("call begin() before update(): it shards the model under fsdp")
        with scattered(self.model):
            result = optimizer_step(
                self.train_model,
                self.optimizer,
                sequences,
                loss_fn,
                pad_id=self.pad_id,
                minibatch_size=self.config.minibatch_size,
                max_grad_norm=self.config.max_grad_norm or None,
                autocast_dtype=self.autocast_dtype,
                normalisation=self.config.normalisation,
                dropout=dropout,
                temperature=temperature,
            )
        self.model.eval()
        return result

    def _full_states(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """A sharded model's whole weights and optimiser state, on rank 0 (a collective; the model stays gathered)."""
        with scattered(self.model):
            return full_model_state(self.model), full_optimizer_state(self.model, self.optimizer)

    def end_step(self, metrics: Mapping[str, float], trainer_state: Callable[[], Mapping[str, Any]]) -> None:
        """Counts the step, logs its metrics, advances the bar and checkpoints when due (`trainer_state()` is
        what the trainer needs to resume: data position, buffers...)."""
        self.step += 1
        every = self.config.save_every
        due = bool(every and self.step % every == 0) or self.step == self.config.steps
        rng_states = gather_to_main(capture_rng_state()) if due else None  # every rank's, for an exact resume
        model_state, optimizer_state = self._full_states() if due and self.sharded else (None, None)
        if not self.world.is_main:
            return
        if self._logger is None:
            raise RuntimeError("call begin() before end_step()")
        self._logger.log(self.step, metrics)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix({key: f"{metrics[key]:.3f}" for key in PROGRESS_KEYS if key in metrics})
        if due:
            save_checkpoint(
                self.run_dir,
                self.step,
                model=self.model,
                optimizer=self.optimizer,
                trainer_state={"config": self._describe, "world_size": self.world.size, **trainer_state()},
                rng_states=rng_states,
                model_state=model_state,
                optimizer_state=optimizer_state,
            )

    def run(
        self,
        title: str,
        step: Callable[[], dict[str, float]],
        *,
        state: Callable[[], Mapping[str, Any]] = dict,
        restore: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> list[dict[str, float]]:
        """The loop every trainer runs: begin (resume or seed), `step()` until done, logging and checkpointing
        each step with `state()`, then export. `restore` receives a resumed run's trainer state first. Returns the
        metrics of each step run here."""
        restored = self.begin(title)
        if restore is not None:
            restore(restored)
        history: list[dict[str, float]] = []
        try:
            while not self.done:
                metrics = step()
                self.end_step(metrics, state)
                history.append({"step": float(self.step), **metrics})
        finally:
            self.close()
        self.finish()
        return history

    def finish(self) -> Path:
        """Closes the logs and writes the trained model to `output_dir/model` (LoRA merged; rank 0); returns it. Under
        `torchrun`, then leaves the process group the run joined (`close_world`); a sharded model is left gathered,
        so the policy still samples (no forward pass needs the group); its trained weights are the exported ones
        (its own `state_dict()` would shard it back)."""
        self.close()
        folder = self.run_dir / "model"
        state = None
        if self.sharded and is_sharded(self.model):
            with scattered(self.model):
                state = full_model_state(self.model)
        if self.world.is_main:
            export_model(self.model, self.policy.tokenizer, folder, state)
        barrier()
        close_world()
        return folder

    def close(self) -> None:
        """Closes the logs and the bar (also after a failure: what was logged stays on disk)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._logger is not None:
            self._logger.close()
            self._logger = None
