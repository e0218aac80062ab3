"""The warm worker: a long-lived Python process, pid 1 of its sandbox, that runs each request in a fresh child.

This file runs *inside* the isolation (bubblewrap with `--as-pid-1`, or as a container's main process); the host
starts `python3 -c BOOTSTRAP` (see `pool.worker_command`) and sends this source on stdin first, so it uses the
standard library only and imports nothing of reflectgym. It refuses to run unless it is pid 1 of its own pid
namespace (on the host, its clean-up would wipe `/work` and kill every process it may signal). It talks to the host
over its stdin/stdout (moved to fds 3 and 4). A request is `>I` (length of the worker header), the worker header
(`marshal`: file names and sizes, stdin size, wall and output limits, size of the child header), the child header
(`marshal`: argv, environment or None for the default one, rlimits, whether to run inline), then stdin and the file
contents. A reply is one kind byte and a fixed struct: `RESULT` + stdout + stderr, `ERROR` + text, `READY`, or
`RETIRED` (the request was not run: start a fresh worker and send it there).

Three kinds of process, and the worker's compiler (below):
- the worker (pid 1): reads requests, writes the files into `/work`, has a short Python program to run inline compiled
  (see `precompile`, `Compiler`), collects output, replies, ends the run, wipes. It forks only to start its zygote and
  its compiler (never a program's process), so its pages are never shared with a program and no request data of its
  reaches a child. As pid 1 it inherits every orphan: after each run it SIGKILLs every process of the namespace but
  itself, its compiler, the zygote and the next standby, until none is left, and reaps them (see `Zygote.end_run`;
  usually the child was the run's only process, which the namespace's pid counter tells without a scan of `/proc`).
- the zygote: forked from the worker once, after the preloads and a rehearsal (see `rehearse`), before any
  request; it holds every child's stdio (fds 0-2 and Python's `sys.stdin/stdout/stderr` objects, made once as a
  fresh interpreter with the programs' default environment makes them: see `install_stdio`) and raises the
  recursion limit by its own depth (see `match_recursion_headroom`). On order it forks a *standby* child, or kills
  and reaps one of its children (a run's child, a standby a run stopped, signalled or changed). It does nothing
  else: every page it writes after a fork is copied, since a child always shares its memory.
- the child: a standby sets up its session and working directory, then blocks on the control pipe (the worker
  sends it a request only once it has checked that it is running with no signal pending and that nothing changed
  the attributes it inherited: see `unsignalled`, `Pristine`).
  Once its request arrives it applies the request's rlimits and environment, then acknowledges it (the zygote then
  forks the next standby, while this run executes), loads the Python program the worker compiled (or compiles it
  itself), waits until the next standby exists (so that RLIMIT_NPROC, counted per uid, sees all of the sandbox's own
  processes), then runs the program in the already-started, already-warm interpreter (no interpreter start-up: the
  point of the pool) or execs the command.
  An inline program ends as the interpreter's exit would end it (see `run_inline`: threads joined, `atexit`
  callbacks, globals finalised, uncaught errors through `sys.excepthook`, SIGINT after a KeyboardInterrupt).
  A Python program that finishes reports its exit code and CPU time on the status pipe, so the worker can answer
  before the child's address space is torn down (a process the program forked that ends the same way does not).
  A child that cannot set its run up exits without acknowledging it: the run is then the sandbox's failure, the
  worker retires and the request goes to a fresh one. Only that tells "not run": once the program may run, the
  status pipe is the program's too, and anything on it is an exit status the program could have had anyway.

The pipes between the worker and the children (control, stdout, stderr, status, the gate, and an unnamed file
for stdin) are made once, before the zygote is forked, so a standby is forked with nothing to hand over. After
answering and before reading the next request, the worker has the zygote kill and reap every process of the run
and restore the output pipes' sizes, drains what the run left in the pipes, removes SysV IPC objects and POSIX
message queues (`/dev/mqueue`), and wipes `/work`, `/tmp` and `/dev/shm` (their own extended attributes too; on
tmpfs an empty directory is known from its size): nothing of one run is left for the next. Shared between runs: the
zygote's memory as it was at start-up (copy-on-write; a child cannot change it), the modules it preloaded, and the
sandbox's namespaces (the same empty network and hostname). Not shared: files, processes, IPC objects, pipe
contents, open file descriptions (each child reopens its stdio: flags, locks and leases end with the run),
environment, rlimits, request data.

A fourth process, the worker's compiler (see `Compiler`), compiles a program of up to `PRECOMPILE_MAX_BYTES` for its
child, outside the run's limits but within `COMPILE_SECONDS` and `COMPILE_MEMORY_BYTES` (or the run's memory limit,
if lower); a program that does not compile cleanly (an error, a warning) or within them is compiled by its child,
under the run's limits, which reports it as a fresh interpreter would.

A program can write a false exit status on its status pipe: that only ends its own run early with an exit code it
could have used anyway, and a CPU time the host keeps within what the run could have used (`worker_link.plausible_cpu`).
The worker, the zygote and the standbys are non-dumpable (no ptrace, no `/proc/PID/mem`);
as pid 1 the worker gets no signal from inside the namespace. A program *can* kill or stop the zygote (the run gets
`sandbox_error` unless it was already done; the worker kills everything itself and retires, and the host starts a
fresh one) or the next standby (it is replaced), and it can change the attributes of the worker, the zygote or the
standby that a
same-uid process may change (rlimits, nice value, scheduling policy, CPU affinity): the worker checks its own and
the next standby's once every process of the run is dead (a standby forked by a changed zygote inherits the
change), and a changed one ends the worker; the request it turned away is resent to a fresh worker. Under
reflectgym's seccomp filter (a bubblewrap worker started `sealed`) no process can change another's attributes, make
extended attributes or SysV IPC objects: the worker skips those checks and clean-ups.
"""

import atexit
import codecs
import contextlib
import ctypes
import errno
import fcntl
import gc
import importlib.machinery
import io
import marshal
import math
import operator
import os
import re
import resource
import select
import signal
import stat
import struct
import sys
import time
import traceback
import types

TYPE_CHECKING = False  # (the standard library only, and no more of it than the worker needs: not `typing`)
if TYPE_CHECKING:
    from collections.abc import Callable

WORK = "/work"
WIPED = ("/work", "/tmp", "/dev/shm", "/dev/mqueue")
"""Emptied after every run (`/dev/mqueue`: the POSIX message queues of the sandbox's IPC namespace)."""
LAST_PID = "/proc/sys/kernel/ns_last_pid"
COUNTING_FILESYSTEMS = (0x01021994, 0x19800202)
"""tmpfs and mqueue (`statfs` magic numbers): a directory's size there grows by 20 with each entry of any kind and
shrinks back as it goes, so an empty one (size 40, two links) is known from its `stat` alone."""
EMPTY_DIR_SIZE = 40
CHUNK = 65536
PR_SET_DUMPABLE = 4
IPC_RMID = 0
PROTOCOL_IN = 3
PROTOCOL_OUT = 4
CHILD_CONTROL = 3
"""In the child: where its request arrives (the worker's protocol fds are not open there)."""
CHILD_STATUS = 4
"""In the child: where it acknowledges its request and a finished inline program reports `STATUS`."""
CHILD_GATE = 5
"""In the child: a byte arrives here once its successor standby exists; the program starts after it."""
ZYGOTE_TIMEOUT_SECONDS = 10.0
"""How long the zygote may take to end a run or to fork; past it the worker retires."""
MAX_SWEEPS = 10_000
"""Kill-and-reap rounds `sweep` tries before the worker gives up (and retires)."""
PRECOMPILE_MAX_BYTES = 16384
"""Programs up to this size are compiled by the worker's compiler (see `precompile`), larger ones by their child."""
COMPILE_SECONDS = 0.25
"""How long the worker waits for its compiler (see `Compiler`); a program not compiled by then its child compiles."""
COMPILE_MEMORY_BYTES = 512 << 20
"""The compiler's address-space limit while it compiles (the run's own where that is lower)."""
MAX_COMPILED_BYTES = 1 << 20
"""Compiled code larger than this is left to the child to compile."""
COMPILED_KEPT = 32
COMPILED: "dict[tuple[str, str | bytes, int], bytes]" = {}
"""(file name, source, memory limit) -> what `precompile` returned for it, for the last `COMPILED_KEPT` programs,
oldest first."""
WIPE_BUDGET = 10_000
"""Entries the worker removes after a run before it gives up and retires instead (the sandbox's files go with it):
a run that leaves millions of them (empty files or directories, which the work dirs' size limit does not count)
would otherwise keep the worker wiping for longer than the next request may wait for it."""
PREFIX = struct.Struct(">I")
READY, DONE, FAILED, RETIRED = b"Y", b"D", b"E", b"R"
"""Reply kinds: ready; a run's `RESULT`; the worker's own failure (`ERROR`); not run, use a fresh worker."""
RESULT = struct.Struct("<ciBddII")
"""DONE, exit code (or -signal), flags, wall seconds, CPU seconds, stdout bytes, stderr bytes."""
ERROR = struct.Struct("<cI")
"""FAILED, length of the UTF-8 text that follows."""
ACK = b"A"
"""Child -> worker, on the status pipe: the request has been read (so the next standby may be forked: it cannot
take this request any more)."""
STATUS = struct.Struct("<id")
"""Child -> worker: exit code, CPU seconds (itself and its waited-for children)."""
ZYGOTE_POLL_SECONDS = 0.05
"""How often the worker looks whether a slow zygote was stopped (by a program) while it waits for an answer."""
FORK, KILL = b"F", b"K"
ORDER = struct.Struct("<ci")
"""Worker -> zygote: FORK a standby (pid 0), or KILL and reap its child pid."""
FORKED = struct.Struct("<i")
"""Zygote -> worker: the new standby's pid."""
REAPED = struct.Struct("<iid")
"""Zygote -> worker after KILL: child found (0/1), its wait status, its CPU seconds."""
RUNNABLE = (b"S", b"R", b"D")
"""Process states (`/proc/PID/stat`) of a process that is neither stopped, traced nor dead."""
KILLED_FOR_WALL, STDOUT_TRUNCATED, STDERR_TRUNCATED = 1, 2, 4
STARTUP_MODULES = frozenset(globals().get("_STARTUP_MODULES", sys.modules))
"""The modules the interpreter had imported by itself before the worker ran (recorded by the bootstrap): a file in a
program's directory does not shadow those in a fresh interpreter either."""
REHEARSAL_ROUNDS = 40
"""Dummy runs at start-up (3.11 specialises a function's bytecode after a few calls)."""
REHEARSALS = (
    "import sys\nfrom typing import List\n\n\ndef close(xs: List[float], t: float) -> bool:\n"
    "    return any(abs(a - b) < t for i, a in enumerate(xs) for j, b in enumerate(xs) if i != j)\n\n\n"
    "assert close([1.0, 2.0, 2.1], 0.3) is True\nassert not close([1.0, 2.0], 0.5)\nprint('ok', sys.argv[1:])\n",
    "def f(n):\n    return {str(i): [i] * 2 for i in range(n)}\n\n\nprint(len(f(5)), input() if False else '')\n"
    "assert f(2) == {}, 'expected failure'\n",
    "import sys\nsys.exit(3)\n",
)
"""Programs the rehearsal runs: a passing one, one that fails an assert (traceback), one that calls sys.exit."""


