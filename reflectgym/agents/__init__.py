"""Agents: the `Policy` protocol and its backends (transformers, vLLM, OpenAI-compatible, scripted), token-exact
multi-turn bookkeeping, the rollout engine, evaluation and reports. Agents reach envs only through Gymnasium.

Backends that need torch, transformers or vLLM are imported from their modules (`reflectgym.agents.hf_policy`,
`...vllm_policy`), so `import reflectgym.agents` stays light.
"""

from reflectgym.agents.chat import ChatFormat, TokenLedger, TokenRecord
from reflectgym.agents.evaluation import (
    EvalSummary,
    evaluate,
    evaluate_policy,
    evaluate_rollouts,
    format_table,
    run_episode,
    summarize,
    wilson_interval,
)
from reflectgym.agents.openai_policy import OpenAIConfig, OpenAIPolicy
from reflectgym.agents.policy import Conversation, Generation, Message, Policy, Sampling, TokenPolicy
from reflectgym.agents.prompts import system_prompt
from reflectgym.agents.report import load_run, render_report, write_report
from reflectgym.agents.rollout import RolloutConfig, RolloutEngine, Rollouts
from reflectgym.agents.scripted import OracleAgent, RandomAgent, ReplayAgent, ScriptedAgent, scripted_agent
from reflectgym.agents.specs import make_policy

__all__ = [
    "ChatFormat",
    "Conversation",
    "EvalSummary",
    "Generation",
    "Message",
    "OpenAIConfig",
    "OpenAIPolicy",
    "OracleAgent",
    "Policy",
    "RandomAgent",
    "ReplayAgent",
    "RolloutConfig",
    "RolloutEngine",
    "Rollouts",
    "Sampling",
    "ScriptedAgent",
    "TokenLedger",
    "TokenPolicy",
    "TokenRecord",
    "evaluate",
    "evaluate_policy",
    "evaluate_rollouts",
    "format_table",
    "load_run",
    "make_policy",
    "render_report",
    "run_episode",
    "scripted_agent",
    "summarize",
    "system_prompt",
    "wilson_interval",
    "write_report",
]
