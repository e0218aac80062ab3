"""The warm worker: a long-lived Python process inside the sandbox that forks one child per request.

This file runs *inside* the isolation (bubblewrap or a container) as `python3 -I -c <this source>`, so it uses the
standard library only and imports nothing of reflectgym. It talks to the host over its stdin/stdout with framed
messages: a 4-byte big-endian length, a JSON header, then the raw blobs whose lengths the header lists.

Per request it: writes the files into a wiped `/work`, forks a child that sets rlimits, a new session, a scrubbed
environment and the request's stdin/stdout/stderr, then either runs a Python program in the already-started
interpreter (no interpreter start-up: the point of the pool) or execs the command. When the child exits (or hits the
wall-clock or output limit) the worker SIGKILLs every other process in its pid namespace (`kill(-1)` spares only
itself and the namespace's init), reaps them as their subreaper, removes SysV IPC objects, and wipes `/work`, `/tmp`
and `/dev/shm`: nothing of one run is left for the next.

Shared between runs of one worker: the worker's own memory as it was before the fork (copy-on-write; a child cannot
change the parent's), the modules it preloaded (the child sees them already imported), and the sandbox's namespaces
(the same empty network and the same hostname). Not shared: files, processes, IPC objects, environment, rlimits.
The worker marks itself non-dumpable, so a child of the same uid cannot ptrace it or open its `/proc/PID/fd`; a
child *can* signal the worker (same uid): the host then sees the worker die, reports `sandbox_error` for that run
and starts a fresh worker.
"""

import contextlib
import ctypes
import json
import os
import select
import signal
import struct
import sys
import time
import traceback
import types

WORK = "/work"
WIPED = ("/work", "/tmp", "/dev/shm")
CHUNK = 65536
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
IPC_RMID = 0
PROTOCOL_IN = 3
PROTOCOL_OUT = 4


