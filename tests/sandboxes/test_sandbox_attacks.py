"""The security suite: hostile programs, one attack each, run on every available backend.

Each test asserts containment of one property. `local`'s known gaps are strict expected failures: if `local`
ever starts containing one, the test says so.
"""

from __future__ import annotations

import errno
import os
import resource
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from reflectgym.sandboxes import ExecRequest, ExecResult, ExecStatus, Limits, Sandbox

Gap = Callable[[str, str], None]
PROJECT_DIR = Path(__file__).resolve().parents[2]
FAST = Limits(wall_seconds=4.0, cpu_seconds=2.0, max_output_bytes=64 * 1024, max_file_bytes=1 << 20)


def run_py(sandbox: Sandbox, code: str, limits: Limits = FAST, stdin: bytes = b"") -> ExecResult:
    return sandbox.run(
        ExecRequest(command=("python3", "main.py"), files={"main.py": code.encode()}, stdin=stdin, limits=limits)
    )


def later_runs(sandbox: Sandbox, probe: str, stdin: bytes = b"") -> list[ExecResult]:
    """`probe` run four times after an attack: enough to reach every worker of the test pools (two each)."""
    return [run_py(sandbox, probe, stdin=stdin) for _ in range(4)]


def later_outputs(sandbox: Sandbox, probe: str) -> list[str]:
    """What `probe` printed (stripped) in each of `later_runs`."""
    return [result.stdout_text.strip() for result in later_runs(sandbox, probe)]


def assert_attack_changes_no_later_run(sandbox: Sandbox, attack: str, probe: str) -> None:
    """`probe` prints the same in each of `later_runs` after `attack` as it did before it."""
    before = run_py(sandbox, probe).stdout_text
    run_py(sandbox, attack)
    assert [result.stdout_text for result in later_runs(sandbox, probe)] == [before] * 4


def assert_later_runs_run_as_usual(sandbox: Sandbox) -> None:
    """Each of `later_runs` of an innocent program after an attack runs and prints what it should."""
    results = later_runs(sandbox, "print('innocent')")
    assert [(result.status, result.stdout_text) for result in results] == [(ExecStatus.OK, "innocent\n")] * 4


