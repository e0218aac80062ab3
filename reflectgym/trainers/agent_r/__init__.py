"""Agent-R (Yuan et al., 2025): reflection learnt from the actor's own search trees, by splicing a revision into
a failed path at its first error (TRAINERS.md §1). `tree` searches a task with the actor; `revision` turns a tree
into revision and good conversations with their loss masks."""

from reflectgym.trainers.agent_r.revision import (
    REVISION_THOUGHTS,
    LearnMessage,
    ScoredPath,
    first_error,
    parse_judgement,
    revision_data,
    select_pairs,
    splice,
    terminal_paths,
    training_sequence,
)
from reflectgym.trainers.agent_r.tree import Node, SearchConfig, TreeSearch, back_up, choose_child

__all__ = [
    "REVISION_THOUGHTS",
    "LearnMessage",
    "Node",
    "ScoredPath",
    "SearchConfig",
    "TreeSearch",
    "back_up",
    "choose_child",
    "first_error",
    "parse_judgement",
    "revision_data",
    "select_pairs",
    "splice",
    "terminal_paths",
    "training_sequence",
]
