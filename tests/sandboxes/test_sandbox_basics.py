"""What every backend does for well-behaved programs, plus the values, the registry and the async/batch API."""

from __future__ import annotations

import asyncio
import io
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from reflectgym.sandboxes import (
    BwrapConfig,
    BwrapSandbox,
    ExecRequest,
    ExecResult,
    ExecStatus,
    Limits,
    PoolConfig,
    Sandbox,
    SandboxError,
    WarmPool,
    bwrap_pool,
    get_sandbox,
    run_python_tests,
)
from reflectgym.sandboxes import (
    TestStatus as HarnessStatus,
)
from reflectgym.sandboxes.bwrap import TMP_DIR, WORK_DIR, bwrap_unavailable_reason
from reflectgym.sandboxes.environment import program_env

needs_bwrap = pytest.mark.skipif(bwrap_unavailable_reason() is not None, reason=str(bwrap_unavailable_reason()))


def test_program_gets_its_files_stdin_args_and_env(sandbox: Sandbox) -> None:
    code = (
        "import sys, os\n"
        "print(open('data/in.txt').read().strip(), sys.stdin.read().strip(), sys.argv[1:], os.environ['MODE'])"
    )
    request = ExecRequest(
        command=("python3", "main.py", "a", "b"),
        files={"main.py": code.encode(), "data/in.txt": b"file"},
        stdin=b"piped\n",
        env={"MODE": "test"},
    )
    result = sandbox.run(request)
    assert result.ok, result.stderr_text
    assert result.stdout_text == "file piped ['a', 'b'] test\n"
    assert result.exit_code == 0 and result.wall_seconds > 0