def host_processes_with(token: str) -> list[int]:
    """Host pids whose command line contains `token` (the host sees every container and namespace)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if token.encode() in cmdline:
                found.append(int(entry))
    return found


# --- network ---------------------------------------------------------------------------------------------------


def test_network_connect_to_host_loopback_service_is_blocked(sandbox: Sandbox, known_gap: Gap) -> None:
    known_gap("local", "shares the host's network namespace")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    code = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'x')\n"
        "except OSError as e:\n"
        "    print('blocked', e)"
    )
    result = run_py(sandbox, code)
    listener.settimeout(0.5)  # a connection the run made waits in the backlog, closed or not
    accepted = _accept_one(listener)
    listener.close()
    assert not accepted
    assert "blocked" in result.stdout_text


def _accept_one(listener: socket.socket) -> bool:
    try:
        listener.accept()[0].close()
        return True
    except OSError:
        return False


def test_network_has_no_interface_but_loopback(sandbox: Sandbox, known_gap: Gap) -> None:
    known_gap("local", "shares the host's network interfaces")
    result = run_py(sandbox, "import socket\nprint(sorted(name for _, name in socket.if_nameindex()))")
    assert result.ok, result.stderr_text
    assert result.stdout_text.strip() in ("['lo']", "[]")


def test_network_has_no_route_outside(sandbox: Sandbox, known_gap: Gap) -> None:
    known_gap("local", "shares the host's routes")
    # A UDP connect only looks up a route; it sends no packet.
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try:\n"
        "    s.connect(('192.0.2.1', 9))\n"
        "    print('routed')\n"
        "except OSError as e:\n"
        "    print('unreachable', e.errno)"
    )
    result = run_py(sandbox, code)
    assert "unreachable" in result.stdout_text, result.stdout_text + result.stderr_text


# --- host files ------------------------------------------------------------------------------------------------


def test_read_etc_shadow_fails(sandbox: Sandbox) -> None:
    result = run_py(sandbox, "print(open('/etc/shadow').read())")
    assert result.status is ExecStatus.RUNTIME_ERROR
    assert "root:" not in result.stdout_text


def test_read_root_home_and_ssh_keys_fails(sandbox: Sandbox) -> None:
    code = (
        "import os\n"
        "for p in ('/root', '/root/.ssh'):\n"
        "    try:\n"
        "        print(p, os.listdir(p))\n"
        "    except OSError as e:\n"
        "        print(p, 'denied')"
    )
    result = run_py(sandbox, code)
    assert result.ok, result.stderr_text
    assert "/root denied" in result.stdout_text and "/root/.ssh denied" in result.stdout_text


def test_read_project_source_fails(sandbox: Sandbox, known_gap: Gap) -> None:
    known_gap("local", "world-readable host files (the project dir) are readable")
    result = run_py(sandbox, f"print(open({str(PROJECT_DIR / 'pyproject.toml')!r}).read())")
    assert result.status is ExecStatus.RUNTIME_ERROR
    assert "reflectgym" not in result.stdout_text


def test_write_outside_work_dir_does_not_reach_host(sandbox: Sandbox, known_gap: Gap) -> None:
    known_gap("local", "world-writable host dirs (/tmp) are writable")
    name = f"reflectgym-escape-{secrets.token_hex(6)}"
    result = run_py(sandbox, f"open('/tmp/{name}', 'w').write('escaped')")
    escaped = Path("/tmp") / name
    try:
        assert not escaped.exists(), result
    finally:
        escaped.unlink(missing_ok=True)


def test_write_into_system_dirs_fails(sandbox: Sandbox) -> None:
    code = (
        "import os\n"
        "for d in ('/usr', '/usr/lib', '/'):\n"
        "    try:\n"
        "        open(os.path.join(d, 'pwned'), 'w').write('x')\n"
        "        print('wrote', d)\n"
        "    except OSError:\n"
        "        print('refused', d)"
    )
    result = run_py(sandbox, code)
    assert "wrote" not in result.stdout_text
    assert not Path("/usr/pwned").exists() and not Path("/usr/lib/pwned").exists()


def test_fill_disk_with_many_files_is_bounded(sandbox: Sandbox, known_gap: Gap) -> None:
    known_gap("local", "the work dir is on the host disk with no size limit")
    limits = Limits(wall_seconds=8, cpu_seconds=6, disk_bytes=8 << 20, max_file_bytes=1 << 20)
    code = (
        "import os\n"
        "try:\n"
        "    for i in range(256):\n"
        "        open(f'f{i}', 'wb').write(b'x' * (1 << 20))\n"
        "    print('filled 256 MiB')\n"
        "except OSError as e:\n"
        "    print('stopped', e.errno)"
    )
    result = run_py(sandbox, code, limits)
    assert "stopped 28" in result.stdout_text, result.stdout_text + result.stderr_text


def test_huge_file_hits_file_size_limit(sandbox: Sandbox) -> None:
    result = run_py(sandbox, "open('big', 'wb').write(b'x' * (8 << 20))")
    assert result.status is ExecStatus.OUTPUT_LIMIT, result


# --- environment and /proc -------------------------------------------------------------------------------------


def test_environment_secrets_do_not_leak(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = secrets.token_hex(12)
    monkeypatch.setenv("REFLECTGYM_TEST_API_KEY", secret)
    result = run_py(sandbox, "import os\nprint(dict(os.environ))")
    assert result.ok, result.stderr_text
    assert secret not in result.stdout_text and "REFLECTGYM_TEST_API_KEY" not in result.stdout_text


def test_environment_secrets_not_readable_through_proc_environ(sandbox: Sandbox) -> None:
    secret = secrets.token_hex(12)
    os.environ["REFLECTGYM_TEST_PROC_SECRET"] = secret
    try:
        code = (
            "import os\n"
            "for p in os.listdir('/proc'):\n"
            "    try:\n"
            "        print(open(f'/proc/{p}/environ', 'rb').read())\n"
            "    except OSError:\n"
            "        pass"
        )
        result = run_py(sandbox, code)
    finally:
        del os.environ["REFLECTGYM_TEST_PROC_SECRET"]
    assert secret not in result.stdout_text


def test_proc_shows_no_host_processes(sandbox: Sandbox, known_gap: Gap) -> None:
    known_gap("local", "shares the host's /proc: other processes' command lines are visible")
    code = (
        "import os\n"
        "for p in os.listdir('/proc'):\n"
        "    if p.isdigit():\n"
        "        try:\n"
        "            print(open(f'/proc/{p}/cmdline', 'rb').read())\n"
        "        except OSError:\n"
        "            pass"
    )
    result = run_py(sandbox, code)
    assert result.ok, result.stderr_text
    assert "pytest" not in result.stdout_text


# --- processes -------------------------------------------------------------------------------------------------


def test_fork_bomb_is_contained(sandbox: Sandbox) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    started = time.perf_counter()
    result = run_py(sandbox, code, Limits(wall_seconds=3, cpu_seconds=3, max_processes=8))
    assert result.status is ExecStatus.TIMEOUT
    assert time.perf_counter() - started < 20


def test_fork_bomb_cannot_exceed_process_limit(sandbox: Sandbox) -> None:
    code = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 100:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(5)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print(n)"
    )
    result = run_py(sandbox, code, Limits(wall_seconds=4, cpu_seconds=3, max_processes=8))
    assert result.ok, result.stderr_text
    assert int(result.stdout_text) < 8


def test_memory_bomb_hits_memory_limit(sandbox: Sandbox) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))"
    result = run_py(sandbox, code, Limits(wall_seconds=6, cpu_seconds=5, memory_bytes=128 << 20))
    assert result.status is ExecStatus.MEMORY_LIMIT, result


def test_cpu_spin_hits_cpu_limit(sandbox: Sandbox) -> None:
    result = run_py(sandbox, "while True:\n    pass", Limits(wall_seconds=8, cpu_seconds=1))
    assert result.status is ExecStatus.TIMEOUT
    assert result.cpu_seconds < 4


def test_sleep_past_wall_limit_is_killed(sandbox: Sandbox) -> None:
    started = time.perf_counter()
    result = run_py(sandbox, "import time\ntime.sleep(60)", Limits(wall_seconds=1, cpu_seconds=1))
    assert result.status is ExecStatus.TIMEOUT
    assert time.perf_counter() - started < 10


def test_output_flood_on_stdout_is_cut(sandbox: Sandbox) -> None:
    result = run_py(sandbox, "import sys\nwhile True:\n    sys.stdout.write('x' * 4096)")
    assert result.status is ExecStatus.OUTPUT_LIMIT
    assert result.stdout_truncated and len(result.stdout) == FAST.max_output_bytes


def test_output_flood_on_stderr_is_cut(sandbox: Sandbox) -> None:
    result = run_py(sandbox, "import os\nwhile True:\n    os.write(2, b'e' * 4096)")
    assert result.status is ExecStatus.OUTPUT_LIMIT
    assert result.stderr_truncated and len(result.stderr) == FAST.max_output_bytes


def test_background_children_do_not_survive_the_run(sandbox: Sandbox) -> None:
    token = f"reflectgym-orphan-{secrets.token_hex(6)}"
    code = (
        "import subprocess, sys\n"
        "for _ in range(3):\n"
        f"    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', '{token}'])\n"
        "print('spawned')"
    )
    result = run_py(sandbox, code)
    assert "spawned" in result.stdout_text, result.stderr_text
    time.sleep(0.2)
    assert host_processes_with(token) == []


def test_detached_daemon_does_not_survive_the_run(sandbox: Sandbox) -> None:
    token = f"reflectgym-daemon-{secrets.token_hex(6)}"
    code = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', '{token}'],\n"
        "    start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print('spawned')"
    )
    result = run_py(sandbox, code)
    assert "spawned" in result.stdout_text, result.stderr_text
    time.sleep(0.2)
    assert host_processes_with(token) == []


def test_zombie_children_are_reaped(sandbox: Sandbox) -> None:
    token = f"reflectgym-zombie-{secrets.token_hex(6)}"
    code = (
        "import os, sys\n"
        "for _ in range(5):\n"
        "    if os.fork() == 0:\n"
        "        os._exit(0)\n"
        f"os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(0.3)', '{token}'])"
    )
    result = run_py(sandbox, code)
    assert result.ok, result.stderr_text
    time.sleep(0.2)
    assert host_processes_with(token) == []


def test_a_forged_exit_report_then_a_fork_leaves_no_process(sandbox: Sandbox) -> None:
    """The pool's child reports its exit on fd 4 and the worker answers at once: a program that forges that report
    and then starts a daemon must still leave nothing behind (the run's processes are counted, not trusted)."""
    token = f"reflectgym-forged-{secrets.token_hex(6)}"
    code = (
        "import os, struct, subprocess, sys, time\n"
        "try:\n"
        "    os.write(4, struct.pack('<id', 0, 0.0))\n"
        "except OSError:\n"
        "    pass\n"
        "for delay in (0, 0.001, 0.01):\n"
        "    time.sleep(delay)\n"
        f"    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', '{token}'],\n"
        "        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "time.sleep(1)"
    )
    for _ in range(3):
        run_py(sandbox, code)
    time.sleep(0.2)
    assert host_processes_with(token) == []


def test_a_forged_cpu_time_stays_a_plausible_number(sandbox: Sandbox) -> None:
    """Where the program reports its own CPU time (the pool's fd 4), a forged NaN, negative or huge figure must not
    reach the result. (Elsewhere the write fails and the run just sleeps.)"""
    for forged in ("float('nan')", "-5.0", "1e300"):
        code = (
            f"import os, struct, time\ntry:\n    os.write(4, struct.pack('<id', 0, {forged}))\nexcept OSError:\n"
            "    pass\ntime.sleep(0.5)  # (the pool answers at the report and ends the run)"
        )
        result = run_py(sandbox, code)
        assert result.status is ExecStatus.OK
        assert 0.0 <= result.cpu_seconds <= result.wall_seconds * (os.cpu_count() or 1)


def test_killing_the_sandbox_parent_does_not_break_the_sandbox(sandbox: Sandbox) -> None:
    run_py(sandbox, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
    assert os.getpid() > 0  # the test process itself is still here
    after = [run_py(sandbox, "print('alive')") for _ in range(3)]
    assert all(r.ok and r.stdout_text == "alive\n" for r in after)


def test_kill_every_process_in_reach_does_not_reach_the_host(sandbox: Sandbox) -> None:
    token = f"reflectgym-bystander-{secrets.token_hex(6)}"
    import subprocess
    import sys

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", token])
    try:
        run_py(sandbox, "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass")
        time.sleep(0.1)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
    assert run_py(sandbox, "print('alive')").ok


def test_becoming_root_fails(sandbox: Sandbox) -> None:
    result = run_py(sandbox, "import os\nos.setuid(0)\nprint('root now')")
    assert "root now" not in result.stdout_text
    assert result.status is ExecStatus.RUNTIME_ERROR


def test_new_user_namespace_is_refused(sandbox: Sandbox, known_gap: Gap) -> None:
    known_gap("local", "an unprivileged uid may create user namespaces on this kernel")
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('created' if libc.unshare(0x10000000) == 0 else 'refused')"
    )
    result = run_py(sandbox, code)
    assert result.stdout_text.strip() == "refused", result.stderr_text


# --- leftovers between runs ------------------------------------------------------------------------------------


def test_files_left_by_one_run_are_gone_in_the_next(sandbox: Sandbox, known_gap: Gap) -> None:
    known_gap("local", "the host's /tmp is shared between runs")
    plant = (
        "import os\n"
        "for p in ('left.txt', os.path.expanduser('~/left_home.txt'), '/tmp/left_tmp.txt'):\n"
        "    try:\n"
        "        open(p, 'w').write('x')\n"
        "    except OSError:\n"
        "        pass"
    )
    assert run_py(sandbox, plant).ok
    probe = (
        "import os\n"
        "places = ('left.txt', os.path.expanduser('~/left_home.txt'), '/tmp/left_tmp.txt')\n"
        "print([p for p in places if os.path.exists(p)])"
    )
    seen = later_outputs(sandbox, probe)
    for leftover in Path("/tmp").glob("left_tmp.txt"):
        leftover.unlink()
    assert seen == ["[]"] * 4


def test_processes_left_by_one_run_are_gone_in_the_next(sandbox: Sandbox) -> None:
    beacon = "import time\nwhile True:\n    open('beacon', 'a').write('x')\n    time.sleep(0.01)"
    plant = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {beacon!r}], start_new_session=True,\n"
        "    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "time.sleep(0.1)"
    )
    run_py(sandbox, plant)
    probe = "import os, time\ntime.sleep(0.1)\nprint(os.path.exists('beacon'))"
    assert later_outputs(sandbox, probe) == ["False"] * 4


