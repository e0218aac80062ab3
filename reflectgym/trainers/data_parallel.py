"""Data-parallel training under torch's distributed launch (`torchrun --nproc-per-node N ...`) (scaling rollouts out
on Ray is `reflectgym.distributed`'s job).

Each process (rank) collects its share of the rollouts or takes its share of each batch, computes gradients on
its own sequences, and DDP all-reduces them, so every rank takes the same optimiser step. Steps stay exact
token-means over the *global* batch: the token count is all-reduced first and each rank weights its loss by
its share of it (times the world size, because DDP averages gradients over ranks). Ranks may hold different
numbers of minibatches in a step (GRPO drops groups): the short ones run zero-weight passes so that every
rank makes the same all-reduces. NCCL on CUDA (one GPU per rank, `LOCAL_RANK`), gloo on CPU.

Rank 0 alone logs, checkpoints and exports; a checkpoint holds every rank's generators, and every rank loads it
when resuming (and restores its own generators when the world size is unchanged).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """Where this process stands in a distributed run (one process: rank 0 of 1)."""

    rank: int = 0
    """This process's index."""
    size: int = 1
    """Number of processes."""
    local_rank: int = 0
    """Index on this machine (the CUDA device it uses)."""

    @property
    def distributed(self) -> bool:
        """Whether more than one process trains."""
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process logs, checkpoints and exports."""
        return self.rank == 0

    def share(self, items: list, /) -> list:  # type: ignore[type-arg]
        """This rank's share of a list (every size-th item from its rank): all ranks together cover it once."""
        return items[self.rank :: self.size]


def current_world() -> World:
    """The world `torchrun` describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK), else one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    return World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))


def init_world(world: World, device: torch.device) -> None:
    """Joins the process group (once): NCCL for CUDA devices (this rank's made current), gloo otherwise."""
    if world.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # object collectives (gather_to_main) run on the current device
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def wrap_for_training(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """`model` in DistributedDataParallel when several ranks train, else `model` itself."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def global_sum(value: float, device: torch.device) -> float:
    """`value` summed over every rank (itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())


def global_means(values: Mapping[str, float], weight: float, device: torch.device) -> dict[str, float]:
    """Weighted means over every rank of each metric (`weight`: this rank's count, e.g. its episodes)."""
    if not (dist.is_available() and dist.is_initialized()):
        return dict(values)
    keys = sorted(values)
    tensor = torch.tensor([values[key] * weight for key in keys] + [weight], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    total = float(tensor[-1])
    return {key: float(tensor[i]) / total if total else 0.0 for i, key in enumerate(keys)}


def global_max(value: float, device: torch.device) -> float:
    """The largest `value` over every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def global_sums(values: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """Each metric summed over every rank; a metric some ranks lack counts 0 there."""
    if not (dist.is_available() and dist.is_initialized()):
        return dict(values)
    gathered: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, sorted(values))
    keys = sorted({key for names in gathered for key in names or []})
    tensor = torch.tensor([values.get(key, 0.0) for key in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return {key: float(tensor[i]) for i, key in enumerate(keys)}


def gather_to_main(value: T) -> list[T] | None:
    """`value` from every rank, in rank order, on rank 0 (None on the others); `[value]` in one process.
    A collective: every rank calls it."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def all_gather(value: T) -> list[T]:
    """`value` from every rank, in rank order, on every rank; `[value]` in one process. A collective: every rank
    calls it (for data each rank made that all of them need whole, e.g. Agent-R's searched conversations)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def barrier() -> None:
    """Waits for every rank (no-op in one process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
