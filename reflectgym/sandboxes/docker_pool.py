"""`docker`: a pool of warm Docker containers, each running one forking worker, driven through the `docker` SDK.

Each container: no network (`network_mode=none` unless `Limits.network`), read-only root (the image of
`docker_image`), tmpfs `/work`, `/tmp` of `Limits.disk_bytes`, a cgroup memory limit (tmpfs pages included) with no
swap, a pids limit, one CPU, all capabilities dropped, `no-new-privileges`, a uid of its own that no other
container or host process uses (so RLIMIT_NPROC counts only this container), private IPC, hostname `sandbox`.
The container's main process (pid 1) is the long-lived worker (`worker_main`), whose stdin/stdout the SDK's attach
socket carries; files travel with each request and are written into the wiped `/work`; each run is a fresh forked
child with rlimits.
Containers are replaced after `PoolConfig.max_runs_per_worker` runs and after any run that hit a limit (a breach).

Threat model: as `bwrap` (network, host filesystem, processes, uid, ipc, memory/CPU/output/time limits,
environment), with the engine's cgroups bounding the whole container's memory and processes. Not covered: kernel
bugs (no custom seccomp profile beyond Docker's default one), the Docker daemon itself, side channels. A SIGKILL the
worker did not send is read as the OOM killer (`memory_limit`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

from reflectgym.sandboxes.bwrap import TMP_DIR, WORK_DIR
from reflectgym.sandboxes.environment import program_env
from reflectgym.sandboxes.pool import PoolConfig, WarmPool, worker_command
from reflectgym.sandboxes.types import MIB, Isolation, Limits, SandboxError
from reflectgym.sandboxes.worker_link import WorkerChannel, WorkerLostError

UID_BASE = 1_600_000_000
"""Containers run as a random uid above this, one per container."""
WORKER_OVERHEAD_BYTES = 64 * MIB
"""Memory the container gets beyond the program's limit, for the worker, its zygote and the next standby."""
TMPFS_INODES = 65_536
"""Files and directories each of a container's `/work` and `/tmp` may hold: their size limit counts bytes only, and
every empty file is kernel memory outside the container's memory limit."""
LABEL = "reflectgym.sandbox"


@dataclass(frozen=True)
class DockerConfig:
    """Settings of the `docker` backend."""

    image: str | None = None
    """Image tag; None builds (once) and uses the local image of `docker_image`."""
    cpus: float = 1.0
    """CPUs each container may use (CFS quota)."""
    base_url: str | None = None
    """Docker engine address; None uses the environment (DOCKER_HOST or the local socket)."""


class DockerChannel:
    """The worker's stdin/stdout over the SDK's exec socket (stdout arrives in 8-byte-header frames)."""

    def __init__(self, container: Any, sock: socket.socket) -> None:
        self.container = container
        self._sock = sock
        self._buffer = bytearray()
        self._frame_left = 0

    def send(self, data: bytes) -> None:
        """Write all of `data` to the worker's stdin."""
        try:
            self._sock.sendall(data)
        except OSError as error:
            raise WorkerLostError(f"worker stopped reading: {error}") from error

    def receive(self, count: int, deadline: float) -> bytes:
        """Read exactly `count` payload bytes of the worker's stdout before `deadline`."""
        while len(self._buffer) < count:
            self._fill(deadline)
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def _fill(self, deadline: float) -> None:
        """Move one frame's worth of payload into the buffer."""
        if self._frame_left == 0:
            header = self._read_raw(8, deadline)
            self._frame_left = struct.unpack(">I", header[4:8])[0]
            return
        chunk = self._read_raw(min(self._frame_left, 1 << 20), deadline, exact=False)
        self._frame_left -= len(chunk)
        self._buffer += chunk

    def _read_raw(self, count: int, deadline: float, exact: bool = True) -> bytes:
        chunks: list[bytes] = []
        got = 0
        while got < count:
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or not select.select([self._sock], [], [], remaining)[0]:
                raise WorkerLostError("worker did not answer in time")
            chunk = self._sock.recv(count - got)
            if not chunk:
                raise WorkerLostError("worker exited")
            chunks.append(chunk)
            got += len(chunk)
            if not exact:
                break
        return b"".join(chunks)

    def fileno(self) -> int:
        return self._sock.fileno()

    def has_buffered(self) -> bool:
        return bool(self._buffer)

    def kill(self) -> None:
        """Remove the container (and so everything in it)."""
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(Exception):  # already gone is fine
            self.container.remove(force=True)