@pytest.mark.parametrize("extra", [{}, {"MODE": "test"}])
def test_program_sees_exactly_the_fixed_environment_and_its_own(sandbox: Sandbox, extra: dict[str, str]) -> None:
    """Nothing the launcher adds (Docker's `HOSTNAME`) or the caller has: every backend gives the same variables,
    to a Python program (run in a warm pool's own interpreter) and to an exec'd command alike."""
    listing = "import os; print(sorted(os.environ))"
    for command in (("python3", "-c", listing), ("python3", "-I", "-c", listing)):  # (an option: exec'd by a pool)
        result = sandbox.run(ExecRequest(command=command, env=extra))
        assert result.ok, result.stderr_text
        assert result.stdout_text == f"{sorted(program_env(WORK_DIR, TMP_DIR, extra))}\n", command


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"command": "python3 -c 'print(1)'"}, "command is an argv"),  # not one character per argument
        ({"command": ("python3", 3)}, "every item of command must be a str"),
        ({"command": ("python3",), "stdin": "text"}, "stdin must be bytes"),
        ({"command": ("python3", "a.py"), "files": {"a.py": "print(1)"}}, "file 'a.py' must be bytes"),
    ],
)
def test_a_request_of_the_wrong_types_says_what_to_pass(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        ExecRequest(**fields)


def test_python_dash_c_and_exit_codes(sandbox: Sandbox) -> None:
    result = sandbox.run(ExecRequest(command=("python3", "-c", "import sys; print('hi'); sys.exit(3)")))
    assert result.status is ExecStatus.RUNTIME_ERROR and result.exit_code == 3 and result.stdout_text == "hi\n"


def test_uncaught_exception_is_a_runtime_error_with_its_traceback(sandbox: Sandbox) -> None:
    result = sandbox.run(ExecRequest(command=("python3", "main.py"), files={"main.py": b"def f():\n    1 / 0\nf()\n"}))
    assert result.status is ExecStatus.RUNTIME_ERROR
    assert "ZeroDivisionError" in result.stderr_text and 'main.py", line 2, in f' in result.stderr_text


def test_python_test_harness_reports_each_test(sandbox: Sandbox) -> None:
    program = "def add(a, b):\n    return a + b if a < 10 else 0\n"
    tests = ["assert add(1, 2) == 3", "assert add(10, 1) == 11, 'big numbers'", "add(None, 1)", "while True: pass"]
    report = run_python_tests(sandbox, program, tests, Limits(wall_seconds=8, cpu_seconds=6), per_test_seconds=1)
    statuses = [o.status for o in report.outcomes]
    assert statuses == [HarnessStatus.PASSED, HarnessStatus.FAILED, HarnessStatus.ERROR, HarnessStatus.TIMEOUT]
    assert report.outcomes[1].message == "big numbers"
    assert "_harness" not in report.outcomes[2].traceback and "solution.py" in report.outcomes[2].traceback
    assert not report.passed and report.pass_count == 1


def test_python_test_harness_passes_a_correct_program(sandbox: Sandbox) -> None:
    report = run_python_tests(sandbox, "def sq(x):\n    return x * x\n", ["assert sq(3) == 9", "assert sq(-2) == 4"])
    assert report.passed, report


@needs_bwrap
@pytest.mark.parametrize("name", ["local", "bwrap", "pool"])
@pytest.mark.filterwarnings("ignore::reflectgym.sandboxes.LocalSandboxWarning")
def test_every_backend_is_a_context_manager_that_closes(name: str) -> None:
    with get_sandbox(name) as sandbox:
        assert sandbox.run(ExecRequest(command=("python3", "-c", "print(7)"))).stdout_text == "7\n"
    if name == "pool":
        with pytest.raises(SandboxError, match="closed"):
            sandbox.run(ExecRequest(command=("python3", "-c", "print(7)")))


DEEPEST = (
    "import sys\ndef f(n):\n    return 0 if n == 0 else 1 + f(n - 1)\ndeepest = 0\n"
    "for n in range(sys.getrecursionlimit() - 20, sys.getrecursionlimit() + 1):\n    try:\n        f(n)\n"
    "    except RecursionError:\n        break\n    deepest = n\nprint(sys.getrecursionlimit(), deepest)\n"
)
"""Prints the recursion limit and the deepest recursion that fits under it."""
FRESH_INTERPRETER: dict[str, str | bytes] = {
    "recursion": DEEPEST,
    "raised_recursion_limit": "import sys\nsys.setrecursionlimit(1500)\n" + DEEPEST,
    "keyboard_interrupt": "import atexit\natexit.register(print, 'bye')\nraise KeyboardInterrupt",
    "stdio": (
        "import sys\nfor s in (sys.stdin, sys.stdout, sys.stderr):\n"
        "    print(type(s.buffer).__name__, s.encoding, s.errors, s.line_buffering, s.write_through, s.name, s.mode)\n"
        "print(sys.dont_write_bytecode)"
    ),
    "undecodable_stdin": "import sys\nprint(repr(sys.stdin.read()))",
    "unencodable_output": "print('\\udcff')",
    "output_then_os_exit": "import os, sys\nprint('printed')\nsys.stdout.write('written')\nos._exit(3)",
    "name_error_hint": "value = 1\nprint(valeu)",
    "own_excepthook": "import sys\nsys.excepthook = lambda kind, error, trace: print('hooked', kind.__name__)\n1 / 0",
    "thread": (
        "import threading, time\ndef w():\n    time.sleep(0.1)\n    print('thread')\nthreading.Thread(target=w).start()"
    ),
    "thread_raises": (
        "import threading\ndef w():\n    raise ValueError('boom')\nthreading.Thread(target=w, name='T').start()"
    ),
    "daemon_thread": "import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()",
    "executor": (
        "import concurrent.futures as f, time\nf.ThreadPoolExecutor(2).submit(lambda: (time.sleep(0.1), print('task')))"
    ),
    "atexit": "import atexit, sys\natexit.register(print, 'bye')\natexit.register(lambda: 1 / 0)\nsys.exit(4)",
    "atexit_after_error": "import atexit\natexit.register(print, 'bye')\n1 / 0",
    "finalize": "import weakref\nclass A:\n    pass\na = A()\nweakref.finalize(a, print, 'finalized')",
    "del": "class A:\n    def __del__(self):\n        print('del', _private, b)\n_private = 1\nb = 2\na = A()",
    "unflushed_file": "import os\nout = os.fdopen(1, 'w', closefd=False)\nout.write('buffered')",
    "forked_child_exits": (
        "import os, sys\npid = os.fork()\nif pid == 0:\n    print('child')\n    sys.exit(5)\n"
        "print('parent', os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))"
    ),
    "closed_stdout": "import sys\nprint('x')\nsys.stdout.close()",
    "own_stdout_flushed_at_exit": (  # (as competitive programmers' FastIO templates do)
        "import os, sys\nclass Out:\n    parts = []\n    def write(self, text):\n        self.parts.append(text)\n"
        "    def flush(self):\n        os.write(1, ''.join(self.parts).encode())\n        self.parts.clear()\n"
        "sys.stdout = Out()\nprint('buffered')"
    ),
    "failing_flush_of_its_own": (
        "import sys\nclass Out:\n    def write(self, text):\n        pass\n    def flush(self):\n"
        "        raise OSError('nope')\nsys.stdout = Out()"
    ),
    "original_argv": "import sys\nprint(sys.orig_argv[1:])",
    "unflushable_stdout_then_interrupt": (
        "import sys\nsys.stdout = open('/dev/full', 'w', encoding='utf-8')\nprint('x')\nraise KeyboardInterrupt"
    ),
    "stdout_set_to_none": "import sys\nprint('x')\nsys.stdout = None",
    "original_stdout": "import sys\nsys.__stdout__.write('original\\n')\nprint(sys.__stdout__ is sys.stdout)",
    "main_globals": (
        "print(list(globals()))\n"
        "print(__annotations__, __cached__, type(__loader__).__name__, __loader__.get_source('__main__')[:5])"
    ),
    "interpreter_flags": (
        "import subprocess, sys\nflags = sys.flags\nprint(flags.isolated, flags.ignore_environment, "
        "flags.no_user_site, "
        "flags.safe_path, flags.dont_write_bytecode)\nprint(subprocess._args_from_interpreter_flags())"
    ),
    "spawned_child": (
        "import multiprocessing, os\ndef child():\n    print('child')\n    os._exit(0)\nif __name__ == '__main__':\n"
        "    multiprocessing.set_start_method('spawn')\n    process = multiprocessing.Process(target=child)\n"
        "    process.start()\n    process.join()\n    print('parent')"
    ),
    "unflushed_files_in_a_function": (
        "def main():\n    global files\n    files = [open(1, 'w', closefd=False) for _ in range(2)]\n"
        "    files[0].write('first')\n    files[1].write('second')\nmain()"
    ),
    "syntax_warning": "x = 1\nprint(x is 1)",
    "invalid_escape": "print('\\d')",
    "syntax_error": "print('before')\ndef f(:\n    pass",
    "coding_cookie": "# -*- coding: latin-1 -*-\nprint('\u00e9')",
    "future_annotations": "from __future__ import annotations\ndef f(x: int) -> str: ...\nprint(f.__annotations__)",
    "same_constants": (
        "a = 'hello world!'\nb = 'hello world!'\ndef f():\n    return 'hello world!'\nprint(a is b, f() is a)"
    ),
    "code_location": "import sys\nprint(sys._getframe().f_code.co_filename, __file__, sys._getframe().f_lineno)",
    "too_deep_to_compile": "x = " + "1+" * 7000 + "1\nprint(x)",
    "larger_than_the_worker_compiles": "x = 0\n" + "x += 1\n" * 3000 + "print(x)",
    "exit_message": "import sys\nsys.exit('bye')",
    "exit_code_past_a_long": "import sys\nsys.exit(-2**70)",
    "exit_message_with_stderr_closed": "import sys\nsys.stderr.close()\nsys.exit('bye')",
    "exit_message_without_stderr": "import sys\nsys.stderr = None\nsys.exit('bye')",
    "nul_byte": b"print('read')\0print('never read')\n",
    "undecodable_comment": b"# \xff\nprint(1)\n",
    "set_constant_order": "print([x for x in {2070348407264, 1656481433960, 3, 57}])",
    "non_ascii_name": "\u00e9 = 1\nimport sys\nprint('unicodedata' in sys.modules)",
    "undecodable_source": b"print('\xff')\n",
}
"""Programs whose outcome depends on how the interpreter compiles and runs the main module (the pool's worker
compiles most of them for their child: warnings, errors, source encodings, constants), how deep it may recurse, and
what happens once it is done."""


def seen(result: ExecResult) -> tuple[object, ...]:
    """What a program could be judged by: status, exit code, output (addresses, which differ run to run, dropped)."""
    return result.status, result.exit_code, result.stdout_text, re.sub(r"0x[0-9a-f]+", "0x", result.stderr_text)


@needs_bwrap
@pytest.mark.parametrize("sandbox", ["pool", pytest.param("docker", marks=pytest.mark.docker)], indirect=True)
@pytest.mark.parametrize("program", sorted(FRESH_INTERPRETER))
def test_a_pool_runs_a_program_as_a_fresh_interpreter_does(sandbox: Sandbox, program: str) -> None:
    """The pool's in-process runs behave as `python3 main.py` in a fresh interpreter (a one-shot sandbox): the same
    standard streams (encodings, error handlers, buffering: output survives `os._exit`), the same recursion
    headroom, an uncaught KeyboardInterrupt ending the process by SIGINT, and at the end its threads waited for,
    its atexit callbacks and finalizers run, what its globals hold finalised."""
    source = FRESH_INTERPRETER[program]
    files = {"main.py": source if isinstance(source, bytes) else source.encode()}
    request = ExecRequest(command=("python3", "main.py"), files=files, stdin=b"bytes \xff not UTF-8\n")
    assert seen(sandbox.run(request)) == seen(BwrapSandbox().run(request))


def zipped_app() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as app:
        app.writestr("__main__.py", "import sys\nprint('zip', sys.path[0][-7:])\n")
    return archive.getvalue()


FILE_LAYOUTS = {
    "module_beside_the_program": (("main.py",), {"main.py": b"import json\nprint(json.__file__)", "json.py": b""}),
    "package_beside_the_program": (
        ("main.py",),
        {"main.py": b"import typing\nprint(typing)", "typing/__init__.py": b""},
    ),
    "directory_without_init": (("main.py",), {"main.py": b"import json\nprint(json.__file__)", "json/x": b""}),
    "startup_module_beside": (("main.py",), {"main.py": b"import os\nprint(os.__file__)", "os.py": b""}),
    "dependency_beside": (
        ("main.py",),
        {"main.py": b"import fractions\nprint(fractions.Fraction(1, 3))", "numbers.py": b""},
    ),
    "compiled_module_beside": (("main.py",), {"main.py": b"import json\nprint(json.__file__)", "json.pyc": b"xx"}),
    "module_beside_a_command": (("-c", "import string; print(string.__file__)"), {"string.py": b""}),
    "dotted_path": (("./m.py",), {"m.py": b"import sys\nprint(sys.path[0], __file__)"}),
    "subdirectory": (("sub/m.py",), {"sub/m.py": b"import sys\nprint(sys.path[0], __file__)"}),
    "directory": (("d",), {"d/__main__.py": b"import sys\nprint(sys.path[0], __file__)"}),
    "zip_app": (("app.pyz",), {"app.pyz": zipped_app()}),
    "two_names_for_one_file": (("main.py",), {"main.py": b"print('first')", "./main.py": b"print('last')"}),
    "through_a_missing_directory": (("sub/../main.py",), {"main.py": b"print('ran')"}),
    "file_as_a_directory": (("main.py/",), {"main.py": b"print('ran')"}),
}
"""Programs whose imports or path depend on the files beside them: a file named like a module the warm worker
imported ahead of the program shadows it, as in a fresh interpreter (but for the interpreter's own start-up
modules); a directory or zip file runs its `__main__.py`."""


@needs_bwrap
@pytest.mark.parametrize("sandbox", ["pool"], indirect=True)
@pytest.mark.parametrize("layout", sorted(FILE_LAYOUTS))
def test_a_pool_finds_a_programs_own_files_as_a_fresh_interpreter_does(sandbox: Sandbox, layout: str) -> None:
    args, files = FILE_LAYOUTS[layout]
    request = ExecRequest(command=("python3", *args), files=files)
    assert seen(sandbox.run(request)) == seen(BwrapSandbox().run(request))
    later = sandbox.run(ExecRequest(command=("python3", "-c", "import json, typing, string; print(json.__file__)")))
    assert later.stdout_text.startswith("/usr/lib/")  # (what one run dropped is there again for the next)


def nested_finally(depth: int, name: str = "f") -> str:
    """A function of `depth` nested try/finally blocks returning from each: Python 3.11 compiles a `finally` body
    once for every way out of its `try`, so compiling it takes time and memory exponential in `depth` (depth 13, 513
    bytes: 6.6 s and 4.6 GB)."""
    lines = [f"def {name}():"]
    for level in range(1, depth + 1):
        lines += [" " * level + "try: return 1", " " * level + "finally:"]
    return "\n".join([*lines, " " * (depth + 1) + "return 2", ""])


COSTLY_TO_COMPILE = {
    "one_exponential_function": (nested_finally(14) + "print('ran', f())", Limits(memory_bytes=256 * 2**20)),
    "many_costly_functions": (
        "".join(nested_finally(11, f"f{n}") for n in range(30)) + "print('ran')",
        Limits(wall_seconds=2, cpu_seconds=2),
    ),
}
"""Short programs whose compiling runs into the run's limits (memory; CPU and wall time)."""


@needs_bwrap
@pytest.mark.parametrize("sandbox", ["pool", pytest.param("docker", marks=pytest.mark.docker)], indirect=True)
@pytest.mark.parametrize("program", sorted(COSTLY_TO_COMPILE))
def test_compiling_a_program_is_bounded_by_the_runs_limits(sandbox: Sandbox, program: str) -> None:
    """A pool compiles a run's program outside it (see `worker_main.Compiler`): a program whose compiling would
    take memory or time past the run's limits fails as it does in a fresh interpreter, not as the sandbox's error
    (which trainers skip), nor does it pass where a fresh interpreter fails."""
    source, limits = COSTLY_TO_COMPILE[program]
    request = ExecRequest(command=("python3", "main.py"), files={"main.py": source.encode()}, limits=limits)
    fresh = BwrapSandbox().run(request)
    assert fresh.status in (ExecStatus.MEMORY_LIMIT, ExecStatus.TIMEOUT)
    assert sandbox.run(request).status is fresh.status
    assert sandbox.run(ExecRequest(command=("python3", "-c", "print(1)"))).stdout_text == "1\n"


STARTUP_PROBE = (
    "import json, sys\nprint(sys.flags.optimize, sys.flags.utf8_mode, sys.flags.hash_randomization)\n"
    "print(sys.stdout.encoding, sys.stdout.errors, sys.stdout.line_buffering, sys.stdout.write_through)\n"
    "print(json.__file__, hash('x') if sys.flags.hash_randomization == 0 else '')"
)


@needs_bwrap
@pytest.mark.parametrize("sandbox", ["pool"], indirect=True)
@pytest.mark.parametrize(
    "env",
    [
        {"PYTHONOPTIMIZE": "1"},
        {"PYTHONHASHSEED": "0"},
        {"PYTHONPATH": "/work/lib"},
        {"PYTHONUNBUFFERED": "0"},
        {"PYTHONUNBUFFERED": "0 "},
        {"PYTHONIOENCODING": "bogus"},
        {"PYTHONIOENCODING": "latin-1"},
        {"LC_ALL": "C"},
    ],
    ids=str,
)
def test_a_pool_honours_variables_that_change_how_an_interpreter_starts(sandbox: Sandbox, env: dict) -> None:
    """Variables the warm interpreter cannot take on after its start (import path, optimisation, hash seed, the C
    locale's UTF-8 mode) make the pool start a fresh interpreter for that run; stream settings it applies itself."""
    files = {"main.py": STARTUP_PROBE.encode(), "lib/json.py": b""}
    request = ExecRequest(command=("python3", "main.py"), files=files, env=env)
    assert seen(sandbox.run(request)) == seen(BwrapSandbox().run(request))


def test_request_rejects_paths_outside_the_work_dir() -> None:
    for bad in ("/etc/passwd", "../x", "a/../../b", ""):
        with pytest.raises(ValueError):
            ExecRequest(command=("true",), files={bad: b""})


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        Limits(wall_seconds=0)
    with pytest.raises(ValueError):
        Limits(memory_bytes=1024)


def test_unknown_backend_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="bwrap"):
        get_sandbox("chroot")


