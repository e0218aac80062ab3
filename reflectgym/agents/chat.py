"""Token-exact multi-turn bookkeeping: the ids a trainer learns from are the ids the policy sampled.

Re-rendering a whole chat through its template every turn silently changes tokens: templates rewrite history
(Qwen3-style templates strip earlier `<think>` blocks), and re-tokenising decoded text does not always give the
sampled ids back. So an episode's context is *grown*, never re-rendered: the first prompt is rendered once; each
reply appends its sampled ids verbatim (loss on); each environment message appends only the template's delta
for one more user turn (loss off), measured once on a fixed dummy chat. The policy always continues exactly
this id sequence, so the training sequence is the sampling context by construction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reflectgym.agents.policy import Generation, Message
from reflectgym.core.trajectory import Trajectory

_PING = "Ping, 42."
_PONG = "Pong, 43."
_RULES = "Rules, 44."


@dataclass(frozen=True)
class TokenRecord:
    """Every token of one episode's conversation as the policy saw it.

    Attributes:
        input_ids: The whole conversation: prompt, then per turn the sampled reply and the environment's answer.
        loss_mask: 1 on tokens the policy sampled (assistant), 0 on prompt, template and environment tokens.
        logprobs: The sampler's log-prob of each sampled token, 0.0 elsewhere.
        turns: The turn each token belongs to: the first prompt and the reply of turn 0 are turn 0; the
            environment's answer to turn t and the reply to it are turn t + 1.
    """

    input_ids: tuple[int, ...]
    loss_mask: tuple[int, ...]
    logprobs: tuple[float, ...]
    turns: tuple[int, ...]

    def __post_init__(self) -> None:
        lengths = {len(self.input_ids), len(self.loss_mask), len(self.logprobs), len(self.turns)}
        if len(lengths) != 1:
            raise ValueError(f"token record fields must align; got lengths {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.input_ids)

    def roles(self) -> list[str]:
        """`"assistant"` for sampled tokens, `"environment"` for everything else, per token."""
        return ["assistant" if mask else "environment" for mask in self.loss_mask]

    def assistant_spans(self) -> list[tuple[int, int]]:
        """`(start, end)` of each run of sampled tokens, in order (one per reply that produced tokens)."""
        spans: list[tuple[int, int]] = []
        start: int | None = None
        for index, mask in enumerate((*self.loss_mask, 0)):
            if mask and start is None:
                start = index
            elif not mask and start is not None:
                spans.append((start, index))
                start = None
        return spans

    def to_dict(self) -> dict[str, list[Any]]:
        """JSON-ready form (stored under `trajectory.metadata["tokens"]`)."""
        return {
            "input_ids": list(self.input_ids),
            "loss_mask": list(self.loss_mask),
            "logprobs": list(self.logprobs),
            "turns": list(self.turns),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[Any]]) -> TokenRecord:
        """Inverse of `to_dict`."""
        return cls(
            input_ids=tuple(int(i) for i in data["input_ids"]),
            loss_mask=tuple(int(m) for m in data["loss_mask"]),
            logprobs=tuple(float(p) for p in data["logprobs"]),
            turns=tuple(int(t) for t in data["turns"]),
        )

    @classmethod
    def from_trajectory(cls, trajectory: Trajectory) -> TokenRecord | None:
        """The whole-episode record a token policy left in a trajectory, or `None` (text-only policies, scripted
        agents, or an episode played with a history window: see `segments_of`)."""
        data = trajectory.metadata.get("tokens")
        return cls.from_dict(data) if data else None

    @classmethod
    def segments_of(cls, trajectory: Trajectory) -> list[TokenRecord]:
        """Every context the policy sampled in, in order: one for a whole-episode context, one per turn when the
        episode was played with a history window (`RolloutConfig.history_turns`); `[]` without token records."""
        segments = trajectory.metadata.get("token_segments")
        if segments:
            return [cls.from_dict(data) for data in segments]
        record = cls.from_trajectory(trajectory)
        return [record] if record is not None else []


def recent_turns(messages: Sequence[Message], turns: int | None) -> list[Message]:
    """The system message (if any) and the last `turns` exchanges before the final user message; all of them
    when `turns` is None. `turns=0` leaves only the current observation: a Markov policy."""
    if turns is None:
        return list(messages)
    head = [message for message in messages[:1] if message["role"] == "system"]
    body = list(messages[len(head) :])
    return head + body[-(2 * turns + 1) :]


def merge_system_prompt(messages: Sequence[Message]) -> list[Message]:
    """`messages` without a leading system message: its text heads the first user message (separated by a blank
    line), or becomes a user message of its own when none follows. For templates without a system role."""
    if not messages or messages[0]["role"] != "system":
        return list(messages)
    system, rest = messages[0]["content"], list(messages[1:])
    if rest and rest[0]["role"] == "user":
        first = rest[0]["content"]
        return [{**rest[0], "content": f"{system}\n\n{first}" if first else system}, *rest[1:]]
    return [{"role": "user", "content": system}, *rest]


class ChatFormat:
    """A tokenizer's chat template, measured once so conversations can grow by id deltas.

    Args:
        tokenizer: A Hugging Face tokenizer with a chat template.

    Templates without a system role (Gemma's raise "System role not supported", some drop the message) get the
    system prompt at the head of the first user message instead, as those models' own chat formats do.

    Raises:
        ValueError: If the template has no stable place for one more user turn (it re-renders earlier turns
            differently even on a plain chat), so no delta can be appended exactly.
    """

    def __init__(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template; set tokenizer.chat_template before rolling out")
        self.tokenizer = tokenizer
        self.system_role = self._renders_system_role()
        """Whether the template renders a system message; when not, `render` merges it into the first user turn."""
        base: list[Message] = [{"role": "user", "content": _PING}]
        self._with_reply: list[Message] = [*base, {"role": "assistant", "content": _PONG}]
        self._history = self.render(self._with_reply, generation_prompt=False)
        reply_at = self._history.rfind(_PONG)
        if reply_at < 0:
            raise ValueError("the chat template drops the assistant's reply from the history; cannot grow chats")
        self._closed_reply = self._history[reply_at:]
        """The dummy reply and the template text that closes it, as the history renders them."""
        self.reply_tail_ids: tuple[int, ...] = tuple(self.encode(self._history[reply_at + len(_PONG) :]))
        """Template tokens closing an assistant reply (e.g. `<|im_end|>`, newline)."""
        self._check_user_delta()

    def render(self, messages: Sequence[Message], *, generation_prompt: bool) -> str:
        """The template's text for `messages` (a system message merged into the first user turn when the template
        has no system role)."""
        if not self.system_role:
            messages = merge_system_prompt(messages)
        return self._apply(messages, generation_prompt)

    def _apply(self, messages: Sequence[Message], generation_prompt: bool) -> str:
        text = self.tokenizer.apply_chat_template(
            [dict(message) for message in messages], tokenize=False, add_generation_prompt=generation_prompt
        )
        return str(text)

    def _renders_system_role(self) -> bool:
        """Whether a system message renders: the template neither raises on it nor drops its text."""
        probe: list[Message] = [{"role": "system", "content": _RULES}, {"role": "user", "content": _PING}]
        try:
            return _RULES in self._apply(probe, True)
        except Exception:  # jinja2's TemplateError from raise_exception('System role not supported'), and the like
            return False

    def encode(self, text: str) -> list[int]:
        """Token ids of template text (its special tokens included literally, no extra BOS)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        """Ids of a fresh conversation ending in the generation prompt."""
        return self.encode(self.render(messages, generation_prompt=True))

    def user_turn_ids(self, content: str) -> list[int]:
        """Ids that append one user message and the next generation prompt after a closed assistant reply: what
        the template renders after the dummy reply and its closing text once a user turn follows. (Templates may
        render the reply itself differently then: Qwen3's drop the empty `<think>` block of every reply before
        the last user turn. A grown context keeps each reply as it was sampled.)"""
        full = self.render([*self._with_reply, {"role": "user", "content": content}], generation_prompt=True)
        closed = full.find(self._closed_reply)  # the first: the dummy chat has nothing before it but _PING
        if closed < 0:
            raise ValueError("the chat template closes a reply differently once a user turn follows it")
        return self.encode(full[closed + len(self._closed_reply) :])

    def closing_ids(self, generation: Generation) -> list[int]:
        """Template ids that close a reply: the tail less any part the model already sampled (its stop token)."""
        tail = list(self.reply_tail_ids)
        sampled = generation.token_ids or ()
        if generation.finish_reason == "stop" and sampled and tail and sampled[-1] == tail[0]:
            return tail[1:]
        return tail

    def _check_user_delta(self) -> None:
        self.user_turn_ids("probe")


