"""A seeded random mix of hostile and normal programs, two at a time, on each warm pool: every normal run must find
a clean sandbox (no process, file, or leftover input of another run), and every hostile run must end as it would
alone. The attack tests check one attack followed by probes; this checks them interleaved across workers."""

from __future__ import annotations

import concurrent.futures
import random
import threading
import time

import pytest

from reflectgym.sandboxes import ExecRequest, ExecResult, ExecStatus, Limits, Sandbox

RUNS = 160
SHORT = Limits(wall_seconds=1.0, cpu_seconds=1.0)
BOMB = Limits(wall_seconds=2.0, cpu_seconds=2.0, memory_bytes=128 << 20)
"""The memory bomb's: filling the default 512 MiB took longer than 1 s on a machine just booted (every page a
first touch for the hypervisor too), and the bomb ended as a timeout instead of at its memory limit."""
GRACE_SECONDS = 8.0
"""A hostile run may take this much past its wall limit (a worker being replaced) before it counts as stuck."""
CLEAN_SECONDS = 5.0
"""A clean run taking longer waited for something (its wall limit is twice that), e.g. for a standby that a
hostile run stopped, taken for ready."""

CLEAN = """
import os, sys
processes = [entry for entry in os.listdir("/proc") if entry.isdigit()]
data = sys.stdin.buffer.read()
print(len(processes), os.listdir("/tmp"), os.listdir("/dev/shm"), sorted(os.listdir(".")), len(data), sum(data) % 9973)
"""
"""Prints what it sees; a clean sandbox has 5 processes (worker, its compiler, zygote, this run, the next
run's standby)."""

ORPHANS = """
import os, time
for _ in range(3):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            time.sleep(30)
        os._exit(0)
"""
IN_REACH = "[int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]"
ATTACKS: dict[str, tuple[str, frozenset[ExecStatus]]] = {
    "orphans": (ORPHANS, frozenset({ExecStatus.OK})),
    "kill_all": (
        "import os\ntry:\n    os.kill(-1, 9)\nexcept OSError:\n    pass",
        frozenset({ExecStatus.OK, ExecStatus.SANDBOX_ERROR}),
    ),
    "stop_all": (
        f"import os\nfor pid in {IN_REACH}:\n    try:\n        os.kill(pid, 19)\n    except OSError:\n        pass",
        frozenset({ExecStatus.OK, ExecStatus.SANDBOX_ERROR}),
    ),
    "stop_newest": (  # the next run's standby: the signal may still be pending when the run is over
        "import os\nos.kill(max(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()), 19)",
        frozenset({ExecStatus.OK}),
    ),
    "relimit": (
        f"import os, resource\nfor pid in {IN_REACH}:\n    try:\n        resource.prlimit(pid, resource.RLIMIT_NPROC,"
        " (1, 1))\n        os.setpriority(os.PRIO_PROCESS, pid, 19)\n    except (OSError, ValueError):\n        pass",
        frozenset({ExecStatus.OK, ExecStatus.SANDBOX_ERROR}),
    ),
    "forged_report": (
        "import os, struct, time\nos.write(4, struct.pack('<id', 0, 0.0))\nos.fork()\ntime.sleep(20)",
        frozenset({ExecStatus.OK}),
    ),
    "flood": ("import sys\nwhile True:\n    sys.stdout.write('y' * 65536)", frozenset({ExecStatus.OUTPUT_LIMIT})),
    "spin": ("while True:\n    pass", frozenset({ExecStatus.TIMEOUT})),
    "memory_bomb": ("x = []\nwhile True:\n    x.append(bytearray(1 << 24))", frozenset({ExecStatus.MEMORY_LIMIT})),
    "sleep": ("import time\ntime.sleep(10)", frozenset({ExecStatus.TIMEOUT})),
    "fork_bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        frozenset({ExecStatus.TIMEOUT}),
    ),
    "litter": (
        "import ctypes, os\nfor path in ('/tmp/left', '/dev/shm/left'):\n    open(path, 'w').write('x')\n"
        "os.mkdir('sub')\nopen('sub/f', 'w').write('x')\nctypes.CDLL(None).shmget(0, 4096, 0o1600)",
        frozenset({ExecStatus.OK}),
    ),
    "lock_out": (
        "import contextlib, fcntl, os\nfor path in ('/tmp', '/dev/shm', '.'):\n    with contextlib.suppress(OSError):\n"
        "        os.chmod(path, 0)\nfor fd in (0, 1, 2):\n    fcntl.fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)\n"
        "    with contextlib.suppress(OSError):\n        os.fchmod(fd, 0)",
        frozenset({ExecStatus.OK}),
    ),
}


def request(kind: str, rng: random.Random) -> tuple[ExecRequest, bytes]:
    """The request of one run of `kind`: "clean", an attack, or "exec:orphans" (the orphans of an exec'd program)."""
    if kind == "clean":
        stdin = rng.randbytes(rng.randrange(3000))
        limits = Limits(wall_seconds=2 * CLEAN_SECONDS)
        return ExecRequest(
            command=("python3", "main.py"), files={"main.py": CLEAN.encode()}, stdin=stdin, limits=limits
        ), stdin
    name = kind.removeprefix("exec:")
    command = ("python3", "-I", "main.py") if kind.startswith("exec:") else ("python3", "main.py")
    limits = BOMB if name == "memory_bomb" else SHORT
    return ExecRequest(command=command, files={"main.py": ATTACKS[name][0].encode()}, limits=limits), b""


def problem(kind: str, stdin: bytes, result: ExecResult, seconds: float) -> str | None:
    """What is wrong with a run's result, if anything."""
    if seconds > (CLEAN_SECONDS if kind == "clean" else BOMB.wall_seconds + GRACE_SECONDS):
        return f"{kind} took {seconds:.1f} s"
    if kind == "clean":
        seen = f"5 [] [] ['main.py'] {len(stdin)} {sum(stdin) % 9973}\n"
        if result.status is not ExecStatus.OK or result.stdout_text != seen:
            return f"clean run saw {result.status.value} {result.stdout_text!r} {result.stderr_text[-300:]!r}"
        return None
    allowed = ATTACKS[kind.removeprefix("exec:")][1]
    return None if result.status in allowed else f"{kind} ended {result.status.value}: {result.message}"


@pytest.mark.parametrize("sandbox", ["pool", pytest.param("docker", marks=pytest.mark.docker)], indirect=True)
def test_hostile_and_clean_runs_interleaved_on_two_workers(sandbox: Sandbox) -> None:
    rng = random.Random(20261204)
    kinds = ["clean" if rng.random() < 0.5 else rng.choice([*ATTACKS, "exec:orphans"]) for _ in range(RUNS)]
    requests = [request(kind, rng) for kind in kinds]
    problems: list[str] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        kind, (exec_request, stdin) = kinds[index], requests[index]
        started = time.perf_counter()
        result = sandbox.run(exec_request)
        found = problem(kind, stdin, result, time.perf_counter() - started)
        if found:
            with lock:
                problems.append(f"run {index}: {found}")

    with concurrent.futures.ThreadPoolExecutor(2) as executor:
        list(executor.map(run, range(RUNS)))
    assert kinds.count("clean") > RUNS // 3
    assert not problems, "\n".join(problems[:10])