def test_missing_bwrap_is_a_sandbox_error() -> None:
    with pytest.raises(SandboxError, match="not installed"):
        BwrapSandbox(BwrapConfig(bwrap="bwrap-that-does-not-exist"))


@needs_bwrap
def test_bwrap_outside_the_default_path_is_found_on_the_callers_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sandboxes start with an empty environment; bubblewrap is still looked up on the caller's PATH (as in a
    conda env or /usr/local/bin), for one-shot runs and pool workers alike."""
    folder = Path(tempfile.mkdtemp(prefix="rg-bin-"))  # not under pytest's 0700 tmp: bwrap is started as nobody
    try:
        folder.chmod(0o755)
        (folder / "rg-bubblewrap").symlink_to(shutil.which("bwrap") or "bwrap")
        monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
        config = BwrapConfig(bwrap="rg-bubblewrap")
        request = ExecRequest(command=("python3", "-c", "print(6 * 7)"))
        assert BwrapSandbox(config).run(request).stdout == b"42\n"
        with bwrap_pool(PoolConfig(workers=1), config) as pool:
            assert pool.run(request).stdout == b"42\n"
    finally:
        shutil.rmtree(folder)


@needs_bwrap
def test_pool_runs_a_batch_concurrently_and_async() -> None:
    with bwrap_pool(PoolConfig(workers=2)) as pool:
        requests = [ExecRequest(command=("python3", "-c", f"print({i} * {i})")) for i in range(20)]
        results = pool.map(requests)
        assert [r.stdout_text for r in results] == [f"{i * i}\n" for i in range(20)]

        async def both() -> list[str]:
            done = await asyncio.gather(*(pool.run_async(r) for r in requests[:4]))
            return [r.stdout_text for r in done]

        assert asyncio.run(both()) == ["0\n", "1\n", "4\n", "9\n"]

        async def batch_beside_single_runs() -> tuple[list[str], list[str]]:
            batch = asyncio.ensure_future(pool.map_async(requests))
            singles = await asyncio.gather(*map(pool.run_async, requests[:3]))
            return [r.stdout_text for r in await batch], [r.stdout_text for r in singles]

        assert asyncio.run(batch_beside_single_runs()) == ([f"{i * i}\n" for i in range(20)], ["0\n", "1\n", "4\n"])


@needs_bwrap
def test_pool_replaces_a_worker_after_max_runs() -> None:
    with bwrap_pool(PoolConfig(workers=1, max_runs_per_worker=2)) as pool:
        pids = [
            pool.run(ExecRequest(command=("python3", "-c", "import os; print(os.getppid())"))).stdout_text
            for _ in range(4)
        ]
    assert pids[0] == pids[1] and pids[2] == pids[3]
    assert all(r.strip() for r in pids)


@needs_bwrap
def test_pool_refuses_a_request_for_network_it_was_not_started_with() -> None:
    with bwrap_pool(PoolConfig(workers=1), start=False) as pool, pytest.raises(SandboxError, match="network"):
        pool.run(ExecRequest(command=("python3", "-c", ""), limits=Limits(network=True)))


@needs_bwrap
def test_pool_program_starts_only_once_the_next_standby_exists_from_the_first_run_on() -> None:
    """The pool counts on it to end runs: every process a run starts gets a pid after the next standby's, so the
    namespace's last pid tells whether the run's child was its only process."""
    listing = "import os; print(len([p for p in os.listdir('/proc') if p.isdigit()]))"
    for _ in range(5):
        with bwrap_pool(PoolConfig(workers=1)) as pool:
            seen = [pool.run(ExecRequest(command=("python3", "-c", listing))).stdout_text for _ in range(2)]
        assert seen == ["5\n"] * 2  # the worker, its compiler, the zygote, the run's child and the next standby


@needs_bwrap
def test_pool_runs_non_python_commands_by_exec() -> None:
    with bwrap_pool(PoolConfig(workers=1)) as pool:
        result = pool.run(ExecRequest(command=("/bin/sh", "-c", "echo $HOME; exit 5")))
    assert result.exit_code == 5 and result.stdout_text == "/work\n"


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 2), (8, 8), (9, 8), (16, 15)])
def test_default_workers_leave_a_core_to_the_caller_only_on_big_machines(
    monkeypatch: pytest.MonkeyPatch, cpus: int, workers: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)))
    assert PoolConfig().workers == workers


@pytest.mark.parametrize("backend", ["pool", pytest.param("docker", marks=pytest.mark.docker)])
def test_a_warm_pool_runs_a_batch_with_each_result_in_its_place(backend: str, sandbox_cache: Any) -> None:
    """`map` on every warm pool (bubblewrap and Docker): one thread drives all workers at once (waiting on their
    channels together), answers come back out of order, and each result must be its own request's."""
    pool = sandbox_cache.get(backend)
    assert isinstance(pool, WarmPool)
    requests = [
        ExecRequest(
            command=("python3", "-c", f"import sys, time\ntime.sleep({0.05 * (index % 3)})\nprint({index})"),
            stdin=f"{index}".encode(),
        )
        for index in range(12)
    ]
    requests.append(ExecRequest(command=("python3", "-c", "import sys\nsys.stdout.write('x' * 300_000)")))
    results = pool.map(requests)
    assert [result.stdout_text for result in results[:12]] == [f"{index}\n" for index in range(12)]
    assert results[12].stdout == b"x" * 300_000  # (past a pipe's and a socket's buffer: read as it arrives)


def test_the_local_sandbox_warning_points_at_the_users_line() -> None:
    from reflectgym.sandboxes import LocalSandboxWarning

    with pytest.warns(LocalSandboxWarning) as caught:
        get_sandbox("local").close()  # through the registry: the warning still names this file, not the library's
    assert caught[0].filename == __file__