class TokenLedger:
    """One episode's growing token context (see the module docstring).

    Args:
        chat: The policy's measured chat template.
        messages: The opening messages (system prompt and first observation).
    """

    def __init__(self, chat: ChatFormat, messages: Sequence[Message]) -> None:
        self.chat = chat
        self._ids: list[int] = chat.prompt_ids(messages)
        self._mask: list[int] = [0] * len(self._ids)
        self._logprobs: list[float] = [0.0] * len(self._ids)
        self._turns: list[int] = [0] * len(self._ids)
        self._turn = 0
        self.sampled_tokens = 0
        """Tokens the policy sampled in this episode so far."""

    @property
    def context(self) -> list[int]:
        """The ids the policy continues for its next reply (a copy)."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def add_reply(self, generation: Generation, learn: bool = True) -> None:
        """Appends the sampled ids (loss on, unless `learn` is False: a reply kept as context only) and the
        template's closing ids (loss off)."""
        if generation.token_ids is None:
            raise ValueError("a token ledger needs the sampled ids; the policy returned text only")
        ids = list(generation.token_ids)
        logprobs = list(generation.logprobs) if generation.logprobs is not None else [0.0] * len(ids)
        self._append(ids, int(learn), logprobs)
        self.sampled_tokens += len(ids)
        closing = self.chat.closing_ids(generation)
        self._append(closing, 0, [0.0] * len(closing))

    def add_observation(self, text: str) -> None:
        """Appends the environment's answer as the next user turn and the generation prompt (loss off)."""
        self._turn += 1
        ids = self.chat.user_turn_ids(text)
        self._append(ids, 0, [0.0] * len(ids))

    def record(self) -> TokenRecord:
        """The conversation so far as a `TokenRecord`."""
        return TokenRecord(tuple(self._ids), tuple(self._mask), tuple(self._logprobs), tuple(self._turns))

    def _append(self, ids: list[int], mask: int, logprobs: list[float]) -> None:
        self._ids.extend(ids)
        self._mask.extend([mask] * len(ids))
        self._logprobs.extend(logprobs)
        self._turns.extend([self._turn] * len(ids))
