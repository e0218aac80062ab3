"""Agent-R's tree search and revision data, against the properties TRAINERS.md §1 lists: the search's statistics
(values, visits, terminal nodes), unvisited children first, deduplicated replies, snapshots that restore their
observation; pairs that satisfy the α/β filter; the splice's order and loss masks; no Bad judgement giving the
direct revision."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from support.toy_envs import CounterEnv

from reflectgym.agents.chat import ChatFormat
from reflectgym.agents.policy import Generation, Sampling
from reflectgym.agents.tiny import build_tokenizer
from reflectgym.trainers.agent_r import (
    LearnMessage,
    Node,
    ScoredPath,
    SearchConfig,
    TreeSearch,
    back_up,
    choose_child,
    first_error,
    parse_judgement,
    revision_data,
    select_pairs,
    splice,
    terminal_paths,
    training_sequence,
)

OPENING = [{"role": "system", "content": "Play."}, {"role": "user", "content": "Total 0; reach 5."}]


class RandomAdder:
    """Says "add 1", "add 2" or "add 3" at random, from each request's own seed."""

    name = "random-adder"

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        seeds = [sampling.request_seed(position) for position in range(len(conversations))]
        return [Generation(f"add {np.random.default_rng(seed).integers(1, 4)}") for seed in seeds]


class Parrot:
    """Always says the same thing."""

    name = "parrot"

    def __init__(self, text: str) -> None:
        self.text = text
        self.prompts: list[str] = []

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        self.prompts += [conversation[-1]["content"] for conversation in conversations]
        return [Generation(self.text) for _ in conversations]


class Judge:
    """Judges an action Bad when it is `bad_action`, else Good; counts its calls."""

    name = "judge"

    def __init__(self, bad_action: str | None) -> None:
        self.bad_action = bad_action
        self.calls = 0

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        self.calls += len(conversations)
        prompt = conversations[0][-1]["content"]
        current = prompt.split("Current action:\n", 1)[1].split("\n", 1)[0]
        verdict = "Bad" if current == self.bad_action else "Good"
        return [Generation(f"Reasons...\nJudgement: {verdict}")]


def searched(policy: Any = None, *, walks: int = 40, target: int = 6, seed: int = 1) -> tuple[TreeSearch, Node]:
    config = SearchConfig(branching=3, max_depth=4, walks=walks)
    search = TreeSearch(policy or RandomAdder(), CounterEnv, "Play.", config, seed=seed)
    return search, search.search(7, {"target": target})


class SlowCounterEnv(CounterEnv):
    """A counter whose step hangs on the task with target 9 once the total passes 4 (a verifier stuck there)."""

    def _apply(self, action: int) -> Any:
        if self.target == 9 and self.total + action > 4:
            time.sleep(5)
        return super()._apply(action)


def test_an_env_call_past_the_timeout_stops_that_tasks_search_and_not_more() -> None:
    config = SearchConfig(branching=3, max_depth=4, walks=40)
    search = TreeSearch(RandomAdder(), SlowCounterEnv, "Play.", config, seed=1, env_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"took over 0\.3 s"):
        search.search(7, {"target": 9})
    assert time.monotonic() - started < 3, "the stuck step was abandoned, not waited for"
    assert search.search(7, {"target": 3}).children, "the next task searches on a fresh env"


def test_every_node_holds_the_sum_and_count_of_its_terminal_descendants() -> None:
    _, root = searched()
    nodes = list(root.walk())
    assert len(nodes) > 10 and any(node.terminal and node.score == 1.0 for node in nodes)
    for node in nodes:  # (terminal leaves: a node closed because all its children are backs nothing up itself)
        terminal_below = [n for n in node.walk() if n.terminal and not n.children and n.parent is not None]
        assert node.value == pytest.approx(sum(n.score for n in terminal_below))
        assert node.visits == len(terminal_below)


def test_a_node_is_terminal_when_its_episode_ends_or_every_child_is() -> None:
    _, root = searched(walks=200)
    assert root.terminal  # 200 walks exhaust this small tree
    for node in root.walk():
        if node.children:
            assert node.terminal == all(child.terminal for child in node.children)
        elif node.parent is not None:
            assert node.terminal == (node.ended or node.disaster or node.depth > 4)


