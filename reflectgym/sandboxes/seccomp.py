"""A seccomp filter for bubblewrap sandboxes: the system calls whose state no namespace of theirs contains.

Bubblewrap's namespaces leave two kinds of kernel state shared with whatever else runs as the same host uid
(`nobody`): the key store (`add_key`, `request_key`, `keyctl`: keys belong to the global uid, so one sandbox could
hand data to another running at the same time, or to the next run of a warm worker) and the I/O priority of other
processes (`ioprio_set`: a run could slow every later run of its warm worker). And without a cgroup, memory a
process holds outside its address space escapes RLIMIT_AS: files made with `memfd_create` or `memfd_secret`, SysV
segments (`shmget`) written and unmapped, SysV message queues (`msgget`) filled, extended attributes (the setxattr
family: a tmpfs keeps them in kernel memory its size does not bound); `/dev/shm` and `/tmp` are sized tmpfs
instead, and POSIX message queues are bounded by RLIMIT_MSGQUEUE. The filter makes those calls fail
with EPERM, as Docker's default profile does for the keys, and refuses system calls made through another ABI than
the native one (x32, or 32-bit calls from a 64-bit process), which would slip past a filter keyed on numbers.

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
        "memfd_create": 319, "memfd_secret": 447, "shmget": 29, "msgget": 68,
        "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "setxattrat": 463,
    },
    "aarch64": {
        "add_key": 217, "request_key": 218, "keyctl": 219, "ioprio_set": 30,
        "memfd_create": 279, "memfd_secret": 447, "shmget": 194, "msgget": 186,
        "setxattr": 5, "lsetxattr": 6, "fsetxattr": 7, "setxattrat": 463,
    },
}  # fmt: skip
"""System call numbers (from each architecture's unistd.h) that the filter refuses."""
X32_SYSCALL_BIT = 0x40000000
LOAD_WORD, JUMP_EQUAL, JUMP_AT_LEAST, RETURN = 0x20, 0x15, 0x35, 0x06
"""BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_JMP|BPF_JGE|BPF_K, BPF_RET|BPF_K."""
NUMBER_OFFSET, ARCH_OFFSET = 0, 4
"""Where `struct seccomp_data` holds the system call number and the audit architecture."""
ALLOW, REFUSE = 0x7FFF0000, 0x00050000 | errno.EPERM
"""SECCOMP_RET_ALLOW; SECCOMP_RET_ERRNO with EPERM."""
INSTRUCTION = struct.Struct("=HBBI")
"""struct sock_filter: code, jump if true, jump if false, constant."""


def filter_program(machine: str | None = None) -> bytes | None:
    """The filter for `machine` (default: this one's, `platform.machine()`), or None where none is built."""
    machine = machine or platform.machine()
    if machine not in AUDIT_ARCH:
        return None
    denied = sorted(DENIED_CALLS[machine].values())
    refuse_at = 4 + len(denied) + 1
    """Index of the REFUSE instruction: arch load, arch check, number load, x32 check, one check per call, ALLOW."""
    program = [
        (LOAD_WORD, 0, 0, ARCH_OFFSET),
        (JUMP_EQUAL, 0, refuse_at - 2, AUDIT_ARCH[machine]),
        (LOAD_WORD, 0, 0, NUMBER_OFFSET),
        (JUMP_AT_LEAST, refuse_at - 4, 0, X32_SYSCALL_BIT),
    ]
    for index, number in enumerate(denied):
        program.append((JUMP_EQUAL, refuse_at - (4 + index) - 1, 0, number))
    program += [(RETURN, 0, 0, ALLOW), (RETURN, 0, 0, REFUSE)]
    return b"".join(INSTRUCTION.pack(*instruction) for instruction in program)


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