class ZygoteLostError(Exception):
    """The zygote died, hung or answered nonsense (a program may kill or stop it)."""


class Pristine:
    """The process attributes a child inherits and a same-uid process could change from outside.

    Taken once at start-up, before any program ran. The worker compares its own after every run, and every
    standby's before it sends it a request: only once every process of the last run is dead, so no program can
    change them between the check and the run (a child's own program may change its own: they are the program's).
    """

    def __init__(self, sealed: bool) -> None:
        self.values = self.current()
        self.environment = dict(os.environ)
        """The environment every child inherits (no other process can change it)."""
        self.sealed = sealed
        """The sandbox's seccomp filter refuses to set any of them on another process (see `reflectgym.sandboxes.
        seccomp.OWN_PROCESS_ONLY`): they cannot change, and are not read again."""

    LIMITS = tuple(getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_"))

    @staticmethod
    def current(pid: int = 0) -> tuple:
        """The attributes of process `pid` (0: this one)."""
        limits = tuple(resource.prlimit(pid, which) for which in Pristine.LIMITS)
        return limits, os.getpriority(os.PRIO_PROCESS, pid), os.sched_getscheduler(pid), os.sched_getaffinity(pid)

    def intact(self, pid: int = 0) -> bool:
        """Whether process `pid` (0: this one) still has them; False once it is gone. Always True when `sealed`
        (a standby that is gone or stopped is found out by `unsignalled`)."""
        if self.sealed:
            return True
        try:
            return self.current(pid) == self.values
        except OSError:
            return False


class Inbox:
    """Receives each request into one reused buffer (one read for a small request)."""

    def __init__(self) -> None:
        self.buffer = bytearray(CHUNK)
        self.view = memoryview(self.buffer)
        self.filled = 0

    def fill(self, end: int) -> bool:
        """Make sure `buffer[:end]` has arrived; False when the host closed the channel."""
        if end > len(self.buffer):
            bigger = bytearray(max(end, 2 * len(self.buffer)))
            bigger[: self.filled] = self.view[: self.filled]
            self.buffer, self.view = bigger, memoryview(bigger)
        while self.filled < end:
            count = os.readv(PROTOCOL_IN, [self.view[self.filled :]])
            if not count:
                return False
            self.filled += count
        return True

    def receive(self) -> "Request | None":
        """The next request (views into the buffer, valid until the next call), or None at the end of input."""
        self.filled = 0
        if not self.fill(PREFIX.size):
            return None
        (size,) = PREFIX.unpack_from(self.buffer)
        end = PREFIX.size + size
        if not self.fill(end):
            return None
        request = Request(marshal.loads(self.view[PREFIX.size : end]), end)
        if not self.fill(request.end):
            return None
        if self.filled != request.end:
            raise ValueError("the host sent more than one request at a time")
        request.place(self.view)
        return request


class Request:
    """One request: the parsed worker header and views of the parts that follow it."""

    def __init__(self, header: dict, start: int) -> None:
        self.files = [(str(name), int(size)) for name, size in header["files"]]
        self.wall = float(header["wall"])
        self.max_output = int(header["max_output"])
        self.sizes = [int(header["child"]), int(header["stdin"]), *(size for _, size in self.files)]
        self.start = start
        self.end = start + sum(self.sizes)
        self.parts: list[memoryview] = []

    def place(self, view: memoryview) -> None:
        offset = self.start
        for size in self.sizes:
            self.parts.append(view[offset : offset + size])
            offset += size


class Output:
    """One captured stream in a reused buffer: up to `limit` bytes kept, anything past it marks truncation."""

    def __init__(self) -> None:
        self.buffer = bytearray(CHUNK)
        self.used = 0
        self.limit = 0
        self.truncated = False

    def reset(self, limit: int) -> None:
        if len(self.buffer) < limit + CHUNK:
            self.buffer = bytearray(limit + CHUNK)
        self.used, self.limit, self.truncated = 0, limit, False

    def read(self, fd: int) -> int:
        """Read once from `fd` (non-blocking): how many bytes came (0: none were there)."""
        try:
            with memoryview(self.buffer) as view:
                count = os.readv(fd, [view[self.used : self.used + CHUNK]])
        except BlockingIOError:
            return 0
        self.used += count
        if self.used > self.limit:
            self.used, self.truncated = self.limit, True
        return count

    def drain(self, fd: int) -> None:
        """Read what is in the pipe now, up to the limit. Its writers are done: a read that comes short emptied it."""
        while not self.truncated and self.read(fd) == CHUNK:
            pass


class Pipes:
    """The channels between the worker and every child, made once, before the zygote is forked.

    The children's ends (the control reader, the output and status writers, the stdin memfd) stay open in the
    zygote, so a standby is forked with nothing to hand over; the worker's ends are non-blocking. Between
    runs (every process of the last run dead) the worker drains whatever the run left in them.
    """

    def __init__(self) -> None:
        self.stdin = unnamed_file()
        self.control_r, self.control = os.pipe()
        self.stdout, self.stdout_w = os.pipe()
        self.stderr, self.stderr_w = os.pipe()
        self.status, self.status_w = os.pipe()
        self.gate_r, self.gate = os.pipe()
        for fd in (self.control_r, self.control, self.stdout, self.stderr, self.status, self.gate_r):
            os.set_blocking(fd, False)

    def drain(self, control: bool) -> None:
        """Drop whatever is left in the output, status and gate pipes (and in the control pipe, when no standby is
        alive to read it)."""
        pipes = (self.control_r, self.stdout, self.stderr, self.status, self.gate_r)[0 if control else 1 :]
        for fd in select.select(pipes, [], [], 0)[0]:
            with contextlib.suppress(BlockingIOError):
                while os.read(fd, CHUNK):
                    pass


def unnamed_file() -> int:
    """A file without a name for each run's stdin: in `/dev/shm` (a bubblewrap sandbox's seccomp filter refuses
    `memfd_create` to every process in it, this worker included; the wipes cannot see an unnamed file), else a
    memfd. Its bytes count against `/dev/shm`'s size while a run is on."""
    with contextlib.suppress(OSError):
        return os.open("/dev/shm", os.O_TMPFILE | os.O_RDWR, 0o600)
    return os.memfd_create("stdin")


class Zygote:
    """The worker's handle on the zygote process (see the module docstring)."""

    def __init__(self, pipes: Pipes, pristine: "Pristine", compiler: "Compiler") -> None:
        self.pristine = pristine
        self.compiler = compiler
        """The worker's compiler, which the sweeps spare while it is alive."""
        commands, self.commands = os.pipe()
        self.answers, answers = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.commands)
            os.close(self.answers)
            zygote_main(commands, answers, pipes, pristine)
        for fd in (commands, answers, pipes.stdout_w, pipes.stderr_w, pipes.status_w, pipes.gate):
            os.close(fd)
        self.forking = False
        self.stdio = SharedStdio(pipes, pristine.sealed)
        self.counter = open_pid_counter()

    def fork(self) -> None:
        """Order a standby; `forked` returns its pid."""
        self._order(FORK, 0)
        self.forking = True

    def forked(self) -> int:
        self.forking = False
        (pid,) = FORKED.unpack(self._answer(FORKED.size))
        return pid

    def spare(self, pipes: Pipes) -> int:
        """Fork a standby while no run is on and return its pid. The gate byte that comes with every fork (written
        before the answer) is meant for the child whose run ordered it: here there is none, and a byte left in the
        gate would let the next run's program start before its successor exists."""
        self.fork()
        pid = self.forked()
        with contextlib.suppress(BlockingIOError):
            os.read(pipes.gate_r, CHUNK)
        return pid

    def end_run(self, child_pid: int, standby: int) -> tuple[int, float, bool]:
        """Kill and reap every process but the worker, the zygote and `standby` (0: none), then put back what the
        run changed of the shared stdio: the child's wait status and CPU seconds, and whether `standby` is still
        usable (a stopped one, one with a signal pending, or one whose inherited attributes were changed, is killed).

        The program starts only once `standby` exists (see `child`), so every other process of the run has a pid
        given out after the standby's: if the namespace's last pid is still the standby's once the child is
        reaped, there is none, and `/proc` need not be scanned. (Setting `ns_last_pid` takes CAP_SYS_ADMIN or
        CAP_CHECKPOINT_RESTORE over the namespace; nothing in the sandbox has capabilities.)
        """
        wait_status, cpu = self.reap(child_pid)
        if not standby or self.counter < 0 or last_pid(self.counter) != standby:
            sweep(self, standby)
        usable = standby != 0 and unsignalled(standby) and self.pristine.intact(standby)
        if standby and not usable:  # stopped, signalled, killed or changed by the run: replace it
            self.reap(standby)
        self.stdio.restore()  # every process of the run is dead: none can change them again
        return wait_status, cpu, usable

    def reap(self, pid: int) -> tuple[int, float]:
        """Have the zygote kill and reap its child `pid`: its wait status and CPU seconds."""
        self._order(KILL, pid)
        found, wait_status, cpu = REAPED.unpack(self._answer(REAPED.size))
        if not found:
            raise ZygoteLostError("the zygote did not find its child")
        return wait_status, cpu

    def _order(self, kind: bytes, pid: int) -> None:
        try:
            os.write(self.commands, ORDER.pack(kind, pid))
        except OSError as error:
            raise ZygoteLostError(f"the zygote is gone: {error}") from error

    def _answer(self, size: int) -> bytes:
        deadline = time.perf_counter() + ZYGOTE_TIMEOUT_SECONDS
        while not select.select([self.answers], [], [], ZYGOTE_POLL_SECONDS)[0]:
            if time.perf_counter() > deadline or process_state(self.pid) not in RUNNABLE:
                raise ZygoteLostError("the zygote did not answer (stopped, traced or stuck)")
        answer = os.read(self.answers, size)
        if len(answer) != size:
            raise ZygoteLostError("the zygote is gone")
        return answer