def test_replies_are_deduplicated_per_expansion() -> None:
    _, root = searched(Parrot("add 1"), walks=10)
    assert all(len(node.children) <= 1 for node in root.walk())
    _, root = searched(walks=40)
    for node in root.walk():
        texts = [child.response.strip() for child in node.children]
        assert len(texts) == len(set(texts))


def test_restoring_a_nodes_snapshot_gives_back_its_observation() -> None:
    _, root = searched()
    env = CounterEnv()
    env.reset(seed=0)
    for node in root.walk():
        assert env.restore(node.snapshot) == node.observation
        for child in node.children:  # and the env goes on from there as it did in the search
            env.restore(node.snapshot)
            assert env.step(child.response)[0] == child.observation


def test_the_conversation_to_a_node_is_the_path_of_replies_and_answers() -> None:
    search, root = searched()
    leaf = next(node for node in root.walk() if node.depth == 2)
    messages = search.conversation(leaf)
    assert messages[:2] == [{"role": "system", "content": "Play."}, {"role": "user", "content": root.observation}]
    assert [m["content"] for m in messages[2:]] == [
        text for node in leaf.path() for text in (node.response, node.observation)
    ]


def test_a_walk_expands_every_node_on_its_way_down_to_a_terminal_one() -> None:
    _, root = searched(walks=1, target=12)  # max_depth 4: one walk reaches depth 5
    assert max(node.depth for node in root.walk()) == 5 and root.visits >= 1


def test_a_node_whose_samples_all_failed_stays_open_and_no_path_ends_there() -> None:
    class FailsAtDepthOne(RandomAdder):
        def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
            if len(conversations[0]) > 2:  # past the opening: the server fails
                return [Generation("", finish_reason="error", error="down") for _ in conversations]
            return super().generate(conversations, sampling)

    _, root = searched(FailsAtDepthOne(), walks=5)
    assert root.children and not any(child.children or child.terminal for child in root.children)
    assert terminal_paths(root) == [] and not root.terminal


def test_unvisited_open_children_come_first_then_the_upper_confidence_bound() -> None:
    parent = Node(snapshot=None, observation="", visits=5, value=2.0)
    strong = Node(snapshot=None, observation="", parent=parent, visits=4, value=4.0)
    fresh = Node(snapshot=None, observation="", parent=parent)
    closed = Node(snapshot=None, observation="", parent=parent, terminal=True)
    parent.children = [strong, fresh, closed]
    rng = np.random.default_rng(0)
    assert all(choose_child(parent, 0.25, rng) is fresh for _ in range(20))
    fresh.visits, fresh.value = 1, 0.0  # now Q/N + c·sqrt(ln 5 / N): 1 + 0.16 against 0 + 0.32
    assert choose_child(parent, 0.25, rng) is strong
    assert choose_child(parent, 10.0, rng) is fresh  # more exploration favours the less visited one
    strong.terminal = fresh.terminal = True
    assert choose_child(parent, 0.25, rng) is None


def test_back_up_adds_a_visit_and_the_score_up_to_the_root() -> None:
    root = Node(snapshot=None, observation="")
    child = Node(snapshot=None, observation="", parent=root)
    leaf = Node(snapshot=None, observation="", parent=child)
    back_up(leaf, 1.0)
    back_up(child, 0.0)
    assert [(n.visits, n.value) for n in (root, child, leaf)] == [(2, 1.0), (2, 1.0), (1, 1.0)]


@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.2), (0.0, 0.0), (0.9, 0.5)])
def test_every_pair_satisfies_the_alpha_beta_filter(alpha: float, beta: float) -> None:
    _, root = searched(walks=60)
    pairs, good = select_pairs(root, alpha, beta)
    paths = terminal_paths(root)
    assert all(path.nodes[-1].terminal and not path.nodes[-1].children for path in paths)
    assert pairs and all(g.score > alpha and g.score - b.score > beta for g, b in pairs)

    def key(path: ScoredPath) -> tuple[int, ...]:
        return tuple(id(node) for node in path.nodes)

    expected = {(key(g), key(b)) for g in paths for b in paths if g.score > alpha and g.score - b.score > beta}
    assert {(key(g), key(b)) for g, b in pairs} == expected
    assert {key(path) for path in good} == {key(path) for path in paths if path.score > alpha}


