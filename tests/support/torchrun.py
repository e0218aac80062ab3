"""Launching a script as one process or as several torchrun ranks on CPU (gloo), for the data-parallel tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    """A TCP port nothing listens on now (for the ranks' rendezvous)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_ranks(script: Path, processes: int, arguments: Sequence[str], timeout: float = 600) -> None:
    """Runs `script ARGUMENTS...` as one plain process (`processes` 1) or as that many torchrun ranks, all on CPU
    (gloo sums exactly; one GPU holds one NCCL rank); fails the test with the end of stderr if it fails."""
    if processes == 1:
        command = [sys.executable, str(script)]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
                   f"--master-port={free_port()}", str(script)]  # fmt: skip
    tests = str(Path(__file__).resolve().parents[1])  # (so a script imports `support` as the tests do)
    path = os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))
    cpu_ranks = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": path}
    result = subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=timeout, env=cpu_ranks)
    assert result.returncode == 0, result.stderr[-4000:]


def seed_each_reply(policy: Any, group_size: int, step: Callable[[], int] | None = None) -> None:
    """Makes `policy` sample each reply alone, seeded by its prompt, its place in its group (and `step()`): the same
    reply whichever rank, and in whichever batch, samples it. The trainers sample with each rank's own generator, so
    the two-rank scripts need this to compare with one process exactly."""
    import dataclasses
    import zlib

    from reflectgym.agents.policy import derive_seed

    generate_ids = policy.generate_ids

    def keyed(prompts: Sequence[Sequence[int]], sampling: Any) -> list[Any]:
        replies = []
        for position, prompt in enumerate(prompts):
            keys = (position % group_size,) if step is None else (position % group_size, step())
            seed = derive_seed(zlib.crc32(repr(list(prompt)).encode()), *keys)
            replies += generate_ids([prompt], dataclasses.replace(sampling, seed=seed))
        return replies

    policy.generate_ids = keyed


def load_ranks(out: Path, ranks: int) -> list[dict[str, Any]]:
    """What each rank's script saved as `out/rank{R}.pt`, in rank order."""
    import torch

    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(ranks)]


def untimed(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """Logged metrics without the wall-clock ones (`*seconds*`), which no two runs share."""
    return [{key: value for key, value in step.items() if "seconds" not in key} for step in history]


def assert_same_steps(ours: list[dict[str, float]], theirs: list[dict[str, float]]) -> None:
    """The same metrics, step by step (the losses and gradient norm up to the order gloo sums in)."""
    assert len(ours) == len(theirs)
    for our_step, their_step in zip(untimed(ours), untimed(theirs), strict=True):
        assert our_step.keys() == their_step.keys()
        for key, value in their_step.items():
            assert our_step[key] == pytest.approx(value, abs=1e-5), key


def assert_same_weights(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> None:
    """Every tensor of `theirs` close to `ours`'s (atol 1e-5: sums over ranks add up in another order)."""
    import torch

    for name, tensor in theirs.items():
        assert torch.allclose(ours[name], tensor, atol=1e-5), name


def launch_training(script: str, model: Path, out: Path, processes: int, steps: int, resume: bool = False) -> None:
    """Writes `script` beside `out` and runs it as `processes` ranks with the arguments MODEL OUT STEPS
    fresh|resume (the two-rank trainer tests' scripts all take these)."""
    path = out.parent / "train.py"
    path.write_text(script)
    run_ranks(path, processes, [str(model), str(out), str(steps), "resume" if resume else "fresh"])


def one_and_two_ranks(
    tmp_path_factory: pytest.TempPathFactory, name: str, script: str, steps: int
) -> tuple[Path, Path, dict[str, Any], list[dict[str, Any]]]:
    """The tiny model (seed 3) trained `steps` steps by `script` in one process and on two ranks: (folder, model,
    the one process's record, the two ranks' records)."""
    from reflectgym.agents.tiny import TinyModelConfig, build_tiny_model

    tmp_path = tmp_path_factory.mktemp(name)
    model = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=3))
    launch_training(script, model, tmp_path / "single", 1, steps)
    launch_training(script, model, tmp_path / "ddp", 2, steps)
    return tmp_path, model, load_ranks(tmp_path / "single", 1)[0], load_ranks(tmp_path / "ddp", 2)
