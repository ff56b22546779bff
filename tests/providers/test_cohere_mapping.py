"""Edge cases of the Cohere adapter: request mapping, finish reasons, stream events, errors, and the provider
over real HTTP against a local aiohttp server standing in for api.cohere.com."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator
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
    UpstreamTimeout,
)
from llmgate.core.headroom import NOTHING_UNSUPPORTED, Headroom
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatChunk
from llmgate.providers.base import ProviderSpec, Target, TimeoutPolicy
from llmgate.providers.cohere import DEFAULT_BASE_URL, CohereStream, CohereWire, build, finish_reason
from llmgate.providers.transport import Transport

KEY = "co-live-0123456789abcdefSECRET"
FAST = TimeoutPolicy(connect=2.0, first_token=2.0, idle=2.0, total=5.0)
TARGET = Target("command-a-03-2025", api_key=KEY, timeouts=FAST)


def chat(**fields: Any) -> ChatRequest:
    return parse_chat_request({"model": "group", "messages": [{"role": "user", "content": "Hi"}], **fields})


def body_of(request: ChatRequest, *, stream: bool = False) -> dict[str, Any]:
    call = CohereWire().chat_call(request, TARGET, stream=stream)
    return dict(json.loads(call.body or b""))


WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
CLOCK = {"type": "function", "function": {"name": "clock", "description": "time"}}


# --- request ---------------------------------------------------------------------------------------------


def test_sampling_parameters_are_renamed() -> None:
    body = body_of(
        chat(
            temperature=0.2,
            top_p=0.9,
            max_completion_tokens=64,
            stop="END",
            seed=7,
            frequency_penalty=0.5,
            presence_penalty=-0.5,
            k=40,
        )
    )
    assert body == {
        "model": "command-a-03-2025",
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.2,
        "p": 0.9,
        "max_tokens": 64,
        "stop_sequences": ["END"],
        "seed": 7,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "k": 40,
        "stream": False,
    }


def test_stream_flag_is_explicit() -> None:
    assert body_of(chat(), stream=True)["stream"] is True
    assert body_of(chat(stream=True), stream=False)["stream"] is False


def test_messages_keep_their_shape_and_developer_becomes_system() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    body = body_of(parse_chat_request({"model": "g", "messages": messages}))
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        messages[1],
        {"role": "assistant", "tool_calls": messages[2]["tool_calls"]},
        messages[3],
    ]


@pytest.mark.parametrize(
    ("tool_choice", "tools", "expected_choice"),
    [
        (None, ["weather", "clock"], None),
        ("auto", ["weather", "clock"], None),
        ("none", ["weather", "clock"], "NONE"),
        ("required", ["weather", "clock"], "REQUIRED"),
        ({"type": "function", "function": {"name": "clock"}}, ["clock"], "REQUIRED"),
    ],
)
def test_tool_choice(tool_choice: Any, tools: list[str], expected_choice: str | None) -> None:
    fields: dict[str, Any] = {"tools": [WEATHER, CLOCK]}
    if tool_choice is not None:
        fields["tool_choice"] = tool_choice
    body = body_of(chat(**fields))
    assert [tool["function"]["name"] for tool in body["tools"]] == tools
    assert body.get("tool_choice") == expected_choice
    assert body["tools"][-1] == (CLOCK if tools[-1] == "clock" else WEATHER)


def test_strict_functions_become_strict_tools() -> None:
    strict = {
        "type": "function",
        "function": {"name": "weather", "parameters": {"type": "object"}, "strict": True},
    }
    body = body_of(chat(tools=[strict, CLOCK]))
    assert body["tools"] == [WEATHER, CLOCK]
    assert body["strict_tools"] is True
    assert "strict_tools" not in body_of(chat(tools=[WEATHER]))


def test_forcing_an_unknown_tool_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as caught:
        body_of(chat(tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}))
    assert caught.value.param == "tool_choice"


def test_response_formats() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert body_of(chat(response_format={"type": "json_object"}))["response_format"] == {
        "type": "json_object"
    }
    structured = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    assert body_of(chat(response_format=structured))["response_format"] == {
        "type": "json_object",
        "json_schema": schema,
    }
    assert "response_format" not in body_of(chat(response_format={"type": "text"}))


def test_reasoning_effort_switches_thinking() -> None:
    assert body_of(chat(reasoning_effort="high"))["thinking"] == {"type": "enabled"}
    assert body_of(chat(reasoning_effort="none"))["thinking"] == {"type": "disabled"}
    assert body_of(chat(reasoning_effort="low", thinking={"type": "enabled", "token_budget": 9}))[
        "thinking"
    ] == {
        "type": "enabled",
        "token_budget": 9,
    }


def test_check_reports_dropped_and_refused() -> None:
    wire = CohereWire()
    assert wire.check(chat(temperature=1.0, n=1, tools=[WEATHER], k=3)) is NOTHING_UNSUPPORTED
    report = wire.check(chat(logit_bias={"50256": -100}, user="u1", n=2, enable_thinking=False))
    assert report.dropped == ("logit_bias", "user", "enable_thinking")
    assert report.refused == ("n",)
    assert "enable_thinking" not in body_of(chat(enable_thinking=False))
    legacy = wire.check(chat(functions=[{"name": "f"}], function_call="auto"))
    assert legacy.refused == ("functions", "function_call")


def test_media_cohere_cannot_take_is_refused() -> None:
    audio = {
        "role": "user",
        "content": [{"type": "input_audio", "input_audio": {"data": "AA==", "format": "wav"}}],
    }
    image_in_system = {
        "role": "system",
        "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}],
    }
    for message, refused in ((audio, ("input_audio",)), (image_in_system, ("image_url",))):
        request = parse_chat_request({"model": "g", "messages": [message]})
        assert CohereWire().check(request).refused == refused
        with pytest.raises(InvalidRequest):
            body_of(request)


def test_authorization_only_with_a_key() -> None:
    wire = CohereWire(extra_headers={"X-Client-Name": "llmgate"})
    assert "Authorization" not in wire.chat_call(chat(), Target("m"), stream=False).headers
    headers = wire.chat_call(chat(), TARGET, stream=False).headers
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["X-Client-Name"] == "llmgate"


# --- whole responses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("COMPLETE", "stop"),
        ("STOP_SEQUENCE", "stop"),
        ("MAX_TOKENS", "length"),
        ("TOOL_CALL", "tool_calls"),
        ("CONTENT_BLOCKED", "content_filter"),
        ("complete", "stop"),
        ("SOMETHING_NEW", "something_new"),
    ],
)
def test_finish_reasons(raw: str, expected: str) -> None:
    assert finish_reason(raw) == expected


def test_error_and_timeout_finish_reasons_are_failures() -> None:
    with pytest.raises(UpstreamError, match="overloaded shard"):
        finish_reason("ERROR", "overloaded shard")
    with pytest.raises(UpstreamTimeout):
        finish_reason("TIMEOUT")
    body = {"id": "x", "message": {"role": "assistant", "content": []}, "finish_reason": "ERROR"}
    with pytest.raises(UpstreamError):
        CohereWire().parse_chat(json.dumps(body).encode())


def test_thinking_and_tool_plan_are_reasoning() -> None:
    body = {
        "id": "r1",
        "message": {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "Hmm. "}, {"type": "text", "text": "42"}],
            "tool_plan": "Then answer.",
        },
        "finish_reason": "COMPLETE",
        "usage": {"billed_units": {"input_tokens": 3, "output_tokens": 2}},
    }
    parsed = CohereWire().parse_chat(json.dumps(body).encode())
    message = parsed.choices[0].message
    assert (message.content, message.reasoning_content) == ("42", "Hmm. Then answer.")
    assert parsed.usage is not None
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens, parsed.usage.cached_tokens) == (
        3,
        2,
        0,
    )


def test_unreadable_answer_is_never_success() -> None:
    with pytest.raises(UnexpectedResponse):
        CohereWire().parse_chat(b'{"text": "v1 shape", "generation_id": "g"}')


# --- streams ---------------------------------------------------------------------------------------------


def event(kind: str, **fields: Any) -> bytes:
    return json.dumps({"type": kind, **fields}).encode()


def message_delta(**message: Any) -> dict[str, Any]:
    return {"delta": {"message": message}}


def end(finish: str = "COMPLETE", **extra: Any) -> bytes:
    usage = {"tokens": {"input_tokens": 10, "output_tokens": 5}, "cached_tokens": 4}
    return event("message-end", delta={"finish_reason": finish, "usage": usage, **extra})


def feed_all(translator: CohereStream, events: list[bytes]) -> list[ChatChunk]:
    return [chunk for data in events for chunk in translator.feed(data)]


def test_parallel_tool_calls_keep_their_ids_and_indices() -> None:
    events = [
        event("message-start", id="m1"),
        event("tool-plan-delta", **message_delta(tool_plan="Look up both.")),
        event(
            "tool-call-start",
            index=0,
            **message_delta(
                tool_calls={
                    "id": "weather_a1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": ""},
                }
            ),
        ),
        event(
            "tool-call-delta", index=0, **message_delta(tool_calls={"function": {"arguments": '{"city":'}})
        ),
        event(
            "tool-call-start",
            index=1,
            **message_delta(
                tool_calls={
                    "id": "clock_b2",
                    "type": "function",
                    "function": {"name": "clock", "arguments": "{}"},
                }
            ),
        ),
        event("tool-call-delta", index=0, **message_delta(tool_calls={"function": {"arguments": '"Oslo"}'}})),
        event("tool-call-end", index=0),
        event("tool-call-end", index=1),
        end("TOOL_CALL"),
    ]
    translator = CohereStream()
    chunks = feed_all(translator, events)
    assert translator.finished
    ids = [(d.index, d.id) for c in chunks for choice in c.choices for d in choice.delta.tool_calls or ()]
    assert ids == [(0, "weather_a1"), (0, None), (1, "clock_b2"), (0, None)]
    accumulator = StreamAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    response = accumulator.response()
    message = response.choices[0].message
    assert isinstance(message.tool_calls, list)
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("weather_a1", "weather", '{"city":"Oslo"}'),
        ("clock_b2", "clock", "{}"),
    ]
    assert message.reasoning_content == "Look up both."
    assert response.choices[0].finish_reason == "tool_calls"
    assert response.usage is not None and (response.usage.prompt_tokens, response.usage.cached_tokens) == (
        10,
        4,
    )
    assert {chunk.id for chunk in chunks} == {"m1"}


def test_thinking_deltas_and_citations() -> None:
    events = [
        event("message-start", id="m2"),
        event("content-start", index=0, **message_delta(content={"type": "thinking", "thinking": ""})),
        event("content-delta", index=0, **message_delta(content={"thinking": "Let me see."})),
        event("content-end", index=0),
        event("content-start", index=1, **message_delta(content={"type": "text", "text": ""})),
        event("content-delta", index=1, **message_delta(content={"text": "Berlin."})),
        event("citation-start", index=0, **message_delta(citations={"start": 0, "end": 6, "text": "Berlin"})),
        event("citation-end", index=0),
        event("content-end", index=1),
        end(),
    ]
    chunks = feed_all(CohereStream(), events)
    deltas = [choice.delta for chunk in chunks for choice in chunk.choices]
    assert [(d.role, d.content, d.reasoning_content) for d in deltas] == [
        ("assistant", None, None),
        (None, None, "Let me see."),
        (None, "Berlin.", None),
        (None, None, None),
    ]


def test_message_end_makes_a_finish_chunk_then_a_usage_chunk() -> None:
    translator = CohereStream()
    translator.feed(event("message-start", id="m3"))
    finish, usage = translator.feed(end("MAX_TOKENS"))
    assert finish.choices[0].finish_reason == "length"
    assert usage.choices == [] and usage.usage is not None and usage.usage.total_tokens == 15
    assert translator.feed(b"[DONE]") == []


@pytest.mark.parametrize(
    ("events", "error"),
    [
        ([event("message-start", id="m"), event("brand-new-event")], UnexpectedResponse),
        ([event("message-start", id="m"), b"[DONE]"], UnexpectedResponse),
        (
            [
                event("message-start", id="m"),
                end(),
                event("content-delta", **message_delta(content={"text": "late"})),
            ],
            UnexpectedResponse,
        ),
        ([event("message-start", id="m"), end("ERROR", error="internal failure")], UpstreamError),
        ([event("message-start", id="m"), end("TIMEOUT")], UpstreamTimeout),
        ([event("message-start", id="m"), event("message-end", delta={})], UnexpectedResponse),
        ([b'{"message": "stream failed upstream"}'], UpstreamError),
        ([b"not json"], UnexpectedResponse),
        ([event("message-start", id="m"), event("tool-call-start", index=0, delta={})], UnexpectedResponse),
    ],
    ids=[
        "unknown-event",
        "done-too-early",
        "event-after-end",
        "error",
        "timeout",
        "no-finish",
        "in-band-error",
        "garbage",
        "tool-call-without-call",
    ],
)
def test_stream_failures_raise(events: list[bytes], error: type[GatewayError]) -> None:
    translator = CohereStream()
    with pytest.raises(error) as caught:
        feed_all(translator, events)
    assert type(caught.value) is error


# --- errors and headroom ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (400, {"message": "invalid request: temperature must be <= 1"}, {}, InvalidRequest),
        (400, {"message": "too many tokens: size limit exceeded by 5 tokens"}, {}, ContextLengthExceeded),
        (422, {"message": "x", "error_type": "TOO_MANY_TOKENS"}, {}, ContextLengthExceeded),
        (401, {"message": "invalid api token"}, {}, ProviderAuthError),
        (403, {"message": "forbidden"}, {}, ProviderAuthError),
        (498, {"message": "invalid token"}, {}, ProviderAuthError),
        (402, {"message": "Please add a payment method"}, {}, RateLimited),
        (404, {"message": "model 'command-z' not found"}, {}, ModelNotFound),
        (429, {"message": "You are using a Trial key"}, {"retry-after": "12"}, RateLimited),
        (499, {"message": "request cancelled"}, {}, UpstreamError),
        (500, {"message": "internal server error"}, {}, UpstreamError),
        (503, {"message": "service unavailable"}, {"retry-after": "3"}, Overloaded),
        (504, {"message": "gateway timeout"}, {}, UpstreamTimeout),
    ],
)
def test_errors(
    status: int, body: dict[str, Any], headers: dict[str, str], expected: type[GatewayError]
) -> None:
    error = CohereWire().parse_error(status, headers, json.dumps(body).encode())
    assert type(error) is expected
    assert error.message == body["message"]
    assert error.retry_after == (float(headers["retry-after"]) if headers else None)
    if status == 402:
        assert error.code == "insufficient_quota"


def test_error_without_json_keeps_the_text() -> None:
    error = CohereWire().parse_error(502, {}, b"<html>Bad Gateway</html>")
    assert type(error) is UpstreamError
    assert error.message == "<html>Bad Gateway</html>"


def test_trial_headers_are_headroom() -> None:
    wire = CohereWire()
    reading = wire.headroom({"x-trial-endpoint-call-limit": "40", "x-trial-endpoint-call-remaining": "32"})
    assert reading == Headroom(requests_limit=40, requests_remaining=32)
    assert wire.headroom({"x-endpoint-monthly-call-limit": "1000"}) is None


# --- over HTTP -------------------------------------------------------------------------------------------


@asynccontextmanager
async def serve(
    routes: dict[str, web.StreamResponse | Any],
) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A local upstream on 127.0.0.1 (free port); each POST path answers with a prepared handler."""
    received: list[dict[str, Any]] = []

    def recording(handler: Any) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            received.append(
                {"path": request.path, "headers": dict(request.headers), "json": await request.json()}
            )
            return await handler(request)  # type: ignore[no-any-return]

        return handle

    app = web.Application()
    for path, handler in routes.items():
        app.router.add_post(path, recording(handler))
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


