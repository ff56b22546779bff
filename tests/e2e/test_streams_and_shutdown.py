"""Broken streams, client disconnects and graceful shutdown, against real processes (SPEC.md 13)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from .conftest import GatewayProcess, Upstream

DONE = "[DONE]"


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def sse_data(response: httpx.Response) -> list[str]:
    """The ``data:`` payloads of an SSE response, in order."""
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


def post_stream(gateway: GatewayProcess, model: str, text: str, timeout: float = 10) -> tuple[int, list[str]]:
    body = {"model": model, "messages": user(text), "stream": True}
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=body, timeout=timeout) as response:
        return response.status_code, sse_data(response)


def assert_broken_stream(events: list[str], code: str) -> dict[str, Any]:
    """Content chunks, then one error event, and never ``[DONE]``."""
    assert DONE not in events
    *chunks, last = events
    assert chunks, "the stream broke before any chunk reached the client"
    for raw in chunks:
        assert json.loads(raw)["object"] == "chat.completion.chunk"
    error = json.loads(last)["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["type"]
    return error  # type: ignore[no-any-return]


def test_stream_cut_midway_ends_with_an_error_event(
    gateway: GatewayProcess, upstream: Upstream, marker: str
) -> None:
    status, events = post_stream(gateway, "up:cut-3", f"a b c d e f {marker}")

    assert status == 200
    assert_broken_stream(events, "stream_interrupted")
    assert len(events) == 4  # the three chunks the upstream sent, then the error
    assert upstream.request_with(marker)["cut"] is True


def test_stream_cut_raises_in_the_sdk(client: openai.OpenAI, marker: str) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:  # the error arrives while iterating
        for chunk in client.chat.completions.create(
            model="up:cut-3", messages=user(f"a b c {marker}"), stream=True
        ):
            received.extend(c.delta.content or "" for c in chunk.choices)

    assert "".join(received) == "Echo: a"  # role chunk, "Echo:", " a", then the cut
    assert caught.value.code == "stream_interrupted"


def test_stream_cut_before_first_chunk_is_an_http_error(gateway: GatewayProcess, marker: str) -> None:
    status, events = post_stream(gateway, "up:cut-0", marker)

    assert status == 502
    assert DONE not in events


def test_stalled_stream_times_out_with_an_error_event(
    gateway: GatewayProcess, upstream: Upstream, marker: str
) -> None:
    started = time.monotonic()
    status, events = post_stream(gateway, "tight:stall-2", f"a b c {marker}")

    assert status == 200
    assert time.monotonic() - started < 5
    assert_broken_stream(events, "upstream_timeout")
    upstream.wait_for(marker, lambda entry: entry["disconnected"], timeout=5)


def test_client_disconnect_mid_stream_cancels_the_upstream(
    gateway: GatewayProcess, upstream: Upstream, marker: str
) -> None:
    text = " ".join([marker, *(f"w{i}" for i in range(40))])  # ~43 chunks, 200 ms apart: ~9 s in all
    body = {"model": "up:drip-200", "messages": user(text), "stream": True}
    with (
        httpx.Client(timeout=10) as http,
        http.stream("POST", f"{gateway.base_url}/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        received = 0
        for line in response.iter_lines():
            received += line.startswith("data: ")
            if received == 3:
                break
    # Leaving the block closed the connection half-way through.

    entry = upstream.wait_for(marker, lambda e: e["disconnected"], timeout=5)
    assert not entry["completed"]
    assert entry["chunks_sent"] < 20


def hang_up_during_slow_call(gateway: GatewayProcess, upstream: Upstream, marker: str) -> None:
    """Give up on a non-streamed call after 0.3 s; the upstream would take 2 s."""
    body = {"model": "up:slow-2000", "messages": user(marker)}
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway.base_url}/chat/completions", json=body, timeout=httpx.Timeout(10, read=0.3))

    # Well before the upstream would have answered, it sees the gateway hang up.
    entry = upstream.wait_for(marker, lambda e: e["disconnected"], timeout=1.9 - (time.monotonic() - started))
    assert not entry["completed"]
    assert entry["status"] is None


def test_client_disconnect_during_a_slow_call_cancels_the_upstream(
    gateway: GatewayProcess, upstream: Upstream, marker: str
) -> None:
    hang_up_during_slow_call(gateway, upstream, marker)


def test_client_disconnect_during_a_slow_call_is_not_an_internal_error(
    gateway: GatewayProcess, upstream: Upstream, marker: str
) -> None:
    offset = gateway.log_size()
    hang_up_during_slow_call(gateway, upstream, marker)

    logged = gateway.output_since(offset)
    assert "Traceback" not in logged, logged[-3000:]


def test_sigterm_finishes_in_flight_work_then_exits_cleanly(
    gateway_factory: Callable[..., GatewayProcess], upstream: Upstream, marker: str
) -> None:
    grace = 5
    gateway = gateway_factory(grace_period=grace)
    streamed, plain = f"{marker}stream", f"{marker}plain"
    words = " ".join([streamed, *(f"w{i}" for i in range(8))])  # 10 content chunks, 100 ms apart
    first_chunk = threading.Event()

    def stream() -> tuple[int, list[str]]:
        body = {"model": "up:drip-100", "messages": user(words), "stream": True}
        with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=body, timeout=10) as response:
            events = []
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(line[len("data: ") :])
                    first_chunk.set()
            return response.status_code, events

    def whole() -> httpx.Response:
        body = {"model": "up:slow-800", "messages": user(plain)}
        return httpx.post(f"{gateway.base_url}/chat/completions", json=body, timeout=10)

    with ThreadPoolExecutor(max_workers=2) as pool:
        streaming, waiting = pool.submit(stream), pool.submit(whole)
        assert first_chunk.wait(5), "the stream never started"
        upstream.wait_for(plain, lambda e: True, timeout=5)
        gateway.sigterm()
        signalled = time.monotonic()

        status, events = streaming.result(timeout=grace + 5)
        response = waiting.result(timeout=grace + 5)

    assert status == 200
    assert events[-1] == DONE
    text = "".join(
        choice["delta"].get("content") or "" for raw in events[:-1] for choice in json.loads(raw)["choices"]
    )
    assert text == f"Echo: {words}"
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == f"Echo: {plain}"
    assert upstream.request_with(streamed)["completed"]
    returncode = gateway.proc.wait(timeout=grace + 5)
    assert time.monotonic() - signalled < grace + 5
    assert returncode == 0, f"exit code {returncode}; output:\n{gateway.output()}"
