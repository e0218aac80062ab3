"""Code extraction from model text: fenced blocks, the block defining the entry point, bare code, no code."""

from __future__ import annotations

import time

from reflectgym.envs.code.extract import extract_code, is_function_body


def test_a_fenced_python_block_is_taken_without_the_prose_around_it() -> None:
    text = "Here you go:\n```python\ndef f(x):\n    return x + 1\n```\nThat adds one."
    assert extract_code(text) == "def f(x):\n    return x + 1\n"


def test_the_block_defining_the_entry_point_wins_over_a_later_usage_block() -> None:
    text = "```python\ndef add(a, b):\n    return a + b\n```\nUsage:\n```python\nprint(add(1, 2))\n```"
    assert extract_code(text, "add") == "def add(a, b):\n    return a + b\n"
    assert extract_code(text) == "print(add(1, 2))\n"


def test_blocks_in_other_languages_are_ignored() -> None:
    assert extract_code("```bash\nls -la\n```") is None
    assert extract_code("```bash\nls\n```\n```py\nx = 1\n```") == "x = 1\n"


def test_an_unclosed_fence_runs_to_the_end_of_the_reply() -> None:
    assert extract_code("```python\ndef f():\n    return 2") == "def f():\n    return 2\n"


def test_bare_code_after_a_line_of_prose_is_found() -> None:
    text = "My solution is below.\ndef f(x):\n    return 2 * x"
    assert extract_code(text) == "def f(x):\n    return 2 * x\n"


def test_an_indented_body_counts_as_code() -> None:
    code = extract_code("    return sorted(values)\n")
    assert code is not None and is_function_body(code)


def test_prose_and_lone_names_are_not_code() -> None:
    assert extract_code("I think the answer is to sort the list.") is None
    assert extract_code("hello") is None
    assert extract_code("") is None


def test_hostile_replies_are_read_in_linear_time() -> None:
    # Each took 10-25 s when every code-like line, fence or blank line was rescanned to the end of the reply.
    started = time.perf_counter()
    assert extract_code("import (\n" * 32_000) is None
    assert extract_code("```" * 40_000) is None
    assert extract_code("```python\ndef f():\n    return 1" + "\n" * 40_000, "f") == "def f():\n    return 1\n"
    assert time.perf_counter() - started < 5


def test_bare_code_after_many_failing_code_lines_is_still_found_in_a_normal_reply() -> None:
    broken = "".join(f"import ({index}\n" for index in range(50))
    assert extract_code(broken + "def f(x):\n    return x") == "def f(x):\n    return x\n"


def test_bare_code_followed_by_prose_is_found() -> None:
    code = "def add_one(x):\n    return x + 1\n"
    assert extract_code("Sure:\n" + code + "Let me know if you need more!") == code
    assert extract_code(code + "\nThis adds one.\nHope it helps.") == code


def test_a_sample_output_in_a_plain_fence_after_the_program_is_not_taken_for_it() -> None:
    program = "print(int(input()) + 1)\n"
    assert extract_code(f"```python\n{program}```\nFor input 2 it prints:\n```\n3\n```") == program
    assert extract_code(f"```\n{program}```\nOutput:\n```\n3\n```") == program  # untagged: the block that is code
    assert extract_code("```\ndef f(:\n```") == "def f(:\n"  # (a broken untagged block is still the code)


def test_hostile_bare_code_with_prose_at_the_end_stays_linear() -> None:
    started = time.perf_counter()
    assert extract_code("def f(:\n" * 20_000 + "prose\n" * 20) is None
    assert time.perf_counter() - started < 5


def test_the_block_defining_the_entry_point_wins_tagged_or_not() -> None:
    untagged_solution = "```\ndef add(a, b):\n    return a + b\n```\nUsage:\n```python\nprint(add(1, 2))\n```"
    assert extract_code(untagged_solution, "add") == "def add(a, b):\n    return a + b\n"
    both = "```python\ndef add(a, b):\n    return a + b\n```\n```\ndef add(a, b):\n    return 0\n```"
    assert extract_code(both, "add") == "def add(a, b):\n    return a + b\n"  # (a tagged one first)


def test_a_fence_indented_inside_a_list_item_loses_its_indentation_as_in_commonmark() -> None:
    text = "Steps:\n\n1. Define the function:\n\n   ```python\n   def add(a, b):\n       return a + b\n   ```\n"
    assert extract_code(text, "add") == "def add(a, b):\n    return a + b\n"
    body = "Complete it:\n\n  ```python\n      return a + b\n  ```\n"  # (a body stays a body, two spaces less)
    assert extract_code(body) == "    return a + b\n"
    flush = "1. The code:\n\n   ```python\ndef add(a, b):\n  if a:\n    return a + b\n  return b\n   ```\n"
    assert extract_code(flush, "add") == "def add(a, b):\n  if a:\n    return a + b\n  return b\n"  # (its own)


def test_a_tilde_fence_is_a_fence() -> None:
    assert extract_code("~~~python\ndef add(a, b):\n    return a + b\n~~~\nDone.", "add") == (
        "def add(a, b):\n    return a + b\n"
    )
    assert extract_code("~~~python\ns = '```'\n~~~\n") == "s = '```'\n"