def test_a_tree_that_solved_nothing_gives_no_data() -> None:
    _, root = searched(Parrot("add 3"), target=5)  # 3, then 6: it overshoots every time
    assert root.value == 0 and terminal_paths(root)
    assert select_pairs(root, 0.0, 0.0) == ([], [])


def chain(parent: Node, *responses: str, reward: float = 0.0) -> list[Node]:
    nodes = []
    for response in responses:
        parent = Node(snapshot=None, observation=f"after {response}", response=response, parent=parent)
        parent.reward = reward
        parent.depth = len(nodes) + 1
        nodes.append(parent)
    return nodes


def paths() -> tuple[ScoredPath, ScoredPath]:
    root = Node(snapshot=None, observation="Total 0; reach 5.")
    [shared] = chain(root, "add 2")
    bad = [shared, *chain(shared, "add 1", "add 3")]
    good = [shared, *chain(shared, "add 3")]
    return ScoredPath(tuple(good), 1.0), ScoredPath(tuple(bad), 0.0)


def test_the_splice_has_the_bad_prefix_unlearnt_then_the_revision_then_the_good_rest_learnt() -> None:
    good, bad = paths()
    messages = splice(OPENING, good, bad, transition=1, thought="I was wrong.")
    assert messages == [
        LearnMessage("system", "Play."),
        LearnMessage("user", "Total 0; reach 5."),
        LearnMessage("assistant", "add 2"),  # the shared step, once
        LearnMessage("user", "after add 2"),
        LearnMessage("assistant", "add 1"),  # the first error
        LearnMessage("user", "after add 1"),
        LearnMessage("assistant", "Thought: I was wrong.\nAction: wait", learn=True),
        LearnMessage("user", "ok."),
        LearnMessage("assistant", "add 3", learn=True),  # the good path after the shared step
    ]
    with pytest.raises(ValueError, match="inside the 1 steps both paths share"):
        splice(OPENING, good, bad, transition=-1, thought="")


def test_the_judge_names_the_first_bad_step_from_the_first_unshared_one() -> None:
    _, bad = paths()
    judge = Judge(bad_action="add 3")
    assert first_error(judge, "reach 5", bad, 1, Sampling()) == 2 and judge.calls == 2
    judge = Judge(bad_action="add 1")
    assert first_error(judge, "reach 5", bad, 1, Sampling()) == 1 and judge.calls == 1  # it stops there
    assert first_error(Judge(bad_action=None), "reach 5", bad, 1, Sampling()) == 2  # never Bad: the last step


def test_each_step_is_judged_once_per_tree_however_many_pairs_share_it() -> None:
    _, root = searched(walks=60)
    judge = Judge(bad_action="add 3")
    revisions, _ = revision_data(judge, root, OPENING, alpha=0.5, beta=0.2, rng=np.random.default_rng(0))
    distinct = {id(node) for _, bad in select_pairs(root, 0.5, 0.2)[0] for node in bad.nodes}
    assert len(revisions) > judge.calls and judge.calls <= len(distinct)


def test_with_no_bad_judgement_the_data_is_the_direct_revision() -> None:
    _, root = searched(walks=60)
    judged = revision_data(Judge(None), root, OPENING, alpha=0.5, beta=0.2, rng=np.random.default_rng(3))
    direct = revision_data(Parrot("unused"), root, OPENING, alpha=0.5, beta=0.2, rng=np.random.default_rng(3),
                           direct_revision=True)  # fmt: skip
    assert judged == direct and judged[0] and judged[1]
    for conversation in judged[0]:
        assert any(m.content.startswith("Thought: ") and m.content.endswith("\nAction: wait") for m in conversation)
        assert conversation[-1].role == "assistant" and conversation[-1].learn