def test_shared_memory_left_by_one_run_is_gone_in_the_next(sandbox: Sandbox, known_gap: Gap) -> None:
    known_gap("local", "shares the host's IPC namespace and /dev/shm")
    key = secrets.randbelow(1 << 30) + 1
    plant = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"print(libc.shmget({key}, 4096, 0o1666))\n"
        "try:\n"
        "    open('/dev/shm/left', 'w').write('x')\n"
        "except OSError:\n"
        "    pass"
    )
    run_py(sandbox, plant)
    probe = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"print(libc.shmget({key}, 0, 0) != -1 or os.path.exists('/dev/shm/left'))"
    )
    seen = later_outputs(sandbox, probe)
    assert seen == ["False"] * 4


def skip_local_reaching_the_host(sandbox: Sandbox) -> None:
    if sandbox.name == "local":
        pytest.skip("local: the program's uid is shared with other host processes, which this would reach")


def skip_without_the_seccomp_filter(sandbox: Sandbox, elsewhere: str) -> None:
    """Skip on the backends reflectgym's seccomp filter does not guard; `elsewhere` says what holds there."""
    if sandbox.name not in ("bwrap", "pool"):
        pytest.skip(f"{sandbox.name}: no reflectgym seccomp filter ({elsewhere})")


def test_limits_and_priority_set_on_other_processes_do_not_reach_the_next_run(sandbox: Sandbox) -> None:
    # Whatever the program may reach (a warm pool's worker, zygote or next standby) it tries to cripple; the
    # affinity it narrows to one CPU, or widens to all where a pool keeps the worker on one.
    skip_local_reaching_the_host(sandbox)
    probe = (
        "import os, resource\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[1] > 32, resource.getrlimit(resource.RLIMIT_DATA)[1],\n"
        "      os.getpriority(os.PRIO_PROCESS, 0), len(os.sched_getaffinity(0)))"
    )
    untouched = run_py(sandbox, probe).stdout_text.split()
    assert untouched[:3] == ["True", str(resource.RLIM_INFINITY), "0"]
    tamper = (
        "import os, resource\n"
        "for p in os.listdir('/proc'):\n"
        "    if p.isdigit() and int(p) != os.getpid():\n"
        "        for change in (lambda: resource.prlimit(int(p), resource.RLIMIT_NOFILE, (32, 32)),\n"
        "                       lambda: resource.prlimit(int(p), resource.RLIMIT_DATA, (1 << 20, 1 << 20)),\n"
        "                       lambda: os.setpriority(os.PRIO_PROCESS, int(p), 19),\n"
        "                       lambda: os.sched_setaffinity(int(p), {min(os.sched_getaffinity(0))}\n"
        "                           if len(os.sched_getaffinity(int(p))) > 1 else set(range(os.cpu_count())))):\n"
        "            try:\n"
        "                change()\n"
        "            except OSError:\n"
        "                pass"
    )
    run_py(sandbox, tamper)
    seen = [result.stdout_text.split() for result in later_runs(sandbox, probe)]
    assert seen == [untouched] * 4


