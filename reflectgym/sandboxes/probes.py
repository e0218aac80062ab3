"""Splitting an assert test into what the program's process must evaluate and what a judge can evaluate without it.

A test such as `assert math.isclose(candidate(x)[0], 2.5)` needs the program for one thing only: the value of
`candidate(x)`. That call is a *probe*: the program's process evaluates it (after the setup lines it needs) and
sends the value back as plain data. The rest, `math.isclose(_probe[0][0], 2.5)`, is the *verdict*: a judge process
that never runs the program's code evaluates it on those values. So a program cannot make a split test pass by
forging a report, rewriting `assert`, exiting early or returning an object whose `__eq__` always says yes; and the
verdict's expected values never reach the program's process. A probe whose truth alone the verdict reads (`assert
check(s)`) travels as that truth where its value is not plain data (a `re.Match`), as `assert` itself would read it.

Which names the judge evaluates itself: builtins, modules of the standard library the test imports, and names that
setup lines bind from those alone (`expected = sorted(data)`); the judge runs those lines too, and the program's
process runs only the setup lines its probes need. A builtin name stays the judge's (the real builtin) even when the
program rebinds it (`abs = lambda v: 0`, `set = ...`, `from math import *`): else the program would answer the whole
`abs(candidate(x) - y)` itself. The program's own code still sees its own rebinding. The exceptions are the names the
task declares *under test* (its entry point, named like a builtin or not), and names a setup line binds from the
program (`candidate = double`): those are the program's. Every call of a program's name, and every other name the
verdict needs, is a probe. A test that is not one final `assert`, that imports anything beyond the standard library,
whose probe needs a comprehension's or a lambda's variable, or whose verdict would use nothing of the program, is not
split: it runs whole in the program's process.
"""

from __future__ import annotations

import ast
import builtins
import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass

PROBES = "_probe"
"""The name under which the verdict sees the probes' values, in order."""
_BUILTIN_NAMES = frozenset(dir(builtins))
_STANDARD_LIBRARY = frozenset(sys.stdlib_module_names)
_UNSPLITTABLE = (ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)


@dataclass(frozen=True)
class SplitTest:
    """An assert test split into the program's share and the judge's.

    Attributes:
        setup: The setup lines the program's process runs before the probes: its own (those binding or using the
            program's names) and the imports.
        shared: Names the judge's setup binds that the program's process needs too (`data` in
            `data = [3, 1]; assert candidate(data) == sorted(data)`): the judge sends their values, so both sides
            see the same data, and the program's process never runs the judge's lines.
        probes: Expressions the program's process evaluates, in order; their values travel as plain data.
        verdict: The assert's condition with each probe replaced by `_probe[k]`; the judge evaluates it.
        judge_setup: The setup lines the judge runs first: standard-library imports, and assignments made from
            builtins, those modules and earlier such assignments alone.
        compared: Whether the verdict is `_probe[0] OP value` (a failure then reports the probe's value).
        message: The assert's message as the judge evaluates it (probes cut the same way), or None.
        truth_only: For each probe, whether the verdict uses nothing of its value but its truth (`assert
            check(s)`, `assert not found(x)`): one that is not plain data (a `re.Match`) may then travel as
            `bool(value)`, which gives the program no say it would not have by returning True or False itself.
    """

    setup: str
    shared: tuple[str, ...]
    probes: tuple[str, ...]
    verdict: str
    judge_setup: str
    compared: bool
    message: str | None = None
    truth_only: tuple[bool, ...] = ()


def split_test(snippet: str, *, under_test: Collection[str] = frozenset()) -> SplitTest | None:
    """The split of `snippet`, or None when it must run whole. `under_test` names what the test calls of the program
    even where a builtin has that name (the task's entry point): those calls are probes, while every other builtin
    name is the judge's, whatever the program binds."""
    try:
        module = ast.parse(snippet)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not module.body or not isinstance(module.body[-1], ast.Assert):
        return None
    head, test, message = module.body[:-1], module.body[-1].test, module.body[-1].msg
    parts = [test] if message is None else [test, message]
    if any(isinstance(node, _UNSPLITTABLE) for part in [*head, *parts] for node in ast.walk(part)):
        return None
    judged = _JudgeSetup(_BUILTIN_NAMES - frozenset(under_test))
    for statement in head:
        if not judged.take(statement):
            return None
    local = frozenset().union(*(_locally_bound(part) for part in parts))
    probes: list[ast.expr] = []
    cutter = _ProbeCutter(judged.names | local, probes)
    verdict = cutter.visit(test)
    shown = cutter.visit(message) if message is not None else None
    if not probes:
        return None  # nothing of the program in it: run whole, as the interpreter would (with its own names)
    if any(isinstance(name, ast.Name) and name.id in local for probe in probes for name in ast.walk(probe)):
        return None  # the probe would need a comprehension's or a lambda's variable, which only the verdict has
    compared = (
        isinstance(verdict, ast.Compare)
        and len(verdict.ops) == 1
        and _is_probe(verdict.left, 0)
        and not any(_is_probe(node, None) for node in ast.walk(verdict.comparators[0]))
    )
    setup, shared = judged.program_share(probes)
    return SplitTest(
        setup="\n".join(ast.unparse(node) for node in setup),
        shared=shared,
        probes=tuple(ast.unparse(probe) for probe in probes),
        verdict=ast.unparse(verdict),
        judge_setup="\n".join(ast.unparse(node) for node in judged.statements),
        compared=compared,
        message=ast.unparse(shown) if shown is not None else None,
        truth_only=_truth_only(verdict, shown, len(probes)),
    )


