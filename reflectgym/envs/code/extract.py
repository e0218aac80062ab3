"""Pulls Python code out of model text: fenced blocks first, then bare code that parses."""

from __future__ import annotations

import ast
import re

_FENCE = re.compile(r"( {0,3})(```|~~~)[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:\2|\Z)", re.DOTALL)
"""A fenced block (``` or ~~~, closed by the same, or running to the end): indentation, fence, tag, body."""
_PYTHON_TAGS = frozenset({"python", "py", "python3", "py3"})
_CODE_START = re.compile(r"^(?:def |async def |class |import |from \S+ import |@)")
_CODE_NODES = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Import,
    ast.ImportFrom,
    ast.Assign,
    ast.AugAssign,
    ast.For,
    ast.While,
    ast.If,
    ast.With,
    ast.Try,
)
_PARSE_BUDGET = 1_000_000
"""Characters of bare-code candidates parsed per reply before giving up (the first candidate is always parsed)."""
_MAX_TRAILING_PROSE = 8
"""Unindented lines that may follow bare code and are dropped to make it parse ("Let me know if ...")."""


def extract_code(text: str, entry_point: str | None = None) -> str | None:
    """The code in a reply, or None when there is none.

    Fenced blocks win: the last block that defines `entry_point` when one is given (a Python-tagged one first, then
    an untagged one), else the last Python-tagged block; without one, the untagged blocks that read as code (so a
    sample output shown after the program is not taken for it), else the last untagged block. An unclosed fence (a
    cut-off reply) runs to the end. Without fences, the reply itself when it parses as Python with at least one
    real statement (a def, an import, an assignment, a call, a loop), after dropping leading prose lines and a few
    trailing ones; an indented function body counts too.
    """
    # The added newline changes no block (a fence opened on a last line with no newline has an empty body), but
    # spares the regex rescanning that last line to its end at every backtick of it (quadratic on "```" * n).
    fenced = _fenced_blocks(text + "\n")
    tagged = [body for tag, body in fenced if tag.lower() in _PYTHON_TAGS and body.strip()]
    untagged = [body for tag, body in fenced if not tag and body.strip()]
    defining = [block for block in tagged if entry_point and _defines(block, entry_point)] or [
        block for block in untagged if entry_point and _defines(block, entry_point)
    ]
    blocks = defining[-1:] or tagged or [body for body in untagged if _reads_as_code(body)] or untagged
    if blocks:
        return blocks[-1].rstrip() + "\n"
    return _bare_code(text)


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Each fenced block's (tag, body). A fence indented 1-3 spaces at the start of a line (inside a markdown list
    item) whose every body line is indented as much has that indentation taken off, so the code is top-level again
    (CommonMark takes up to that much off each line; a body written flush left, as some models do, keeps its own)."""
    blocks = []
    for match in _FENCE.finditer(text):
        indent, _, tag, body = match.groups()
        at_line_start = match.start() == 0 or text[match.start() - 1] == "\n"
        lines = body.split("\n")
        if indent and at_line_start and all(line.startswith(indent) for line in lines if line.strip()):
            body = "\n".join(line[len(indent) :] for line in lines)
        blocks.append((tag, body))
    return blocks


def is_function_body(code: str) -> bool:
    """Whether `code` is an indented body (a completion of a prompt's signature), not top-level code."""
    first = next((line for line in code.splitlines() if line.strip()), "")
    return first[:1] in (" ", "\t")


def _defines(code: str, name: str) -> bool:
    # `[^\S\n]*`, not `\s*`: the same lines match, without rescanning a run of blank lines from each of them.
    return re.search(rf"^[^\S\n]*(?:async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def _bare_code(text: str) -> str | None:
    """The reply from its first line where code starts and parses to the end, or None.

    Each try parses the whole rest of the reply, so tries after the first stop once `_PARSE_BUDGET` characters
    have been parsed: a reply of thousands of code-like lines that never parse costs linear time, not one parse
    per line.
    """
    lines = text.strip("\n").splitlines()
    starts = [0] + [index for index, line in enumerate(lines) if index and _CODE_START.match(line)]
    budget = _PARSE_BUDGET
    for start in starts:
        end = len(lines)
        while True:
            if budget <= 0:
                return None
            candidate = "\n".join(lines[start:end]).rstrip() + "\n"
            budget -= len(candidate)
            if _reads_as_code(candidate):
                return candidate
            if end - 1 <= start or len(lines) - end >= _MAX_TRAILING_PROSE or lines[end - 1][:1] in (" ", "\t"):
                break  # (only unindented lines at the end may be prose)
            end -= 1
    return None


def _reads_as_code(candidate: str) -> bool:
    """Top-level code with a real statement, or an indented function body; either parses."""
    if is_function_body(candidate):
        return _parses(f"def _body():\n{candidate}", require_code=False)
    return _parses(candidate, require_code=True)


def _parses(code: str, *, require_code: bool) -> bool:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    if not require_code:
        return True
    for node in tree.body:
        if isinstance(node, _CODE_NODES):
            return True
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            return True
    return False