def test_bubblewrap_keeps_every_process_to_its_own_limits_priority_and_affinity(sandbox: Sandbox) -> None:
    # The seccomp filter's argument checks, as the kernel runs them: on another process (here the program's own
    # child) setting limits, priority, scheduling or affinity is refused; on itself, and reading, all still work.
    skip_without_the_seccomp_filter(sandbox, "Docker's default profile; the worker checks")
    attempts = (
        "import os, resource, subprocess, sys\n"
        "other = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "changes = {\n"
        "    'limits': lambda pid: resource.prlimit(pid, resource.RLIMIT_NOFILE, (32, 32)),\n"
        "    'nice': lambda pid: os.setpriority(os.PRIO_PROCESS, pid, 5),\n"
        "    'affinity': lambda pid: os.sched_setaffinity(pid, os.sched_getaffinity(0)),\n"
        "    'policy': lambda pid: os.sched_setscheduler(pid, os.SCHED_BATCH, os.sched_param(0)),\n"
        "}\n"
        "for name, change in changes.items():\n"
        "    try:\n"
        "        change(other.pid)\n"
        "        print(name, 'changed')\n"
        "    except PermissionError:\n"
        "        print(name, 'refused')\n"
        "    change(0)\n"
        "print('read', resource.prlimit(other.pid, resource.RLIMIT_NOFILE)[1] > 32)  # (its own is 32 by now)\n"
        "print('own', resource.getrlimit(resource.RLIMIT_NOFILE), os.getpriority(os.PRIO_PROCESS, 0), os.nice(1))\n"
        "other.kill()"
    )
    result = run_py(sandbox, attempts)
    assert result.stdout_text.splitlines() == [
        "limits refused",
        "nice refused",
        "affinity refused",
        "policy refused",
        "read True",
        "own (32, 32) 5 6",
    ], result


def test_limits_set_on_the_newest_other_process_do_not_reach_the_next_run(sandbox: Sandbox) -> None:
    # In a warm pool the newest process but the program's own is the standby that runs the next request.
    skip_local_reaching_the_host(sandbox)
    tamper = (
        "import os, resource\n"
        "others = [int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]\n"
        "resource.prlimit(max(others), resource.RLIMIT_NOFILE, (32, 32))"
    )
    assert_attack_changes_no_later_run(
        sandbox, tamper, "import resource\nprint(resource.getrlimit(resource.RLIMIT_NOFILE))"
    )


def test_stopping_every_process_in_reach_does_not_break_the_next_runs(sandbox: Sandbox) -> None:
    skip_local_reaching_the_host(sandbox)
    stop_all = (
        "import os, signal\n"
        "for p in os.listdir('/proc'):\n"
        "    if p.isdigit() and int(p) != os.getpid():\n"
        "        try:\n"
        "            os.kill(int(p), signal.SIGSTOP)\n"
        "        except OSError:\n"
        "            pass"
    )
    run_py(sandbox, stop_all)
    after = later_runs(sandbox, "print('alive')")
    assert [r.stdout_text for r in after] == ["alive\n"] * 4, after


def test_dev_files_message_queues_keys_and_attributes_left_by_one_run_are_gone_in_the_next(
    sandbox: Sandbox,
) -> None:
    skip_local_reaching_the_host(sandbox)  # it would write into the host's /dev and keyring
    secret = secrets.token_hex(8)
    plant = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "try:\n"
        f"    open('/dev/left', 'w').write('{secret}')\n"
        "except OSError:\n"
        "    pass\n"
        "queue = libc.mq_open(b'/left', os.O_CREAT | os.O_RDWR, 0o600, None)\n"
        f"print('queue', queue, queue >= 0 and libc.mq_send(queue, b'{secret}', 16, 0))\n"
        "libc.syscall.restype = ctypes.c_long\n"
        f"print('key', libc.syscall(248, b'user', b'left-{secret}', b'{secret}', 16, -4))  # add_key\n"
        "for directory in ('/work', '/tmp', '/dev/shm'):\n"
        "    try:\n"
        f"        os.setxattr(directory, 'user.left', b'{secret}')\n"
        "    except OSError:\n"
        "        pass"
    )
    planted = run_py(sandbox, plant)
    assert planted.ok, planted.stderr_text
    probe = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "found = []\n"
        "if os.path.exists('/dev/left'):\n"
        "    found.append('dev')\n"
        "if libc.mq_open(b'/left', os.O_RDONLY, 0, None) >= 0:\n"
        "    found.append('queue')\n"
        f"if '{secret}' in open('/proc/keys').read():\n"
        "    found.append('key')\n"
        "for directory in ('/work', '/tmp', '/dev/shm'):\n"
        "    if 'user.left' in os.listxattr(directory):\n"
        "        found.append(directory)\n"
        "print(found)"
    )
    seen = later_runs(sandbox, probe)
    assert [result.stdout_text.strip() for result in seen] == ["[]"] * 4, [result.stderr_text for result in seen]


