"""Edge cases of the Ollama adapter: request mapping (images, tools, options, format, think), tool-call ids,
finish reasons, NDJSON lines and errors, and the provider over real HTTP against a local aiohttp server
standing in for an Ollama server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from llmgate.core.accumulate import StreamAccumulator
from llmgate.core.codec import parse_chat_request, parse_embedding_request
from llmgate.core.errors import (
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    ProviderAuthError,
    RateLimited,
    UnexpectedResponse,
    UpstreamError,
)
from llmgate.core.headroom import NOTHING_UNSUPPORTED
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatChunk, ChatResponse
from llmgate.providers.base import ProviderSpec, Target, TimeoutPolicy
from llmgate.providers.ollama import DEFAULT_BASE_URL, OllamaStream, OllamaWire, build
from llmgate.providers.transport import Transport

FAST = TimeoutPolicy(connect=2.0, first_token=2.0, idle=2.0, total=5.0)
TARGET = Target("qwen3:8b", timeouts=FAST)
WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
PIXEL = "iVBORw0KGgo="


def chat(**fields: Any) -> ChatRequest:
    return parse_chat_request({"model": "group", "messages": [{"role": "user", "content": "Hi"}], **fields})


def body_of(request: ChatRequest, *, stream: bool = False, target: Target = TARGET) -> dict[str, Any]:
    return dict(json.loads(OllamaWire().chat_call(request, target, stream=stream).body or b""))


def answer(message: dict[str, Any], done_reason: str | None = "stop", **fields: Any) -> dict[str, Any]:
    out = {
        "model": "qwen3:8b",
        "created_at": "2025-08-20T13:48:24.316155123Z",
        "message": {"role": "assistant", "content": "", **message},
        "done": True,
        "prompt_eval_count": 12,
        "eval_count": 7,
        **fields,
    }
    if done_reason is not None:
        out["done_reason"] = done_reason
    return out


def parse(body: dict[str, Any]) -> ChatResponse:
    return OllamaWire().parse_chat(json.dumps(body).encode())


# --- request ---------------------------------------------------------------------------------------------


def test_options_format_and_stream() -> None:
    body = body_of(
        chat(
            temperature=0.1,
            top_p=0.8,
            max_tokens=32,
            stop=["\n\n"],
            seed=3,
            presence_penalty=0.2,
            frequency_penalty=0.4,
            top_k=20,
            options={"num_ctx": 8192},
            keep_alive="5m",
            response_format={"type": "json_object"},
        ),
        stream=True,
    )
    assert body == {
        "model": "qwen3:8b",
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "format": "json",
        "options": {
            "temperature": 0.1,
            "top_p": 0.8,
            "num_predict": 32,
            "stop": ["\n\n"],
            "seed": 3,
            "presence_penalty": 0.2,
            "frequency_penalty": 0.4,
            "top_k": 20,
            "num_ctx": 8192,
        },
        "keep_alive": "5m",
    }
    assert body_of(chat())["stream"] is False
    assert "options" not in body_of(chat())


def test_json_schema_is_the_format() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    request = chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert body_of(request)["format"] == schema


@pytest.mark.parametrize(
    ("effort", "think"),
    [("none", False), ("minimal", "low"), ("low", "low"), ("medium", "medium"), ("high", "high")],
)
def test_reasoning_effort_is_think(effort: str, think: bool | str) -> None:
    assert body_of(chat(reasoning_effort=effort))["think"] == think


def test_images_tools_and_tool_results() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather where this is?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "12C"},
    ]
    body = body_of(parse_chat_request({"model": "g", "messages": messages, "tools": [WEATHER]}))
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather where this is?", "images": [PIXEL]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "call_a", "function": {"name": "weather", "arguments": {"city": "Oslo"}}}],
        },
        {"role": "tool", "content": "12C", "tool_call_id": "call_a", "tool_name": "weather"},
    ]
    assert body["tools"] == [WEATHER]


def test_tool_choice_none_withholds_the_tools() -> None:
    assert "tools" not in body_of(chat(tools=[WEATHER], tool_choice="none"))
    assert body_of(chat(tools=[WEATHER], tool_choice="auto"))["tools"] == [WEATHER]


def test_arguments_that_are_not_json_are_refused() -> None:
    messages = [
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}],
        }
    ]
    with pytest.raises(InvalidRequest):
        body_of(parse_chat_request({"model": "g", "messages": messages}))


def test_check_reports_dropped_and_refused() -> None:
    wire = OllamaWire()
    assert (
        wire.check(chat(temperature=0.0, tools=[WEATHER], tool_choice="auto", top_k=5)) is NOTHING_UNSUPPORTED
    )
    report = wire.check(
        chat(logit_bias={"1": 1.0}, metadata={"a": "b"}, reasoning_effort="extreme", n=3, foo=1)
    )
    assert report.dropped == ("logit_bias", "metadata", "reasoning_effort", "foo")
    assert report.refused == ("n",)
    assert wire.check(chat(tools=[WEATHER], tool_choice="required")).refused == ("tool_choice",)
    named = {"type": "function", "function": {"name": "weather"}}
    assert wire.check(chat(tools=[WEATHER], tool_choice=named)).refused == ("tool_choice",)


def test_image_urls_are_refused_not_dropped() -> None:
    """Ollama takes image bytes only; fetching a URL on the caller's behalf is not the gateway's job, and
    leaving the image out would answer a different question."""
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    request = parse_chat_request({"model": "g", "messages": [{"role": "user", "content": content}]})
    assert OllamaWire().check(request).refused == ("image_url",)
    with pytest.raises(InvalidRequest):
        body_of(request)
    audio = [{"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}]
    audio_request = parse_chat_request({"model": "g", "messages": [{"role": "user", "content": audio}]})
    assert OllamaWire().check(audio_request).refused == ("input_audio",)


def test_authorization_only_with_a_key() -> None:
    wire = OllamaWire()
    assert set(wire.chat_call(chat(), TARGET, stream=False).headers) == {"Content-Type"}
    keyed = wire.chat_call(chat(), Target("m", api_key="ollama-key-1234567890"), stream=False)
    assert keyed.headers["Authorization"] == "Bearer ollama-key-1234567890"


# --- whole answers ---------------------------------------------------------------------------------------


TOOL_CALLS = [
    {"function": {"name": "weather", "arguments": {"city": "Oslo"}}},
    {"function": {"name": "weather", "arguments": {"city": "Bergen"}}},
]


def test_tool_calls_get_deterministic_distinct_ids() -> None:
    first = parse(answer({"tool_calls": TOOL_CALLS}))
    again = parse(answer({"tool_calls": TOOL_CALLS}))
    calls = first.choices[0].message.tool_calls
    assert isinstance(calls, list)
    assert [(c.function.name, c.function.arguments) for c in calls] == [
        ("weather", '{"city":"Oslo"}'),
        ("weather", '{"city":"Bergen"}'),
    ]
    ids = [call.id for call in calls]
    assert ids[0].startswith("call_0_") and ids[1].startswith("call_1_") and ids[0] != ids[1]
    assert again.choices[0].message.tool_calls == calls
    assert first.choices[0].finish_reason == "tool_calls"


def test_upstream_tool_call_ids_are_kept() -> None:
    parsed = parse(
        answer({"tool_calls": [{"id": "call_x7", "function": {"index": 0, "name": "f", "arguments": {}}}]})
    )
    calls = parsed.choices[0].message.tool_calls
    assert isinstance(calls, list) and [(c.id, c.function.arguments) for c in calls] == [("call_x7", "{}")]


@pytest.mark.parametrize(
    ("done_reason", "expected"),
    [("stop", "stop"), ("length", "length"), (None, "stop"), ("load", "load"), ("unload", "unload")],
)
def test_finish_reasons(done_reason: str | None, expected: str) -> None:
    assert parse(answer({"content": "x"}, done_reason)).choices[0].finish_reason == expected


def test_thinking_is_reasoning_and_usage_is_counted() -> None:
    parsed = parse(answer({"content": "4", "thinking": "2+2"}))
    message = parsed.choices[0].message
    assert (message.content, message.reasoning_content) == ("4", "2+2")
    assert parsed.usage is not None
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens, parsed.usage.total_tokens) == (
        12,
        7,
        19,
    )
    assert parse(answer({"content": ""})).choices[0].message.content is None


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (json.dumps({**answer({"content": "partial"}), "done": False}).encode(), UnexpectedResponse),
        (json.dumps({"model": "m", "response": "generate shape", "done": True}).encode(), UnexpectedResponse),
        (b"<html>proxy error</html>", UnexpectedResponse),
        (b'{"error": "model requires more system memory"}', UpstreamError),
    ],
    ids=["not-done", "generate-shape", "not-json", "error-body"],
)
def test_unusable_answers_raise(body: bytes, error: type[GatewayError]) -> None:
    with pytest.raises(error) as caught:
        OllamaWire().parse_chat(body)
    assert type(caught.value) is error


# --- streams ---------------------------------------------------------------------------------------------


def line(content: str = "", *, done: bool = False, **fields: Any) -> bytes:
    body: dict[str, Any] = {
        "model": "qwen3:8b",
        "created_at": "2025-08-20T13:48:24.316155Z",
        "message": {"role": "assistant", "content": content, **fields.pop("message", {})},
        "done": done,
        **fields,
    }
    return json.dumps(body).encode()


def translate(lines: list[bytes]) -> tuple[list[ChatChunk], OllamaStream]:
    translator = OllamaStream()
    return [chunk for data in lines for chunk in translator.feed(data)], translator


def accumulate(chunks: list[ChatChunk]) -> ChatResponse:
    accumulator = StreamAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    return accumulator.response()


def test_streamed_tool_calls_have_the_ids_of_the_whole_answer() -> None:
    lines = [
        line(message={"thinking": "Two cities."}),
        line(message={"tool_calls": TOOL_CALLS[:1]}),
        line(message={"tool_calls": TOOL_CALLS[1:]}),
        line(done=True, done_reason="stop", prompt_eval_count=12, eval_count=7),
    ]
    chunks, translator = translate(lines)
    assert translator.finished
    streamed = accumulate(chunks)
    whole = parse(answer({"thinking": "Two cities.", "tool_calls": TOOL_CALLS}))
    assert streamed.choices == whole.choices
    assert streamed.usage == whole.usage
    indices = [d.index for c in chunks for choice in c.choices for d in choice.delta.tool_calls or ()]
    assert indices == [0, 1]


def test_done_line_makes_finish_then_usage() -> None:
    chunks, _ = translate(
        [line("Hi"), line("!", done=True, done_reason="length", prompt_eval_count=3, eval_count=2)]
    )
    first, last_text, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant" and first.choices[0].delta.content == "Hi"
    assert last_text.choices[0].delta.content == "!"
    assert finish.choices[0].finish_reason == "length" and finish.choices[0].delta.content is None
    assert usage.choices == [] and usage.usage is not None and usage.usage.total_tokens == 5
    assert len({chunk.id for chunk in chunks}) == 1


def test_done_line_without_a_reason_still_ends_the_stream() -> None:
    """Servers before 0.1.33 sent no done_reason; ``done: true`` is what ends a stream."""
    chunks, translator = translate([line("a"), line(done=True)])
    assert translator.finished
    assert chunks[-2].choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ([line("a"), b'{"error": "an error was encountered while running the model"}'], UpstreamError),
        (
            [b'{"error": "the input length exceeds the context length", "status": 400}'],
            ContextLengthExceeded,
        ),
        ([line("a"), b"{truncated"], UnexpectedResponse),
        ([line(done=True, done_reason="stop"), line("late")], UnexpectedResponse),
    ],
    ids=["error-line", "error-line-with-status", "garbage", "line-after-done"],
)
def test_stream_failures_raise(lines: list[bytes], error: type[GatewayError]) -> None:
    with pytest.raises(error) as caught:
        translate(lines)
    assert type(caught.value) is error


# --- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "message", "headers", "expected"),
    [
        (404, 'model "llama9" not found, try pulling it first', {}, ModelNotFound),
        (400, 'invalid format: expected "json" or a JSON schema', {}, InvalidRequest),
        (
            400,
            "the prompt is longer than the context length currently available to the model",
            {},
            ContextLengthExceeded,
        ),
        (401, "unauthorized", {}, ProviderAuthError),
        (429, "too many requests", {"retry-after": "7"}, RateLimited),
        (500, "llama runner process has terminated", {}, UpstreamError),
        (503, "server busy, please try again.  maximum pending requests exceeded", {}, Overloaded),
    ],
)
def test_errors(status: int, message: str, headers: dict[str, str], expected: type[GatewayError]) -> None:
    error = OllamaWire().parse_error(status, headers, json.dumps({"error": message}).encode())
    assert type(error) is expected
    assert error.message == message
    assert error.retry_after == (7.0 if headers else None)


# --- over HTTP -------------------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(routes: dict[tuple[str, str], Handler]) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A local upstream on 127.0.0.1 (free port) that records every request before answering it."""
    received: list[dict[str, Any]] = []

    def recording(handler: Handler) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            received.append(
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
    for (method, path), handler in routes.items():
        app.router.add_route(method, path, recording(handler))
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", received
    finally:
        await runner.cleanup()


@pytest.fixture
async def transport() -> AsyncIterator[Transport]:
    transport = Transport()
    yield transport
    await transport.close()


def json_handler(body: Any, status: int = 200) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status)

    return handle


