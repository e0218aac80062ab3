"""The seccomp filter's BPF program, run by a small interpreter of the instructions it uses, for each architecture
it is built for (the kernel runs the x86_64 one in the attack suite; aarch64's has no machine here)."""

from __future__ import annotations

import struct

import pytest

from reflectgym.sandboxes.seccomp import (
    ALLOW,
    AUDIT_ARCH,
    DENIED_CALLS,
    INSTRUCTION,
    JUMP_AT_LEAST,
    JUMP_EQUAL,
    LOAD_WORD,
    OWN_PROCESS_ONLY,
    REFUSE,
    RETURN,
    X32_SYSCALL_BIT,
    filter_program,
)


def verdict(program: bytes, number: int, arch: int, args: tuple[int, ...] = ()) -> int:
    """What the filter returns for a system call `number` made through `arch` with `args` (struct seccomp_data)."""
    data = struct.pack("=iIQ6Q", number, arch, 0, *args, *[0] * (6 - len(args)))
    instructions = list(INSTRUCTION.iter_unpack(program))
    accumulator, at = 0, 0
    while True:
        code, if_true, if_false, constant = instructions[at]
        at += 1
        if code == LOAD_WORD:
            (accumulator,) = struct.unpack_from("=I", data, constant)
        elif code == JUMP_EQUAL:
            at += if_true if accumulator == constant else if_false
        elif code == JUMP_AT_LEAST:
            at += if_true if accumulator >= constant else if_false
        elif code == RETURN:
            return constant
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")


@pytest.mark.parametrize("machine", sorted(AUDIT_ARCH))
def test_the_filter_refuses_its_calls_and_allows_the_rest(machine: str) -> None:
    program = filter_program(machine)
    assert program is not None
    native = AUDIT_ARCH[machine]
    denied = set(DENIED_CALLS[machine].values())
    guarded = set(OWN_PROCESS_ONLY[machine].values())
    for number in denied:
        assert verdict(program, number, native) == REFUSE, number
    for number in set(range(0, 460)) - denied:
        assert verdict(program, number, native, (0, 0, 0)) == ALLOW, number  # (on itself, for the guarded)
    for number in set(range(0, 460)) - denied - guarded:
        assert verdict(program, number, native, (7, 1, 2)) == ALLOW, number
    assert verdict(program, X32_SYSCALL_BIT + 1, native) == REFUSE, "x32 calls"
    assert verdict(program, 1, 0x40000003) == REFUSE, "another ABI (i386)"


def test_no_filter_is_built_for_an_unknown_architecture() -> None:
    assert filter_program("riscv64") is None


@pytest.mark.parametrize("machine", sorted(AUDIT_ARCH))
def test_the_filter_keeps_every_process_to_its_own_limits_priority_and_scheduling(machine: str) -> None:
    program = filter_program(machine)
    assert program is not None
    native, calls = AUDIT_ARCH[machine], OWN_PROCESS_ONLY[machine]
    new_limits, pid = 0x7FFF_0000_1000, 7
    assert verdict(program, calls["prlimit64"], native, (0, 7, new_limits)) == ALLOW, "its own"
    assert verdict(program, calls["prlimit64"], native, (pid, 7, 0, 0x7FFF_0000_2000)) == ALLOW, "only reading"
    assert verdict(program, calls["prlimit64"], native, (pid, 7, new_limits)) == REFUSE
    assert verdict(program, calls["prlimit64"], native, (pid, 7, 1 << 32)) == REFUSE, "a pointer's high word"
    assert verdict(program, calls["prlimit64"], native, (1 << 32, 7, new_limits)) == ALLOW, "pid_t is 32 bits"
    assert verdict(program, calls["setpriority"], native, (0, 0, 5)) == ALLOW
    assert verdict(program, calls["setpriority"], native, (0, pid, 5)) == REFUSE
    for which in (1, 2):  # PRIO_PGRP, PRIO_USER: 0 is the caller's own group or user, which holds other processes
        assert verdict(program, calls["setpriority"], native, (which, 0, 5)) == REFUSE
    for name in ("sched_setparam", "sched_setscheduler", "sched_setaffinity", "sched_setattr"):
        assert verdict(program, calls[name], native, (0, 8, 1)) == ALLOW, name
        assert verdict(program, calls[name], native, (pid, 8, 1)) == REFUSE, name