def _truth_only(verdict: ast.expr, message: ast.expr | None, count: int) -> tuple[bool, ...]:
    """For each of `count` probes, whether every use of it in `verdict` is for its truth alone (see `_truth_places`)
    and `message` does not show it."""
    conditions = [verdict, *(node.test for node in ast.walk(verdict) if isinstance(node, ast.IfExp))]
    truth = {id(node) for node in _truth_places(conditions)}
    uses = [node for part in (verdict, message) if part is not None for node in ast.walk(part) if _is_probe(node, None)]
    other = {node.slice.value for node in uses if id(node) not in truth}  # type: ignore[attr-defined]
    return tuple(index not in other for index in range(count))


def _truth_places(conditions: list[ast.expr]) -> Iterator[ast.expr]:
    """The expressions whose value counts only for its truth: the conditions themselves (the assert's, a
    conditional expression's test) and, within them, the operands of `not`, `and` and `or`."""
    pending = list(conditions)
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            pending.append(node.operand)
        elif isinstance(node, ast.BoolOp):
            pending.extend(node.values)


class _JudgeSetup:
    """Sorts a test's setup lines into the judge's (made of builtins and standard-library modules alone) and the
    program's (everything else), keeping track of which names the judge can evaluate."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = set(names)
        self.statements: list[ast.stmt] = []
        self.head: list[tuple[ast.stmt, bool]] = []
        """Every setup line in order, with whether the judge runs it."""

    def take(self, statement: ast.stmt) -> bool:
        """Files one setup line; False when the test cannot be split (an import from outside the standard
        library: the judge must not import it, and it may be the program itself)."""
        if isinstance(statement, ast.Import | ast.ImportFrom):
            if not _standard_import(statement):
                return False
            self._judge(statement)
        elif isinstance(statement, ast.Assign | ast.AnnAssign) and _free_names(statement) <= self.names:
            self._judge(statement)
        else:
            self.names -= _bound_names(statement)  # bound by the program's side: whatever it shadows
            self.head.append((statement, False))
        return True

    def _judge(self, statement: ast.stmt) -> None:
        self.names |= _bound_names(statement)
        self.statements.append(statement)
        self.head.append((statement, True))

    def program_share(self, probes: list[ast.expr]) -> tuple[list[ast.stmt], tuple[str, ...]]:
        """The setup lines the program's process runs (its own and the imports), and the names of the judge's
        assignments that they or the probes need, whose values the judge sends."""
        needed = {name.id for probe in probes for name in ast.walk(probe) if isinstance(name, ast.Name)}
        kept: list[ast.stmt] = []
        for statement, judge_side in reversed(self.head):
            if not judge_side or isinstance(statement, ast.Import | ast.ImportFrom):
                kept.append(statement)
                needed |= _free_names(statement)
        assigned = set().union(
            *(_bound_names(s) for s in self.statements if not isinstance(s, ast.Import | ast.ImportFrom))
        )
        return kept[::-1], tuple(sorted(needed & assigned & self.names))


class _ProbeCutter(ast.NodeTransformer):
    """Replaces each program-dependent call or name with `_probe[k]`, collecting the replaced expressions."""

    def __init__(self, judge_names: frozenset[str] | set[str], probes: list[ast.expr]) -> None:
        self.judge_names = judge_names
        self.probes = probes

    def _cut(self, node: ast.expr) -> ast.expr:
        self.probes.append(node)
        index = ast.Constant(len(self.probes) - 1)
        return ast.copy_location(ast.Subscript(ast.Name(PROBES, ast.Load()), index, ast.Load()), node)

    def visit_Call(self, node: ast.Call) -> ast.expr:
        root = _root_name(node.func)
        if root is None or root not in self.judge_names:
            return self._cut(node)
        return self.generic_visit(node)  # type: ignore[return-value]  (a builtin's or a module's call: judge-side)

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return node if node.id in self.judge_names else self._cut(node)


def _standard_import(statement: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(statement, ast.ImportFrom):
        return statement.level == 0 and (statement.module or "").split(".")[0] in _STANDARD_LIBRARY
    return all(alias.name.split(".")[0] in _STANDARD_LIBRARY for alias in statement.names)


def _bound_names(statement: ast.stmt) -> set[str]:
    """Names a top-level statement binds (not those bound inside functions or classes it defines)."""
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {statement.name}
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return {alias.asname or alias.name.split(".")[0] for alias in statement.names}
    names: set[str] = set()
    nested = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.comprehension)
    pending: list[ast.AST] = [statement]
    while pending:
        node = pending.pop()
        if isinstance(node, nested) and node is not statement:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            continue
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
        pending.extend(ast.iter_child_nodes(node))
    return names


def _free_names(statement: ast.AST) -> set[str]:
    """Names a statement reads that it does not bind itself (a comprehension's variables excluded)."""
    read = {node.id for node in ast.walk(statement) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    return read - _locally_bound(statement)


def _root_name(func: ast.expr) -> str | None:
    """`math` for `math.isclose`, `f` for `f`; None for a callee that is itself computed (`f(x)(y)`, a lambda)."""
    while isinstance(func, ast.Attribute):
        func = func.value
    return func.id if isinstance(func, ast.Name) else None


def _locally_bound(node: ast.AST) -> frozenset[str]:
    """Names an expression binds itself: comprehension variables and lambda arguments."""
    bound: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.comprehension):
            bound |= {name.id for name in ast.walk(child.target) if isinstance(name, ast.Name)}
        elif isinstance(child, ast.Lambda):
            bound |= {argument.arg for argument in ast.walk(child.args) if isinstance(argument, ast.arg)}
    return frozenset(bound)


def _is_probe(node: ast.AST, index: int | None) -> bool:
    """Whether `node` is `_probe[index]` (any index when None)."""
    return (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id == PROBES
        and isinstance(node.slice, ast.Constant)
        and (index is None or node.slice.value == index)
    )