@pytest.mark.parametrize(
    ("reply", "judgement"),
    [
        ("Looks fine.\nJudgement: Good", "good"),
        ("judgment: **Bad**", "bad"),
        ("Judgement: Good ... on second thought\nJudgement: Uncertain", "uncertain"),
        ("no verdict at all", "uncertain"),
    ],
)
def test_a_judges_reply_reads_as_its_last_judgement(reply: str, judgement: str) -> None:
    assert parse_judgement(reply) == judgement


def test_only_the_learnt_replies_and_their_stop_tokens_carry_loss() -> None:
    tokenizer = build_tokenizer()
    chat = ChatFormat(tokenizer)
    good, bad = paths()
    messages = splice(OPENING, good, bad, transition=1, thought="I was wrong.")
    sequence = training_sequence(chat, messages, int(tokenizer.eos_token_id))
    learnt = [token for token, mask in zip(sequence.input_ids, sequence.loss_mask, strict=True) if mask]
    stop = int(tokenizer.eos_token_id)
    expected = [*chat.encode("Thought: I was wrong.\nAction: wait"), stop, *chat.encode("add 3"), stop]
    assert learnt == expected
    assert tokenizer.decode(sequence.input_ids).count("assistant\nadd 2") == 1  # the shared step, once


# ------------------------------------------------------------------------------ the trainer, on a tiny model
torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'reflectgym[train]')")

import gymnasium as gym  # noqa: E402

from reflectgym.agents.hf_policy import HFPolicy  # noqa: E402
from reflectgym.agents.tiny import TinyModelConfig, build_tiny_model  # noqa: E402
from reflectgym.trainers.agent_r.trainer import AgentRConfig, AgentRTrainer, read_conversations  # noqa: E402
from reflectgym.trainers.config import ConfigError  # noqa: E402
from reflectgym.trainers.registry import trainer_spec  # noqa: E402

COUNTER_ID = "reflectgym-test/AgentRCounter-v0"
gym.register(COUNTER_ID, entry_point=CounterEnv, kwargs={"max_steps": 6, "wait_action": True})


class CountingAdder(RandomAdder):
    """`RandomAdder` that counts its calls (searches and judgements) and judges every step Good."""

    def __init__(self) -> None:
        self.calls = 0

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        self.calls += 1
        if "Judgement:" in conversations[0][-1]["content"]:
            return [Generation("Judgement: Good") for _ in conversations]
        return super().generate(conversations, sampling)


def agent_r_config(run_dir: Any, **changes: Any) -> AgentRConfig:
    values = dict(
        env_id=COUNTER_ID, env_kwargs={}, output_dir=str(run_dir), steps=4, steps_per_iteration=2,
        tasks_per_iteration=2, batch_size=4, branching=3, max_depth=4, walks=20, lr=3e-3, save_every=1,
        progress=False, device="cpu", first_seed=1,
    )  # fmt: skip
    return AgentRConfig(**{**values, **changes})


