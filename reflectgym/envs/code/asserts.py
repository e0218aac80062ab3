"""Unit tests as individual snippets: splitting a HumanEval `check(candidate)` into one test per assert, and
instrumenting an `assert call == expected` so a failure reports the actual value for feedback."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

from reflectgym.sandboxes.python_tests import ACTUAL_PREFIX

_MAX_REPR = 1000


@dataclass(frozen=True)
class UnitTest:
    """One test snippet, runnable on its own after the program, with what feedback may show of it.

    Attributes:
        code: The snippet the program's process runs when the test cannot be split between it and the judge
            (instrumented to report the value under test when it is a comparison; see `run_python_tests`).
        shown: The test as a person reads it (the final assert, `candidate` renamed to the entry point).
        call: The expression under test when the assert is a comparison, else None.
        expected: The expected side of that comparison as source, else None.
        hidden: Whether feedback must stay silent about this test (it still counts for the reward).
        source: The snippet as written (default: `code`), which the harness splits when it can.
    """

    code: str
    shown: str
    call: str | None = None
    expected: str | None = None
    hidden: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        if not self.source:
            object.__setattr__(self, "source", self.code)


def split_check(test_source: str, entry_point: str) -> list[str]:
    """Splits HumanEval's `test` (a `check(candidate)` function) into one snippet per top-level assert.

    Module-level lines (`METADATA`, imports) and the non-assert statements of `check` before an assert are kept
    in front of it, after `candidate = <entry_point>`; a loop holding asserts is one test. Without a `check`
    made of asserts, the whole test plus `check(<entry_point>)` is one test.
    """
    try:
        module = ast.parse(test_source)
    except SyntaxError as error:
        raise ValueError(f"the test code does not parse: {error.msg} (line {error.lineno})") from None
    check = next((node for node in module.body if isinstance(node, ast.FunctionDef) and node.name == "check"), None)
    runs_itself = any(_is_call(node) for node in module.body)
    whole = [f"{test_source.rstrip()}\n" + ("" if runs_itself else f"\ncheck({entry_point})\n")]
    if check is None:
        return whole
    # (HumanEvalPack ends the test with `check(<entry_point>)`, MultiPL-E with `test_check()`: top-level calls run
    # the tests, so no snippet keeps them)
    prefix = [ast.unparse(node) for node in module.body if node is not check and not _is_call(node)]
    prefix.append(f"candidate = {entry_point}")
    setup: list[str] = []
    snippets: list[str] = []
    for statement in check.body:
        if _always_true(statement):
            continue  # HumanEval's `assert True, "This prints if this assert fails..."` tests nothing
        if _holds_assert(statement):
            snippets.append("\n".join([*prefix, *setup, ast.unparse(statement)]) + "\n")
        else:
            setup.append(ast.unparse(statement))
    return snippets or whole


def _is_call(node: ast.stmt) -> bool:
    """A statement that is only a call (at the top of a test: the call that runs it)."""
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)


def _always_true(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assert) and isinstance(node.test, ast.Constant) and bool(node.test.value)


def instrument(snippet: str, entry_point: str | None, *, hidden: bool = False, alternatives: bool = False) -> UnitTest:
    """Makes a `UnitTest` of a snippet; a final `assert a OP b` is rewritten to report `repr(a)` on failure.

    With `alternatives`, a final `assert a in (expected, *also_accepted)` (how call-based formats accept a tuple for
    a list) shows `expected` as the expected value, not the tuple of what passes.
    """
    try:
        module = ast.parse(snippet)
    except SyntaxError:
        return UnitTest(code=snippet, shown=snippet.strip(), hidden=hidden)
    if not module.body:
        return UnitTest(code=snippet, shown="", hidden=hidden)
    last = module.body[-1]
    shown = _renamed(last, entry_point)
    if not (isinstance(last, ast.Assert) and isinstance(last.test, ast.Compare) and len(last.test.ops) == 1):
        return UnitTest(code=snippet, shown=shown, hidden=hidden)
    compare = last.test
    head = [ast.unparse(node) for node in module.body[:-1]]
    check = ast.unparse(
        ast.Compare(left=ast.Name("_actual", ast.Load()), ops=compare.ops, comparators=[ast.Name("_expected")])
    )
    code = "\n".join(
        [
            *head,
            f"_actual = ({ast.unparse(compare.left)})",
            f"_expected = ({ast.unparse(compare.comparators[0])})",
            f"if not ({check}):",
            f"    raise AssertionError({ACTUAL_PREFIX!r} + repr(_actual)[:{_MAX_REPR}])",
        ]
    )
    return UnitTest(
        code=code + "\n",
        shown=shown,
        call=_renamed(compare.left, entry_point),
        expected=ast.unparse(_expected(compare, alternatives)),
        hidden=hidden,
        source="\n".join([*head, ast.unparse(ast.Assert(compare))]) + "\n",  # no message: a failure shows the value
    )


def instrument_all(
    snippets: Sequence[str], entry_point: str | None, *, hidden: bool = False, alternatives: bool = False
) -> list[UnitTest]:
    """`instrument` over a list."""
    return [instrument(snippet, entry_point, hidden=hidden, alternatives=alternatives) for snippet in snippets]


def _expected(compare: ast.Compare, alternatives: bool) -> ast.expr:
    """The expected side of a comparison: with `alternatives`, the first of `in (expected, *also_accepted)`."""
    accepted = compare.comparators[0]
    if alternatives and isinstance(compare.ops[0], ast.In) and isinstance(accepted, ast.Tuple) and accepted.elts:
        return accepted.elts[0]
    return accepted


def called_function(snippet: str) -> str | None:
    """The first function a test calls by plain name (MBPP rows name no entry point; their asserts do)."""
    try:
        module = ast.parse(snippet)
    except SyntaxError:
        return None
    for node in ast.walk(module):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in _BUILTINS:
            return node.func.id
    return None


_BUILTINS = frozenset(
    {"abs", "all", "any", "len", "list", "set", "sorted", "str", "tuple", "dict", "int", "float", "round", "isclose"}
)


def _holds_assert(statement: ast.stmt) -> bool:
    return any(isinstance(node, ast.Assert) for node in ast.walk(statement))


class _Rename(ast.NodeTransformer):
    def __init__(self, entry_point: str) -> None:
        self.entry_point = entry_point

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(self.entry_point, node.ctx) if node.id == "candidate" else node


def _renamed(node: ast.AST, entry_point: str | None) -> str:
    if entry_point:
        node = _Rename(entry_point).visit(ast.parse(ast.unparse(node)))
    return ast.unparse(node).strip()
