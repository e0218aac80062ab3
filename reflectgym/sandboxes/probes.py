"""Splitting an assert test into what the program's process must evaluate and what a judge can evaluate without it.

A test such as `assert math.isclose(candidate(x)[0], 2.5)` needs the program for one thing only: the value of
`candidate(x)`. That call is a *probe*: the program's process evaluates it (after the test's setup lines) and sends
the value back as plain data. The rest, `math.isclose(_probe[0][0], 2.5)`, is the *verdict*: a judge process that
never runs the program's code evaluates it on those values. So a program cannot make a split test pass by forging a
report, rewriting `assert`, exiting early or returning an object whose `__eq__` always says yes; and the verdict's
expected values never reach the program's process.

Which calls are probes: every call whose callee is not a builtin or a module the test's setup imports (those stay
in the verdict, evaluated by the judge), and every other name the verdict would need (a setup variable). A test
that is not a single final `assert` over such an expression (a loop of asserts, a probe that uses a comprehension's
variable, a walrus) cannot be split; it runs whole in the program's process, as before.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass

PROBES = "_probe"
"""The name under which the verdict sees the probes' values, in order."""
_BUILTIN_NAMES = frozenset(dir(builtins))
_UNSPLITTABLE = (ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)


@dataclass(frozen=True)
class SplitTest:
    """An assert test split into the program's share and the judge's.

    Attributes:
        setup: Source the program's process runs before the probes (the statements before the assert).
        probes: Expressions the program's process evaluates, in order; their values travel as plain data.
        verdict: The assert's condition with each probe replaced by `_probe[k]`; the judge evaluates it.
        imports: The setup's import statements, which the judge runs too (for names like `math` in the verdict).
        compared: Whether the verdict is `_probe[0] OP value` (a failure then reports the probe's value).
        message: The assert's message as the judge evaluates it (probes cut the same way), or None.
    """

    setup: str
    probes: tuple[str, ...]
    verdict: str
    imports: str
    compared: bool
    message: str | None = None


def split_test(snippet: str) -> SplitTest | None:
    """The split of `snippet`, or None when it must run whole in the program's process."""
    try:
        module = ast.parse(snippet)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not module.body or not isinstance(module.body[-1], ast.Assert):
        return None
    head, test, message = module.body[:-1], module.body[-1].test, module.body[-1].msg
    parts = [test] if message is None else [test, message]
    if any(isinstance(node, _UNSPLITTABLE) for part in parts for node in ast.walk(part)):
        return None
    imports = [node for node in head if isinstance(node, ast.Import | ast.ImportFrom)]
    local = _locally_bound(test) | (_locally_bound(message) if message is not None else frozenset())
    probes: list[ast.expr] = []
    cutter = _ProbeCutter(_BUILTIN_NAMES | _imported_names(imports) | local, probes)
    verdict = cutter.visit(test)
    shown = cutter.visit(message) if message is not None else None
    if any(isinstance(name, ast.Name) and name.id in local for probe in probes for name in ast.walk(probe)):
        return None  # the probe would need a comprehension's or a lambda's variable, which only the verdict has
    compared = (
        isinstance(verdict, ast.Compare)
        and len(verdict.ops) == 1
        and _is_probe(verdict.left, 0)
        and not any(_is_probe(node, None) for node in ast.walk(verdict.comparators[0]))
    )
    return SplitTest(
        setup="\n".join(ast.unparse(node) for node in head),
        probes=tuple(ast.unparse(probe) for probe in probes),
        verdict=ast.unparse(verdict),
        imports="\n".join(ast.unparse(node) for node in imports),
        compared=compared,
        message=ast.unparse(shown) if shown is not None else None,
    )


class _ProbeCutter(ast.NodeTransformer):
    """Replaces each program-dependent call or name with `_probe[k]`, collecting the replaced expressions."""

    def __init__(self, judge_names: frozenset[str], probes: list[ast.expr]) -> None:
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


def _root_name(func: ast.expr) -> str | None:
    """`math` for `math.isclose`, `f` for `f`; None for a callee that is itself computed (`f(x)(y)`, a lambda)."""
    while isinstance(func, ast.Attribute):
        func = func.value
    return func.id if isinstance(func, ast.Name) else None


def _imported_names(imports: list[ast.Import | ast.ImportFrom]) -> frozenset[str]:
    names = set()
    for node in imports:
        for alias in node.names:
            names.add(alias.asname or alias.name.split(".")[0])
    return frozenset(names) - {"*"}


def _locally_bound(test: ast.expr) -> frozenset[str]:
    """Names the expression binds itself: comprehension variables and lambda arguments."""
    bound: set[str] = set()
    for node in ast.walk(test):
        if isinstance(node, ast.comprehension):
            bound |= {name.id for name in ast.walk(node.target) if isinstance(name, ast.Name)}
        elif isinstance(node, ast.Lambda):
            bound |= {argument.arg for argument in ast.walk(node.args) if isinstance(argument, ast.arg)}
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
