"""The `Policy` role: batched generation over conversations, returning text, token ids and log-probs.

Two protocols, because backends differ in what they can see:

* `Policy` — every backend: takes chat messages, returns text (and ids/log-probs where it has them). Hosted
  OpenAI-compatible APIs are only this.
* `TokenPolicy` — backends that own a tokenizer (transformers, vLLM): they also generate from exact token ids,
  which is what token-exact multi-turn bookkeeping (`reflectgym.agents.chat`) needs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

Message = Mapping[str, str]
"""One chat message: `{"role": "system" | "user" | "assistant", "content": "..."}`."""

Conversation = Sequence[Message]
"""A chat so far, oldest message first."""


def check_conversations(conversations: Iterable[Conversation]) -> list[Conversation]:
    """The batch as a list; raises `TypeError` for what is not a batch of conversations: the common slip is one
    conversation (a list of messages) passed where a list of them belongs."""
    batch: list[Any] = [conversations] if isinstance(conversations, (str, Mapping)) else list(conversations)
    if any(isinstance(conversation, (str, Mapping)) for conversation in batch):
        raise TypeError(
            "generate takes a batch of conversations, each a list of {'role', 'content'} messages; for one "
            "conversation, pass [conversation]"
        )
    return batch


FinishReason = Literal["stop", "length", "error"]
"""Why generation ended: a stop token/string, the token limit, or a backend failure."""


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters, the same for every backend."""

    temperature: float = 1.0
    """Softmax temperature; 0 means greedy."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`."""
    max_new_tokens: int = 256
    """Tokens generated per call at most."""
    stop: tuple[str, ...] = ()
    """Strings that end generation (kept in the text, so the text matches the sampled ids). OpenAI-compatible
    servers cut it off; `OpenAIPolicy` puts it back where it can tell which one matched (see its module)."""
    seed: int | None = None
    """Seed for the sampler, for repeatable generations where the backend supports it. Each request of a batch
    gets its own seed derived from it (`request_seed`), so a group of N samples is not N copies of one."""
    seeds: tuple[int, ...] | None = None
    """Per-request seeds of one batch, in order, overriding `seed` (the rollout engine sets one per episode and
    turn, so a sample does not depend on which batch it happened to be in)."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy); got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1]; got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1; got {self.max_new_tokens}")

    def request_seed(self, position: int) -> int | None:
        """The seed of request `position` of a batch: `seeds[position]` when given; else `seed` itself for the
        first request and a seed derived from `seed` and the position for the others; None when unseeded."""
        if self.seeds is not None:
            return self.seeds[position]
        if self.seed is None or position == 0:
            return self.seed
        return derive_seed(self.seed, position)

    @property
    def greedy(self) -> bool:
        """Whether this asks for greedy decoding."""
        return self.temperature == 0

    @property
    def logprob_temperature(self) -> float:
        """The temperature of the distribution whose log-probs a sampler reports: the sampling temperature, or 1
        when greedy (whose distribution is a point mass)."""
        return 1.0 if self.greedy else self.temperature

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (recorded in trajectory metadata)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "stop": list(self.stop),
            "seed": self.seed,
        }


def derive_seed(base: int, *keys: int) -> int:
    """A seed in [0, 2**31) fixed by `base` and `keys` (an episode, a turn, a position), unrelated for different
    keys: a hash, not a sum, so (group 0, index 1) and (group 1, index 0) do not share one."""
    digest = hashlib.blake2b(repr((base, *keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 2**31


@dataclass(frozen=True)
class Generation:
    """One generated reply.

    Attributes:
        text: The reply text (the decoded sampled ids, special tokens removed).
        token_ids: The sampled token ids, exactly as sampled (stop token included), when the backend has them.
        logprobs: Log-probability of each sampled id under the model at the sampling temperature (1 when greedy;
            `Sampling.logprob_temperature`), when reported: before top-p for `HFPolicy`, after it for `VLLMPolicy`
            (equal at top_p 1), the server's choice for `OpenAIPolicy`.
        finish_reason: Why generation ended.
        prompt_tokens: Tokens in the prompt, when known.
        error: What went wrong when `finish_reason == "error"`.
        completion_tokens: Tokens generated, when the backend counts them without giving the ids (an
            OpenAI-compatible server's `usage`).
    """

    text: str
    token_ids: tuple[int, ...] | None = None
    logprobs: tuple[float, ...] | None = None
    finish_reason: FinishReason = "stop"
    prompt_tokens: int | None = None
    error: str | None = None
    completion_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.token_ids is not None and self.logprobs is not None and len(self.token_ids) != len(self.logprobs):
            raise ValueError(f"{len(self.token_ids)} token ids but {len(self.logprobs)} log-probs")

    @property
    def num_tokens(self) -> int:
        """Generated tokens: the ids' count, else the backend's own count, else 0."""
        if self.token_ids is not None:
            return len(self.token_ids)
        return self.completion_tokens or 0


@runtime_checkable
class Policy(Protocol):
    """Anything that answers conversations: a model behind any backend."""

    name: str

    def generate(self, conversations: Sequence[Conversation], sampling: Sampling) -> list[Generation]:
        """One generation per conversation, in order."""
        ...


@runtime_checkable
class TokenPolicy(Policy, Protocol):
    """A policy with its own tokenizer that can continue exact token-id contexts."""

    @property
    def tokenizer(self) -> Any:
        """A Hugging Face tokenizer (chat template, encode/decode, eos)."""
        ...

    def generate_ids(self, prompts: Sequence[Sequence[int]], sampling: Sampling) -> list[Generation]:
        """One generation per token-id prompt, in order; `token_ids` and `logprobs` are always set."""
        ...
