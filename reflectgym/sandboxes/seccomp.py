"""A seccomp filter for bubblewrap sandboxes: the system calls whose state no namespace of theirs contains.

Bubblewrap's namespaces leave two kinds of kernel state shared with whatever else runs as the same host uid
(`nobody`): the key store (`add_key`, `request_key`, `keyctl`: keys belong to the global uid, so one sandbox could
hand data to another running at the same time, or to the next run of a warm worker) and the I/O priority of other
processes (`ioprio_set`: a run could slow every later run of its warm worker). And without a cgroup, memory a
process holds outside its address space escapes RLIMIT_AS: files made with `memfd_create` or `memfd_secret`, SysV
segments (`shmget`) written and unmapped, SysV message queues (`msgget`) filled, SysV semaphore sets (`semget`: 2 MiB
of kernel memory for a set of 32000, and 32000 sets allowed by default), extended attributes (the setxattr
family: a tmpfs keeps them in kernel memory its size does not bound); `/dev/shm` and `/tmp` are sized tmpfs
instead, and POSIX message queues are bounded by RLIMIT_MSGQUEUE. io_uring is refused too: its operations (extended
attributes among them) never pass through seccomp, so it would get around every rule here. The filter makes those
calls fail with EPERM, as Docker's default profile does for the keys (and, from Docker 25, io_uring), and refuses
system calls made through another ABI than the native one (x32, or 32-bit calls from a 64-bit process), which would
slip past a filter keyed on numbers.

It also keeps every process to its own scheduling and limits (`OWN_PROCESS_ONLY`): setting another process's rlimits
(`prlimit64` with a pid), nice value (`setpriority` but on itself), scheduling policy or parameters, or CPU affinity
(the `sched_set*` calls with a pid) fails with EPERM. A warm pool's worker, zygote and next standby run as the
program's uid in its namespace; without this a program could cripple the next run through them, and the worker would
have to check their attributes after every run. The price: a program cannot set these by pid at all, not even its
own pid or those of its children and threads: pid 0 works (`os.sched_setaffinity(0, ...)`, `os.nice`,
`resource.setrlimit`), `resource.prlimit(os.getpid(), ...)`, psutil's `nice()` and `cpu_affinity()` and OpenMP's
thread pinning do not. Reading them (`prlimit64` without new limits, the `sched_get*` calls) stays allowed.

It is a classic BPF program in the form bubblewrap's `--seccomp FD` reads (what `seccomp_export_bpf` writes), built
here for x86_64 and aarch64; on other architectures no filter is installed (and `filter_program` says so with None).
"""

from __future__ import annotations

