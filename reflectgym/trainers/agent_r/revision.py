"""Agent-R's training data from a search tree: good/bad path pairs, the first error as the actor judges it, and
revision conversations spliced at it (TRAINERS.md §1).

Paths run from the root to a terminal node and are scored by that node's mean value. A pair (good, bad) is kept
when score(good) > α and score(good) − score(bad) > β; every path scoring above α is also good data on its own. A
tree whose root value is 0 (nothing solved) gives nothing. The revision conversation is the task, the bad path up
to and including its first error (replies learnt from: no), one reply "Thought: <a revision thought>\\nAction:
wait" (learnt), the env's "ok.", then the good path from the first step it does not share with the bad one
(learnt). Environment turns are never learnt from.

Deviations from the paper's code: the actor judges only the bad path's steps from the first one it does not share
with the good path (a shared step is on the good path too, so it cannot be the error; splicing before it would drop
it from the conversation); a judge's reply with no readable `Judgement:` line counts as Uncertain, where the
official code counts it as Bad (so a model that cannot judge yet gives direct revisions, not splices at its first
step); and each step is judged once per tree, however many pairs share it (greedy judging gives the same answer).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from reflectgym.agents.chat import ChatFormat, TokenLedger
from reflectgym.agents.policy import Generation, Message, Policy, Sampling
from reflectgym.core.env import WAIT_REPLY
from reflectgym.trainers.agent_r.tree import Node
from reflectgym.trainers.batching import TrainingSequence

REVISION_THOUGHTS = (
    "I realize my approach was flawed. I need to revise it.",
    "I took the wrong actions. I need to identify the right path.",
    "My actions were incorrect. I must adjust my strategy.",
    "I see an error in my actions. I need to fix it.",
    "My judgment was incorrect. I need to rethink it.",
    "I overlooked something important. I need to address it.",
    "I recognize a mistake. Let me correct it.",
    "I misjudged the situation. Time to reassess.",
    "My decision was wrong. I should reevaluate.",
    "I made an error. I must change my approach.",
)
"""Short revision thoughts of the kind the paper uses; one is drawn per revision conversation."""

JUDGE_PROMPT = (
    "You are checking an agent's actions on a task, one step at a time.\n\n"
    "Task:\n{task}\n\nWhat happened so far:\n{history}\n\nCurrent action:\n{action}\n\nWhat the environment "
    "answered:\n{observation}\n\nWas the current action a good step towards solving the task? Give your reasons, "
    "then end with one line `Judgement: <Good|Bad|Uncertain>`."
)

_JUDGEMENT = re.compile(r"judge?ment\s*[:：]\s*\**\s*(good|bad|uncertain)", re.IGNORECASE)


@dataclass(frozen=True)
class ScoredPath:
    """A root-to-terminal path: its nodes (the root's child first) and its leaf's mean value."""

    nodes: tuple[Node, ...]
    score: float


@dataclass(frozen=True)
class LearnMessage:
    """A chat message and whether its tokens are learnt from."""

    role: str
    content: str
    learn: bool = False


def terminal_paths(root: Node) -> list[ScoredPath]:
    """Every path from the root to a terminal leaf (where an episode ended, or the depth limit), scored by the
    leaf's mean value (its score: a terminal leaf is backed up once, when it is made)."""
    return [
        ScoredPath(tuple(node.path()), node.mean_value)
        for node in root.walk()
        if node.terminal and not node.children and node.parent is not None
    ]


def select_pairs(root: Node, alpha: float, beta: float) -> tuple[list[tuple[ScoredPath, ScoredPath]], list[ScoredPath]]:
    """The (good, bad) pairs with score(good) > alpha and score(good) − score(bad) > beta, and the good paths
    (score > alpha); nothing for a tree whose root value is not above 0."""
    if root.value <= 0:
        return [], []
    paths = terminal_paths(root)
    good = [path for path in paths if path.score > alpha]
    pairs = [(g, b) for g in good for b in paths if g.score - b.score > beta]
    return pairs, good


def shared_steps(good: ScoredPath, bad: ScoredPath) -> int:
    """How many leading nodes the two paths share."""
    count = 0
    for a, b in zip(good.nodes, bad.nodes, strict=False):
        if a is not b:
            break
        count += 1
    return count


def parse_judgement(text: str) -> str:
    """ "good", "bad" or "uncertain" from a judge's reply: its last `Judgement:` line (none: uncertain)."""
    found = _JUDGEMENT.findall(text)
    return found[-1].lower() if found else "uncertain"


def first_error(
    policy: Policy,
    task: str,
    bad: ScoredPath,
    start: int,
    sampling: Sampling,
    verdicts: dict[int, str] | None = None,
) -> int:
    """The index of the bad path's first step the actor judges Bad, from `start` on; its last step if none is.
    `verdicts` keeps each node's judgement (by `id`) across the paths of one tree: a step's prompt depends only on
    the path to it, so paths that share it share its judgement."""
    verdicts = {} if verdicts is None else verdicts
    history = [_logged(node) for node in bad.nodes[:start]]
    for index in range(start, len(bad.nodes)):
        node = bad.nodes[index]
        if id(node) not in verdicts:
            prompt = JUDGE_PROMPT.format(
                task=task,
                history="\n\n".join(history) or "(nothing yet)",
                action=node.response,
                observation=node.observation,
            )
            [reply] = policy.generate([[{"role": "user", "content": prompt}]], sampling)
            verdicts[id(node)] = parse_judgement(reply.text)
        if verdicts[id(node)] == "bad":
            return index
        history.append(_logged(node))
    return len(bad.nodes) - 1


def _logged(node: Node) -> str:
    """A step as the judge's log shows it."""
    return f"Action: {node.response}\nObservation: {node.observation}"


def splice(
    opening: Sequence[Message], good: ScoredPath, bad: ScoredPath, transition: int, thought: str
) -> list[LearnMessage]:
    """The revision conversation: `opening` (system prompt and task), the bad path through step `transition`
    (not learnt), the revision turn (learnt), "ok.", then the good path after the steps it shares with the bad
    one (replies learnt)."""
    shared = shared_steps(good, bad)
    if transition < shared - 1:
        raise ValueError(f"the transition ({transition}) lies inside the {shared} steps both paths share")
    messages = [LearnMessage(m["role"], m["content"]) for m in opening]
    for node in bad.nodes[: transition + 1]:
        messages += [LearnMessage("assistant", node.response), LearnMessage("user", node.observation)]
    messages += [LearnMessage("assistant", f"Thought: {thought}\nAction: wait", learn=True)]
    messages += [LearnMessage("user", WAIT_REPLY)]
    for node in good.nodes[shared:]:
        messages += [LearnMessage("assistant", node.response, learn=True), LearnMessage("user", node.observation)]
    return _ending_with_a_reply(messages)


def good_conversation(opening: Sequence[Message], good: ScoredPath) -> list[LearnMessage]:
    """A good path on its own: the task, then its replies (learnt) and the env's answers."""
    messages = [LearnMessage(m["role"], m["content"]) for m in opening]
    for node in good.nodes:
        messages += [LearnMessage("assistant", node.response, learn=True), LearnMessage("user", node.observation)]
    return _ending_with_a_reply(messages)


def _ending_with_a_reply(messages: list[LearnMessage]) -> list[LearnMessage]:
    """Drops the env's answer after the last reply: nothing is learnt after it."""
    while messages and messages[-1].role != "assistant":
        messages.pop()
    return messages


def revision_data(
    policy: Policy,
    root: Node,
    opening: Sequence[Message],
    *,
    alpha: float,
    beta: float,
    rng: np.random.Generator,
    direct_revision: bool = False,
    judge_sampling: Sampling | None = None,
    thoughts: Sequence[str] = REVISION_THOUGHTS,
) -> tuple[list[list[LearnMessage]], list[list[LearnMessage]]]:
    """One tree's revision conversations (one per pair) and good conversations (one per good path).

    Args:
        policy: The actor, which judges the bad paths' steps (not used with `direct_revision`).
        root: The searched tree.
        opening: The conversation's start: the system prompt (if any) and the task's first observation.
        alpha, beta: The pair filter.
        rng: Draws the revision thoughts.
        direct_revision: Splice at the end of the bad path without judging (the paper's baseline).
        judge_sampling: Sampling of the judge's replies (default: greedy, 512 tokens).
        thoughts: The revision thoughts to draw from.
    """
    pairs, good = select_pairs(root, alpha, beta)
    sampling = judge_sampling or Sampling(temperature=0.0, max_new_tokens=512)
    task = opening[-1]["content"]
    verdicts: dict[int, str] = {}
    revisions = []
    for good_path, bad_path in pairs:
        shared = shared_steps(good_path, bad_path)
        if direct_revision:
            transition = len(bad_path.nodes) - 1
        else:
            transition = first_error(policy, task, bad_path, shared, sampling, verdicts)
        thought = thoughts[int(rng.integers(len(thoughts)))]
        revisions.append(splice(opening, good_path, bad_path, max(transition, shared - 1), thought))
    return revisions, [good_conversation(opening, path) for path in good]


def training_sequence(chat: ChatFormat, messages: Sequence[LearnMessage], stop_id: int) -> TrainingSequence:
    """Token ids and loss mask of a conversation: loss on the learnt replies' tokens and their stop token only."""
    first_reply = next(i for i, m in enumerate(messages) if m.role == "assistant")
    ledger = TokenLedger(chat, [{"role": m.role, "content": m.content} for m in messages[:first_reply]])
    for message in messages[first_reply:]:
        if message.role == "assistant":
            ids = (*chat.encode(message.content), stop_id)
            ledger.add_reply(Generation(message.content, ids, None, "stop"), learn=message.learn)
        else:
            ledger.add_observation(message.content)
    return TrainingSequence.from_record(ledger.record())
