"""Launching a script as one process or as several torchrun ranks on CPU (gloo), for the data-parallel tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


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
    cpu_ranks = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=timeout, env=cpu_ranks)
    assert result.returncode == 0, result.stderr[-4000:]