def main() -> None:
    """Serve requests until the host closes the channel."""
    if os.getpid() != 1:
        sys.exit("worker_main runs only as pid 1 of its own pid namespace (inside the sandbox)")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    os.dup2(0, PROTOCOL_IN)
    os.dup2(1, PROTOCOL_OUT)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    pin(sys.argv[3] if len(sys.argv) > 3 else "")
    if len(sys.argv) > 4:  # before `rehearse` and `Pristine`: the environment every child inherits
        set_environment(marshal.loads(bytes.fromhex(sys.argv[4])), dict(os.environ))
    sealed = len(sys.argv) > 5 and sys.argv[5] == "sealed"  # under reflectgym's seccomp filter (see `Pristine`)
    for name in sys.argv[1].split(",") if len(sys.argv) > 1 and sys.argv[1] else ():
        __import__(name)
    rehearse(REHEARSAL_ROUNDS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # pid 1 gets only the signals it handles: none, then
    gc.collect()
    gc.freeze()  # children then never walk (and so never copy) the preloaded objects in a collection
    release_free_memory(libc)
    pipes, pristine, cleaner = Pipes(), Pristine(sealed), Cleaner(libc, sealed)
    cleaner.clean_up()  # (the first run then finds the roots as every later one does)
    compiler = Compiler(libc)
    zygote = Zygote(pipes, pristine, compiler)
    compiler.start()  # (before the first standby: a sandbox's own processes get the lowest pids, see `end_run`)
    inbox, stdout, stderr = Inbox(), Output(), Output()
    standby = zygote.spare(pipes)
    write_all([READY])
    while True:
        request = inbox.receive()
        if request is None:
            return
        try:
            reply, following, ended = serve(request, standby, pipes, zygote, stdout, stderr)
        except ZygoteLostError as error:
            end_alone(cleaner)
            text = f"the run broke its sandbox: {error}".encode()
            write_all([ERROR.pack(FAILED, len(text)), text])
            return
        except Exception:  # report the worker's own failure instead of dying silently
            text = traceback.format_exc()[-2000:].encode()
            write_all([ERROR.pack(FAILED, len(text)), text])
            return
        if reply is None:  # the child could not set its run up (exited unacknowledged): nothing ran, nor will
            write_all([RETIRED])
            return
        write_all(reply)
        try:
            usable = ended[2] if ended else zygote.end_run(standby, following)[2]
            cleaner.clean_up()  # (before a spare standby is forked: it must find `/work` as every standby does)
            if following and usable:
                pipes.drain(control=False)
            else:  # no standby is alive to read the control pipe: drop what a dead child left there, then fork
                pipes.drain(control=True)
                following = zygote.spare(pipes)
                if not pristine.intact(following):  # forked by a zygote whose attributes a program changed
                    raise RuntimeError("the zygote's process attributes were changed")
            standby = following
            if not pristine.intact():  # a program changed this worker's attributes
                raise RuntimeError("the worker's process attributes were changed")
        except Exception:  # the run killed, stopped or changed the zygote or this worker, or clean-up failed
            end_alone(cleaner)
            if inbox.receive() is not None:
                write_all([RETIRED])  # (this worker exiting, as pid 1, takes every process of the sandbox along)
            return


def pin(cpu: str) -> None:
    """Keep this worker, its zygote and every child (they inherit it) on `cpu`, when the host asks: they hand each
    other work in turn, and on one core that costs no cross-core wake-ups. A CPU not allowed here (a container's
    cpuset) leaves the affinity as it was. Before `Pristine` is taken: it is part of what every child inherits."""
    if cpu:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {int(cpu)})


def rehearse(rounds: int) -> None:
    """Run the child's own Python path on dummy programs, so that every child starts warm.

    A fresh child's cost is mostly pages it first writes: bytecode that the interpreter specialises on first use,
    and memory its allocator takes anew. Rehearsed, the worker (and so every child) starts with that code already
    specialised and that memory already in the allocator's free lists; a child then copies about half as much.
    Nothing of the rehearsal stays visible: the environment, argv, path, streams and `__main__` are put back.
    """
    saved_env, saved_argv, saved_path = dict(os.environ), sys.argv, list(sys.path)
    saved_streams, saved_main = (sys.stdin, sys.stdout, sys.stderr), sys.modules["__main__"]
    saved_originals = (sys.__stdin__, sys.__stdout__, sys.__stderr__)
    path = os.path.join(WORK, "rehearsal.py")
    header = marshal.dumps({"argv": [sys.executable, "rehearsal.py", "x"], "env": None, "rlimits": [[0, 1, 2]] * 6})
    try:
        for round_ in range(rounds):
            for source in REHEARSALS:  # (compiled by the worker but every fourth round, as most programs are)
                code = marshal.dumps(compile(source, path, "exec", dont_inherit=True)) if round_ % 4 else b""
                with open(path, "w", encoding="utf-8") as handle:
                    handle.write(source)
                request = marshal.loads(header)
                set_environment(request["env"], saved_env)
                install_stdio()
                program = load_inline(request["argv"], code)
                assert program is not None  # (a file)
                run_inline(*program, finalize=False)  # (the worker's atexit callbacks stay)
                sys.argv, sys.path[:] = saved_argv, saved_path
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv, sys.path[:] = saved_argv, saved_path
        sys.stdin, sys.stdout, sys.stderr = saved_streams
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = saved_originals
        sys.modules["__main__"] = saved_main
        __import__("linecache").clearcache()
        with contextlib.suppress(OSError):
            os.unlink(path)


def release_free_memory(libc: ctypes.CDLL) -> None:
    """Hand the allocator's free pages back to the kernel before the zygote is forked (glibc's `malloc_trim`; a
    no-op elsewhere). Fork copies, and every child's exit tears down, one page-table entry per resident page of the
    zygote: the start-up's and the rehearsal's garbage is about 1.2 MB of them (of 7.1 MB), and each MB costs about
    0.03 ms of CPU per run. A child that allocates there later gets a zero-filled page instead of a copied one."""
    trim = getattr(libc, "malloc_trim", None)
    if trim is not None:
        trim(0)


