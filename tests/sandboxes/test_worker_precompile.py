"""The warm worker compiles short programs for its children (`worker_main.precompile`), and leaves the rest to them."""

from __future__ import annotations

import marshal
import resource

import pytest

from reflectgym.sandboxes import worker_main

PROGRAM = b"import sys\nprint(sys.argv)\n"


def compile_here(source: str | bytes, filename: str, memory: int) -> bytes:
    """What the worker's compiler answers, compiled in this process (`memory` unused)."""
    return worker_main.compile_cleanly(source, filename)


def precompile(argv: list[str], files: dict[str, bytes], inline: bool = True, compile_program=compile_here) -> bytes:
    header = memoryview(marshal.dumps({"argv": argv, "env": None, "rlimits": [], "inline": inline}))
    names = [(name, len(data)) for name, data in files.items()]
    return worker_main.precompile(header, names, list(files.values()), compile_program)


@pytest.mark.parametrize(
    ("argv", "filename"),
    [
        (["python3", "main.py", "x"], "/work/main.py"),
        (["python3", "./main.py"], "/work/./main.py"),
        (["python3", "-c", PROGRAM.decode()], "<string>"),
    ],
)
def test_a_clean_program_comes_compiled_as_its_child_would_compile_it(argv: list[str], filename: str) -> None:
    code = marshal.loads(precompile(argv, {"main.py": PROGRAM}))
    assert code.co_filename == filename
    assert code == compile(PROGRAM, filename, "exec", dont_inherit=True)


@pytest.mark.parametrize(
    ("argv", "files", "inline"),
    [
        (["python3", "main.py"], {"main.py": b"print(1 is 1)"}, True),  # a SyntaxWarning: the child shows it
        (["python3", "main.py"], {"main.py": b"def f(:"}, True),  # the child reports the SyntaxError
        (["python3", "main.py"], {"main.py": b"x = " + b"1+" * 7000 + b"1"}, True),  # too deep to compile
        (["python3", "main.py"], {"main.py": b"x = 1\n" * (worker_main.PRECOMPILE_MAX_BYTES // 6 + 1)}, True),
        (["python3", "main.py"], {"main.py": b"PK\x03\x04zip"}, True),
        (["python3", "/usr/lib/python3.11/this.py"], {"main.py": PROGRAM}, True),  # not one of the request's files
        (["python3", "main.py"], {"main.py": PROGRAM}, False),  # exec'd in a fresh interpreter
        (["python3", "main.py"], {"main.py": b"# -*- coding: latin-1 -*-\nprint(1)"}, True),  # imports its codec
        (["python3", "main.py"], {"main.py": b"print('\\N{BULLET}')"}, True),  # imports unicodedata
        (["python3", "main.py"], {"main.py": b"\r# coding: latin-1\rprint(1)\r"}, True),  # a cookie, after a CR
        (["python3", "main.py"], {"main.py": b"# \xff\nprint(1)"}, True),  # not UTF-8: fresh refuses it
        (["python3", "main.py"], {"main.py": b"print([x for x in {2070348407264, 1656481433960, 3, 57}])"}, True),
    ],
    ids=[
        *("warning", "syntax_error", "too_deep", "too_large", "zip", "outside_file", "not_inline"),
        *("cookie", "named_escape", "cookie_after_a_carriage_return", "undecodable_comment", "set_in_another_order"),
    ],
)
def test_a_program_the_child_must_compile_itself_comes_uncompiled(
    argv: list[str], files: dict[str, bytes], inline: bool
) -> None:
    assert precompile(argv, files, inline) == b""


def test_the_worker_keeps_its_latest_programs_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    """A program run once per test case is compiled once; the oldest of more than `COMPILED_KEPT` is compiled
    again."""
    monkeypatch.setattr(worker_main, "COMPILED", {})
    first = precompile(["python3", "main.py"], {"main.py": PROGRAM})
    compiled: list[str | bytes] = []

    def counting(source: str | bytes, filename: str) -> bytes:
        compiled.append(source)
        return marshal.dumps(compile(source, filename, "exec", dont_inherit=True))

    def compile_counted(source: str | bytes, filename: str, memory: int) -> bytes:
        return counting(source, filename)

    assert precompile(["python3", "main.py"], {"main.py": PROGRAM}, compile_program=compile_counted) == first
    assert compiled == []
    others = [b"x = %d\n" % n for n in range(worker_main.COMPILED_KEPT)]
    for source in others:
        precompile(["python3", "main.py"], {"main.py": source}, compile_program=compile_counted)
    assert len(worker_main.COMPILED) == worker_main.COMPILED_KEPT
    again = precompile(["python3", "main.py"], {"main.py": PROGRAM}, compile_program=compile_counted)
    assert marshal.loads(again) == marshal.loads(first)
    assert compiled == [*others, PROGRAM]


def test_of_two_names_for_one_path_the_last_written_is_compiled() -> None:
    files = {"main.py": b"print('first')", "./main.py": b"print('last')"}
    code = marshal.loads(precompile(["python3", "main.py"], files))
    assert "last" in code.co_consts


def test_the_compiler_is_given_the_runs_memory_limit_when_lower() -> None:
    given: list[int] = []

    def compile_noting(source: str | bytes, filename: str, memory: int) -> bytes:
        given.append(memory)
        return b""

    for memory in (64 << 20, worker_main.COMPILE_MEMORY_BYTES * 2, resource.RLIM_INFINITY):
        header = {"argv": ["python3", "-c", f"x = {memory}"], "env": None, "inline": True}
        header["rlimits"] = [[resource.RLIMIT_AS, memory, memory]]
        worker_main.precompile(memoryview(marshal.dumps(header)), [], [], compile_noting)
    assert given == [64 << 20, worker_main.COMPILE_MEMORY_BYTES, worker_main.COMPILE_MEMORY_BYTES]


def test_a_program_kept_compiled_under_one_memory_limit_is_compiled_again_under_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What compiled within a larger memory limit may not within a smaller one: the kept code is per limit."""
    monkeypatch.setattr(worker_main, "COMPILED", {})
    given: list[int] = []

    def compile_noting(source: str | bytes, filename: str, memory: int) -> bytes:
        given.append(memory)
        return worker_main.compile_cleanly(source, filename)

    for memory in (256 << 20, 64 << 20, 256 << 20, 64 << 20):
        header = {"argv": ["python3", "-c", "print(1)"], "env": None, "inline": True}
        header["rlimits"] = [[resource.RLIMIT_AS, memory, memory]]
        worker_main.precompile(memoryview(marshal.dumps(header)), [], [], compile_noting)
    assert given == [256 << 20, 64 << 20]


def test_a_set_constant_that_loads_back_in_its_own_order_comes_compiled() -> None:
    source = b"print([x for x in {3, 57}], 'a' in {'a', 'b'})"
    code = precompile(["python3", "main.py"], {"main.py": source})
    assert code
    assert worker_main.set_constants(marshal.loads(code)) == worker_main.set_constants(
        compile(source, "/work/main.py", "exec", dont_inherit=True)
    )
