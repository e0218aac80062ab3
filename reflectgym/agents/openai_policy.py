"""`OpenAIPolicy`: any OpenAI-compatible chat-completions server (vLLM serve, SGLang, hosted APIs) as a policy.

Standard library HTTP only (no SDK to install). Requests of one batch run concurrently up to
`max_concurrency`; each has a timeout; connection errors, broken HTTP responses (a truncated body, a garbled
status line), timeouts, 429 and 5xx are retried with exponential backoff (honouring `Retry-After` up to
`max_backoff`); other 4xx fail at once. A request that still fails, or any other failure of one request (a body
that is not UTF-8, malformed log-probs), becomes a generation with `finish_reason="error"`, which ends that
episode only: the other requests of the batch are unaffected. Log-probs are recorded when the
server returns them; token ids are not (chat completions report tokens as text), so trainers should use a token
policy.

Stop strings: servers cut the one that ended a reply off its text, where `Sampling.stop` (and the HF and vLLM
engine backends) keep it; the policy puts it back. vLLM serve and SGLang name it (`stop_reason`); a server that
does not (OpenAI) gets it put back when the reply stopped and only one stop string was asked for. OpenAI's
`finish_reason: "stop"` also covers the model's own end of text, so there a reply that ended by itself gets the
stop string too; with several stop strings and no `stop_reason` nothing is put back (which one matched is
unknown).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from reflectgym.agents.policy import Conversation, FinishReason, Generation, Sampling, check_conversations

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_SECONDS = re.compile(r"[0-9]{1,6}(?:\.[0-9]*)?|\.[0-9]+")


@dataclass(frozen=True)
class OpenAIConfig:
    """Where the server is and how hard to try."""

    base_url: str = "http://127.0.0.1:8000/v1"
    """The API root, ending in `/v1` (requests go to `{base_url}/chat/completions`)."""
    model: str = "default"
    """The model name the server expects."""
    api_key: str | None = None
    """Bearer token; default: `$OPENAI_API_KEY` if set, else none."""
    timeout: float = 120.0
    """Seconds per request before it is abandoned (and retried)."""
    max_retries: int = 4
    """Retries per request after the first try."""
    backoff: float = 0.5
    """First retry delay in seconds; doubles per retry."""
    max_backoff: float = 60.0
    """The longest wait before a retry, in seconds, whatever the doubling or a server's `Retry-After` asks
    (a server asking for an hour would otherwise stall the whole batch for it)."""
    max_concurrency: int = 16
    """Requests in flight at once."""
    logprobs: bool = False
    """Ask the server for the sampled tokens' log-probs. Which distribution they are of is the server's choice: a
    vLLM server reports the sampling temperature's (as `HFPolicy` and `VLLMPolicy` do) only when started with
    `--logprobs-mode processed_logprobs`, the model's own (temperature 1) by default."""

    def __post_init__(self) -> None:
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1; got {self.max_concurrency}")
        if self.max_retries < 0 or self.timeout <= 0 or self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("max_retries, backoff and max_backoff must be >= 0 and timeout > 0")


class OpenAIError(RuntimeError):
    """A request failed for good; says the status and the server's message."""