def write_all(parts: list) -> None:
    """Write every part to the host, in order, in as few system calls as the pipe allows."""
    pending = [memoryview(part) for part in parts if len(part)]
    while pending:
        count = os.writev(PROTOCOL_OUT, pending)
        while pending and count >= len(pending[0]):
            count -= len(pending[0])
            pending.pop(0)
        if count:
            pending[0] = pending[0][count:]


def serve(
    request: Request, standby: int, pipes: Pipes, zygote: Zygote, stdout: Output, stderr: Output
) -> tuple[list | None, int, tuple[int, float, bool] | None]:
    """Run one request on the standby child; returns the reply's parts (None: the child refused to run), the next
    standby's pid (0: none was forked) and, if the run was already ended, what `Zygote.end_run` said."""
    child_header, stdin, *contents = request.parts
    for (name, _), content in zip(request.files, contents, strict=True):
        path = os.path.join(WORK, name)
        if "/" in name:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            write_fd(fd, content, positioned=False)
        finally:
            os.close(fd)
    os.ftruncate(pipes.stdin, 0)
    write_fd(pipes.stdin, stdin, positioned=True)
    stdout.reset(request.max_output)
    stderr.reset(request.max_output)
    code = precompile(child_header, request.files, contents, zygote.compiler.compile)
    message = b"".join([PREFIX.pack(len(child_header)), child_header, PREFIX.pack(len(code)), code])
    pidfd = os.pidfd_open(standby)
    try:
        started = time.perf_counter()
        if not hand_over(pipes.control, memoryview(message), pidfd):
            return None, 0, None  # (the standby died before it took its request: nothing ran)
        return watch(standby, pidfd, pipes, zygote, stdout, stderr, started, request.wall)
    finally:
        os.close(pidfd)


def precompile(
    child_header: memoryview, files: list, contents: list, compile_program: "Callable[[str | bytes, str, int], bytes]"
) -> bytes:
    """The program of an inline run compiled by `compile_program` (source, file name, memory limit; the worker's
    `Compiler`) and marshalled for its child (`load_inline`), or b"" where the child is to compile it: one that does
    not compile cleanly or in time (the child then reports the error or the warnings as a fresh interpreter would),
    one larger than `PRECOMPILE_MAX_BYTES`, one that would have its compiler import a module (a coding cookie's
    codec, `unicodedata` for a named escape: a fresh interpreter imports it in the program's process), a file that
    is not one of the request's, a zip file.

    A freshly forked child compiles about six times slower than a warm process: a 15-line program took it 0.39 ms
    and 142 copied pages, against 0.07 ms warm and 0.11 ms (70 pages) for the child to load the result. The last
    `COMPILED_KEPT` programs stay compiled (`COMPILED`): a program run once per test case compiles once."""
    child = marshal.loads(child_header)
    argv = child["argv"]
    if not child["inline"]:
        return b""
    if argv[1] == "-c":
        source, filename = argv[2], "<string>"
    else:
        wanted, content = os.path.normpath(argv[1]), None
        for (name, _), data in zip(files, contents, strict=True):
            if os.path.normpath(name) == wanted:
                content = data  # (of two names for one path, "m.py" and "./m.py", the last was written last)
        if content is None or content[:4] == ZIP_MAGIC:
            return b""
        source, filename = bytes(content), os.path.join(WORK, argv[1])
    if len(source) > PRECOMPILE_MAX_BYTES:
        return b""
    memory = COMPILE_MEMORY_BYTES
    for which, soft, _ in child["rlimits"]:
        if which == resource.RLIMIT_AS and 0 <= soft < memory:
            memory = soft
    key = (filename, source, memory)  # (what compiled under one memory limit may not under a lower one)
    code = COMPILED.pop(key, None)
    if code is None:
        child_compiles = imports_to_compile(source) or (isinstance(source, bytes) and not reads_as_utf8(source))
        code = b"" if child_compiles else compile_program(source, filename, memory)
        if len(COMPILED) >= COMPILED_KEPT:
            del COMPILED[next(iter(COMPILED))]
    COMPILED[key] = code  # (the most recent last)
    return code


CODING_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=]", re.MULTILINE)
FIRST_TWO_LINES = re.compile(rb"[^\r\n]*(?:\r\n?|\n)?[^\r\n]*")
"""A source's first two lines, whatever their line endings (where a coding cookie counts)."""


def imports_to_compile(source: "str | bytes") -> bool:
    """Whether compiling `source` may import a module: a coding cookie (its codec), or a named escape, `\\N{...}`
    (`unicodedata`). `compile_cleanly` notices an import once it happened, but not a codec's after the first time:
    the codec registry keeps codecs it found even once their modules are dropped from `sys.modules`."""
    data = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source
    return b"\\N{" in data or declares_encoding(data)


def declares_encoding(data: bytes) -> bool:
    """Whether a coding cookie is in `data`'s first two lines, whatever their line endings."""
    head = FIRST_TWO_LINES.match(data)
    return head is not None and CODING_COOKIE.search(head.group().replace(b"\r", b"\n")) is not None


def reads_as_utf8(data: bytes) -> bool:
    """Whether a fresh interpreter reads file `data` without a decoding error: without a coding cookie it decodes
    every line as UTF-8, comments too, which compiling the bytes does not check."""
    if data.isascii() or declares_encoding(data):
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class Compiler:
    """The worker's compiler: a process of its own, forked from the worker, that compiles programs for `precompile`
    under a memory limit and against a deadline. Compiling is not bounded by a source's size: Python 3.11 compiles a
    `finally` body once for every way out of its `try`, so nested ones (513 bytes of them) took 6.6 s and 4.6 GB,
    and folding a chain of string constants (16 KiB) 10 s and 6.5 GB; in the worker that would be outside every
    limit, and past the host's deadline for the reply. A compiler that misses the deadline is killed, and replaced
    at the next compile; that program is compiled by its child, within the run's limits, as a fresh interpreter
    would compile it. Its pid is spared by the sweeps while it is alive (a dead one's pid may be given out again)."""

    def __init__(self, libc: ctypes.CDLL) -> None:
        self.libc = libc
        self.pid = 0
        self.pidfd = self.requests = self.replies = -1

    def compile(self, source: "str | bytes", filename: str, memory: int) -> bytes:
        """`source` compiled and marshalled, or b"" (it did not compile cleanly, within `memory` and in time)."""
        request = marshal.dumps((source, filename, memory))
        try:
            if not self.alive():
                self.stop()
                self.start()
            deadline = time.perf_counter() + COMPILE_SECONDS
            self._send(memoryview(PREFIX.pack(len(request)) + request), deadline)
            (size,) = PREFIX.unpack(self._receive(PREFIX.size, deadline))
            return self._receive(size, deadline)
        except (OSError, EOFError, TimeoutError):
            self.stop()
            return b""

    def alive(self) -> bool:
        """Whether the compiler runs (and so its pid is still its own)."""
        return self.pidfd >= 0 and not select.select([self.pidfd], [], [], 0)[0]

    def start(self) -> None:
        requests, self.requests = os.pipe()
        self.replies, replies = os.pipe()
        try:
            pid = os.fork()
            if pid == 0:
                compiler_main(self.libc, requests, replies)
        finally:
            for fd in (requests, replies):
                os.close(fd)
        os.set_blocking(self.requests, False)  # (a stopped compiler reads nothing: the deadline holds for writing too)
        os.set_blocking(self.replies, False)
        self.pid, self.pidfd = pid, os.pidfd_open(pid)

    def stop(self) -> None:
        """Kill and reap the compiler, if any (through its pidfd: its pid may belong to another process by now)."""
        if self.pidfd >= 0:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PIDFD, self.pidfd, os.WEXITED)
        for fd in (self.pidfd, self.requests, self.replies):
            if fd >= 0:
                os.close(fd)
        self.pid, self.pidfd, self.requests, self.replies = 0, -1, -1, -1

    def _send(self, data: memoryview, deadline: float) -> None:
        while data:
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or not select.select([], [self.requests], [], remaining)[1]:
                raise TimeoutError("the compiler missed its deadline")
            with contextlib.suppress(BlockingIOError):
                data = data[os.write(self.requests, data) :]

    def _receive(self, count: int, deadline: float) -> bytes:
        chunks = []
        while count:
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or not select.select([self.replies], [], [], remaining)[0]:
                raise TimeoutError("the compiler missed its deadline")
            chunk = os.read(self.replies, min(count, CHUNK))
            if not chunk:
                raise EOFError("the compiler is gone")
            chunks.append(chunk)
            count -= len(chunk)
        return b"".join(chunks)