def test_a_run_cannot_replace_dev_stdin_for_the_next(sandbox: Sandbox) -> None:
    skip_local_reaching_the_host(sandbox)
    swap = (
        "import os\n"
        "try:\n"
        "    os.unlink('/dev/stdin')\n"
        "    open('/dev/fake', 'w').write('999\\n')\n"
        "    os.symlink('/dev/fake', '/dev/stdin')\n"
        "except OSError as error:\n"
        "    print(error.errno)"
    )
    run_py(sandbox, swap)
    probe = "import os\nprint(os.readlink('/dev/stdin'), os.path.exists('/dev/fake'))"
    assert [result.stdout_text for result in later_runs(sandbox, probe)] == ["/proc/self/fd/0 False\n"] * 4


def test_stdio_made_non_blocking_by_one_run_does_not_break_the_next(sandbox: Sandbox) -> None:
    tamper = (
        "import fcntl, os\n"
        "for fd in (0, 1, 2):\n"
        "    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)\n"
        "try:\n"
        "    fcntl.fcntl(1, fcntl.F_SETPIPE_SZ, 4096)\n"
        "except OSError:\n"
        "    pass"
    )
    assert run_py(sandbox, tamper).ok
    victim = "import sys\nsys.stdout.write('v' * 60000)\nsys.stdout.flush()"
    after = later_runs(sandbox, victim)
    assert [(result.status, len(result.stdout)) for result in after] == [(ExecStatus.OK, 60000)] * 4, after


