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
    REFUSE,
    RETURN,
    X32_SYSCALL_BIT,
    filter_program,
)


def verdict(program: bytes, number: int, arch: int) -> int:
    """What the filter returns for a system call `number` made through `arch` (struct seccomp_data's first words)."""
    data = struct.pack("=iI", number, arch)
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
    for number in denied:
        assert verdict(program, number, native) == REFUSE, number
    for number in set(range(0, 460)) - denied:
        assert verdict(program, number, native) == ALLOW, number
    assert verdict(program, X32_SYSCALL_BIT + 1, native) == REFUSE, "x32 calls"
    assert verdict(program, 1, 0x40000003) == REFUSE, "another ABI (i386)"


def test_no_filter_is_built_for_an_unknown_architecture() -> None:
    assert filter_program("riscv64") is None