def compiler_main(libc: ctypes.CDLL, requests: int, replies: int) -> None:
    """In the compiler: compile what the worker sends, each under its memory limit, until it goes away. Never
    returns."""
    code = 0
    try:
        os.dup2(requests, 0)
        os.dup2(replies, 1)
        os.closerange(3, 65536)  # (the host's channel and the children's pipes are the worker's alone)
        prefer_for_oom_kill(libc)  # (under a cgroup, a compile over the memory limit ends here, not in the worker)
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        while True:
            (size,) = PREFIX.unpack(read_exactly(0, PREFIX.size))
            source, filename, memory = marshal.loads(read_exactly(0, size))
            limit = memory if hard == resource.RLIM_INFINITY else min(memory, hard)
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
            try:
                compiled = compile_cleanly(source, filename)
            finally:
                resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
            if len(compiled) > MAX_COMPILED_BYTES:
                compiled = b""
            write_fd(1, memoryview(PREFIX.pack(len(compiled)) + compiled), positioned=False)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def compile_cleanly(source: "str | bytes", filename: str) -> bytes:
    """`source` compiled and marshalled, or b"" if compiling it raises, warns or imports a module (a fresh interpreter
    imports it in the program's process: `unicodedata` for a non-ASCII name, a codec), or if loading it back would
    change it (`set_constants`)."""
    import warnings  # (not before the zygote is forked: it would be preloaded for every program)

    loaded = set(sys.modules)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            code = compile(source, filename, "exec", dont_inherit=True)
        except BaseException:  # (MemoryError and RecursionError too: the child meets them again, in its limits)
            return b""
    imported = sys.modules.keys() - loaded
    for name in imported:
        del sys.modules[name]
    if imported:
        return b""
    try:
        compiled = marshal.dumps(code)
        sets = set_constants(code)  # (usually none)
        if sets and sets != set_constants(marshal.loads(compiled)):
            return b""
    except BaseException:
        return b""
    return compiled


def set_constants(code: types.CodeType) -> list[list[object]]:
    """The set constants of `code` and the functions in it (`for x in {1, 2}`), each as the order it iterates in:
    `marshal` rebuilds a set from its elements in their old order, and where their hashes collide the new set can
    iterate in another (`{2070348407264, 1656481433960, 3, 57}`). The child loads what the compiler loads."""
    found: list[list[object]] = []
    for constant in code.co_consts:
        if isinstance(constant, frozenset):
            found.append(list(constant))
        elif isinstance(constant, types.CodeType):
            found += set_constants(constant)
    return found


def hand_over(control: int, data: memoryview, exited: int) -> bool:
    """Write a request's child header and compiled program to the (non-blocking) control pipe as the standby reads
    them; False if the standby (pidfd `exited`) exits first: a message larger than the pipe would otherwise block the
    worker for ever."""
    offset = 0
    while offset < len(data):
        try:
            offset += os.write(control, data[offset:])
        except BlockingIOError:
            if select.select([exited], [control], [])[0]:
                return False
    return True


def write_fd(fd: int, data: memoryview, positioned: bool) -> None:
    offset = 0
    while offset < len(data):
        chunk = data[offset:]
        offset += os.pwrite(fd, chunk, offset) if positioned else os.write(fd, chunk)


def watch(
    child_pid: int,
    pidfd: int,
    pipes: Pipes,
    zygote: Zygote,
    stdout: Output,
    stderr: Output,
    started: float,
    wall: float,
) -> tuple[list | None, int, tuple[int, float, bool] | None]:
    """Collect output until the program is done; kill everything (but the next standby) at the wall or output
    limit. Orders the next standby as soon as the child has read its request. Returns as `serve` does."""
    deadline = started + wall
    streams = {pipes.stdout: stdout, pipes.stderr: stderr}
    waiting = [pipes.stdout, pipes.stderr, pipes.status, pidfd]
    reports = b""
    status: tuple[int, float] | None = None
    killed_for_wall = exited = acknowledged = False
    while not exited and status is None:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            killed_for_wall = True
            break
        for fd in select.select(waiting, [], [], remaining)[0]:
            if fd == pidfd:
                exited = True
            elif fd == pipes.status:
                reports += os.read(fd, 64)
                if not acknowledged and reports[:1] == ACK:
                    acknowledged, reports = True, reports[1:]
                    zygote.fork()  # the child has its request: the next standby may exist now
                if acknowledged and len(reports) >= STATUS.size:
                    status = STATUS.unpack(reports) if len(reports) == STATUS.size else None
                    waiting.remove(fd)
            elif streams[fd].read(fd) and streams[fd].truncated:
                exited = True
    following = zygote.forked() if zygote.forking else 0
    if not acknowledged:  # the child exited before its program could start: retire
        return None, following, None
    ended = None
    if status is not None and not killed_for_wall and not stdout.truncated and not stderr.truncated:
        returncode, cpu = status[0] & 0xFF, status[1]  # the program is done; its exit is cleaned up after the reply
    else:
        ended = zygote.end_run(child_pid, following)
        returncode, cpu = os.waitstatus_to_exitcode(ended[0]), ended[1]
    for fd in select.select(list(streams), [], [], 0)[0]:  # the child wrote all before its status, or is dead
        streams[fd].drain(fd)
    wall_seconds = time.perf_counter() - started
    flags = (
        KILLED_FOR_WALL * killed_for_wall + STDOUT_TRUNCATED * stdout.truncated + STDERR_TRUNCATED * stderr.truncated
    )
    header = RESULT.pack(DONE, returncode, flags, wall_seconds, cpu, stdout.used, stderr.used)
    return (
        [header, memoryview(stdout.buffer)[: stdout.used], memoryview(stderr.buffer)[: stderr.used]],
        following,
        ended,
    )


def zygote_main(commands: int, answers: int, pipes: Pipes, pristine: Pristine) -> None:
    """In the zygote: fork standbys and end runs on order, until the worker goes away. Never returns."""
    code = 0
    try:
        os.dup2(0, PROTOCOL_IN)  # only the worker speaks to the host (and fds 3, 4 stay taken: see `child`)
        os.dup2(0, PROTOCOL_OUT)
        os.dup2(pipes.stdin, 0)  # every child's stdio, made once: children inherit the fds and Python's objects
        os.dup2(pipes.stdout_w, 1)
        os.dup2(pipes.stderr_w, 2)
        install_stdio()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # every child's, as in a fresh interpreter
        # A program's module runs below this chain, `child` and `run_inline`, and two more re-entries of the
        # interpreter than a fresh one's (the bootstrap's `exec` and `run_inline`'s):
        match_recursion_headroom(frame_depth() + 2 + 2 * exec_recursion_cost())
        prefer_for_oom_kill(ctypes.CDLL(None))
        while True:
            order = os.read(commands, ORDER.size)
            if len(order) != ORDER.size:
                return
            kind, pid = ORDER.unpack(order)
            if kind == FORK:
                pid = os.fork()
                if pid == 0:
                    child(pipes, pristine)
                os.write(pipes.gate, b"G")  # the running child may start its program now (see `Zygote.spare`)
                os.write(answers, FORKED.pack(pid))
            elif kind == KILL:  # (a program may change this zygote's attributes: the worker checks every standby's)
                os.write(answers, REAPED.pack(*kill_and_reap(pid)))
            else:
                return
    except BaseException:
        code = 1
    finally:
        os._exit(code)


class SharedStdio:
    """What a program can change of the stdin file, output and status pipes every child reopens (`reopen_stdio`): the
    files themselves, not its own open file descriptions of them — their modes (mode 0 would make every later
    child's reopen fail), timestamps, the stdin file's extended attributes, the pipes' sizes. Taken by the worker
    (through its own fds on the same file and pipes) before any program ran; restored after every run."""

    def __init__(self, pipes: Pipes, sealed: bool) -> None:
        self.stdin = pipes.stdin
        self.attributes = not sealed  # (the seccomp filter refuses to set extended attributes)
        self.files = [(fd, os.fstat(fd)) for fd in (pipes.stdin, pipes.stdout, pipes.stderr, pipes.status)]
        self.pipe_sizes = [
            (fd, fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)) for fd in (pipes.stdout, pipes.stderr, pipes.status)
        ]

    def restore(self) -> None:
        for fd, info in self.files:
            os.fchmod(fd, stat.S_IMODE(info.st_mode))
            os.utime(fd, ns=(info.st_atime_ns, info.st_mtime_ns))
        if self.attributes:
            remove_attributes(self.stdin)  # (pipes have no user attributes)
        for fd, size in self.pipe_sizes:
            if fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ) != size:
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, size)


