"""OpenAIPolicy against a real HTTP server on 127.0.0.1: retries, timeouts, concurrency limits, bad requests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from reflectgym.agents import OpenAIConfig, OpenAIPolicy, Sampling


class Server:
    """A scripted OpenAI-compatible chat-completions server."""

    def __init__(self) -> None:
        self.fail_first = 0
        self.delay = 0.0
        self.status = 503
        self.retry_after: str | None = None
        self.requests: list[dict[str, Any]] = []
        self.stop_reason = True
        """Name the stop string that cut a reply (`stop_reason`, as vLLM serve does); False: as OpenAI, say nothing."""
        self.faults: dict[str, list[str]] = {}
        """Per last message: the faults its next requests meet, one each (see `Handler.fault`)."""
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"body": body, "auth": self.headers.get("Authorization")})
                    failing = len(server.requests) <= server.fail_first
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.delay)
                    if self.path != "/v1/chat/completions":
                        return self.reply(404, {"error": "no such route"})
                    if failing:
                        return self.reply(server.status, {"error": "try again"}, server.retry_after)
                    last = body["messages"][-1]["content"]
                    with server.lock:
                        faults = server.faults.get(last)
                        fault = faults.pop(0) if faults else None
                    if fault is not None:
                        return self.fault(fault)
                    text, matched = f"echo: {last}", None
                    for stop in body.get("stop") or []:  # the server cuts the stop string off
                        if stop in text:
                            text, matched = text[: text.index(stop)], stop
                    choice = {
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                        "logprobs": {"content": [{"token": "echo", "logprob": -0.5}]} if body.get("logprobs") else None,
                    }
                    if server.stop_reason:
                        choice["stop_reason"] = matched
                    self.reply(200, {"choices": [choice], "usage": {"prompt_tokens": 7, "completion_tokens": 3}})
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def fault(self, kind: str) -> None:
                """A broken answer: a body cut short, a garbled status line, a body that is not UTF-8, or
                log-probs that are null or not an object."""
                if kind == "badstatus":
                    self.wfile.write(b"garbage\r\n\r\n")
                    self.close_connection = True
                    return
                data = {
                    "incomplete": b'{"choices": []}',
                    "nonutf8": b'{"choices": [{"message": {"content": "\xff\xfe"}}]}',
                    "nulllogprob": b'{"choices": [{"message": {"content": "up"}, "logprobs": {"content": '
                    b'[{"token": "up", "logprob": null}]}}]}',
                    "listlogprobs": b'{"choices": [{"message": {"content": "up"}, "logprobs": [-0.1]}]}',
                }[kind]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data) + (50 if kind == "incomplete" else 0)))
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            def reply(self, status: int, payload: dict[str, Any], retry_after: str | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                if retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    scripted = Server()
    yield scripted
    scripted.httpd.shutdown()
    scripted.httpd.server_close()


def policy(server: Server, **options: Any) -> OpenAIPolicy:
    return OpenAIPolicy(OpenAIConfig(base_url=server.url, model="m", backoff=0.01, **options))


def conversation(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def test_generates_over_http_with_the_request_fields(server: Server) -> None:
    replies = policy(server, api_key="k", logprobs=True).generate(
        [conversation("a"), conversation("b")], Sampling(temperature=0.5, max_new_tokens=9, stop=("\n",), seed=3)
    )
    assert [r.text for r in replies] == ["echo: a", "echo: b"]
    assert replies[0].logprobs == (-0.5,) and replies[0].prompt_tokens == 7 and replies[0].token_ids is None
    assert replies[0].num_tokens == 3  # the server's count, without the ids
    body = next(
        r["body"] for r in server.requests if r["body"]["messages"][-1]["content"] == "a"
    )  # (arrival order varies)
    assert body["model"] == "m" and body["max_tokens"] == 9 and body["stop"] == ["\n"] and body["seed"] == 3
    assert server.requests[0]["auth"] == "Bearer k"


def test_server_errors_are_retried_with_backoff(server: Server) -> None:
    server.fail_first = 2
    client = policy(server, max_concurrency=1)
    [reply] = client.generate([conversation("x")], Sampling())
    assert reply.text == "echo: x" and client.requests_sent == 3


def test_retry_after_is_honoured_up_to_max_backoff(server: Server) -> None:
    server.fail_first, server.status, server.retry_after = 1, 429, "1"
    start = time.perf_counter()
    [reply] = policy(server).generate([conversation("x")], Sampling())
    assert reply.text == "echo: x" and time.perf_counter() - start >= 1  # the server asked for a second
    server.requests.clear()
    server.fail_first, server.retry_after = 1, "3600"  # an hour would stall the whole batch
    start = time.perf_counter()
    [reply] = policy(server, max_backoff=0.2).generate([conversation("y")], Sampling())
    assert reply.text == "echo: y" and time.perf_counter() - start < 5


def test_retries_run_out_into_an_error_generation(server: Server) -> None:
    server.fail_first = 100
    [reply] = policy(server, max_retries=2).generate([conversation("x")], Sampling())
    assert reply.finish_reason == "error" and "HTTP 503" in (reply.error or "") and "3 attempts" in (reply.error or "")


def test_client_errors_are_not_retried(server: Server) -> None:
    server.fail_first, server.status = 100, 400
    client = policy(server)
    [reply] = client.generate([conversation("x")], Sampling())
    assert reply.finish_reason == "error" and "HTTP 400" in (reply.error or "") and client.requests_sent == 1


def test_slow_requests_time_out_and_are_retried(server: Server) -> None:
    server.delay = 0.5
    client = policy(server, timeout=0.1, max_retries=1)
    start = time.perf_counter()
    [reply] = client.generate([conversation("x")], Sampling())
    assert reply.finish_reason == "error" and "timed out" in (reply.error or "").lower()
    assert client.requests_sent == 2 and time.perf_counter() - start < 2


def test_concurrency_is_limited(server: Server) -> None:
    server.delay = 0.1
    replies = policy(server, max_concurrency=3).generate([conversation(str(i)) for i in range(9)], Sampling())
    assert [r.text for r in replies] == [f"echo: {i}" for i in range(9)]  # order kept
    assert server.max_in_flight == 3


def test_unreachable_server_is_an_error_not_a_crash() -> None:
    client = OpenAIPolicy(OpenAIConfig(base_url="http://127.0.0.1:9/v1", max_retries=1, backoff=0.01, timeout=1))
    [reply] = client.generate([conversation("x")], Sampling())
    assert reply.finish_reason == "error" and "URLError" in (reply.error or "")


def test_broken_http_responses_are_retried(server: Server) -> None:
    server.faults = {"x": ["incomplete", "badstatus"]}
    client = policy(server, max_concurrency=1)
    [reply] = client.generate([conversation("x")], Sampling())
    assert reply.text == "echo: x" and client.requests_sent == 3


@pytest.mark.parametrize("fault", ["incomplete", "badstatus", "nonutf8", "nulllogprob", "listlogprobs"])
def test_one_broken_request_fails_alone(server: Server, fault: str) -> None:
    server.faults = {"2": [fault] * 9}
    replies = policy(server, max_retries=1, logprobs=True).generate(
        [conversation(str(i)) for i in range(4)], Sampling()
    )
    assert [r.finish_reason for r in replies] == ["stop", "stop", "error", "stop"]
    assert [r.text for r in replies] == ["echo: 0", "echo: 1", "", "echo: 3"]
    assert replies[2].error and "\n" not in replies[2].error


def test_each_request_of_a_seeded_batch_gets_its_own_seed(server: Server) -> None:
    client = policy(server, max_concurrency=1)
    client.generate([conversation("g")] * 4, Sampling(temperature=1.0, seed=3))
    seeds = [request["body"]["seed"] for request in server.requests]
    assert seeds[0] == 3 and len(set(seeds)) == 4  # a group of 4 is not 4 copies of one sample
    client.generate([conversation("g")] * 4, Sampling(temperature=1.0, seed=3))
    assert [request["body"]["seed"] for request in server.requests[4:]] == seeds  # and repeatable
    client.generate([conversation("g")] * 2, Sampling(temperature=1.0, seeds=(7, 9)))
    assert [request["body"]["seed"] for request in server.requests[8:]] == [7, 9]


def test_the_stop_string_a_server_cut_off_is_put_back(server: Server) -> None:
    client = policy(server)
    cut = conversation("42</answer> more")
    [reply] = client.generate([cut], Sampling(stop=("</answer>", "\n\n")))
    assert reply.text == "echo: 42</answer>"  # as HF and vLLM's engine keep it: the same action on every backend
    [natural] = client.generate([conversation("42")], Sampling(stop=("</answer>",)))
    assert natural.text == "echo: 42"  # stop_reason None: the model ended by itself
    server.stop_reason = False  # a plain OpenAI server: with one stop string, it is the one that matched
    assert client.generate([cut], Sampling(stop=("</answer>",)))[0].text == "echo: 42</answer>"
    assert client.generate([cut], Sampling(stop=("</answer>", "\n\n")))[0].text == "echo: 42"  # which? unknown