def main() -> None:
    """Serve requests until the host closes the channel."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    os.dup2(0, PROTOCOL_IN)
    os.dup2(1, PROTOCOL_OUT)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    for name in sys.argv[1].split(",") if len(sys.argv) > 1 and sys.argv[1] else ():
        __import__(name)
    send({"ready": True, "pid": os.getpid()}, [])
    while True:
        message = receive()
        if message is None:
            return
        header, blobs = message
        try:
            reply = serve(header, blobs, libc)
        except Exception:  # report the worker's own failure instead of dying silently
            send({"error": traceback.format_exc()[-2000:]}, [])
            return
        send(*reply)


def read_exact(count: int) -> bytes | None:
    chunks = []
    while count:
        chunk = os.read(PROTOCOL_IN, min(count, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def receive() -> tuple[dict, list[bytes]] | None:
    size = read_exact(4)
    if size is None:
        return None
    raw = read_exact(struct.unpack(">I", size)[0])
    if raw is None:
        return None
    header = json.loads(raw)
    blobs = []
    for length in header["blobs"]:
        blob = read_exact(length) if length else b""
        if blob is None:
            return None
        blobs.append(blob)
    return header, blobs


def send(header: dict, blobs: list[bytes]) -> None:
    header["blobs"] = [len(blob) for blob in blobs]
    raw = json.dumps(header).encode()
    data = memoryview(b"".join([struct.pack(">I", len(raw)), raw, *blobs]))
    while data:
        data = data[os.write(PROTOCOL_OUT, data) :]


def serve(header: dict, blobs: list[bytes], libc: ctypes.CDLL) -> tuple[dict, list[bytes]]:
    stdin, contents = blobs[0], blobs[1:]
    for name, content in zip(header["files"], contents, strict=True):
        path = os.path.join(WORK, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
    stdin_fd = os.memfd_create("stdin", 0)
    os.write(stdin_fd, stdin) if stdin else None
    os.lseek(stdin_fd, 0, os.SEEK_SET)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        child(header, stdin_fd, out_w, err_w)
    for fd in (stdin_fd, out_w, err_w):
        os.close(fd)
    result = watch(pid, out_r, err_r, header["wall"], header["max_output"], started)
    clean_up(libc)
    return result


def child(header: dict, stdin_fd: int, out_w: int, err_w: int) -> None:
    """In the forked child: become the program. Never returns."""
    code = 1
    try:
        os.setsid()
        os.dup2(stdin_fd, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 65536)
        for which, soft, hard in header["rlimits"]:
            __import__("resource").setrlimit(which, (soft, hard))
        try:
            with open("/proc/self/oom_score_adj", "w") as handle:
                handle.write("1000")  # under a cgroup limit, the OOM killer takes the program, not the worker
        except OSError:
            pass
        os.chdir(WORK)
        os.environ.clear()
        os.environ.update(header["env"])
        argv = header["argv"]
        if header["inline"]:
            code = run_inline(argv)
        else:
            try:
                os.execvpe(argv[0], argv, header["env"])
            except OSError as error:
                os.write(2, f"cannot run {argv[0]!r}: {error}\n".encode())
                code = 127
    except BaseException:  # the child must never fall back into the worker's loop
        code = 1
    finally:
        os._exit(code)


def run_inline(argv: list[str]) -> int:
    """Run `python3 FILE ARGS...` or `python3 -c CODE ARGS...` in this interpreter; returns the exit code."""
    if argv[1] == "-c":
        source, filename, sys.argv = argv[2], "<string>", ["-c", *argv[3:]]
        sys.path[0:0] = [""]
    else:
        filename = os.path.join(WORK, argv[1]) if not argv[1].startswith("/") else argv[1]
        with open(filename, "rb") as handle:
            source = handle.read()
        sys.argv = argv[1:]
        sys.path[0:0] = [os.path.dirname(filename)]
    sys.stdin = open(0, encoding="utf-8", errors="surrogateescape", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)  # noqa: SIM115
    module = types.ModuleType("__main__")
    module.__dict__.update({"__file__": filename, "__builtins__": __builtins__})
    sys.modules["__main__"] = module
    code = 0
    try:
        exec(compile(source, filename, "exec"), module.__dict__)
    except SystemExit as stop:
        code = exit_code_of(stop)
    except BaseException as error:
        traceback.print_exception(type(error), error, error.__traceback__.tb_next if error.__traceback__ else None)
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        code = code or 120
    return code


def exit_code_of(stop: SystemExit) -> int:
    if stop.code is None:
        return 0
    if isinstance(stop.code, int):
        return stop.code & 0xFF
    with contextlib.suppress(BaseException):
        print(stop.code, file=sys.stderr)
    return 1


def watch(pid: int, out_r: int, err_r: int, wall: float, max_output: int, started: float) -> tuple[dict, list[bytes]]:
    """Collect output until the child exits; kill everything at the wall or output limit."""
    deadline = started + wall
    pidfd = os.pidfd_open(pid)
    buffers = {out_r: bytearray(), err_r: bytearray()}
    truncated = {out_r: False, err_r: False}
    open_fds = {out_r, err_r}
    killed_for_wall = False
    exited = False
    while not exited:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            killed_for_wall = True
            signal_all()
            break
        ready, _, _ = select.select([*open_fds, pidfd], [], [], remaining)
        for fd in ready:
            if fd == pidfd:
                exited = True
                continue
            data = os.read(fd, CHUNK)
            if not data:
                open_fds.discard(fd)
                continue
            room = max_output - len(buffers[fd])
            buffers[fd] += data[: max(room, 0)]
            if len(data) > room:
                truncated[fd] = True
                signal_all()
    _, status, usage = os.wait4(pid, 0)
    wall_seconds = time.perf_counter() - started
    kill_all()
    for fd in list(open_fds):  # every writer is dead now: read what is left
        while data := os.read(fd, CHUNK):
            room = max_output - len(buffers[fd])
            buffers[fd] += data[: max(room, 0)]
            truncated[fd] = truncated[fd] or len(data) > room
    for fd in (out_r, err_r, pidfd):
        os.close(fd)
    reply = {
        "returncode": os.waitstatus_to_exitcode(status),
        "killed_for_wall": killed_for_wall,
        "stdout_truncated": truncated[out_r],
        "stderr_truncated": truncated[err_r],
        "wall": wall_seconds,
        "cpu": usage.ru_utime + usage.ru_stime,
    }
    return reply, [bytes(buffers[out_r]), bytes(buffers[err_r])]


def signal_all() -> None:
    """SIGKILL every process of this pid namespace but the worker and init (the pid namespace makes -1 safe)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(-1, signal.SIGKILL)


def kill_all() -> None:
    """SIGKILL every other process of the namespace, then reap them all as their subreaper."""
    signal_all()
    while True:
        try:
            pid, _ = os.waitpid(-1, 0)
        except ChildProcessError:
            return
        if pid == 0:
            return


def clean_up(libc: ctypes.CDLL) -> None:
    """Leave nothing of this run for the next one: IPC objects and files."""
    for kind, remove in (("shm", libc.shmctl), ("msg", libc.msgctl), ("sem", libc.semctl)):
        try:
            with open(f"/proc/sysvipc/{kind}") as handle:
                ids = [int(line.split()[1]) for line in handle.readlines()[1:] if line.strip()]
        except OSError:
            continue
        for ipc_id in ids:
            remove(ipc_id, IPC_RMID, None) if kind != "sem" else remove(ipc_id, 0, IPC_RMID)
    for root in WIPED:
        if os.path.isdir(root) and (os.stat(root).st_uid == os.getuid() or os.access(root, os.W_OK)):
            wipe(root)


def wipe(root: str) -> None:
    """Remove everything under `root`, giving back permissions the program took away; raises if it cannot."""
    if os.stat(root).st_uid == os.getuid():
        os.chmod(root, 0o1777 if root in WIPED else 0o700)
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
            wipe(path)
            os.rmdir(path)
        else:
            os.unlink(path)


if __name__ == "__main__":
    main()