def test_io_priority_set_on_other_processes_does_not_reach_the_next_run(sandbox: Sandbox, known_gap: Gap) -> None:
    skip_local_reaching_the_host(sandbox)
    known_gap("docker", "Docker's default seccomp profile allows ioprio_set on the container's own processes")
    idle_everyone = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "for p in os.listdir('/proc'):\n"
        "    if p.isdigit():\n"
        "        libc.syscall(251, 1, int(p), 3 << 13)  # ioprio_set(IOPRIO_WHO_PROCESS, pid, idle class)"
    )
    run_py(sandbox, idle_everyone)
    probe = "import ctypes\nprint(ctypes.CDLL(None).syscall(252, 1, 0) >> 13)  # ioprio_get: the class"
    assert later_outputs(sandbox, probe) == ["0"] * 4


def test_io_uring_is_refused_where_the_filter_relies_on_seeing_every_call(sandbox: Sandbox) -> None:
    # io_uring's operations (extended attributes among them) never pass through seccomp.
    skip_without_the_seccomp_filter(sandbox, "Docker's profile refuses io_uring from Docker 25")
    setup = (
        "import ctypes\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "ring = libc.syscall(425, 4, ctypes.create_string_buffer(120))  # io_uring_setup(4 entries, params)\n"
        "print(ring, ctypes.get_errno())"
    )
    assert run_py(sandbox, setup).stdout_text.split() == ["-1", str(errno.EPERM)]


def test_times_set_on_the_shared_directories_do_not_reach_the_next_run(sandbox: Sandbox) -> None:
    skip_local_reaching_the_host(sandbox)  # it would touch the host's /tmp
    roots = ("/tmp", "/dev/shm", "/dev/mqueue", "/work")
    touch = (
        f"import os\nfor root in {roots!r}:\n"
        "    try:\n"
        "        os.utime(root, ns=(987654321, 987654321))\n"
        "    except OSError:\n"
        "        pass"
    )
    run_py(sandbox, touch)
    probe = f"import os\nprint([(os.stat(r).st_atime_ns, os.stat(r).st_mtime_ns) for r in {roots!r}])"
    assert all("987654321" not in output for output in later_outputs(sandbox, probe))


