"""Data-parallel training under torch's distributed launch (`torchrun --nproc-per-node N ...`) (scaling rollouts out
on Ray is `reflectgym.distributed`'s job).

Each process (rank) collects its share of the rollouts or takes its share of each batch, computes gradients on
its own sequences, and DDP all-reduces them, so every rank takes the same optimiser step. Steps stay exact
token-means over the *global* batch: the token count is all-reduced first and each rank weights its loss by
its share of it (times the world size, because DDP averages gradients over ranks). Ranks may hold different
numbers of minibatches in a step (GRPO drops groups): the short ones run zero-weight passes so that every
rank runs as many. Gradients accumulate locally over a step's passes (`no_sync`) and are all-reduced once, in its
last pass, which every rank runs (one all-reduce per step, not one per minibatch). NCCL on CUDA (one GPU per rank,
`LOCAL_RANK`), gloo on CPU. A group `init_world` joined is left when the run ends (`close_world`), not one a script
joined itself.

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


_joined_here = False
"""Whether `init_world` joined the process group this process is in (and `close_world` is to leave it)."""


def init_world(world: World, device: torch.device) -> None:
    """Joins the process group (once): NCCL for CUDA devices (this rank's made current), gloo otherwise."""
    global _joined_here
    if world.distributed and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(rank_gpu(world, device))  # object collectives (gather_to_main) use the current one
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        _joined_here = True


def rank_gpu(world: World, device: torch.device) -> int:
    """The index of the GPU this rank trains on: `device`'s. "cuda" without an index is the GPU current when the
    model was placed, GPU 0 for every rank unless the script made its own current: it is taken only when it is
    this rank's (cuda:LOCAL_RANK), else a `ValueError` says what to pass (`torch.cuda.set_device` would say
    "Expected a cuda device with a specified index", and every rank's model would share GPU 0)."""
    if device.index is not None:
        return device.index
    current = torch.cuda.current_device()
    if current != world.local_rank:
        raise ValueError(
            f'device "cuda" is GPU {current} (the current one) on rank {world.rank}: under torchrun each rank trains '
            f'on its own GPU; load the policy on device "cuda:{world.local_rank}" (cuda:LOCAL_RANK), e.g. '
            "HFPolicyConfig(device=f\"cuda:{os.environ['LOCAL_RANK']}\")"
        )
    return current


def close_world() -> None:
    """Leaves the process group `init_world` joined (one a script joined itself stays), once every rank is done
    with it: a process that exits with an NCCL group open is warned that its resources may leak."""
    global _joined_here
    if _joined_here and dist.is_initialized():
        dist.destroy_process_group()
    _joined_here = False


def wrap_for_training(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """`model` in DistributedDataParallel when several ranks train, else `model` itself."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[rank_gpu(world, device)] if device.type == "cuda" else None)


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