def test_each_iteration_searches_writes_its_data_and_learns_it(tmp_path: Any) -> None:
    model_dir = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=0))
    actor = CountingAdder()
    trainer = AgentRTrainer(agent_r_config(tmp_path / "run"), HFPolicy.from_pretrained(model_dir), actor)
    history = trainer.train()
    assert [h["iteration"] for h in history] == [0.0, 0.0, 1.0, 1.0]
    assert history[0]["searched_tasks"] == 2 and history[0]["sequences"] > 0 and "loss" in history[1]
    assert history[1]["loss"] < history[0]["loss"]  # the same data again: learnt
    conversations = read_conversations(tmp_path / "run" / "agent_r" / "iteration-0.jsonl")
    assert len(conversations) == history[0]["sequences"]
    assert any("Action: wait" in m.content and m.learn for c in conversations for m in c)
    assert (tmp_path / "run" / "agent_r" / "iteration-1.jsonl").is_file()
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_a_resumed_run_reads_its_iterations_data_back_and_matches_an_uninterrupted_run(tmp_path: Any) -> None:
    model_dir = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=0))
    whole = AgentRTrainer(agent_r_config(tmp_path / "whole"), HFPolicy.from_pretrained(model_dir), CountingAdder())
    whole.train()
    first = AgentRTrainer(
        agent_r_config(tmp_path / "cut", steps=3), HFPolicy.from_pretrained(model_dir), CountingAdder()
    )
    first.train()  # stops inside iteration 1, after its data was written
    actor = CountingAdder()
    resumed = AgentRTrainer(agent_r_config(tmp_path / "cut", resume=True), HFPolicy.from_pretrained(model_dir), actor)
    history = resumed.train()
    assert [h["step"] for h in history] == [4.0] and actor.calls == 0  # iteration 1's data was read back
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_fresh_run_never_trains_on_data_an_earlier_run_left(tmp_path: Any) -> None:
    model_dir = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=0))
    AgentRTrainer(
        agent_r_config(tmp_path / "run", steps=1), HFPolicy.from_pretrained(model_dir), CountingAdder()
    ).train()
    actor = Parrot("add 3")  # solves nothing: a fresh run with it has nothing to learn
    again = AgentRTrainer(
        agent_r_config(tmp_path / "run", steps=1, overwrite_output_dir=True), HFPolicy.from_pretrained(model_dir), actor
    )
    [metrics] = again.train()
    assert metrics["searched_tasks"] == 2 and metrics["sequences"] == 0
    assert read_conversations(tmp_path / "run" / "agent_r" / "iteration-0.jsonl") == []


def test_a_task_whose_search_fails_is_left_out_with_a_warning(tmp_path: Any) -> None:
    class BrokenOnSeed2(CountingAdder):
        def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
            if "reach" in conversations[0][1]["content"] and self.failing:
                raise ConnectionError("server gone")
            return super().generate(conversations, sampling)

    model_dir = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=0))
    actor = BrokenOnSeed2()
    actor.failing = True
    trainer = AgentRTrainer(agent_r_config(tmp_path / "run", steps=1), HFPolicy.from_pretrained(model_dir), actor)
    with pytest.warns(UserWarning, match="left out: ConnectionError"):
        [metrics] = trainer.train()
    assert metrics["tasks_failed"] == 2 and metrics["sequences"] == 0


def test_an_env_that_would_not_take_the_revision_turn_is_refused(tmp_path: Any) -> None:
    model_dir = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=0))
    config = agent_r_config(tmp_path / "run", env_kwargs={"wait_action": False})
    with pytest.raises(ConfigError, match="wait_action: true"):
        AgentRTrainer(config, HFPolicy.from_pretrained(model_dir), CountingAdder())


def test_each_iteration_searches_with_fresh_samples(tmp_path: Any) -> None:
    model_dir = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=0))
    AgentRTrainer(agent_r_config(tmp_path / "run"), HFPolicy.from_pretrained(model_dir), CountingAdder()).train()
    folder = tmp_path / "run" / "agent_r"

    def replies(path: Any) -> list[list[str]]:
        return [
            [m.content for m in c if m.role == "assistant" and "wait" not in m.content]
            for c in read_conversations(path)
        ]

    assert replies(folder / "iteration-0.jsonl") != replies(folder / "iteration-1.jsonl")


def test_agent_r_is_a_registered_trainer_and_its_config_is_checked() -> None:
    assert trainer_spec("agent_r").config is AgentRConfig
    for bad in ({"steps_per_iteration": 0}, {"branching": 0}, {"beta": -0.1}, {"exploration": -1.0}):
        with pytest.raises(ConfigError):
            AgentRConfig(**bad)


def test_by_default_the_model_being_trained_searches_and_a_tree_with_nothing_solved_teaches_nothing(
    tmp_path: Any,
) -> None:
    model_dir = build_tiny_model(tmp_path / "model", TinyModelConfig(seed=0))
    config = agent_r_config(tmp_path / "run", steps=1, tasks_per_iteration=1, walks=3, max_new_tokens=4)
    trainer = AgentRTrainer(config, HFPolicy.from_pretrained(model_dir))
    [metrics] = trainer.train()  # an untrained model's replies are not actions: every branch is a disaster
    assert metrics["searched_tasks"] == 1 and metrics["sequences"] == 0 and "loss" not in metrics