async def ndjson_handler(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    raw = (
        b"\n".join(
            [line("Hel"), line("lo"), line(done=True, done_reason="stop", prompt_eval_count=4, eval_count=2)]
        )
        + b"\n"
    )
    for start in range(0, len(raw), 37):  # cut mid-line on purpose
        await response.write(raw[start : start + 37])
    await response.write_eof()
    return response


async def test_chat_and_stream_over_http(transport: Transport) -> None:
    routes = {("POST", "/api/chat"): json_handler(answer({"content": "Hello"}))}
    async with serve(routes) as (base_url, received):
        provider = build(ProviderSpec(name="local", type="ollama", base_url=base_url), transport)
        response = await provider.chat(chat(max_tokens=5), TARGET)
    assert (response.text, response.model) == ("Hello", "qwen3:8b")
    assert received[0]["json"]["stream"] is False and received[0]["json"]["options"] == {"num_predict": 5}
    assert "Authorization" not in received[0]["headers"]

    async with serve({("POST", "/api/chat"): ndjson_handler}) as (base_url, received):
        provider = build(ProviderSpec(name="local", type="ollama", base_url=base_url), transport)
        chunks = [chunk async for batch in provider.stream(chat(), TARGET) for chunk in batch]
    assert received[0]["json"]["stream"] is True
    streamed = accumulate(chunks)
    assert (streamed.text, streamed.choices[0].finish_reason) == ("Hello", "stop")
    assert streamed.usage is not None and streamed.usage.total_tokens == 6


async def test_missing_model_over_http(transport: Transport) -> None:
    routes = {
        ("POST", "/api/chat"): json_handler({"error": 'model "nope" not found, try pulling it first'}, 404)
    }
    async with serve(routes) as (base_url, _):
        provider = build(ProviderSpec(name="local", type="ollama", base_url=base_url), transport)
        with pytest.raises(ModelNotFound) as caught:
            await provider.chat(chat(), Target("nope", timeouts=FAST))
    assert caught.value.provider == "local"


async def test_embeddings_and_model_listing_over_http(transport: Transport) -> None:
    tags = {
        "models": [
            {
                "name": "llama3.2:latest",
                "model": "llama3.2:latest",
                "modified_at": "2025-05-04T17:37:44.706015396-07:00",
                "size": 2019393189,
            },
            {
                "name": "nomic-embed-text:latest",
                "model": "nomic-embed-text:latest",
                "modified_at": "2025-05-01T10:00:00Z",
                "size": 1,
            },
        ]
    }
    embedded = {"model": "nomic-embed-text", "embeddings": [[0.1, 0.2], [0.3, 0.4]], "prompt_eval_count": 4}
    routes = {("POST", "/api/embed"): json_handler(embedded), ("GET", "/api/tags"): json_handler(tags)}
    async with serve(routes) as (base_url, received):
        provider = build(ProviderSpec(name="local", type="ollama", base_url=base_url), transport)
        request = parse_embedding_request(
            {"model": "g", "input": ["a", "b"], "dimensions": 2, "keep_alive": "1m"}
        )
        vectors = await provider.embed(request, Target("nomic-embed-text", timeouts=FAST))
        cards = await provider.list_models(Target("", timeouts=FAST))
    assert [item.embedding for item in vectors.data] == [[0.1, 0.2], [0.3, 0.4]]
    assert vectors.usage is not None and vectors.usage.prompt_tokens == 4
    assert received[0]["json"] == {
        "model": "nomic-embed-text",
        "input": ["a", "b"],
        "dimensions": 2,
        "keep_alive": "1m",
    }
    assert [(card.id, card.owned_by) for card in cards] == [
        ("llama3.2:latest", "ollama"),
        ("nomic-embed-text:latest", "ollama"),
    ]
    assert cards[0].created == 1746405464 and received[1]["method"] == "GET"


async def test_token_input_cannot_be_embedded(transport: Transport) -> None:
    provider = build(ProviderSpec(name="local", type="ollama", base_url="http://127.0.0.1:9"), transport)
    with pytest.raises(InvalidRequest):
        await provider.embed(parse_embedding_request({"model": "g", "input": [[1, 2]]}), TARGET)


def test_build_defaults_to_a_local_server() -> None:
    provider = build(ProviderSpec(name="local", type="ollama"), Transport())
    assert provider.base_url == DEFAULT_BASE_URL == "http://localhost:11434"