ANSWER = {
    "id": "a1",
    "message": {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
    "finish_reason": "COMPLETE",
    "usage": {
        "billed_units": {"input_tokens": 1, "output_tokens": 2},
        "tokens": {"input_tokens": 9, "output_tokens": 2},
    },
}
SSE = (
    "".join(
        f"event: {kind}\ndata: {json.dumps(data)}\n\n"
        for kind, data in [
            (
                "message-start",
                {
                    "id": "s1",
                    "type": "message-start",
                    "delta": {"message": {"role": "assistant", "content": [], "tool_calls": []}},
                },
            ),
            (
                "content-delta",
                {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hel"}}}},
            ),
            (
                "content-delta",
                {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "lo."}}}},
            ),
            (
                "message-end",
                {"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": ANSWER["usage"]}},
            ),
        ]
    )
    + "data: [DONE]\n\n"
)


def json_handler(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status, headers=headers)

    return handle


async def sse_handler(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for piece in (SSE[:50], SSE[50:333], SSE[333:]):
        await response.write(piece.encode())
    await response.write_eof()
    return response


async def test_chat_and_stream_over_http(transport: Transport) -> None:
    async with serve({"/v2/chat": json_handler(ANSWER)}) as (base_url, received):
        provider = build(ProviderSpec(name="co", type="cohere", base_url=base_url), transport)
        response = await provider.chat(chat(top_p=0.5), TARGET)
    assert (response.text, response.model, response.id) == ("Hello.", TARGET.model, "a1")
    assert response.usage is not None and response.usage.prompt_tokens == 9
    [sent] = received
    assert sent["path"] == "/v2/chat"
    assert sent["headers"]["Authorization"] == f"Bearer {KEY}"
    assert sent["json"]["p"] == 0.5 and sent["json"]["stream"] is False

    async with serve({"/v2/chat": sse_handler}) as (base_url, received):
        provider = build(ProviderSpec(name="co", type="cohere", base_url=base_url), transport)
        chunks = [chunk async for batch in provider.stream(chat(), TARGET) for chunk in batch]
    assert received[0]["json"]["stream"] is True
    assert {chunk.model for chunk in chunks} == {TARGET.model}
    accumulator = StreamAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    assert accumulator.response().text == "Hello."
    assert chunks[-1].usage is not None and chunks[-1].choices == []


async def test_http_errors_are_translated_and_redacted(transport: Transport) -> None:
    answer = {"message": f"invalid api token {KEY}"}
    async with serve({"/v2/chat": json_handler(answer, status=401)}) as (base_url, _):
        provider = build(ProviderSpec(name="co", type="cohere", base_url=base_url), transport)
        with pytest.raises(ProviderAuthError) as caught:
            await provider.chat(chat(), TARGET)
    assert KEY not in caught.value.message
    assert caught.value.provider == "co"


async def test_embeddings_over_http(transport: Transport) -> None:
    answer = {
        "id": "e1",
        "texts": ["a", "b"],
        "embeddings": {"float": [[0.5, -1.0], [0.25, 2.0]]},
        "meta": {"billed_units": {"input_tokens": 2}},
        "response_type": "embeddings_by_type",
    }
    async with serve({"/v2/embed": json_handler(answer)}) as (base_url, received):
        provider = build(ProviderSpec(name="co", type="cohere", base_url=base_url), transport)
        target = Target("embed-v4.0", api_key=KEY, timeouts=FAST)
        plain = await provider.embed(parse_embedding_request({"model": "g", "input": ["a", "b"]}), target)
        request = {
            "model": "g",
            "input": ["a", "b"],
            "input_type": "search_query",
            "dimensions": 256,
            "encoding_format": "base64",
        }
        encoded = await provider.embed(parse_embedding_request(request), target)
    assert [item.embedding for item in plain.data] == [[0.5, -1.0], [0.25, 2.0]]
    assert plain.usage is not None and plain.usage.prompt_tokens == 2 and plain.model == "embed-v4.0"
    first = encoded.data[0].embedding
    assert isinstance(first, str)
    assert list(struct.unpack("<2f", base64.b64decode(first))) == [0.5, -1.0]
    assert received[0]["json"] == {
        "model": "embed-v4.0",
        "texts": ["a", "b"],
        "input_type": "search_document",
        "embedding_types": ["float"],
    }
    assert received[1]["json"]["input_type"] == "search_query"
    assert received[1]["json"]["output_dimension"] == 256


async def test_token_input_cannot_be_embedded(transport: Transport) -> None:
    provider = build(ProviderSpec(name="co", type="cohere", base_url="http://127.0.0.1:9"), transport)
    with pytest.raises(InvalidRequest):
        await provider.embed(parse_embedding_request({"model": "g", "input": [[1, 2, 3]]}), TARGET)


def test_build_defaults_to_the_public_api() -> None:
    provider = build(ProviderSpec(name="co", type="cohere"), Transport())
    assert provider.base_url == DEFAULT_BASE_URL == "https://api.cohere.com"
    assert provider.name == "co"