def test_memory_held_outside_the_address_space_is_refused_or_bounded(sandbox: Sandbox, known_gap: Gap) -> None:
    known_gap("local", "no cgroup and no seccomp filter: memfd and SysV memory escape RLIMIT_AS")
    known_gap("docker", "bounded by the container's cgroup, sized by the pool's memory limit, not the request's")
    limits = Limits(wall_seconds=20.0, cpu_seconds=10.0, memory_bytes=64 * 1024 * 1024, max_file_bytes=1 << 20)
    hold = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.shmat.restype = ctypes.c_void_p\n"
        "held, keep = 0, []\n"
        "chunk = b'x' * (1 << 20)\n"
        "try:\n"
        "    for _ in range(192):\n"
        "        fd = os.memfd_create('hold')\n"
        "        os.write(fd, chunk)\n"
        "        keep.append(fd)\n"
        "        held += 1\n"
        "except OSError:\n"
        "    pass\n"
        "for _ in range(192 - held):\n"
        "    segment = libc.shmget(0, 1 << 20, 0o1600)  # IPC_PRIVATE\n"
        "    if segment < 0:\n"
        "        break\n"
        "    address = libc.shmat(segment, None, 0)\n"
        "    ctypes.memset(address, 1, 1 << 20)\n"
        "    libc.shmdt(ctypes.c_void_p(address))\n"
        "    held += 1\n"
        "message = ctypes.create_string_buffer(8 + 8192)\n"
        "ctypes.c_long.from_buffer(message).value = 1\n"
        "queued = 0\n"
        "while held + queued // 128 < 192:  # SysV message queues: 2 x 8 KiB per queue by default\n"
        "    queue = libc.msgget(0, 0o1600)\n"
        "    if queue < 0 or libc.msgsnd(queue, message, 8192, 0o4000) or libc.msgsnd(queue, message, 8192, 0o4000):\n"
        "        break\n"
        "    queued += 2\n"
        "held += queued // 128\n"
        "while held < 192:  # SysV semaphores: a set of 32000 holds 2 MiB of kernel memory\n"
        "    if libc.semget(0, 32000, 0o1600) < 0:\n"
        "        break\n"
        "    held += 2\n"
        "print('held MiB', held, flush=True)"
    )
    result = run_py(sandbox, hold, limits=limits)
    held = int(result.stdout_text.split()[-1]) if "held MiB" in result.stdout_text else 0
    assert held < 64 or result.status == ExecStatus.MEMORY_LIMIT, (result.status, result.stdout_text)


def test_under_a_memory_squeeze_the_program_is_killed_before_the_worker(sandbox: Sandbox) -> None:
    if sandbox.name not in ("pool", "docker"):
        pytest.skip(f"{sandbox.name}: no long-lived worker to protect")
    probe = "print(open('/proc/self/oom_score_adj').read().strip(), open('/proc/1/oom_score_adj').read().strip())"
    assert run_py(sandbox, probe).stdout_text.split() == ["1000", "0"]


def test_ipc_limits_rewritten_by_one_run_do_not_reach_the_next(sandbox: Sandbox) -> None:
    skip_local_reaching_the_host(sandbox)  # it would rewrite the host's own limits
    names = ("kernel/msgmni", "kernel/msgmnb", "kernel/sem", "kernel/shmmax", "fs/mqueue/queues_max")
    probe = f"print([open('/proc/sys/' + name).read().split() for name in {names!r}])"
    rewrite = (
        f"for name in {names!r}:\n"
        "    try:\n"
        "        open('/proc/sys/' + name, 'w').write('0 0 0 0' if name == 'kernel/sem' else '1')\n"
        "    except OSError:\n"
        "        pass"
    )
    assert_attack_changes_no_later_run(sandbox, rewrite, probe)


def test_locks_and_leases_set_on_stdin_end_with_the_run(sandbox: Sandbox) -> None:
    skip_local_reaching_the_host(sandbox)
    plant = (
        "import fcntl, struct\n"
        "steps = [lambda: fcntl.flock(0, fcntl.LOCK_EX),\n"
        "         lambda: fcntl.fcntl(0, 37, struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, 0, 1, 0)),  # F_OFD_SETLK\n"
        "         lambda: fcntl.fcntl(0, 1024, fcntl.F_RDLCK)]  # F_SETLEASE: an open for writing waits 45 s\n"
        "for step in steps:\n"
        "    try:\n"
        "        step()\n"
        "    except OSError:\n"
        "        pass"
    )
    run_py(sandbox, plant, stdin=b"planted\n")
    victim = (  # opens its stdin anew, as `open('/dev/stdin')` would: it meets whatever the last run left on the file
        "import fcntl, os, struct\n"
        "try:\n"
        "    fd = os.open('/proc/self/fd/0', os.O_RDWR)\n"
        "except PermissionError:  # a one-shot sandbox's stdin is a pipe the host made: nothing to share\n"
        "    fd = os.dup(0)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "lock = fcntl.fcntl(fd, 36, struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, 0, 1, 0))  # F_OFD_GETLK\n"
        "print(struct.unpack('hhqqi4x', lock)[0] == fcntl.F_UNLCK, os.read(fd, 64).decode().strip())"
    )
    after = later_runs(sandbox, victim, stdin=b"victim\n")
    assert [result.stdout_text for result in after] == ["True victim\n"] * 4, [r.stderr_text for r in after]


