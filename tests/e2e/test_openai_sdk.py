"""The official openai SDK against a real ``llmgate serve`` in front of a real upstream (SPEC.md 2, 13)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion

from .conftest import MASTER_KEY, UPSTREAM_KEY, GatewayProcess, Upstream

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


# --- success paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "upstream_model"),
    [
        ("gpt-test", "gpt-test"),
        ("alias-test", "upstream-name-for-alias"),
        ("up:gpt-direct", "gpt-direct"),
        ("up/gpt-direct", "gpt-direct"),
    ],
)
def test_sync_chat_reaches_upstream_with_rewritten_model_and_provider_key(
    client: openai.OpenAI, upstream: Upstream, marker: str, model: str, upstream_model: str
) -> None:
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "be brief"}, *user(f"hello {marker}")],
        temperature=0.5,
        max_tokens=50,
    )

    assert reply.choices[0].message.content == f"Echo: hello {marker}"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 3
    seen = upstream.request_with(marker)
    assert seen["path"] == "/v1/chat/completions"
    assert seen["body"]["model"] == upstream_model
    assert seen["body"]["temperature"] == 0.5
    assert seen["body"]["max_tokens"] == 50
    assert "stream" not in seen["body"]
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"  # the caller's key is not forwarded


async def test_async_chat(async_client: openai.AsyncOpenAI, marker: str) -> None:
    reply = await async_client.chat.completions.create(model="gpt-test", messages=user(f"async {marker}"))

    assert reply.choices[0].message.content == f"Echo: async {marker}"
    assert reply.object == "chat.completion"


async def test_async_stream(async_client: openai.AsyncOpenAI, marker: str) -> None:
    stream = await async_client.chat.completions.create(
        model="gpt-test", messages=user(f"one two {marker}"), stream=True
    )
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])

    assert text == f"Echo: one two {marker}"


def test_stream_with_usage_ends_with_a_usage_chunk(
    client: openai.OpenAI, upstream: Upstream, marker: str
) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-test",
            messages=user(f"alpha beta gamma {marker}"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Echo: alpha beta gamma {marker}"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 5
    assert last.usage.total_tokens == last.usage.prompt_tokens + 5
    assert all(c.usage is None for c in chunks[:-1])
    assert upstream.request_with(marker)["body"]["stream_options"] == {"include_usage": True}


def test_stream_without_usage_has_no_usage_chunk(
    client: openai.OpenAI, upstream: Upstream, marker: str
) -> None:
    chunks = list(client.chat.completions.create(model="gpt-test", messages=user(f"x {marker}"), stream=True))

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == f"Echo: x {marker}"
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)
    # The gateway asks the upstream for usage anyway (to account for the call), then hides it.
    body = upstream.request_with(marker)["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    "tool_choice",
    ["required", {"type": "function", "function": {"name": "get_weather"}}],
    ids=["required", "named"],
)
def test_tool_calls_with_parsed_arguments(
    client: openai.OpenAI, upstream: Upstream, marker: str, tool_choice: Any
) -> None:
    reply = client.chat.completions.create(
        model="gpt-test", messages=user(marker), tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=tool_choice
    )

    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    (call,) = choice.message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": marker, "days": len(marker)}
    body = upstream.request_with(marker)["body"]
    assert body["tools"] == [WEATHER_TOOL, TIME_TOOL]
    assert body["tool_choice"] == tool_choice


def test_streamed_tool_calls_reassemble(client: openai.OpenAI, marker: str) -> None:
    stream = client.chat.completions.create(
        model="gpt-test", messages=user(marker), tools=[WEATHER_TOOL], tool_choice="required", stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    fragments = 0
    for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                fragments += 1
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["name"] += delta.function.name or ""
                    call["arguments"] += delta.function.arguments or ""

    assert finish == "tool_calls"
    assert fragments > 2  # the arguments really arrived in pieces
    assert list(calls) == [0]
    assert calls[0]["id"].startswith("call_")
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": marker, "days": len(marker)}


def test_legacy_functions_pass_through(client: openai.OpenAI, upstream: Upstream, marker: str) -> None:
    function = WEATHER_TOOL["function"]
    reply = client.chat.completions.create(
        model="gpt-test", messages=user(marker), functions=[function], function_call={"name": "get_weather"}
    )

    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "function_call"
    assert message.function_call is not None
    assert message.function_call.name == "get_weather"
    assert json.loads(message.function_call.arguments)["city"] == marker
    body = upstream.request_with(marker)["body"]
    assert body["functions"] == [function]
    assert body["function_call"] == {"name": "get_weather"}


def test_response_format_json_object(client: openai.OpenAI, upstream: Upstream, marker: str) -> None:
    reply = client.chat.completions.create(
        model="gpt-test", messages=user(f"json please {marker}"), response_format={"type": "json_object"}
    )

    assert json.loads(reply.choices[0].message.content or "") == {"echo": f"json please {marker}"}
    assert upstream.request_with(marker)["body"]["response_format"] == {"type": "json_object"}


def test_unknown_fields_reach_the_upstream_untouched(
    client: openai.OpenAI, upstream: Upstream, marker: str
) -> None:
    extra = {"brand_new_param": {"nested": [1, 2.5, None, "x"], "flag": True}, "top_k": 7}
    reply = client.chat.completions.create(
        model="gpt-test", messages=user(marker), seed=42, user="end-user-1", extra_body=extra
    )

    assert reply.choices[0].message.content == f"Echo: {marker}"
    body = upstream.request_with(marker)["body"]
    assert body["brand_new_param"] == extra["brand_new_param"]
    assert body["top_k"] == 7
    assert body["seed"] == 42
    assert body["user"] == "end-user-1"


@pytest.mark.parametrize("encoding_format", ["float", None], ids=["float", "sdk-default"])
def test_embeddings(
    client: openai.OpenAI, upstream: Upstream, marker: str, encoding_format: str | None
) -> None:
    options: Any = {"encoding_format": encoding_format} if encoding_format else {}
    result = client.embeddings.create(model="up:embed-test", input=[marker, "other", marker], **options)

    vectors = [item.embedding for item in result.data]
    assert [item.index for item in result.data] == [0, 1, 2]
    assert all(len(v) == 8 for v in vectors)
    assert vectors[0] == pytest.approx(vectors[2])
    assert vectors[0] != pytest.approx(vectors[1])
    assert result.usage.prompt_tokens == 3
    seen = upstream.request_with(marker)
    assert seen["path"] == "/v1/embeddings"
    assert seen["body"]["model"] == "embed-test"
    assert seen["body"]["input"] == [marker, "other", marker]


def test_embeddings_headers_and_dimensions(client: openai.OpenAI, marker: str) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="up:embed-test", input=marker, dimensions=4, encoding_format="float"
    )

    assert raw.headers["x-llmgate-provider"] == "up"
    assert "x-llmgate-cost-usd" in raw.headers
    assert len(raw.parse().data[0].embedding) == 4


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]

    assert "gpt-test" in ids
    assert "alias-test" in ids
    assert client.models.retrieve("gpt-test").id == "gpt-test"
    direct = client.models.retrieve("up:anything")
    assert direct.id == "up:anything"
    assert direct.owned_by == "up"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model-anywhere")


@pytest.mark.parametrize("stream", [False, True])
def test_mock_provider_echo(client: openai.OpenAI, upstream: Upstream, marker: str, stream: bool) -> None:
    if stream:
        chunks = client.chat.completions.create(
            model="mock:echo", messages=user(f"ping {marker}"), stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        reply = client.chat.completions.create(model="mock:echo", messages=user(f"ping {marker}"))
        text = reply.choices[0].message.content or ""

    assert text == f"ping {marker}"
    assert upstream.requests_with(marker) == []  # served inside the gateway


def test_call_headers(client: openai.OpenAI, marker: str) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=user(marker), extra_headers={"x-request-id": f"req-{marker}"}
    )

    assert raw.status_code == 200
    assert raw.headers["x-request-id"] == f"req-{marker}"
    assert raw.headers["x-llmgate-provider"] == "up"
    assert raw.headers["x-llmgate-deployment"]
    assert int(raw.headers["x-llmgate-attempts"]) >= 1
    assert float(raw.headers["x-llmgate-cost-usd"]) > 0  # priced by model_prices in the config
    assert raw.parse().choices[0].message.content == f"Echo: {marker}"


def test_request_id_is_generated(client: openai.OpenAI, marker: str) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=user(marker), stream=True
    )

    assert raw.headers["x-request-id"]
    assert raw.headers["x-llmgate-provider"] == "up"
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices) == f"Echo: {marker}"


# --- errors ----------------------------------------------------------------------------------------


def _error_body(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


def test_malformed_json_is_400(gateway: GatewayProcess) -> None:
    response = httpx.post(
        f"{gateway.base_url}/chat/completions",
        content=b"{bad",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"messages": "not a list"}, "messages"),
        ({"temperature": "hot"}, "temperature"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"max_tokens": -5}, "max_tokens"),
    ],
    ids=["messages-type", "temperature-type", "bad-role", "negative-max-tokens"],
)
def test_wrong_types_are_400_naming_the_field(
    client: openai.OpenAI, overrides: dict[str, Any], param: str
) -> None:
    body = {"model": "gpt-test", "messages": user("hi"), **overrides}
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body=body, cast_to=ChatCompletion)

    error = _error_body(caught.value)
    assert caught.value.status_code == 400
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


@pytest.mark.parametrize("missing", ["messages", "model"])
def test_missing_required_field_is_400(client: openai.OpenAI, missing: str) -> None:
    body = {"model": "gpt-test", "messages": user("hi")}
    del body[missing]
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body=body, cast_to=ChatCompletion)

    assert _error_body(caught.value)["param"] == missing


def test_upstream_400_message_is_passed_through(client: openai.OpenAI, marker: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="up:fail-400", messages=user(marker))

    error = _error_body(caught.value)
    assert "upstream-400-marker" in error["message"]
    assert error["type"] == "invalid_request_error"


def test_upstream_context_length_exceeded(client: openai.OpenAI, marker: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="up:fail-context", messages=user(marker))

    assert caught.value.code == "context_length_exceeded"
    assert "maximum context length" in _error_body(caught.value)["message"]


@pytest.fixture(scope="module")
def auth_gateway(gateway_factory: Callable[..., GatewayProcess]) -> GatewayProcess:
    return gateway_factory(master_key=MASTER_KEY)


def test_master_key_required(auth_gateway: GatewayProcess, marker: str) -> None:
    with auth_gateway.client(api_key="sk-wrong") as wrong:
        with pytest.raises(openai.AuthenticationError) as caught:
            wrong.chat.completions.create(model="gpt-test", messages=user(marker))
        assert caught.value.status_code == 401
        assert _error_body(caught.value)["type"] == "authentication_error"
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
    missing = httpx.post(
        f"{auth_gateway.base_url}/chat/completions",
        json={"model": "gpt-test", "messages": user(marker)},
        timeout=10,
    )
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"

    with auth_gateway.client(api_key=MASTER_KEY) as right:
        reply = right.chat.completions.create(model="gpt-test", messages=user(marker))
        assert reply.choices[0].message.content == f"Echo: {marker}"
    via_x_api_key = httpx.post(
        f"{auth_gateway.base_url}/chat/completions",
        json={"model": "gpt-test", "messages": user(marker)},
        headers={"x-api-key": MASTER_KEY},
        timeout=10,
    )
    assert via_x_api_key.status_code == 200


def test_unknown_model_is_404(client: openai.OpenAI, upstream: Upstream, marker: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-tset", messages=user(marker))

    assert caught.value.code == "model_not_found"
    assert "gpt-test" in _error_body(caught.value)["message"]  # the close match
    assert upstream.requests_with(marker) == []


def test_upstream_404_is_404(client: openai.OpenAI, marker: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="up:fail-404", messages=user(marker))

    assert caught.value.code == "model_not_found"


@pytest.fixture(scope="module")
def small_gateway(gateway_factory: Callable[..., GatewayProcess]) -> GatewayProcess:
    return gateway_factory(max_body_bytes=4096)


def test_oversize_body_is_413(small_gateway: GatewayProcess, upstream: Upstream, marker: str) -> None:
    with small_gateway.client() as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            sdk.chat.completions.create(model="gpt-test", messages=user(marker + " x" * 5000))
        assert caught.value.status_code == 413
        _error_body(caught.value)
        ok = sdk.chat.completions.create(model="gpt-test", messages=user(marker))
        assert ok.choices[0].message.content == f"Echo: {marker}"
    assert len(upstream.requests_with(marker)) == 1  # only the small one was forwarded


def test_oversize_chunked_body_is_413(small_gateway: GatewayProcess) -> None:
    def body() -> Iterator[bytes]:  # no Content-Length: the limit must hold while reading
        yield b'{"model": "gpt-test", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}'

    response = httpx.post(f"{small_gateway.base_url}/chat/completions", content=body(), timeout=10)

    assert response.status_code == 413
    assert response.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_429_is_rate_limit_error_with_retry_after(
    client: openai.OpenAI, marker: str, stream: bool
) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="up:fail-429", messages=user(marker), stream=stream)

    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    _error_body(caught.value)


def test_upstream_500_is_502(client: openai.OpenAI, marker: str) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="up:fail-500", messages=user(marker))

    assert caught.value.status_code == 502
    assert "up" in _error_body(caught.value)["message"]


def test_upstream_timeout_is_504(client: openai.OpenAI, upstream: Upstream, marker: str) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="tight:slow-3000", messages=user(marker))

    assert caught.value.status_code == 504
    assert _error_body(caught.value)["type"]
    # The gateway gave up after its 1 s budget and hung up on the upstream, which noticed.
    upstream.wait_for(marker, lambda entry: entry["disconnected"], timeout=5)


def test_upstream_401_is_502_and_never_leaks_the_provider_key(client: openai.OpenAI, marker: str) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="up:fail-401", messages=user(marker))

    assert caught.value.status_code == 502
    text = caught.value.response.text
    assert UPSTREAM_KEY not in text
    assert "upstream-secret" not in text
    assert _error_body(caught.value)["message"]


def test_upstream_401_stream_never_leaks_the_provider_key(gateway: GatewayProcess, marker: str) -> None:
    response = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "up:fail-401", "messages": user(marker), "stream": True},
        timeout=10,
    )

    assert response.status_code == 502
    assert UPSTREAM_KEY not in response.text


def test_stream_chunks_after_the_first_content_pass_as_the_upstream_sent_them(
    gateway: GatewayProcess, marker: str
) -> None:
    # The upstream writes its chunks with json.dumps (", " and ": " separators); llmgate's own encoder
    # writes compact JSON. So a frame with the upstream's spacing was forwarded without re-encoding.
    body = {"model": "gpt-test", "messages": user(f"one two three {marker}"), "stream": True}
    headers = {"Authorization": "Bearer sk-e2e-client"}
    with httpx.stream("POST", f"{gateway.base_url}/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200
        raw = response.read()
    frames = [block[len(b"data: ") :] for block in raw.split(b"\n\n") if block.startswith(b"data: ")]
    assert frames[-1] == b"[DONE]"
    chunks = frames[:-1]
    role, first_word, rest = chunks[0], chunks[1], chunks[2:]
    assert b'", "' not in role and b'", "' not in first_word  # read by the gateway (routing needs them)
    assert rest and all(b'"object": "chat.completion.chunk"' in frame for frame in rest)
    assert all(b'"system_fingerprint": "fp_e2e_upstream"' in frame for frame in rest)
    text = "".join(json.loads(frame)["choices"][0]["delta"].get("content") or "" for frame in chunks)
    assert text == f"Echo: one two three {marker}"
    # The gateway asked for usage; this client did not, so no usage chunk is forwarded.
    assert all(json.loads(frame)["choices"] for frame in chunks)