import contextlib
import errno
import os
import platform
import struct
from collections.abc import Iterator

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
DENIED_CALLS = {
    "x86_64": {
        "add_key": 248, "request_key": 249, "keyctl": 250, "ioprio_set": 251,
        "memfd_create": 319, "memfd_secret": 447, "shmget": 29, "msgget": 68, "semget": 64,
        "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "setxattrat": 463,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    },
    "aarch64": {
        "add_key": 217, "request_key": 218, "keyctl": 219, "ioprio_set": 30,
        "memfd_create": 279, "memfd_secret": 447, "shmget": 194, "msgget": 186, "semget": 190,
        "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "setxattrat": 463,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    },
}  # fmt: skip
"""System call numbers (from each architecture's unistd.h) that the filter refuses."""
OWN_PROCESS_ONLY = {
    "x86_64": {
        "prlimit64": 302, "setpriority": 141, "sched_setparam": 142, "sched_setscheduler": 144,
        "sched_setaffinity": 203, "sched_setattr": 314,
    },
    "aarch64": {
        "prlimit64": 261, "setpriority": 140, "sched_setparam": 118, "sched_setscheduler": 119,
        "sched_setaffinity": 122, "sched_setattr": 274,
    },
}  # fmt: skip
"""System calls (numbers from each architecture's unistd.h) that the filter allows only on the calling process
itself, as `ALLOWED_WHEN` says."""
X32_SYSCALL_BIT = 0x40000000
LOAD_WORD, JUMP_EQUAL, JUMP_AT_LEAST, RETURN = 0x20, 0x15, 0x35, 0x06
"""BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_JMP|BPF_JGE|BPF_K, BPF_RET|BPF_K."""
NUMBER_OFFSET, ARCH_OFFSET, ARGS_OFFSET = 0, 4, 16
"""Where `struct seccomp_data` holds the system call number, the audit architecture and the six 64-bit arguments
(little-endian on both architectures: an argument's low word comes first)."""
ALLOW, REFUSE = 0x7FFF0000, 0x00050000 | errno.EPERM
"""SECCOMP_RET_ALLOW; SECCOMP_RET_ERRNO with EPERM."""
INSTRUCTION = struct.Struct("=HBBI")
"""struct sock_filter: code, jump if true, jump if false, constant."""
PRIO_PROCESS = 0


def low_word(argument: int) -> int:
    """Offset of argument `argument`'s low 32 bits: all of an `int` or `pid_t` (the kernel ignores the rest)."""
    return ARGS_OFFSET + 8 * argument


def high_word(argument: int) -> int:
    return low_word(argument) + 4


Conditions = tuple[tuple[int, int], ...]
"""(offset of a word of `struct seccomp_data`, the value it must have): all must hold."""
ALLOWED_WHEN: dict[str, tuple[Conditions, ...]] = {
    "prlimit64": (((low_word(0), 0),), ((low_word(2), 0), (high_word(2), 0))),  # pid 0, or no new limits
    "setpriority": (((low_word(0), PRIO_PROCESS), (low_word(1), 0)),),  # which PRIO_PROCESS, who 0: itself
    "sched_setparam": (((low_word(0), 0),),),
    "sched_setscheduler": (((low_word(0), 0),),),
    "sched_setaffinity": (((low_word(0), 0),),),
    "sched_setattr": (((low_word(0), 0),),),
}
"""For each call of `OWN_PROCESS_ONLY`: the alternatives, any of which allows it."""

Instruction = tuple[int, int | str, int | str, int]
"""An instruction whose jump targets may still be labels (str): see `assemble`."""


def filter_program(machine: str | None = None) -> bytes | None:
    """The filter for `machine` (default: this one's, `platform.machine()`), or None where none is built."""
    machine = machine or platform.machine()
    if machine not in AUDIT_ARCH:
        return None
    program: list[Instruction | str] = [
        (LOAD_WORD, 0, 0, ARCH_OFFSET),
        (JUMP_EQUAL, 0, "refuse", AUDIT_ARCH[machine]),
        (LOAD_WORD, 0, 0, NUMBER_OFFSET),
        (JUMP_AT_LEAST, "refuse", 0, X32_SYSCALL_BIT),
    ]
    program += [(JUMP_EQUAL, "refuse", 0, number) for number in sorted(DENIED_CALLS[machine].values())]
    guarded = sorted(OWN_PROCESS_ONLY[machine].items())
    program += [(JUMP_EQUAL, name, 0, number) for name, number in guarded]
    program += [(RETURN, 0, 0, ALLOW), "refuse", (RETURN, 0, 0, REFUSE)]
    for name, _ in guarded:
        program.append(name)
        alternatives = ALLOWED_WHEN[name]
        for index, conditions in enumerate(alternatives):
            otherwise = f"{name}/{index + 1}"  # the next alternative, or the block's final refusal
            program.append(f"{name}/{index}")
            for offset, value in conditions:
                program += [(LOAD_WORD, 0, 0, offset), (JUMP_EQUAL, 0, otherwise, value)]
            program.append((RETURN, 0, 0, ALLOW))  # every condition held
        program += [f"{name}/{len(alternatives)}", (RETURN, 0, 0, REFUSE)]  # (BPF jumps only forward)
    return b"".join(INSTRUCTION.pack(*instruction) for instruction in assemble(program))


def assemble(program: list[Instruction | str]) -> list[tuple[int, int, int, int]]:
    """Resolve labels (the str items, each naming the instruction after it) into the forward jump offsets BPF takes."""
    labels: dict[str, int] = {}
    instructions: list[Instruction] = []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(instructions)
        else:
            instructions.append(item)

    def offset(target: int | str, at: int) -> int:
        if isinstance(target, int):
            return target
        distance = labels[target] - at - 1
        if not 0 <= distance <= 255:
            raise ValueError(f"a jump to {target!r} is out of a BPF instruction's reach")
        return distance

    return [
        (code, offset(if_true, at), offset(if_false, at), constant)
        for at, (code, if_true, if_false, constant) in enumerate(instructions)
    ]


@contextlib.contextmanager
def bwrap_seccomp() -> Iterator[tuple[list[str], list[int]]]:
    """(bubblewrap arguments, fds to pass it) that install `filter_program()`: `--seccomp FD` with a memfd holding
    the program, open for the duration; ([], []) where no filter is built."""
    program = filter_program()
    if program is None:
        yield [], []
        return
    fd = os.memfd_create("reflectgym-seccomp", 0)
    try:
        os.write(fd, program)
        os.lseek(fd, 0, os.SEEK_SET)
        yield ["--seccomp", str(fd)], [fd]
    finally:
        os.close(fd)
