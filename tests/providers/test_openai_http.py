"""OpenAIProvider over real HTTP: a local aiohttp server plays the upstream, llmgate's transport calls it."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from llmgate.core.accumulate import StreamAccumulator
from llmgate.core.codec import parse_chat_request, parse_embedding_request
from llmgate.core.errors import (
    GatewayError,
    ModelNotFound,
    Overloaded,
    ProviderAuthError,
    RateLimited,
    StreamInterrupted,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeout,
)
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatChunk, LastBatch, StreamItem, as_chunk
from llmgate.providers import http as http_module
from llmgate.providers.base import Target, TimeoutPolicy, key_label
from llmgate.providers.openai import OpenAIProvider, OpenAIWire
from llmgate.providers.transport import Transport

API_KEY = "sk-live-0123456789abcdefSECRET"
FAST = TimeoutPolicy(connect=2.0, first_token=2.0, idle=2.0, total=5.0)
TARGET = Target("upstream-model", api_key=API_KEY, timeouts=FAST)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Upstream:
    """A running local upstream: where it listens, what it received, and a latch for stalled handlers."""

    base_url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


UPSTREAM = web.AppKey("upstream", Upstream)


@asynccontextmanager
async def serve(routes: dict[tuple[str, str], Handler]) -> AsyncIterator[Upstream]:
    """Run an aiohttp app on 127.0.0.1 with a free port; every request is recorded before its handler."""
    upstream = Upstream(base_url="")

    def recording(handler: Handler) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            upstream.received.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "headers": dict(request.headers),
                    "json": json.loads(raw) if raw else None,
                }
            )
            return await handler(request)

        return handle

    app = web.Application()
    app[UPSTREAM] = upstream
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, recording(handler))
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    upstream.base_url = f"http://{host}:{port}/v1"
    try:
        yield upstream
    finally:
        upstream.release.set()  # let stalled handlers finish so shutdown is immediate
        await runner.cleanup()


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    transport = Transport()
    yield transport
    await transport.close()


def provider(transport: Transport, base_url: str) -> OpenAIProvider:
    return OpenAIProvider(name="upstream", wire=OpenAIWire(), transport=transport, base_url=base_url)


def chat_request(**fields: Any) -> ChatRequest:
    return parse_chat_request(
        {"model": "group-name", "messages": [{"role": "user", "content": "Hi"}], **fields}
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status, headers=headers)

    return handle


def chunk(
    content: str | None = None, *, finish: str | None = None, usage: dict[str, int] | None = None
) -> str:
    choices = (
        []
        if usage
        else [{"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}]
    )
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "upstream-model-2025",
        "choices": choices,
    }
    if usage:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n"


STREAM_EVENTS = [
    ": keep-alive\n\n",
    chunk("Hello"),
    chunk(" wörld"),
    chunk(finish="stop"),
    chunk(usage={"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}),
    "data: [DONE]\n\n",
]


def sse(events: list[str], *, piece: int = 7, then: str = "end") -> Handler:
    """Stream ``events`` in ``piece``-byte writes, then end, stall, or drop the connection."""

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        raw = "".join(events).encode()
        for start in range(0, len(raw), piece):
            await response.write(raw[start : start + piece])
            await asyncio.sleep(0)
        if then == "stall":
            await request.app[UPSTREAM].release.wait()
        elif then == "drop":
            assert request.transport is not None
            request.transport.close()
        return response

    return handle


async def collect(stream: AsyncIterator[Sequence[StreamItem]], into: list[ChatChunk]) -> None:
    async for batch in stream:
        assert batch, "batches are never empty"
        into.extend(as_chunk(item) for item in batch)


def assert_key_hidden(error: GatewayError) -> None:
    assert API_KEY not in error.message
    assert API_KEY not in str(error)
    assert all(API_KEY not in str(arg) for arg in error.args)


# --- chat ------------------------------------------------------------------------------------------------

CHAT_BODY = {
    "id": "chatcmpl-9",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "upstream-model-2025",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
    "usage": {
        "prompt_tokens": 9,
        "completion_tokens": 3,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 4},
    },
}


async def test_chat(transport: Transport) -> None:
    async with serve({("POST", "/v1/chat/completions"): json_response(CHAT_BODY)}) as upstream:
        reply = await provider(transport, upstream.base_url).chat(chat_request(temperature=0.5), TARGET)
    assert reply.text == "Hello!"
    assert reply.model == "upstream-model-2025"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.cached_tokens) == (9, 3, 4)
    [sent] = upstream.received
    assert sent["method"] == "POST"
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["json"] == {
        "model": "upstream-model",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.5,
    }


async def test_provider_and_wire_headers_are_sent(transport: Transport) -> None:
    async with serve({("POST", "/v1/chat/completions"): json_response(CHAT_BODY)}) as upstream:
        chat = OpenAIProvider(
            name="upstream",
            wire=OpenAIWire(extra_headers={"HTTP-Referer": "https://llmgate.invalid"}),
            transport=transport,
            base_url=upstream.base_url + "/",
            headers={"X-Org": "acme"},
        )
        await chat.chat(chat_request(), TARGET)
    headers = upstream.received[0]["headers"]
    assert upstream.received[0]["path"] == "/v1/chat/completions"
    assert headers["X-Org"] == "acme"
    assert headers["HTTP-Referer"] == "https://llmgate.invalid"
    assert headers["Authorization"] == f"Bearer {API_KEY}"


async def test_chat_that_never_answers_times_out(transport: Transport) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        await request.app[UPSTREAM].release.wait()
        return web.json_response(CHAT_BODY)

    target = Target("m", api_key=API_KEY, timeouts=TimeoutPolicy(connect=1.0, total=0.2))
    async with serve({("POST", "/v1/chat/completions"): stall}) as upstream:
        with pytest.raises(UpstreamTimeout) as caught:
            await provider(transport, upstream.base_url).chat(chat_request(), target)
    assert caught.value.provider == "upstream"


async def test_unreadable_success_body_is_an_error(transport: Transport) -> None:
    async def html(request: web.Request) -> web.StreamResponse:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    async with serve({("POST", "/v1/chat/completions"): html}) as upstream:
        with pytest.raises(UpstreamError):
            await provider(transport, upstream.base_url).chat(chat_request(), TARGET)


# --- streams ---------------------------------------------------------------------------------------------


async def test_stream_in_pieces(transport: Transport) -> None:
    async with serve({("POST", "/v1/chat/completions"): sse(STREAM_EVENTS, piece=7)}) as upstream:
        chunks = [
            as_chunk(item)
            async for batch in provider(transport, upstream.base_url).stream(chat_request(), TARGET)
            for item in batch
        ]
    assert len(chunks) == 4
    accumulator = StreamAccumulator()
    for item in chunks:
        accumulator.add(item)
    reply = accumulator.response()
    assert reply.text == "Hello wörld"
    assert reply.choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (5, 2, 7)
    sent = upstream.received[0]["json"]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["model"] == "upstream-model"


@pytest.mark.parametrize("piece", [1, 3, 1000])
async def test_stream_piece_size_does_not_matter(transport: Transport, piece: int) -> None:
    async with serve({("POST", "/v1/chat/completions"): sse(STREAM_EVENTS, piece=piece)}) as upstream:
        chunks = [
            as_chunk(item)
            async for batch in provider(transport, upstream.base_url).stream(chat_request(), TARGET)
            for item in batch
        ]
    assert [c.choices[0].delta.content for c in chunks[:2]] == ["Hello", " wörld"]
    assert len(chunks) == 4


async def test_the_batch_that_ends_the_stream_says_so(transport: Transport) -> None:
    async with serve({("POST", "/v1/chat/completions"): sse(STREAM_EVENTS, piece=40)}) as upstream:
        batches = [b async for b in provider(transport, upstream.base_url).stream(chat_request(), TARGET)]
    assert len(batches) > 1
    assert isinstance(batches[-1], LastBatch)
    assert not any(isinstance(batch, LastBatch) for batch in batches[:-1])


async def test_stream_without_done_is_interrupted(transport: Transport) -> None:
    events = STREAM_EVENTS[:3]
    chunks: list[ChatChunk] = []
    async with serve({("POST", "/v1/chat/completions"): sse(events)}) as upstream:
        with pytest.raises(StreamInterrupted) as caught:
            await collect(provider(transport, upstream.base_url).stream(chat_request(), TARGET), chunks)
    assert [c.choices[0].delta.content for c in chunks] == ["Hello", " wörld"]
    assert caught.value.provider == "upstream"


async def test_stream_dropped_mid_event_is_interrupted(transport: Transport) -> None:
    events = [STREAM_EVENTS[1], STREAM_EVENTS[2][:20]]
    chunks: list[ChatChunk] = []
    async with serve({("POST", "/v1/chat/completions"): sse(events, then="drop")}) as upstream:
        with pytest.raises(StreamInterrupted):
            await collect(provider(transport, upstream.base_url).stream(chat_request(), TARGET), chunks)
    assert [c.choices[0].delta.content for c in chunks] == ["Hello"]


async def test_a_stream_event_that_never_ends_is_interrupted(
    transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_module, "MAX_EVENT", 1 << 20)
    endless = ["data: " + "x" * (3 << 20)]  # no blank line: one event that keeps growing
    async with serve({("POST", "/v1/chat/completions"): sse(endless, piece=64 << 10)}) as upstream:
        with pytest.raises(StreamInterrupted, match="a stream event larger than 1 MiB"):
            await collect(provider(transport, upstream.base_url).stream(chat_request(), TARGET), [])


async def test_a_stream_that_keeps_going_past_the_total_time_limit(transport: Transport) -> None:
    target = Target(
        "m", api_key=API_KEY, timeouts=TimeoutPolicy(connect=1.0, first_token=1.0, idle=1.0, total=0.5)
    )

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(100):  # an event every 50 ms: never idle for long, never done
            await response.write(STREAM_EVENTS[1].encode())
            await asyncio.sleep(0.05)
        return response

    chunks: list[ChatChunk] = []
    async with serve({("POST", "/v1/chat/completions"): trickle}) as upstream:
        with pytest.raises(UpstreamTimeout, match=r"did not end within 0\.5s"):
            await collect(provider(transport, upstream.base_url).stream(chat_request(), target), chunks)
    assert chunks  # what came before the limit was delivered


async def test_stream_that_stalls_past_the_idle_timeout(transport: Transport) -> None:
    target = Target(
        "m", api_key=API_KEY, timeouts=TimeoutPolicy(connect=1.0, first_token=1.0, idle=0.2, total=5.0)
    )
    chunks: list[ChatChunk] = []
    async with serve({("POST", "/v1/chat/completions"): sse(STREAM_EVENTS[:2], then="stall")}) as upstream:
        with pytest.raises(UpstreamTimeout) as caught:
            await collect(provider(transport, upstream.base_url).stream(chat_request(), target), chunks)
    assert [c.choices[0].delta.content for c in chunks] == ["Hello"]
    assert caught.value.provider == "upstream"


async def test_stream_whose_headers_never_come_times_out(transport: Transport) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        await request.app[UPSTREAM].release.wait()
        return web.Response()

    target = Target(
        "m", api_key=API_KEY, timeouts=TimeoutPolicy(connect=1.0, first_token=0.2, idle=1.0, total=5.0)
    )
    async with serve({("POST", "/v1/chat/completions"): stall}) as upstream:
        with pytest.raises(UpstreamTimeout):
            await collect(provider(transport, upstream.base_url).stream(chat_request(), target), [])


async def test_stream_whose_first_chunk_never_comes_times_out(transport: Transport) -> None:
    target = Target(
        "m", api_key=API_KEY, timeouts=TimeoutPolicy(connect=1.0, first_token=0.2, idle=30.0, total=30.0)
    )
    handler = sse([": OPENROUTER PROCESSING\n\n"], then="stall")
    async with serve({("POST", "/v1/chat/completions"): handler}) as upstream:
        with pytest.raises(UpstreamTimeout):
            await collect(provider(transport, upstream.base_url).stream(chat_request(), target), [])


async def test_in_band_stream_error_is_raised(transport: Transport) -> None:
    error_event = (
        'data: {"error": {"message": "The server had an error while processing", "type": "server_error"}}\n\n'
    )
    chunks: list[ChatChunk] = []
    async with serve({("POST", "/v1/chat/completions"): sse([STREAM_EVENTS[1], error_event])}) as upstream:
        with pytest.raises(UpstreamError) as caught:
            await collect(provider(transport, upstream.base_url).stream(chat_request(), TARGET), chunks)
    assert caught.value.message == "The server had an error while processing"
    assert len(chunks) == 1


# --- error responses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    [
        (500, {}, UpstreamError, None),
        (503, {"Retry-After": "3"}, Overloaded, 3.0),
        (429, {"Retry-After": "12"}, RateLimited, 12.0),
        (429, {"retry-after-ms": "1500"}, RateLimited, 1.5),
        (404, {}, ModelNotFound, None),
    ],
    ids=["500", "503", "429-seconds", "429-ms", "404"],
)
@pytest.mark.parametrize("mode", ["chat", "stream"])
async def test_error_statuses(
    transport: Transport,
    case: tuple[int, dict[str, str], type[GatewayError], float | None],
    mode: str,
) -> None:
    status, headers, cls, retry_after = case
    body = {"error": {"message": f"upstream failed with {status}", "type": "server_error", "code": None}}
    async with serve({("POST", "/v1/chat/completions"): json_response(body, status, headers)}) as upstream:
        chat = provider(transport, upstream.base_url)
        with pytest.raises(GatewayError) as caught:
            if mode == "chat":
                await chat.chat(chat_request(), TARGET)
            else:
                await collect(chat.stream(chat_request(), TARGET), [])
    assert type(caught.value) is cls
    assert caught.value.message == f"upstream failed with {status}"
    assert caught.value.retry_after == retry_after
    assert caught.value.provider == "upstream"


@pytest.mark.parametrize("mode", ["chat", "stream", "embed", "models"])
async def test_connection_refused(transport: Transport, mode: str) -> None:
    chat = provider(transport, f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(UpstreamConnectionError) as caught:
        if mode == "chat":
            await chat.chat(chat_request(), TARGET)
        elif mode == "stream":
            await collect(chat.stream(chat_request(), TARGET), [])
        elif mode == "embed":
            await chat.embed(parse_embedding_request({"model": "e", "input": "x"}), TARGET)
        else:
            await chat.list_models(TARGET)
    assert caught.value.provider == "upstream"
    assert caught.value.retryable
    assert_key_hidden(caught.value)


# --- the key never leaks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 500])
@pytest.mark.parametrize("mode", ["chat", "stream"])
async def test_api_key_never_appears_in_errors(transport: Transport, status: int, mode: str) -> None:
    # OpenAI echoes (part of) a wrong key; some proxies echo the whole Authorization header.
    message = f"Incorrect API key provided: {API_KEY}. Header was 'Authorization: Bearer {API_KEY}'"
    body = {"error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}}
    async with serve({("POST", "/v1/chat/completions"): json_response(body, status)}) as upstream:
        chat = provider(transport, upstream.base_url)
        with pytest.raises(GatewayError) as caught:
            if mode == "chat":
                await chat.chat(chat_request(), TARGET)
            else:
                await collect(chat.stream(chat_request(), TARGET), [])
    assert_key_hidden(caught.value)
    assert caught.value.message.startswith("Incorrect API key provided: <redacted>")
    assert upstream.received[0]["headers"]["Authorization"] == f"Bearer {API_KEY}"  # it was really sent


async def test_api_key_hidden_when_the_upstream_echoes_it_as_text(transport: Transport) -> None:
    async def text(request: web.Request) -> web.StreamResponse:
        return web.Response(status=401, text=f"bad token {API_KEY}")

    async with serve({("POST", "/v1/chat/completions"): text}) as upstream:
        with pytest.raises(ProviderAuthError) as caught:
            await provider(transport, upstream.base_url).chat(chat_request(), TARGET)
    assert_key_hidden(caught.value)


async def test_api_key_hidden_even_if_not_key_shaped(transport: Transport) -> None:
    secret = "plain-secret-value-42"
    body = {"error": {"message": f"token {secret} is not valid"}}
    target = Target("m", api_key=secret, timeouts=FAST)
    async with serve({("POST", "/v1/chat/completions"): json_response(body, 401)}) as upstream:
        with pytest.raises(ProviderAuthError) as caught:
            await provider(transport, upstream.base_url).chat(chat_request(), target)
    assert secret not in str(caught.value)
    assert caught.value.message == "token <redacted> is not valid"


# --- embeddings and models -------------------------------------------------------------------------------


async def test_embeddings(transport: Transport) -> None:
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.25, -0.5]},
            {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]},
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    request = parse_embedding_request({"model": "embed-group", "input": ["a", "b"], "dimensions": 2})
    async with serve({("POST", "/v1/embeddings"): json_response(body)}) as upstream:
        reply = await provider(transport, upstream.base_url).embed(request, TARGET)
    assert [item.embedding for item in reply.data] == [[0.25, -0.5], [1.0, 0.0]]
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == 4
    [sent] = upstream.received
    assert sent["json"] == {"model": "upstream-model", "input": ["a", "b"], "dimensions": 2}
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"


async def test_embeddings_error(transport: Transport) -> None:
    body = {"error": {"message": "The model `x` does not exist", "code": "model_not_found"}}
    request = parse_embedding_request({"model": "x", "input": "a"})
    async with serve({("POST", "/v1/embeddings"): json_response(body, 404)}) as upstream:
        with pytest.raises(ModelNotFound) as caught:
            await provider(transport, upstream.base_url).embed(request, TARGET)
    assert caught.value.provider == "upstream"


async def test_list_models(transport: Transport) -> None:
    body = {
        "object": "list",
        "data": [
            {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
            {"id": "llama3", "object": "model", "owned_by": "library"},
        ],
    }
    async with serve({("GET", "/v1/models"): json_response(body)}) as upstream:
        models = await provider(transport, upstream.base_url).list_models(TARGET)
    assert [(m.id, m.owned_by, m.created) for m in models] == [
        ("gpt-4o", "system", 1715367049),
        ("llama3", "library", 0),
    ]
    [sent] = upstream.received
    assert sent["method"] == "GET"
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"


async def test_list_models_auth_error(transport: Transport) -> None:
    body = {"error": {"message": f"Incorrect API key provided: {API_KEY}", "code": "invalid_api_key"}}
    async with serve({("GET", "/v1/models"): json_response(body, 401)}) as upstream:
        with pytest.raises(ProviderAuthError) as caught:
            await provider(transport, upstream.base_url).list_models(TARGET)
    assert_key_hidden(caught.value)


async def test_rate_limit_headers_are_recorded_per_key(transport: Transport) -> None:
    limits = {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-reset-requests": "2s",
    }
    routes = {("POST", "/v1/chat/completions"): json_response(CHAT_BODY, headers=limits)}
    async with serve(routes) as upstream:
        chat = provider(transport, upstream.base_url)
        await chat.chat(chat_request(), TARGET)
        assert list(chat.headroom) == [key_label(API_KEY)]
        reading = chat.headroom[key_label(API_KEY)]
        assert (reading.requests_limit, reading.requests_remaining, reading.requests_reset) == (100, 3, 2.0)
        assert API_KEY not in key_label(API_KEY)


async def test_redirects_are_not_followed(transport: Transport) -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(location="/v1/elsewhere")

    routes = {
        ("POST", "/v1/chat/completions"): redirect,
        ("POST", "/v1/elsewhere"): json_response(CHAT_BODY),
    }
    async with serve(routes) as upstream:
        chat = provider(transport, upstream.base_url)
        with pytest.raises(UpstreamError, match="redirect") as caught:
            await chat.chat(chat_request(), TARGET)
        assert caught.value.provider == "upstream"
        with pytest.raises(UpstreamError, match="redirect"):
            await collect(chat.stream(chat_request(), TARGET), [])
    assert [sent["path"] for sent in upstream.received] == ["/v1/chat/completions"] * 2


async def test_in_band_errors_name_the_provider_and_hide_the_key(transport: Transport) -> None:
    error = {"error": {"message": f"key {API_KEY} is revoked", "type": "server_error"}}
    events = [chunk("Hi"), f"data: {json.dumps(error)}\n\n"]
    routes = {("POST", "/v1/chat/completions"): sse(events)}
    async with serve(routes) as upstream:
        with pytest.raises(GatewayError) as caught:
            await collect(provider(transport, upstream.base_url).stream(chat_request(), TARGET), [])
    assert caught.value.provider == "upstream"
    assert_key_hidden(caught.value)
    async with serve({("POST", "/v1/chat/completions"): json_response(error)}) as upstream:
        with pytest.raises(GatewayError) as caught:
            await provider(transport, upstream.base_url).chat(chat_request(), TARGET)
    assert caught.value.provider == "upstream"
    assert_key_hidden(caught.value)


async def test_done_without_any_chunk_is_not_an_answer(transport: Transport) -> None:
    async with serve({("POST", "/v1/chat/completions"): sse(["data: [DONE]\n\n"])}) as upstream:
        with pytest.raises(StreamInterrupted, match="without sending any chunk"):
            await collect(provider(transport, upstream.base_url).stream(chat_request(), TARGET), [])
