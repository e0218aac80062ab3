"""Fully sharded data parallelism for the trainers under torchrun (`fsdp: true`): PyTorch's FSDP2 (`fully_shard`).

Each transformer block (the model's `_no_split_modules`, as Hugging Face's and TRL's FSDP wrap policies take them)
and then the whole model become FSDP units: every rank keeps 1/N of the weights, of their gradients and of AdamW's
state, and a unit's weights are all-gathered for its forward and backward passes and freed after them (ZeRO-3).

Between updates the weights are gathered whole on every rank (`gather`) and stay so: rollouts, re-scoring, the
reference and the teachers then run as on a plain model, with no collective per forward pass, so ranks may sample
replies of different lengths and score different numbers of sequences (`HFPolicy` turns off transformers' per-token
sync of a sharded model's generation for that). This is the layout verl and OpenRLHF use beside their inference
engines: the memory FSDP saves is the update's (gradients, AdamW's two moments, the weights of the blocks not
running); a rank holds the whole weights while it samples, as it must to generate. `scatter` frees them again before
the update. Deviation from a pure ZeRO-3 run: the weights are never sharded during rollouts.

A model's own `state_dict()` is sharded (DTensors) and must not be read while gathered (FSDP2 shards the model back
for it: the next forward pass on that rank would be a collective). Checkpoints and the final model take full state
dicts through `torch.distributed.checkpoint.state_dict` (a collective: every rank calls it; rank 0 receives the
tensors, on the CPU). Checkpoints of sharded and unsharded runs are alike: full weights, and AdamW's state keyed by
parameter name, which either kind of run resumes from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard

FULL_ON_MAIN = StateDictOptions(full_state_dict=True, cpu_offload=True)
"""Whole tensors, gathered to rank 0's CPU (the other ranks receive an empty dict)."""


def shard(model: torch.nn.Module, device: torch.device) -> None:
    """Makes each transformer block of `model`, then `model` itself, an FSDP unit over every rank of the process
    group, on `device`'s kind (in place: the model's class becomes its FSDP subclass and its parameters DTensors
    holding this rank's shard)."""
    blocks = set(getattr(model, "_no_split_modules", None) or ())
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} names no transformer block class (`_no_split_modules`) to shard by; "
            "train it with DDP (fsdp: false)"
        )
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))  # (a CPU run on a GPU machine stays on gloo)
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether `model` was made an FSDP unit."""
    return isinstance(model, FSDPModule)


def units(model: torch.nn.Module) -> list[FSDPModule]:
    """The FSDP units in `model`, in module order (the same on every rank: collectives follow it)."""
    return [module for module in model.modules() if isinstance(module, FSDPModule)]


def gather(model: torch.nn.Module) -> None:
    """All-gathers every unit's weights and keeps them whole until `scatter`: forward passes then need no
    collective. A collective: every rank calls it."""
    handles = []
    for unit in units(model):
        unit.set_reshard_after_forward(False, recurse=False)
        handles.append(unit.unshard(async_op=True))
    for handle in handles:
        if handle is not None:
            handle.wait()


def scatter(model: torch.nn.Module) -> None:
    """Frees the gathered weights (each rank keeps its shard) and lets each block free them again after its forward
    pass, as training passes want (the root keeps them until its backward, as FSDP does by default: it runs its
    backward first)."""
    for unit in units(model):
        unit.reshard()
        unit.set_reshard_after_forward(unit is not model, recurse=False)


@contextlib.contextmanager
def scattered(model: torch.nn.Module) -> Iterator[None]:
    """While open, `model` is scattered (for an update, or to take its full state dicts); gathered again after, as
    rollouts want it. A collective on entry and exit; a model that is not sharded passes through. Not gathered after
    an error: the other ranks may be elsewhere, and a collective would hang rather than let the error end the run."""
    if not is_sharded(model):
        yield
        return
    scatter(model)
    yield
    gather(model)


def full_model_state(model: torch.nn.Module) -> dict[str, Any]:
    """`model`'s whole state dict on rank 0's CPU (empty elsewhere), a tied weight under its first name only (as
    `save_pretrained` writes it; gathered, its names no longer share one tensor). A collective; `model` must be
    scattered."""
    state: dict[str, Any] = get_model_state_dict(model, options=FULL_ON_MAIN)
    first_names = {name for name, _ in model.named_parameters()}
    for name, _ in model.named_parameters(remove_duplicate=False):
        if name not in first_names:
            state.pop(name, None)
    return state


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """`optimizer`'s whole state, keyed by parameter name, on rank 0's CPU (empty elsewhere). A collective, except
    before the first step: every rank's state is then empty, and so is the one returned (DCP would first take a
    zero-gradient step to fill it, which starts AdamW's bias correction one step late)."""
    if not optimizer.state:
        order = iter(optimized_names(model, optimizer))
        groups = [{**group, "params": [next(order) for _ in group["params"]]} for group in optimizer.param_groups]
        return {"state": {}, "param_groups": groups}
    return get_optimizer_state_dict(model, optimizer, options=FULL_ON_MAIN)


def load_full_model_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    """Loads a whole state dict (on every rank) into a sharded `model`, each rank keeping its shard. Returns the
    missing and unexpected keys, as `load_state_dict(strict=False)` does."""
    options = StateDictOptions(full_state_dict=True, strict=False)
    keys = set_model_state_dict(model, dict(state), options=options)
    return list(keys.missing_keys), list(keys.unexpected_keys)


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """Restores an optimizer's state saved whole, keyed by parameter name (`full_optimizer_state`, a sharded run's)
    or by position (`optimizer.state_dict()`, an unsharded run's), into `optimizer` over `model`, sharded or not."""
    if not state["state"]:  # saved before the first step: the settings alone (DCP would take a zero-gradient step)
        for group, saved in zip(optimizer.param_groups, state["param_groups"], strict=True):
            group.update({key: value for key, value in saved.items() if key != "params"})
        return
    positional = all(isinstance(key, int) for key in state["state"]) and all(
        isinstance(key, int) for group in state["param_groups"] for key in group["params"]
    )
    if not is_sharded(model):
        optimizer.load_state_dict(dict(state) if positional else keyed_by_position(model, optimizer, state))
        return
    by_name = keyed_by_name(model, optimizer, state) if positional else dict(state)
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True, strict=False))


def optimized_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The name of each of `optimizer`'s parameters, in the order of its groups (its state dict's positions)."""
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    return [names[id(parameter)] for group in optimizer.param_groups for parameter in group["params"]]


def keyed_by_name(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> dict:
    """A positional optimizer state (`optimizer.state_dict()`) keyed by parameter name instead; the positions are
    those of `optimizer`'s parameters, which the session builds from `model.parameters()` in order, as it did for
    the run that saved it."""
    order = optimized_names(model, optimizer)
    groups = [{**group, "params": [order[index] for index in group["params"]]} for group in state["param_groups"]]
    return {"state": {order[index]: value for index, value in state["state"].items()}, "param_groups": groups}


def keyed_by_position(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> dict:
    """A name-keyed optimizer state (a sharded run's) keyed by `optimizer`'s positions, as `load_state_dict` takes
    it."""
    position = {name: index for index, name in enumerate(optimized_names(model, optimizer))}
    groups = [{**group, "params": [position[name] for name in group["params"]]} for group in state["param_groups"]]
    return {"state": {position[name]: value for name, value in state["state"].items()}, "param_groups": groups}
