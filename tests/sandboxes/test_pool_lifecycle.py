"""The warm pool's own processes: every bubblewrap it starts is reaped, workers outlive the threads that started
them, and a worker turns away what it cannot run cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from reflectgym.sandboxes import BwrapSandbox, ExecRequest, ExecStatus, Limits, PoolConfig, bwrap_pool
from reflectgym.sandboxes import bwrap as bwrap_module
from reflectgym.sandboxes.bwrap import bwrap_unavailable_reason
from reflectgym.sandboxes.pool import WORKER_SOURCE, PipeChannel, WarmPool
from reflectgym.sandboxes.worker_main import process_state, unsignalled

pytestmark = pytest.mark.skipif(bwrap_unavailable_reason() is not None, reason=str(bwrap_unavailable_reason()))
HELLO = ExecRequest(command=("python3", "-c", "print('hello')"))


def children_of(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def sandbox_inits(pool: WarmPool) -> list[int]:
    """Host pids of the processes bubblewrap started for the pool's workers (each sandbox's pid 1)."""
    pids = []
    for slot in pool._slots:  # the test looks at the pool's own processes
        if slot.worker is not None and isinstance(slot.worker.channel, PipeChannel):
            pids += children_of(slot.worker.channel._proc.pid)
    return pids


def gone(pid: int) -> bool:
    """No process, not even a zombie, has this pid (reparented zombies would linger under the host's pid 1)."""
    return not Path(f"/proc/{pid}").exists()


def test_closing_and_recycling_workers_leaves_no_bwrap_process() -> None:
    inits = []
    for _ in range(2):
        with bwrap_pool(PoolConfig(workers=2, max_runs_per_worker=1)) as pool:
            for _ in range(3):  # each run retires its worker
                inits += sandbox_inits(pool)
                assert pool.run(HELLO).ok
            inits += sandbox_inits(pool)
    assert inits
    time.sleep(0.2)
    assert [pid for pid in inits if not gone(pid)] == []


def test_a_one_shot_run_killed_at_the_wall_leaves_no_bwrap_process(monkeypatch: pytest.MonkeyPatch) -> None:
    killed: list[int] = []
    kill_child = bwrap_module._kill_child

    def recording(parent: int, pid: int) -> bool:
        killed.append(pid)
        return kill_child(parent, pid)

    monkeypatch.setattr(bwrap_module, "_kill_child", recording)
    result = BwrapSandbox().run(
        ExecRequest(command=("python3", "-c", "import time; time.sleep(30)"), limits=Limits(wall_seconds=0.5))
    )
    assert result.status is ExecStatus.TIMEOUT
    assert killed  # the sandbox's init was killed, not bubblewrap
    time.sleep(0.2)
    assert [pid for pid in killed if not gone(pid)] == []


def test_a_worker_outlives_the_thread_that_started_it() -> None:
    with bwrap_pool(PoolConfig(workers=1), start=False) as pool:
        first: list[ExecStatus] = []
        thread = threading.Thread(target=lambda: first.append(pool.run(HELLO).status))
        thread.start()
        thread.join()
        time.sleep(0.2)  # bubblewrap's --die-with-parent fires when the starting *thread* ends
        assert first == [ExecStatus.OK]
        assert pool.run(HELLO).stdout_text == "hello\n"


def test_pools_left_open_are_closed_and_reaped_at_exit() -> None:
    script = textwrap.dedent(
        """
        from pathlib import Path
        from reflectgym.sandboxes import PoolConfig, bwrap_pool
        pool = bwrap_pool(PoolConfig(workers=2))
        outers = [slot.worker.channel._proc.pid for slot in pool._slots]
        print(*[c for o in outers for c in Path(f"/proc/{o}/task/{o}/children").read_text().split()], *outers)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    pids = [int(pid) for pid in done.stdout.split()]
    assert len(pids) == 4
    time.sleep(0.2)
    assert [pid for pid in pids if not gone(pid)] == []


def test_the_worker_refuses_to_run_unless_it_is_pid_1() -> None:
    # Inside a one-shot sandbox the program is pid 2, so the worker must stop before it touches anything.
    result = BwrapSandbox().run(
        ExecRequest(command=("python3", "worker_main.py"), files={"worker_main.py": WORKER_SOURCE})
    )
    assert result.exit_code == 1
    assert "only as pid 1" in result.stderr_text


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_each_worker_of_a_pool_is_kept_on_a_cpu_of_its_own() -> None:
    with bwrap_pool(PoolConfig(workers=2)) as pool:
        probe = ExecRequest(command=("python3", "-c", "import os; print(*sorted(os.sched_getaffinity(0)))"))
        seen = {tuple(int(cpu) for cpu in result.stdout_text.split()) for result in pool.map([probe] * 8)}
        inits = sandbox_inits(pool)
        assert sorted(len(os.sched_getaffinity(pid)) for pid in inits) == [1, 1]
        assert len({tuple(os.sched_getaffinity(pid)) for pid in inits}) == 2
    assert seen <= {(cpu,) for cpu in os.sched_getaffinity(0)}
    with bwrap_pool(PoolConfig(workers=2, pin_workers=False)) as pool:
        assert all(os.sched_getaffinity(pid) == os.sched_getaffinity(0) for pid in sandbox_inits(pool))


def test_a_standby_counts_as_ready_only_if_running_and_no_signal_is_pending() -> None:
    """The worker's check of the next standby: a SIGSTOP the standby has not acted on yet shows only as pending."""
    blocking = (
        "import signal, time\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})\nprint(flush=True)\n"
        "time.sleep(30)"
    )
    process = subprocess.Popen([sys.executable, "-c", blocking], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None and process.stdout.readline() == b"\n"
        assert unsignalled(process.pid)
        os.kill(process.pid, signal.SIGUSR1)  # blocked: stays pending, as a SIGSTOP does until the process runs
        assert not unsignalled(process.pid)
    finally:
        process.kill()
        process.wait()
    assert not unsignalled(process.pid)  # gone
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        os.kill(process.pid, signal.SIGSTOP)
        deadline = time.perf_counter() + 5
        while process_state(process.pid) != b"T" and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert not unsignalled(process.pid)
        os.kill(process.pid, signal.SIGCONT)
        while process_state(process.pid) == b"T" and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert unsignalled(process.pid)
    finally:
        process.kill()
        process.wait()


def counting_starts(pool: WarmPool, monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """Record every worker the pool starts from now on (the CPU it asked for)."""
    started: list[int | None] = []
    start = pool.launcher.start

    def counted(cpu: int | None = None):  # type: ignore[no-untyped-def]
        started.append(cpu)
        return start(cpu)

    monkeypatch.setattr(pool.launcher, "start", counted)
    return started


def test_a_batch_keeps_each_result_with_its_request_while_workers_are_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`map` drives the batch from one thread: answers arrive in any order, and workers that ran their share are
    replaced on the pool's threads meanwhile; every result must still be its own request's."""
    requests = []
    for index in range(30):
        code = f"import sys\nprint({index})\nprint('e{index}', file=sys.stderr)\nsys.exit({index % 4})"
        if index % 7 == 3:  # a slow one, so that answers come back out of order
            code = f"import time\ntime.sleep(0.2)\nprint({index})"
        requests.append(ExecRequest(command=("python3", "-c", code)))
    requests.append(ExecRequest(command=("python3", "-c", "while True: pass"), limits=Limits(wall_seconds=0.5)))
    with bwrap_pool(PoolConfig(workers=2, max_runs_per_worker=3)) as pool:
        started = counting_starts(pool, monkeypatch)
        results = pool.map(requests)
    assert len(results) == len(requests)
    for index, result in enumerate(results[:30]):
        assert result.stdout_text == f"{index}\n", (index, result)
        assert result.exit_code == (0 if index % 7 == 3 else index % 4), (index, result)
    assert results[30].status is ExecStatus.TIMEOUT
    assert len(started) >= 9  # (each worker runs at most 3: 31 runs take 11 workers, 2 of them started before)


def test_a_fresh_workers_first_run_finds_the_shared_directories_as_every_later_run_does() -> None:
    probe = ExecRequest(
        command=("python3", "-c", "import os\nprint([oct(os.stat(r).st_mode) for r in ('/tmp', '/dev/shm', '/work')])")
    )
    with bwrap_pool(PoolConfig(workers=1)) as pool:
        first, *later = [pool.run(probe).stdout_text for _ in range(3)]
    assert later == [first] * 2
    assert "0o41777" in first


@pytest.mark.parametrize("sealed", [True, False], ids=["seccomp filter", "no filter"])
def test_a_batch_survives_runs_that_break_their_worker(sealed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that kills its zygote ends its worker (its own result is `sandbox_error`, or its exit status when it was
    done before the worker needed the zygote again); one that changes the worker's process attributes makes it
    retire (without the seccomp filter, as on an architecture it is not built for; with it, the change is refused).
    A request a retiring worker turns away is resent to a fresh worker: every other run runs."""
    if not sealed:
        monkeypatch.setattr("reflectgym.sandboxes.seccomp.filter_program", lambda machine=None: None)
    kill_zygote = ExecRequest(command=("python3", "-c", "import os, signal\nos.kill(2, signal.SIGKILL)"))
    tamper = ExecRequest(command=("python3", "-c", "import os\nos.setpriority(os.PRIO_PROCESS, 1, 5)"))
    probe = ExecRequest(command=("python3", "-c", "import os\nprint(os.getpriority(os.PRIO_PROCESS, 0))"))
    requests = [kill_zygote, probe, tamper, probe, probe, kill_zygote, probe, tamper, *[probe] * 8]
    with bwrap_pool(PoolConfig(workers=2)) as pool:
        results = pool.map(requests)
    for request, result in zip(requests, results, strict=True):
        if request is kill_zygote:
            assert result.status in (ExecStatus.SANDBOX_ERROR, ExecStatus.OK), result
        elif request is probe:
            assert (result.status, result.stdout_text) == (ExecStatus.OK, "0\n"), result
        elif sealed:
            assert "PermissionError" in result.stderr_text, result
        else:
            assert result.ok, result


def test_a_batch_gives_up_on_a_worker_that_stops_answering(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that does not answer by its request's deadline (wall limit plus the grace) costs that request a
    `sandbox_error`, is killed and replaced; the batch goes on with the others."""
    monkeypatch.setattr("reflectgym.sandboxes.worker_link.REPLY_GRACE_SECONDS", 0.5)
    request = ExecRequest(command=("python3", "-c", "print('hello')"), limits=Limits(wall_seconds=1.0))
    with bwrap_pool(PoolConfig(workers=2)) as pool:
        stopped = sandbox_inits(pool)[0]
        os.kill(stopped, signal.SIGSTOP)
        started = time.perf_counter()
        results = pool.map([request] * 8)
        elapsed = time.perf_counter() - started
    statuses = [result.status for result in results]
    assert statuses.count(ExecStatus.SANDBOX_ERROR) == 1, results
    assert statuses.count(ExecStatus.OK) == 7
    assert "did not answer in time" in next(r.message for r in results if r.status is ExecStatus.SANDBOX_ERROR)
    assert 1.5 <= elapsed < 10
    time.sleep(0.2)
    assert gone(stopped)


def test_a_batch_shares_the_workers_with_callers_of_run() -> None:
    """`map` takes the workers that are idle (and more as they come free); `run` from another thread meanwhile
    waits for one as usual. Neither gets another's result."""
    with bwrap_pool(PoolConfig(workers=2)) as pool:
        seen: list[str] = []

        def caller() -> None:
            for index in range(15):
                seen.append(pool.run(ExecRequest(command=("python3", "-c", f"print('run', {index})"))).stdout_text)

        thread = threading.Thread(target=caller)
        thread.start()
        results = pool.map([ExecRequest(command=("python3", "-c", f"print('map', {i})")) for i in range(30)])
        thread.join()
    assert [result.stdout_text for result in results] == [f"map {i}\n" for i in range(30)]
    assert seen == [f"run {i}\n" for i in range(15)]


class InterruptedByTimerError(Exception):
    """Raised by a timer in the caller's thread, as a KeyboardInterrupt would arrive."""


def interrupt_after(seconds: float) -> None:
    def raise_interrupted(signum: int, frame: object) -> None:
        raise InterruptedByTimerError

    signal.signal(signal.SIGALRM, raise_interrupted)
    signal.setitimer(signal.ITIMER_REAL, seconds)


SLOW = ExecRequest(command=("python3", "-c", "import time\ntime.sleep(0.6)\nprint('slow')"))


def test_a_call_interrupted_while_its_request_runs_leaves_no_answer_for_the_next_one() -> None:
    """A caller interrupted (Ctrl-C) while its request runs: the request's answer must not be taken for the next
    caller's, whether the call was `run` or a batch."""
    previous = signal.getsignal(signal.SIGALRM)
    try:
        with bwrap_pool(PoolConfig(workers=2)) as pool:
            interrupt_after(0.2)
            with pytest.raises(InterruptedByTimerError):
                pool.run(SLOW)
            assert [pool.run(HELLO).stdout_text for _ in range(2)] == ["hello\n"] * 2
            interrupt_after(0.2)
            with pytest.raises(InterruptedByTimerError):
                pool.map([SLOW] * 4)
            time.sleep(0.6)
            assert [result.stdout_text for result in pool.map([HELLO] * 4)] == ["hello\n"] * 4
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_a_batch_replaces_workers_while_async_callers_wait_for_one() -> None:
    """Callers of `run_async` waiting for a worker (on the pool's threads) must not keep a batch from replacing the
    workers it holds: with one worker, that would wait forever."""
    with bwrap_pool(PoolConfig(workers=1, max_runs_per_worker=2)) as pool:
        batch: list[str] = []
        mapped = threading.Thread(target=lambda: batch.extend(r.stdout_text for r in pool.map([HELLO] * 6)))
        mapped.start()
        time.sleep(0.05)  # the batch holds the worker
        waited: list[str] = []
        awaited = threading.Thread(target=lambda: waited.append(asyncio.run(pool.run_async(HELLO)).stdout_text))
        awaited.start()
        mapped.join(timeout=30)
        awaited.join(timeout=30)
        assert not mapped.is_alive() and not awaited.is_alive(), "the batch and the async caller wait on each other"
        assert batch == ["hello\n"] * 6 and waited == ["hello\n"]


@pytest.mark.docker
def test_a_docker_pool_keeps_every_setting_it_is_given_and_always_recycles_on_a_breach() -> None:
    from reflectgym.sandboxes.docker_pool import docker_pool
    from reflectgym.sandboxes.types import SandboxError

    given = PoolConfig(workers=2, max_runs_per_worker=7, pin_workers=False, start_timeout_seconds=9.0)
    try:
        pool = docker_pool(given, start=False)
    except SandboxError as error:
        pytest.skip(f"[docker] {error}")
    try:
        assert pool.config == PoolConfig(
            workers=2, max_runs_per_worker=7, pin_workers=False, start_timeout_seconds=9.0, recycle_on_breach=True
        )
    finally:
        pool.close()


def test_a_run_that_leaves_too_many_files_to_wipe_retires_its_worker() -> None:
    """Millions of empty files cost no disk quota but take the worker longer to wipe than the next request may
    wait: past `WIPE_BUDGET` entries the worker retires instead, and the next request goes to a fresh one."""
    started = ExecRequest(command=("python3", "-c", "print(open('/proc/1/stat').read().rsplit(')', 1)[1].split()[19])"))
    litter = ExecRequest(
        command=("python3", "-c", "import os\nfor n in range(12_000):\n    os.close(os.open(f'/tmp/{n}', os.O_CREAT))")
    )
    with bwrap_pool(PoolConfig(workers=1)) as pool:
        first = pool.run(started).stdout_text
        assert pool.run(litter).status is ExecStatus.OK
        after = pool.run(started)
        assert after.status is ExecStatus.OK, after
        assert after.stdout_text != first  # (a worker started later)
        assert (
            pool.run(ExecRequest(command=("python3", "-c", "import os; print(len(os.listdir('/tmp')))"))).stdout_text
            == "0\n"
        )


def test_modes_times_and_size_set_on_the_status_pipe_do_not_reach_the_next_run() -> None:
    """Every child reopens its status pipe (fd 4): a run that made it mode 0 made the next child fail to, and its
    worker retire; the pipe's mode, times and size are put back after every run, as the stdio's are, and a standby
    reopens its stdio only once it has its request, after they were put back."""
    started = ExecRequest(command=("python3", "-c", "print(open('/proc/1/stat').read().rsplit(')', 1)[1].split()[19])"))
    attack = ExecRequest(
        command=(
            "python3",
            "-c",
            "import fcntl, os\nfcntl.fcntl(4, 1031, 1 << 20)\nos.utime(4, (1, 1))\nos.fchmod(4, 0)",
        )
    )
    seen = ExecRequest(
        command=("python3", "-c", "import fcntl, os\nprint(os.stat(4).st_mtime > 1, fcntl.fcntl(4, 1032))")
    )
    with bwrap_pool(PoolConfig(workers=1)) as pool:
        first, before = pool.run(started).stdout_text, pool.run(seen).stdout_text
        for _ in range(25):  # (the standby forked during the attack lost the race to reopen the pipe now and then)
            pool.run(attack)
            assert pool.run(started).stdout_text == first  # (the same worker)
            assert pool.run(seen).stdout_text == before


def test_a_standby_killed_with_the_work_dir_locked_does_not_lose_a_large_request() -> None:
    """A run that locks `/work` (mode 0) and kills the next standby: the spare standby was forked before the wipe
    put `/work` back, could die in `chdir`, and a request too large for the control pipe then blocked the worker
    until its deadline (`sandbox_error`). Spares are now forked after the clean-up, and a standby that dies before
    taking its request has it resent."""
    attack = ExecRequest(
        command=(
            "python3",
            "-c",
            "import os, signal\nos.chmod('/work', 0)\nfor pid in os.listdir('/proc'):\n"
            "    if pid.isdigit() and int(pid) not in (1, 2, os.getpid()):\n        os.kill(int(pid), signal.SIGKILL)",
        )
    )
    large = ExecRequest(command=("python3", "-c", "#" + "a" * 100_000 + "\nprint('ok')"), limits=Limits(wall_seconds=2))
    with bwrap_pool(PoolConfig(workers=1)) as pool:
        for _ in range(10):
            pool.run(attack)
            result = pool.run(large)
            assert (result.status, result.stdout_text) == (ExecStatus.OK, "ok\n"), result


@pytest.mark.parametrize("sig", ["SIGSTOP", "SIGKILL"])
def test_a_run_that_stops_or_kills_the_workers_compiler_leaves_later_runs_right(sig: str) -> None:
    """The worker's compiler (see `worker_main.Compiler`) is a process a program can signal: a stopped one misses
    its deadline and a dead one is found dead; either is replaced, and the next programs run as before."""
    attack = (  # (the compiler is the worker's child that is not this program's parent, the zygote)
        "import os, signal\n"
        "for pid in [int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getppid())]:\n"
        "    if open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[1] == '1':\n"
        f"        os.kill(pid, signal.{sig})\n"
        "        print('signalled')\n"
    )
    with bwrap_pool(PoolConfig(workers=1)) as pool:
        assert pool.run(ExecRequest(command=("python3", "-c", attack))).stdout_text == "signalled\n"
        for n in range(3):
            result = pool.run(ExecRequest(command=("python3", "main.py"), files={"main.py": b"print(%d)" % n}))
            assert (result.status, result.stdout_text) == (ExecStatus.OK, f"{n}\n"), result
        listing = "import os; print(len([p for p in os.listdir('/proc') if p.isdigit()]))"
        assert pool.run(ExecRequest(command=("python3", "-c", listing))).stdout_text == "5\n"  # (a compiler again)


def test_a_stopped_compiler_does_not_block_the_worker_on_a_request_larger_than_its_pipe() -> None:
    """A program that stopped the compiler, then a program whose compile request fills more than a pipe: the worker
    gives up on the compiler at its deadline (writing too), and the child compiles the program itself."""
    stop = (
        "import os, signal\n"
        "for pid in [int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) not in (1, os.getppid())]:\n"
        "    if open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[1] == '1':\n"
        "        os.kill(pid, signal.SIGSTOP)\n"
    )
    large = "#" + "\U0001f600" * 16383  # (16 KiB of characters, which the worker compiles: past 64 KiB of UTF-8)
    with bwrap_pool(PoolConfig(workers=1)) as pool:
        pool.run(ExecRequest(command=("python3", "-c", stop)))
        started = time.perf_counter()
        result = pool.run(ExecRequest(command=("python3", "-c", large)))
        assert (result.status, result.stdout_text) == (ExecStatus.OK, ""), result
        assert time.perf_counter() - started < 5