class DockerLauncher:
    """Starts one locked-down container per worker."""

    name = "docker"
    isolation = Isolation.CONTAINER
    sigkill_means_oom = True
    extra_processes = 4  # the worker (the container's pid 1), its compiler, its zygote and the next standby

    def __init__(self, config: DockerConfig, limits: Limits, preload: tuple[str, ...]) -> None:
        try:
            import docker
        except ImportError as error:
            raise SandboxError("the docker backend needs the docker SDK: pip install 'reflectgym[docker]'") from error
        from reflectgym.sandboxes.docker_image import ensure_image

        try:
            self.client = docker.DockerClient(base_url=config.base_url) if config.base_url else docker.from_env()
            self.client.ping()
        except Exception as error:  # the SDK raises several unrelated types when no engine answers
            raise SandboxError(f"no Docker engine answers: {error}") from error
        self.config = config
        self.limits = limits
        self.preload = preload
        self.image = config.image or ensure_image(self.client)

    def start(self, cpu: int | None = None) -> WorkerChannel:
        """Create a container whose main process is the worker (kept on `cpu` if given), attach to its stdin/stdout,
        then start it."""
        uid = UID_BASE + secrets.randbelow(100_000_000)
        limits = self.limits
        tmpfs_options = f"size={limits.disk_bytes},nr_inodes={TMPFS_INODES},mode=1777,exec"
        memory = limits.memory_bytes + 2 * limits.disk_bytes + WORKER_OVERHEAD_BYTES
        try:
            container = self.client.containers.create(
                self.image,
                worker_command("/usr/bin/python3", self.preload, cpu),
                stdin_open=True,
                network_mode="bridge" if limits.network else "none",
                read_only=True,
                tmpfs={"/work": tmpfs_options, "/tmp": tmpfs_options},
                mem_limit=memory,
                memswap_limit=memory,
                pids_limit=limits.max_processes + self.extra_processes + 1,
                nano_cpus=int(self.config.cpus * 1e9),
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                user=f"{uid}:{uid}",
                ipc_mode="private",
                hostname="sandbox",
                working_dir="/work",
                environment=program_env(WORK_DIR, TMP_DIR, {}),  # (the worker starts as `python3 main.py` would)
                labels={LABEL: "1"},
            )
            wrapped = self.client.api.attach_socket(str(container.id), params={"stdin": 1, "stdout": 1, "stream": 1})
            container.start()
        except Exception as error:  # docker.errors.* and requests errors alike mean the sandbox cannot start
            raise SandboxError(f"could not start a sandbox container: {error}") from error
        raw: Any = wrapped  # the SDK wraps the socket (SocketIO over a unix socket); we need the socket itself
        sock: socket.socket = getattr(raw, "_sock", raw)
        sock.setblocking(True)
        return DockerChannel(container, sock)

    def close(self) -> None:
        """Close the SDK client."""
        with contextlib.suppress(Exception):
            self.client.close()


def docker_pool(pool: PoolConfig | None = None, docker: DockerConfig | None = None, *, start: bool = True) -> WarmPool:
    """A warm pool of containers; recycles a container after any breach of a limit."""
    pool = dataclasses.replace(pool or PoolConfig(), recycle_on_breach=True)
    launcher = DockerLauncher(docker or DockerConfig(), pool.limits, pool.preload)
    warm = WarmPool(launcher, pool, python="/usr/bin/python3")
    return warm.start() if start else warm


def remove_stale_containers(client: Any) -> int:
    """Remove containers this package left behind (e.g. after a crash); returns how many."""
    removed = 0
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        with contextlib.suppress(Exception):
            container.remove(force=True)
            removed += 1
    return removed


__all__ = ["DockerConfig", "DockerLauncher", "docker_pool", "remove_stale_containers"]
