"""Token-exact multi-turn bookkeeping: trained ids are sampled ids, masks split assistant from environment tokens,
and a chat template that rewrites history (strips earlier <think> blocks) changes nothing the trainer sees."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest

import reflectgym  # noqa: F401  (registers the envs)
from reflectgym.agents import RolloutConfig, RolloutEngine, Sampling, TokenRecord
from reflectgym.agents.chat import ChatFormat, TokenLedger
from reflectgym.agents.policy import Generation
from reflectgym.core.trajectory import read_trajectories, write_trajectories

pytest.importorskip("transformers")

from reflectgym.agents.hf_policy import HFPolicy
from reflectgym.agents.tiny import build_tiny_model, build_tokenizer

THINK_STRIPPING = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' and not loop.last %}"
    "{% set content = message['content'].split('</think>')[-1].lstrip() %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
QWEN3_LIKE = (  # Qwen3's rule: a reply after the last user turn gets an empty <think> block, earlier ones none
    "{%- set ns = namespace(last_query=-1) %}"
    "{%- for m in messages %}{%- if m['role'] == 'user' %}{%- set ns.last_query = loop.index0 %}{%- endif %}"
    "{%- endfor %}"
    "{%- for m in messages %}"
    "{%- if m['role'] == 'assistant' %}"
    "{%- set content = m['content'].split('</think>')[-1].lstrip() %}"
    "{%- if loop.index0 > ns.last_query %}"
    "{{ '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' + content + '<|im_end|>\\n' }}"
    "{%- else %}{{ '<|im_start|>assistant\\n' + content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)
ENV = "reflectgym/Sokoban-v0"


class ThinkingPolicy:
    """Replies `<think>...</think> move` as exact ids (stop token included) and remembers every prompt."""

    name = "thinking"

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self.prompts: list[list[int]] = []
        self.replies: list[Generation] = []

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def generate(self, conversations: Sequence[Any], sampling: Sampling) -> list[Generation]:
        raise AssertionError("a token policy must be driven by ids")

    def generate_ids(self, prompts: Sequence[Sequence[int]], sampling: Sampling) -> list[Generation]:
        out = []
        for prompt in prompts:
            turn = len(self.prompts)
            text = f"<think>step {turn}: the box is left of me</think> {('left', 'up', 'right', 'down')[turn % 4]}"
            ids = (*self._tokenizer(text, add_special_tokens=False)["input_ids"], self._tokenizer.eos_token_id)
            reply = Generation(text, tuple(ids), tuple(-0.01 * (i + 1) for i in range(len(ids))), "stop", len(prompt))
            self.prompts.append(list(prompt))
            self.replies.append(reply)
            out.append(reply)
        return out


def check_token_exact(record: TokenRecord, prompts: list[list[int]], replies: list[Generation]) -> None:
    ids = list(record.input_ids)
    for prompt, reply in zip(prompts, replies, strict=True):
        assert reply.token_ids is not None
        assert ids[: len(prompt) + len(reply.token_ids)] == prompt + list(reply.token_ids)
    sampled = [ids[i] for i, mask in enumerate(record.loss_mask) if mask]
    assert sampled == [token for reply in replies for token in (reply.token_ids or ())]
    logprobs = [record.logprobs[i] for i, mask in enumerate(record.loss_mask) if mask]
    assert logprobs == pytest.approx([p for reply in replies for p in (reply.logprobs or ())])
    assert all(record.logprobs[i] == 0.0 for i, mask in enumerate(record.loss_mask) if not mask)
    assert len(record.assistant_spans()) == len(replies)
    assert record.loss_mask[0] == 0


def test_history_rewriting_template_keeps_the_sampled_thinking_tokens() -> None:
    tokenizer = build_tokenizer(THINK_STRIPPING)
    policy = ThinkingPolicy(tokenizer)
    config = RolloutConfig(num_envs=1, max_turns=4, sampling=Sampling(max_new_tokens=64))
    [trajectory] = RolloutEngine(policy, lambda: gym.make(ENV), ENV, config).collect([0])
    record = TokenRecord.from_trajectory(trajectory)
    assert record is not None and len(trajectory.turns) == 4
    check_token_exact(record, policy.prompts, policy.replies)
    text = tokenizer.decode(list(record.input_ids))
    assert text.count("<think>") == 4  # every reply's thinking is in the training sequence
    # The template itself would have dropped the earlier thoughts: re-rendering is not what was sampled.
    messages = [{"role": "system", "content": "s"}]
    for turn in trajectory.turns:
        messages += [{"role": "user", "content": turn.observation}, {"role": "assistant", "content": turn.action}]
    assert tokenizer.apply_chat_template(messages, tokenize=False).count("<think>") == 1
    # Environment tokens are the observations; assistant tokens are exactly the replies.
    spans = record.assistant_spans()
    for (start, end), turn in zip(spans, trajectory.turns, strict=True):
        assert tokenizer.decode(list(record.input_ids[start:end]), skip_special_tokens=True) == turn.action
        assert turn.action_token_ids == record.input_ids[start:end]
    second_observation = trajectory.turns[1].observation
    between = tokenizer.decode(list(record.input_ids[spans[0][1] : spans[1][0]]))
    assert second_observation in between and between.endswith("<|im_start|>assistant\n")
    assert set(record.turns[spans[1][0] : spans[1][1]]) == {1}


def test_template_that_renders_the_last_reply_differently_still_grows_exactly() -> None:
    tokenizer = build_tokenizer(QWEN3_LIKE)
    chat = ChatFormat(tokenizer)
    assert tokenizer.decode(chat.user_turn_ids("obs")) == "<|im_start|>user\nobs<|im_end|>\n<|im_start|>assistant\n"
    policy = ThinkingPolicy(tokenizer)
    config = RolloutConfig(num_envs=1, max_turns=3, sampling=Sampling(max_new_tokens=64))
    [trajectory] = RolloutEngine(policy, lambda: gym.make(ENV), ENV, config).collect([0])
    record = TokenRecord.from_trajectory(trajectory)
    assert record is not None and len(trajectory.turns) == 3
    check_token_exact(record, policy.prompts, policy.replies)
    spans = record.assistant_spans()
    between = tokenizer.decode(list(record.input_ids[spans[0][1] : spans[1][0]]))
    assert between == f"\n<|im_start|>user\n{trajectory.turns[1].observation}<|im_end|>\n<|im_start|>assistant\n"


def test_record_round_trips_through_jsonl(tmp_path: Path) -> None:
    tokenizer = build_tokenizer()
    policy = ThinkingPolicy(tokenizer)
    engine = RolloutEngine(policy, lambda: gym.make(ENV), ENV, RolloutConfig(num_envs=1, max_turns=2))
    [trajectory] = engine.collect([3])
    path = tmp_path / "t.jsonl"
    write_trajectories(path, [trajectory])
    [loaded] = read_trajectories(path)
    assert TokenRecord.from_trajectory(loaded) == TokenRecord.from_trajectory(trajectory)
    assert loaded.turns[0].action_token_ids == trajectory.turns[0].action_token_ids


def test_reply_cut_by_the_token_limit_gets_the_closing_tokens_from_the_template() -> None:
    chat = ChatFormat(build_tokenizer())
    ledger = TokenLedger(chat, [{"role": "user", "content": "hi"}])
    start = len(ledger)
    ledger.add_reply(Generation("ab", (64, 65), (-1.0, -2.0), "length"))
    record = ledger.record()
    assert record.input_ids[start:] == (64, 65, *chat.reply_tail_ids)
    assert record.loss_mask[start:] == (1, 1) + (0,) * len(chat.reply_tail_ids)
    stopped = TokenLedger(chat, [{"role": "user", "content": "hi"}])
    stopped.add_reply(Generation("ab", (64, 65, chat.reply_tail_ids[0]), (-1.0, -2.0, -0.5), "stop"))
    assert stopped.record().input_ids[start:] == (64, 65, *chat.reply_tail_ids)  # the stop token is not doubled


def test_template_without_the_reply_in_history_is_refused() -> None:
    dropping = "{% for m in messages %}{% if m['role'] != 'assistant' %}{{ m['content'] }}{% endif %}{% endfor %}"
    with pytest.raises(ValueError, match="drops the assistant"):
        ChatFormat(build_tokenizer(dropping))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> HFPolicy:
    folder = build_tiny_model(tmp_path_factory.mktemp("tiny"), chat_template=THINK_STRIPPING)
    return HFPolicy.from_pretrained(folder)


def test_real_sampling_keeps_ids_that_do_not_survive_decoding(tiny: HFPolicy) -> None:
    prompts: list[list[int]] = []
    replies: list[Generation] = []
    generate_ids = tiny.generate_ids

    def recording(batch: Sequence[Sequence[int]], sampling: Sampling) -> list[Generation]:
        out = generate_ids(batch, sampling)
        prompts.extend(list(p) for p in batch)
        replies.extend(out)
        return out

    tiny.generate_ids = recording  # type: ignore[method-assign]
    try:
        config = RolloutConfig(num_envs=1, max_turns=3, sampling=Sampling(max_new_tokens=24, seed=0))
        [trajectory] = RolloutEngine(tiny, lambda: gym.make(ENV), ENV, config).collect([1])
    finally:
        del tiny.generate_ids
    record = TokenRecord.from_trajectory(trajectory)
    assert record is not None
    check_token_exact(record, prompts, replies)
    # Random weights sample arbitrary bytes: decoding and re-encoding the text would not give these ids back.
    tokenizer = tiny.tokenizer
    reencoded = [tokenizer(r.text, add_special_tokens=False)["input_ids"] for r in replies]
    assert any(list(r.token_ids or ())[: len(e)] != e for r, e in zip(replies, reencoded, strict=True))


GEMMA_LIKE = (  # Gemma's rule: no system role
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{{ '<start_of_turn>' + message['role'] + '\\n' + message['content'] + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)


def test_a_template_without_a_system_role_gets_the_system_prompt_in_the_first_user_turn() -> None:
    tokenizer = build_tokenizer(GEMMA_LIKE)
    chat = ChatFormat(tokenizer)
    assert not chat.system_role and ChatFormat(build_tokenizer()).system_role
    messages = [{"role": "system", "content": "rules"}, {"role": "user", "content": "board"}]
    assert tokenizer.decode(chat.prompt_ids(messages)) == (
        "<start_of_turn>user\nrules\n\nboard<end_of_turn>\n<start_of_turn>model\n"
    )
    policy = ThinkingPolicy(tokenizer)
    config = RolloutConfig(num_envs=2, max_turns=2, sampling=Sampling(max_new_tokens=64))
    trajectories = RolloutEngine(policy, lambda: gym.make(ENV), ENV, config).collect([0, 1])
    assert all("error" not in t.metadata and len(t.turns) == 2 for t in trajectories)
    assert tokenizer.decode(policy.prompts[0]).startswith("<start_of_turn>user\nYou are")


def test_a_chat_template_error_ends_that_episode_only() -> None:
    picky = THINK_STRIPPING.replace(
        "{% for message in messages %}",
        "{% for message in messages %}{% if 'seed 1' in message['content'] %}{{ raise_exception('no') }}{% endif %}",
    )
    policy = ThinkingPolicy(build_tokenizer(picky))

    class Seeded(gym.Wrapper[Any, Any, Any, Any]):
        def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
            observation, info = self.env.reset(**kwargs)
            return f"seed {kwargs.get('seed')}\n{observation}", info

    config = RolloutConfig(num_envs=3, max_turns=2, sampling=Sampling(max_new_tokens=64))
    trajectories = RolloutEngine(policy, lambda: Seeded(gym.make(ENV)), ENV, config).collect([0, 1, 2])
    assert [t.metadata["stop_reason"] for t in trajectories] == ["turn_limit", "error", "turn_limit"]
    assert "TemplateError: no" in trajectories[1].metadata["error"]