def test_stdin_and_output_files_changed_by_one_run_are_restored_for_the_next(sandbox: Sandbox) -> None:
    skip_local_reaching_the_host(sandbox)
    tamper = (
        "import os\n"
        "for fd in (0, 1, 2):\n"
        "    for change in (lambda: os.setxattr(f'/proc/self/fd/{fd}', 'user.left', b'x'),\n"
        "                   lambda: os.utime(f'/proc/self/fd/{fd}', (1, 2)),\n"
        "                   lambda: os.chmod(f'/proc/self/fd/{fd}', 0)):  # every later reopen would fail\n"
        "        try:\n"
        "            change()\n"
        "        except OSError:\n"
        "            pass"
    )
    run_py(sandbox, tamper)
    probe = (
        "import os, sys\n"
        "print(sys.stdin.read().strip(), [oct(os.stat(f'/proc/self/fd/{fd}').st_mode & 0o777) != '0o0'\n"
        "      and os.stat(f'/proc/self/fd/{fd}').st_mtime > 2 for fd in (0, 1, 2)])"
    )
    after = later_runs(sandbox, probe, stdin=b"victim\n")
    assert [result.stdout_text for result in after] == ["victim [True, True, True]\n"] * 4, after


def test_a_process_made_a_sibling_of_the_run_does_not_hang_the_next_run(sandbox: Sandbox) -> None:
    # clone(CLONE_PARENT) makes the new process a child of the run's parent (a warm pool's zygote, which alone can
    # reap it): the worker's clean-up waited for ever and the next run got `sandbox_error`; then, reaping them one
    # by one while the others kept cloning, it never caught up. Under `local` they were left to the test process as
    # zombies, holding the run uid's process count against later runs.
    attack = (
        "import ctypes, time\n"
        "libc = ctypes.CDLL(None)\n"
        "if libc.syscall(56, 0x8000 | 17, 0, 0, 0, 0) == 0:  # clone(CLONE_PARENT | SIGCHLD)\n"
        "    while True:  # each sibling makes more siblings, up to the process limit\n"
        "        libc.syscall(56, 0x8000 | 17, 0, 0, 0, 0)\n"
        "time.sleep(0.5)\n"
    )
    run_py(sandbox, attack)
    assert_later_runs_run_as_usual(sandbox)
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    zombies = [pid for pid in children if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"]
    assert zombies == []  # (`local`'s made the test process their parent: none may be left to it)


def test_signals_asked_for_on_inherited_descriptors_do_not_reach_the_next_run(sandbox: Sandbox) -> None:
    # F_SETOWN + O_ASYNC on every open descriptor but 0-2 (a warm pool's children shared their status pipe's):
    # the next run's child got SIGIO when it wrote its first byte there, before its program started.
    attack = (
        "import fcntl, os\n"
        "me = os.getpid()\n"
        "others = [int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, me)]\n"
        "for fd in map(int, os.listdir('/proc/self/fd')):\n"
        "    for pid in others:\n"
        "        try:\n"
        "            fcntl.fcntl(fd, fcntl.F_SETOWN, pid)\n"
        "            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_ASYNC)\n"
        "        except OSError:\n"
        "            pass\n"
        "os._exit(0)\n"
    )
    run_py(sandbox, attack)
    assert_later_runs_run_as_usual(sandbox)


def test_a_program_cannot_pass_its_run_off_as_the_sandboxs_failure(sandbox: Sandbox) -> None:
    # Writing what a warm pool's child wrote when it could not set its run up (a status of -1) made the run
    # `sandbox_error`, "never a verdict on the program" (a trainer skips those), after running it twice.
    attack = (
        "import os, struct, time\n"
        "try:\n"
        "    os.write(4, struct.pack('<id', -1, 0.0))\n"
        "except OSError:\n"
        "    pass\n"
        "time.sleep(0.5)\n"
        "raise SystemExit(3)\n"
    )
    result = run_py(sandbox, attack)
    assert result.status is ExecStatus.RUNTIME_ERROR, result
    assert result.exit_code in (3, 255), result  # (255: the forged status, an exit code it could have had anyway)