class OpenAIPolicy:
    """Chat completions over HTTP.

    Args:
        config: Server, model, timeouts, retries, concurrency.
        name: A label for reports (default: `openai:<model>`).
    """

    def __init__(self, config: OpenAIConfig, name: str | None = None) -> None:
        self.config = config
        self.name = name or f"openai:{config.model}"
        self._api_key = config.api_key if config.api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._pool = ThreadPoolExecutor(max_workers=config.max_concurrency, thread_name_prefix="reflectgym-http")
        self._lock = threading.Lock()
        self.requests_sent = 0
        """HTTP requests made, retries included."""

    def generate(self, conversations: Sequence[Conversation], sampling: Sampling) -> list[Generation]:
        """One chat completion per conversation, concurrently; failures become `finish_reason="error"`."""
        conversations = check_conversations(conversations)
        seeds = [sampling.request_seed(position) for position in range(len(conversations))]
        return list(
            self._pool.map(
                lambda conversation, seed: self._complete(conversation, sampling, seed), conversations, seeds
            )
        )

    def close(self) -> None:
        """Stops the request threads."""
        self._pool.shutdown(wait=False)

    def _complete(self, conversation: Conversation, sampling: Sampling, seed: int | None) -> Generation:
        """One request, seeded with its own `seed` (see `Sampling.request_seed`)."""
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [dict(message) for message in conversation],
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if seed is not None:
            body["seed"] = seed
        if self.config.logprobs:
            body["logprobs"] = True
        try:
            return _parse_completion(self._post(body), sampling.stop)
        except OpenAIError as error:
            return Generation(text="", finish_reason="error", error=str(error))
        except Exception as error:  # anything else of this one request fails it alone, never the batch
            return Generation(text="", finish_reason="error", error=f"{type(error).__name__}: {error}")

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        url = self.config.base_url.rstrip("/") + "/chat/completions"
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        delay = self.config.backoff
        last = "no attempt made"
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                time.sleep(min(delay, self.config.max_backoff))
                delay *= 2
            with self._lock:
                self.requests_sent += 1
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.config.timeout) as response:
                    return json.loads(response.read().decode())
            except urllib.error.HTTPError as error:
                detail = error.read().decode(errors="replace")[:300]
                last = f"HTTP {error.code} from {url}: {detail}"
                if error.code not in RETRYABLE_STATUS:
                    raise OpenAIError(last) from error
                retry_after = _seconds(error.headers.get("Retry-After") if error.headers else None)
                if retry_after is not None:
                    delay = max(delay, retry_after)
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
                # HTTPException: a body cut short (IncompleteRead), a garbled status line (BadStatusLine)
                last = f"{type(error).__name__} from {url}: {str(getattr(error, 'reason', error)).strip()}"
            except json.JSONDecodeError as error:
                last = f"the server at {url} answered with invalid JSON: {error}"
        raise OpenAIError(f"{last} (after {self.config.max_retries + 1} attempts)")


def _seconds(value: str | None) -> float | None:
    """A `Retry-After` delay in seconds, or None unless it is plain ASCII digits (`isdigit` takes '²' too)."""
    if not value or _SECONDS.fullmatch(value) is None:
        return None
    return float(value)


def _parse_completion(payload: dict[str, Any], stop: Sequence[str] = ()) -> Generation:
    try:
        choice = payload["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        return Generation(text="", finish_reason="error", error=f"malformed completion: {error!r}")
    text = _with_stop(str(text), choice, stop)
    reason: FinishReason = "length" if choice.get("finish_reason") == "length" else "stop"
    try:
        logprobs = _logprobs(choice.get("logprobs"))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return Generation(text="", finish_reason="error", error=f"malformed log-probs: {error!r}")
    usage = payload.get("usage") or {}
    return Generation(
        text=text,
        logprobs=logprobs,
        finish_reason=reason,
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
    )


def _with_stop(text: str, choice: dict[str, Any], stop: Sequence[str]) -> str:
    """`text` with the stop string that ended it put back (see the module docstring)."""
    if choice.get("finish_reason") != "stop" or not stop:
        return text
    if "stop_reason" in choice:  # vLLM serve, SGLang: the matched string, else a stop token id or None
        matched = choice["stop_reason"]
        return text + matched if isinstance(matched, str) and matched in stop and not text.endswith(matched) else text
    return text + stop[0] if len(stop) == 1 and not text.endswith(stop[0]) else text


def _logprobs(logprobs: Any) -> tuple[float, ...] | None:
    """The sampled tokens' log-probs of a choice's `logprobs` (`{"content": [{"logprob": ...}, ...]}`), None when
    the server sent none; raises for any other shape or a log-prob that is not a number (a null, a string)."""
    if logprobs is None:
        return None
    if not isinstance(logprobs, dict):
        raise TypeError(f"logprobs is a {type(logprobs).__name__}, not an object with `content`")
    content = logprobs.get("content")
    if not content:
        return None
    values = [item["logprob"] for item in content]
    if not all(isinstance(value, int | float) and not isinstance(value, bool) for value in values):
        raise TypeError(f"a log-prob is not a number: {next(v for v in values if not isinstance(v, int | float))!r}")
    return tuple(float(value) for value in values)


def _count(value: object) -> int | None:
    """A token count from a server's `usage`, or None when it sent none (or not a count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