def prefer_for_oom_kill(libc: ctypes.CDLL) -> None:
    """Make the zygote, and so every child, the out-of-memory killer's first choice (the worker stays at 0): under
    a cgroup memory limit a program over it is then killed, not the worker. Non-dumpable, a process's `/proc/self`
    files belong to root and it could not write this; at start-up no program runs yet, so the zygote may be
    dumpable for the moment it takes."""
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    try:
        with contextlib.suppress(OSError):
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY)
            try:
                os.write(fd, b"1000")
            finally:
                os.close(fd)
    finally:
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def kill_and_reap(pid: int) -> tuple[int, int, float]:
    """In the zygote: SIGKILL its child `pid` (a run's child may still be exiting after its report) and reap it;
    returns (found, wait status, CPU seconds)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    try:
        _, wait_status, usage = os.wait4(pid, 0)
    except ChildProcessError:
        return 0, 0, 0.0
    return 1, wait_status, usage.ru_utime + usage.ru_stime


def sweep(zygote: Zygote, standby: int) -> None:
    """In the worker, once the run's child is reaped: SIGKILL every process but this one, the zygote, `standby` and
    the compiler (while it is alive) until none is left, reaping them.

    Every other process of a run is an orphan by now, or becomes one when its parent dies, and so the worker's
    (pid 1) to reap; but for one made the zygote's own child (`clone` with CLONE_PARENT from the run's child), which
    only the zygote can reap. Each round kills every process first (a killed process cannot fork any more: one
    forked before shows up in the next round; RLIMIT_NPROC bounds how many there can be), then has the zygote reap
    its own, waits until the others have exited and reaps whichever are the worker's (a process may reap its own
    children first: nothing here blocks on a child that may never come).
    """
    for _ in range(MAX_SWEEPS):
        # (each round: a compiler the run killed is reaped below, and its pid may then go to a process of the run)
        spared = (1, zygote.pid, standby, zygote.compiler.pid if zygote.compiler.alive() else 0)
        victims = [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and int(entry) not in spared]
        if not victims:
            return
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        exits = select.poll()
        opened = []
        for pid in victims:
            if parent_of(pid) == zygote.pid:
                zygote.reap(pid)
                continue
            with contextlib.suppress(OSError):  # (gone already)
                opened.append(os.pidfd_open(pid))
                exits.register(opened[-1], select.POLLIN)
        try:
            wait_for_exits(exits, len(opened))
        finally:
            for fd in opened:
                os.close(fd)
        reap_exited_children(zygote.pid)
    raise ZygoteLostError("the run outran every kill-and-reap round")


def wait_for_exits(exits: select.poll, count: int) -> None:
    """Wait until the `count` processes whose pidfds are registered in `exits` have all exited."""
    deadline = time.perf_counter() + ZYGOTE_TIMEOUT_SECONDS
    exited: set[int] = set()
    while len(exited) < count:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise ZygoteLostError("a killed process of the run did not exit")
        for fd, _ in exits.poll(math.ceil(remaining * 1000)):
            exits.unregister(fd)
            exited.add(fd)


def reap_exited_children(zygote: int) -> None:
    """Reap every child of the worker that has exited (without waiting for one that has not)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid == zygote:
            raise ZygoteLostError("the run killed the zygote")


def parent_of(pid: int) -> int:
    """The parent pid of process `pid` (0 once it is gone)."""
    fields = stat_fields(pid)
    return int(fields[1]) if len(fields) > 1 else 0


def open_pid_counter() -> int:
    """An fd on `/proc/sys/kernel/ns_last_pid` (see `Zygote.end_run`), or -1 where it cannot be opened."""
    try:
        return os.open(LAST_PID, os.O_RDONLY)
    except OSError:
        return -1


def last_pid(counter: int) -> int:
    """The last pid given out in this pid namespace."""
    return int(os.pread(counter, 32, 0))


def unsignalled(pid: int) -> bool:
    """Whether process `pid` is alive, neither stopped nor traced, and has no signal pending.

    Once every other process of a run is dead, nothing can signal the standby any more, but what the run sent it
    may not have been acted on yet (the standby has not run since): a SIGSTOP still pending would stop it only
    once it has its request, and that run would wait out its wall limit before going to a fresh worker.
    """
    try:
        fd = os.open(f"/proc/{pid}/status", os.O_RDONLY)
    except OSError:
        return False
    try:
        status = os.read(fd, 16384)
    finally:
        os.close(fd)
    state = status.partition(b"\nState:\t")[2][:1]
    pending = [status.partition(field)[2].partition(b"\n")[0] for field in (b"\nSigPnd:\t", b"\nShdPnd:\t")]
    return state in RUNNABLE and all(mask and not mask.strip(b"0") for mask in pending)


def process_state(pid: int) -> bytes:
    """Process `pid`'s state letter (`/proc/PID/stat`), b"X" once it is gone."""
    fields = stat_fields(pid)
    return fields[0] if fields else b"X"


def stat_fields(pid: int) -> list[bytes]:
    """The fields of `/proc/PID/stat` after the command name (state, parent pid, ...); [] once `pid` is gone."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return []
    try:
        return os.read(fd, 4096).rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []
    finally:
        os.close(fd)


def end_alone(cleaner: "Cleaner") -> None:
    """Without the zygote: kill and reap everything (as pid 1, every orphan is ours) and wipe, as far as it goes
    (a program may have crippled this worker's limits; its exit ends the sandbox anyway)."""
    with contextlib.suppress(Exception):
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while True:
                os.waitpid(-1, 0)
        cleaner.clean_up()


def child(pipes: Pipes, pristine: Pristine) -> None:
    """In the forked child: set up, wait for the request, become the program. Never returns."""
    code = 1
    own_pid = os.getpid()
    try:
        os.setsid()  # fds 0-2 and sys.stdin/stdout/stderr come set up from the zygote
        os.dup2(pipes.control_r, CHILD_CONTROL, inheritable=False)  # replaces the worker's protocol fds here
        os.dup2(pipes.status_w, CHILD_STATUS, inheritable=False)
        os.dup2(pipes.gate_r, CHILD_GATE, inheritable=False)
        os.closerange(CHILD_GATE + 1, 65536)
        try:  # while waiting: off the run's path
            reopen_stdio()
            os.chdir(WORK)
            settled = True
        except OSError:  # the run going on beside this standby made them unreachable (mode 0) for now
            settled = False
        (size,) = PREFIX.unpack(read_exactly(CHILD_CONTROL, PREFIX.size))
        header = read_exactly(CHILD_CONTROL, size)
        (size,) = PREFIX.unpack(read_exactly(CHILD_CONTROL, PREFIX.size))
        compiled = read_exactly(CHILD_CONTROL, size)
        os.close(CHILD_CONTROL)
        if not settled:  # the worker put them back before it sent the request (it used to retire here instead)
            reopen_stdio()
            os.chdir(WORK)
        request = marshal.loads(header)
        for which, soft, hard in request["rlimits"]:
            resource.setrlimit(which, (soft, hard))
        set_environment(request["env"], pristine.environment)
        os.write(CHILD_STATUS, ACK)  # (a failure before it is the sandbox's: the worker sees no ACK and retires)
        argv = request["argv"]
        inline = request["inline"] and streams_for(request["env"], pristine.environment)
        program = load_inline(argv, compiled) if inline else None  # (None: exec a fresh interpreter)
        read_exactly(CHILD_GATE, 1)  # the successor exists: the sandbox's own processes are all there
        os.close(CHILD_GATE)
        if program is not None:
            code = run_inline(*program)
            if code < 0:  # ended by a signal, as the interpreter does on an uncaught KeyboardInterrupt
                signal.signal(-code, signal.SIG_DFL)
                os.kill(os.getpid(), -code)
            if os.getpid() == own_pid:  # (a process the program forked ends without reporting, as it would fresh)
                report(code)
        else:
            for number in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ):
                signal.signal(number, signal.SIG_DFL)  # an exec'd program starts with default dispositions
            try:
                os.execvpe(argv[0], argv, os.environ)
            except OSError as error:
                os.write(2, f"cannot run {argv[0]!r}: {error}\n".encode())
                code = 127
    except BaseException:  # the child must never fall back into the zygote's loop
        code = 1
    finally:
        os._exit(code)


