"""Sokoban: XSB/Boxoban levels, a fast solvable-level generator, deadlock detection, a push-optimal solver and
the `SokobanEnv` text environment (imported lazily by the registry from `reflectgym.envs.sokoban.env`)."""

from reflectgym.envs.sokoban.level import Level, LevelFormatError, format_levels, load_levels, parse_level, parse_levels
from reflectgym.envs.sokoban.solver import SokobanSolver, Solution

__all__ = [
    "Level",
    "LevelFormatError",
    "SokobanSolver",
    "Solution",
    "format_levels",
    "load_levels",
    "parse_level",
    "parse_levels",
]
