"""Agents: scripted agents (oracle, random, replay) and evaluation. Agents reach envs only through Gymnasium."""

from reflectgym.agents.evaluation import EvalSummary, evaluate, format_table, run_episode
from reflectgym.agents.scripted import OracleAgent, RandomAgent, ReplayAgent, ScriptedAgent, scripted_agent

__all__ = [
    "EvalSummary",
    "OracleAgent",
    "RandomAgent",
    "ReplayAgent",
    "ScriptedAgent",
    "evaluate",
    "format_table",
    "run_episode",
    "scripted_agent",
]