def reopen_stdio() -> None:
    """Give this child open file descriptions of its own for fds 0-2 and its status pipe (the same stdin file and
    pipes): what a program sets on a description (flags, `O_ASYNC`, `flock` and OFD locks, a lease,
    `F_SETOWN`/`F_SETSIG`) then ends with its process instead of reaching the next run through the descriptions
    every child would otherwise share (`F_SETOWN` + `O_ASYNC` on the shared status pipe had the next run's child
    killed by SIGIO when it acknowledged its request)."""
    for fd, path in REOPENED:
        fresh = os.open(path, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        os.dup2(fresh, fd, inheritable=fd != CHILD_STATUS)
        os.close(fresh)


REOPENED = tuple((fd, f"/proc/self/fd/{fd}") for fd in (0, 1, 2, CHILD_STATUS))


def set_environment(wanted: dict[str, str] | None, inherited: dict[str, str]) -> None:
    """Make `os.environ` the program's; None asks for the sandbox's default one, which every child inherits (see
    `worker_command` in `pool`). Keeping it spares rewriting `os.environ`, which would copy dozens of the zygote's
    pages."""
    if wanted is not None and wanted != inherited:
        os.environ.clear()
        os.environ.update(wanted)


def read_exactly(fd: int, count: int) -> bytes:
    """Read `count` bytes from the (non-blocking) control pipe, waiting as long as it takes."""
    chunks = []
    while count:
        select.select([fd], [], [])  # waiting first spares raising BlockingIOError (fewer pages copied)
        try:
            chunk = os.read(fd, min(count, 1 << 20))
        except BlockingIOError:  # taken by another reader first: wait again
            continue
        if not chunk:
            raise EOFError("the worker went away")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


INTEGER = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")
STDIO_VARIABLES = ("PYTHONIOENCODING", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "LC_ALL", "LC_CTYPE", "LANG")
"""The environment variables that decide how a fresh interpreter sets up its standard streams (`install_stdio`
applies a run's own for its program)."""


def streams_for(wanted: dict[str, str] | None, inherited: dict[str, str]) -> bool:
    """Set up the standard streams for a program to run inline with environment `wanted` (None: the default one,
    for which the zygote set them up); False where that fails (an unknown PYTHONIOENCODING): a fresh interpreter
    then says so itself."""
    if wanted is None or all(os.environ.get(name) == inherited.get(name) for name in STDIO_VARIABLES):
        return True
    try:
        install_stdio()
    except Exception:
        return False
    return True


def install_stdio() -> None:
    """Fresh sys.stdin/stdout/stderr on fds 0-2, set up as a fresh `python3` with this environment would have them:
    encoding and error handler from PYTHONIOENCODING (`encoding[:errors]`), else UTF-8, `strict` (`surrogateescape`
    under the C or POSIX locale; stderr always `backslashreplace`); with PYTHONUNBUFFERED, stdout and stderr
    unbuffered (what a program printed survives an `os._exit` or a kill), else stdout block-buffered and stderr
    line-buffered. Also `sys.dont_write_bytecode` from PYTHONDONTWRITEBYTECODE."""
    environ = os.environ
    encoding, _, errors = environ.get("PYTHONIOENCODING", "").partition(":")
    locale = environ.get("LC_ALL") or environ.get("LC_CTYPE") or environ.get("LANG") or "C"
    errors = errors or ("surrogateescape" if locale in ("C", "POSIX") else "strict")
    encoding = codecs.lookup(encoding or "utf-8").name
    unbuffered = env_flag("PYTHONUNBUFFERED")
    streams = []
    for fd, name, mode in ((0, "<stdin>", "r"), (1, "<stdout>", "w"), (2, "<stderr>", "w")):
        raw = io.FileIO(fd, mode, closefd=False)
        raw.name = name  # type: ignore[misc]  (as the interpreter names them)
        buffered = io.BufferedReader(raw) if fd == 0 else raw if unbuffered else io.BufferedWriter(raw)
        stream = io.TextIOWrapper(
            buffered,
            encoding=encoding,
            errors="backslashreplace" if fd == 2 else errors,
            line_buffering=fd == 2 and not unbuffered,
            write_through=unbuffered,
        )
        stream.mode = mode  # type: ignore[misc]
        streams.append(stream)
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams  # (a fresh interpreter's are the same objects)
    sys.dont_write_bytecode = env_flag("PYTHONDONTWRITEBYTECODE")


def env_flag(name: str) -> bool:
    """A PYTHON* on/off variable as the interpreter reads it: unset, empty or "0" is off; any other number or text
    is on."""
    value = os.environ.get(name)
    if not value:
        return False
    number = INTEGER.fullmatch(value)  # (what C's strtol reads whole; anything else counts as on)
    return number is None or int(number.group()) != 0


def load_inline(argv: list[str], code: bytes) -> tuple[types.CodeType | BaseException, str] | None:
    """For `python3 FILE ARGS...` or `python3 -c CODE ARGS...`: set argv and path as the interpreter would, and
    load the program the worker compiled (`code`, marshalled) or else compile it; returns the code (or the error
    that compiling or reading raised) and the file name, or None where a fresh interpreter must run it: a directory
    or zip file (`__main__.py` in it, through `runpy`), or a program with a file beside it named like a module the
    worker imported ahead of it (`shadows_a_loaded_module`)."""
    sys.orig_argv = list(argv)
    if argv[1] == "-c":
        source, filename, sys.argv = argv[2], "<string>", ["-c", *argv[3:]]
        sys.path[0:0] = [""]
        directory = WORK
    else:
        filename = os.path.join(WORK, argv[1]) if not argv[1].startswith("/") else argv[1]
        try:
            if stat.S_ISDIR(os.stat(filename).st_mode):
                return None
        except OSError as error:  # (as opening it would: `sub/../m.py` without `sub`, `m.py/`)
            return error, filename
        sys.argv = argv[1:]
        directory = os.path.dirname(script_path(filename))  # (as the interpreter's sys.path[0])
        sys.path[0:0] = [directory]
        source = b""  # (read only where the worker did not compile the program)
        if not code:
            try:
                with open(filename, "rb") as handle:
                    source = handle.read()
            except OSError as error:
                return error, filename
            if source.startswith(ZIP_MAGIC) or not reads_as_utf8(source):
                return None
    if shadows_a_loaded_module(directory):
        return None
    try:
        if code:
            return marshal.loads(code), filename
        return compile(source, filename, "exec", dont_inherit=True), filename
    except BaseException as error:  # SyntaxError, MemoryError...: reported when the program would have started
        if isinstance(source, bytes) and reads_differently(error):
            return None
        error.__traceback__ = None
        return error, filename


def reads_differently(error: BaseException) -> bool:
    """Whether compiling a file's bytes failed where a fresh interpreter, which reads the file itself, does
    otherwise: at a NUL byte it stops reading (and runs what came before), and it words an undecodable file's error
    its own way ("Non-UTF-8 code starting with ..."). Such a program is left to a fresh interpreter."""
    if isinstance(error, SyntaxError):
        return str(error.msg).startswith("(unicode error)")
    return isinstance(error, ValueError)


ZIP_MAGIC = b"PK\x03\x04"


def script_path(filename: str) -> str:
    """`filename` with symbolic links resolved, as the interpreter takes it for `sys.path[0]`; under the work dir
    only normalised (everything there was written by the worker: no links), which spares a system call per part."""
    normal = os.path.normpath(filename)
    return normal if normal.startswith(WORK + "/") else os.path.realpath(normal)


def shadows_a_loaded_module(directory: str) -> bool:
    """Whether something in the program's directory is named like a module the worker imported ahead of the
    program, a preload or one of its own imports (`json.py`, `json/`, `numbers.cpython-311-x86_64-linux-gnu.so`;
    a fresh interpreter's own start-up modules aside). In a fresh interpreter the program would import that file,
    and so would every module it imports that imports that name (`fractions` imports `numbers`): such a program
    is left to a fresh interpreter."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return False
    return any((stem := entry.partition(".")[0]) in sys.modules and stem not in STARTUP_MODULES for entry in entries)


def run_inline(program: types.CodeType | BaseException, filename: str, finalize: bool = True) -> int:
    """Run a program `load_inline` compiled in this interpreter as `__main__`; returns the exit code, or minus the
    signal the process must end by (SIGINT after an uncaught KeyboardInterrupt, as the interpreter does).

    With `finalize`, the run then ends as the interpreter's exit would, as far as a program can see: its threads are
    waited for and its `atexit` callbacks run (`wait_and_run_exit_callbacks`), its `sys.stdout` and `sys.stderr`
    are flushed (a wrapper of its own still finds its globals) and set back to the originals, then `__main__`'s
    globals are dropped, the latest first, so that what they held is finalised with the rest still in place (a file
    object flushes what it buffered, a `__del__` runs and can still use the globals), and the streams are flushed
    again. Unlike the interpreter's exit no collection follows: a `__del__` in a reference cycle among the
    program's own objects does not run."""
    module = types.ModuleType("__main__")
    namespace = module.__dict__
    namespace["__annotations__"] = {}
    namespace["__builtins__"] = __builtins__
    if filename == "<string>":  # `python3 -c` leaves `__file__` and `__cached__` undefined
        namespace["__loader__"] = importlib.machinery.BuiltinImporter
    else:
        namespace["__loader__"] = importlib.machinery.SourceFileLoader("__main__", filename)
        namespace["__file__"], namespace["__cached__"] = filename, None
    sys.modules["__main__"] = module
    if isinstance(program, OSError):
        message = f"{sys.executable}: can't open file {filename!r}: [Errno {program.errno}] {program.strerror}"
        print(message, file=sys.stderr, flush=True)
        return 2  # as the interpreter does
    code = 0
    try:
        if isinstance(program, BaseException):
            raise program
        exec(program, module.__dict__)
    except SystemExit as stop:
        code = exit_code_of(stop)
    except BaseException as error:
        report_uncaught(error)
        code = -signal.SIGINT if isinstance(error, KeyboardInterrupt) else 1
    if not finalize:
        return code if flush_std_files() or code < 0 else 120
    wait_and_run_exit_callbacks()
    flushed = flush_std_files()  # (the program's own `sys.stdout`, with everything it uses still in place)
    sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__  # (as the exit's next step)
    for name in reversed([name for name in namespace if name != "__builtins__"]):
        namespace[name] = None  # (what a __del__ raises is printed and ignored, as at exit)
    flushed = flush_std_files() and flushed  # (what a finaliser printed)
    return code if flushed or code < 0 else 120  # (an uncaught KeyboardInterrupt still ends it by SIGINT)


def flush_std_files() -> bool:
    """Flush `sys.stdout` and `sys.stderr` as the interpreter's exit does (`flush_std_files` in CPython): a stream
    set to None or closed is left alone; a failure on stdout is printed as an ignored exception, on stderr
    dropped, and either makes the exit status 120. Whether both flushed."""
    flushed = True
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name, None)
        try:
            if stream is None or is_closed(stream):
                continue
            stream.flush()
        except BaseException as error:
            flushed = False
            if name == "stdout":
                with contextlib.suppress(BaseException):
                    print(f"Exception ignored in: {stream!r}", file=sys.stderr)
                    trace = error.__traceback__.tb_next if error.__traceback__ else None  # (from the stream's code)
                    traceback.print_exception(type(error), error, trace, file=sys.stderr)
    return flushed


def is_closed(stream: io.IOBase) -> bool:
    """`stream.closed`, False where reading it fails (as CPython's `file_is_closed`)."""
    try:
        return bool(stream.closed)
    except BaseException:
        return False


def report_uncaught(error: BaseException) -> None:
    """Print an exception that ended the program as the interpreter does: through `sys.excepthook` (the program's
    own, if it set one; the default one adds 3.11's "Did you mean" hints), from the program's first frame on."""
    trace = error.__traceback__.tb_next if error.__traceback__ else None
    error.__traceback__ = trace  # (the default hook prints the exception's own traceback)
    try:
        sys.excepthook(type(error), error, trace)
    except BaseException as hook_error:
        print("Error in sys.excepthook:", file=sys.stderr)
        sys.__excepthook__(type(hook_error), hook_error, hook_error.__traceback__)
        print("\nOriginal exception was:", file=sys.stderr)
        sys.__excepthook__(type(error), error, trace)


def frame_depth() -> int:
    """How many Python frames the caller runs in (itself included)."""
    frame, depth = sys._getframe(1), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def exec_recursion_cost() -> int:
    """What re-entering the interpreter (an `exec`) costs against the recursion limit beyond the frame it runs: 1 on
    3.11, where C-level calls count too, 0 from 3.12, where only Python frames do. Measured, once."""

    def headroom(depth: int = 0) -> int:
        try:
            return headroom(depth + 1)
        except RecursionError:
            return depth

    namespace: dict[str, object] = {"headroom": headroom}
    exec("inside = headroom()", namespace)
    inside = namespace["inside"]
    assert isinstance(inside, int)
    return headroom() - inside - 1


def match_recursion_headroom(extra: int) -> None:
    """In the zygote: give every program the recursion headroom of a fresh interpreter, where its module is the
    first frame; here it runs `extra` frames deeper. The limit is raised by that much and `sys.getrecursionlimit`
    and `sys.setrecursionlimit` are replaced by functions that hide the offset."""
    get_limit, set_limit = sys.getrecursionlimit, sys.setrecursionlimit

    def getrecursionlimit() -> int:
        """Return the current value of the recursion limit."""
        return get_limit() - extra

    def setrecursionlimit(limit: int, /) -> None:
        """Set the maximum depth of the Python interpreter stack to `limit`."""
        limit = operator.index(limit)  # (the same TypeError as the real one for a float or a string)
        if limit < 1:
            raise ValueError("recursion limit must be greater or equal than 1")
        set_limit(limit + extra)

    set_limit(get_limit() + extra)
    sys.getrecursionlimit, sys.setrecursionlimit = getrecursionlimit, setrecursionlimit


def wait_and_run_exit_callbacks() -> None:
    """What the interpreter does first at exit: wait for the non-daemon threads (`threading._shutdown`, which also
    ends a `concurrent.futures` executor left open), then run the `atexit` callbacks (and so `weakref.finalize`).
    What they raise goes to stderr, as at exit."""
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()  # type: ignore[attr-defined]  (what the interpreter's exit calls)
        except BaseException:
            traceback.print_exc()
    atexit._run_exitfuncs()


def report(code: int) -> None:
    """Send exit code and CPU time; everything the program printed is already in the pipes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    waited = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + waited.ru_utime + waited.ru_stime
    with contextlib.suppress(OSError):
        os.write(CHILD_STATUS, STATUS.pack(code, cpu))


def exit_code_of(stop: SystemExit) -> int:
    """The exit code of an uncaught SystemExit; a code that is not a number is printed to stderr first, as the
    interpreter does (through `sys.stderr`, else straight to fd 2; the newline after it goes to fd 2 when
    `sys.stderr` cannot take it)."""
    if stop.code is None:
        return 0
    if isinstance(stop.code, int):  # (the interpreter takes it as a C long: one past that range is -1)
        return stop.code & 0xFF if -(2**63) <= stop.code < 2**63 else 255
    with contextlib.suppress(BaseException):
        if sys.stderr is None:
            os.write(2, str(stop.code).encode("utf-8", "backslashreplace"))
        else:
            sys.stderr.write(str(stop.code))
    try:
        sys.stderr.write("\n")  # type: ignore[union-attr]  (None raises too, as the interpreter's write fails)
    except BaseException:
        with contextlib.suppress(OSError):
            os.write(2, b"\n")
    return 1


class Cleaner:
    """Leaves nothing of a run for the next one: IPC objects and files."""

    def __init__(self, libc: ctypes.CDLL, sealed: bool) -> None:
        self.uid = os.getuid()
        self.attributes = not sealed
        """Whether extended attributes can exist (the seccomp filter refuses to set them)."""
        self.ipc = () if sealed else (("shm", libc.shmctl), ("msg", libc.msgctl), ("sem", libc.semctl))
        """SysV IPC objects a program can make (the seccomp filter refuses `shmget`, `msgget` and `semget`)."""
        self.counting = {root: counts_entries(libc, root) for root in WIPED}
        self.times: dict[str, tuple[int, int]] = {}
        """Each root's access and modification times as first seen, put back after every run (a program could
        otherwise leave a value in them for the next)."""

    def clean_up(self) -> None:
        for kind, remove in self.ipc:
            try:
                fd = os.open(f"/proc/sysvipc/{kind}", os.O_RDONLY)
            except OSError:
                continue
            try:
                listing = read_all(fd)
            finally:
                os.close(fd)
            for line in listing.splitlines()[1:]:
                if fields := line.split():
                    remove(int(fields[1]), IPC_RMID, None) if kind != "sem" else remove(int(fields[1]), 0, IPC_RMID)
        budget = [WIPE_BUDGET]
        for root, counting in self.counting.items():
            with contextlib.suppress(FileNotFoundError):
                self.wipe_root(root, counting, budget)

    def wipe_root(self, root: str, counting: bool, budget: list[int]) -> None:
        """Empty `root` and give it back its mode (1777), times and attributes; a root the sandbox's user may not
        write (no program could have either) is left alone."""
        info = os.stat(root)
        mine = info.st_uid == self.uid
        if not mine and not os.access(root, os.W_OK):
            return
        if mine and stat.S_IMODE(info.st_mode) != 0o1777:
            os.chmod(root, 0o1777)
        if self.attributes:
            remove_attributes(root)
        empty = counting and info.st_size == EMPTY_DIR_SIZE and info.st_nlink == 2
        if not empty:
            wipe(root, self.uid, budget)
        times = self.times.setdefault(root, (info.st_atime_ns, info.st_mtime_ns))
        if mine and (not empty or times != (info.st_atime_ns, info.st_mtime_ns)):
            os.utime(root, ns=times)  # (after the wipe, which changes them)


def counts_entries(libc: ctypes.CDLL, path: str) -> bool:
    """Whether `path` is on a filesystem whose directory sizes count their entries (`COUNTING_FILESYSTEMS`)."""
    buffer = ctypes.create_string_buffer(512)  # struct statfs; f_type, a long, comes first
    if libc.statfs(path.encode(), buffer) != 0:
        return False
    return ctypes.c_long.from_buffer(buffer).value in COUNTING_FILESYSTEMS


def remove_attributes(target: "str | int") -> None:
    """Remove `target`'s extended attributes; raises if there are too many to list (the worker then retires)."""
    try:
        names = os.listxattr(target)
    except OSError as error:
        if error.errno == errno.E2BIG:
            raise
        return  # (a filesystem without them)
    for name in names:
        with contextlib.suppress(OSError):  # (one the program could not have set either)
            os.removexattr(target, name)


def read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)


def wipe(path: str, uid: int, budget: list[int]) -> None:
    """Remove everything under `path`, giving back permissions the program took away; raises if it cannot, or
    once it has removed `budget[0]` entries (counted down in place) and more are left."""
    with os.scandir(path) as entries:
        for entry in entries:
            budget[0] -= 1
            if budget[0] < 0:
                raise RuntimeError(f"the run left more than {WIPE_BUDGET} files to wipe")
            if entry.is_dir(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                if info.st_uid == uid and stat.S_IMODE(info.st_mode) != 0o700:
                    os.chmod(entry.path, 0o700)
                wipe(entry.path, uid, budget)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)


if __name__ == "__main__":
    main()
