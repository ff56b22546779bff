"""Anthropic Messages in: the translation both ways, and the official ``anthropic`` SDK against the app.

The SDK runs over Starlette's test client (an ``httpx.Client``), so every request goes through the real
routes, the gateway's routing and policies, and the mock provider.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import msgspec
import pytest
from starlette.testclient import TestClient

from llmgate.config import load_settings
from llmgate.core.accumulate import StreamAccumulator
from llmgate.core.errors import InvalidRequest, Overloaded, QuotaExceeded, RateLimited
from llmgate.core.request import ANTHROPIC_MESSAGES, ChatRequest
from llmgate.core.response import ChatChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta
from llmgate.core.usage import make_usage
from llmgate.protocols.anthropic import MESSAGES, parse_count_tokens
from llmgate.protocols.anthropic.answer import error_status
from llmgate.server.app import create_app

CONFIG = """
providers:
  mock: {type: mock}
  overloaded: {type: mock, mock: {failure_rate: 1, failure: {kind: status, status: 529}}}
  limited: {type: mock, mock: {failure_rate: 1, failure: {kind: status, status: 429, retry_after: 7}}}
models:
  - name: claude-test
    deployments: [{provider: mock, model: echo}]
  - name: busy
    deployments: [{provider: overloaded, model: echo}]
routing: {retries: 0}
"""
DEEP: Any = {}
for _ in range(100):
    DEEP = {"a": DEEP}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME = {
    "name": "get_time",
    "description": "The time in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG)
    with TestClient(create_app(settings=load_settings(path, environ={}))) as client:
        yield client


@pytest.fixture
def sdk(http: TestClient) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=str(http.base_url), api_key="unused", http_client=http, max_retries=0)


def parse(**fields: Any) -> ChatRequest:
    body = {
        "model": "claude-test",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }
    return MESSAGES.parse(body)


def dumped(request: ChatRequest) -> dict[str, Any]:
    return msgspec.to_builtins(request)  # type: ignore[no-any-return]


# --- the request, translated ----------------------------------------------------------------------------------


def test_system_turns_and_sampling_become_the_canonical_request() -> None:
    request = parse(
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
        messages=[
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi!"}]},
            {"role": "user", "content": [{"type": "text", "text": "again"}]},
        ],
    )
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "user"]
    assert request.messages[0].text() == "Be brief."
    assert request.messages[2].content == "Hi!"
    assert (request.temperature, request.top_p, request.stop, request.user) == (0.2, 0.9, ["END"], "u-1")
    assert request.extra == {"top_k": 40}
    assert request.max_tokens == 100


def test_tool_use_and_results_map_to_tool_calls_and_tool_messages() -> None:
    request = parse(
        tools=[WEATHER, TIME],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[
            {"role": "user", "content": "weather and time in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Two calls.", "signature": "sig"},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {"city": "Paris"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "noon"}],
                    },
                    {"type": "text", "text": "Summarise."},
                ],
            },
        ],
    )
    roles = [m.role for m in request.messages]
    assert roles == ["user", "assistant", "tool", "tool", "user"]
    calls = request.messages[1].tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("toolu_1", "get_weather", {"city": "Paris"}),
        ("toolu_2", "get_time", {"city": "Paris"}),
    ]
    assert request.messages[1].content is None  # the thinking block has no canonical form
    assert (request.messages[2].tool_call_id, request.messages[2].content) == ("toolu_1", "sunny")
    assert request.messages[3].text() == "noon"
    assert request.tool_choice == "required" and request.parallel_tool_calls is False
    assert [t.function.name for t in request.tools or ()] == ["get_weather", "get_time"]
    assert (request.tools or [])[0].function.parameters == WEATHER["input_schema"]


def test_images_documents_and_named_tool_choice() -> None:
    request = parse(
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBO"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                    },
                ],
            }
        ],
    )
    parts = dumped(request)["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}
    assert parts[1] == {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    assert parts[2]["file"]["file_data"] == "data:application/pdf;base64,JVBE"
    assert dumped(request)["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}


@pytest.mark.parametrize(("budget", "effort"), [(1024, "low"), (8192, "medium"), (20000, "high")])
def test_thinking_budget_becomes_the_effort_that_reaches_it(budget: int, effort: str) -> None:
    request = parse(max_tokens=32000, thinking={"type": "enabled", "budget_tokens": budget})
    assert request.reasoning_effort == effort


def test_streaming_asks_for_the_usage_chunk() -> None:
    request = parse(stream=True)
    assert request.stream and request.wants_usage_chunk


def test_the_checked_body_rides_along_for_an_anthropic_backend() -> None:
    request = parse(
        top_k=5,
        stream=True,
        unknown_field="dropped",
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "more", "cache_control": {"type": "ephemeral"}}],
            },
        ],
    )
    assert request.native is not None and request.native.protocol == ANTHROPIC_MESSAGES
    body = request.native.body
    assert "model" not in body and "stream" not in body and "unknown_field" not in body
    assert body["top_k"] == 5 and body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["messages"][1]["content"][0] == {"type": "thinking", "thinking": "t", "signature": "s"}
    assert body["messages"][2]["content"][0]["cache_control"] == {"type": "ephemeral"}
    # A changed conversation drops it: it would no longer be what the canonical request says.
    assert request.with_messages(request.messages[:1]).native is None


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages[0].content[0].type"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
        ({"tool_choice": {"type": "tool"}, "tools": [WEATHER]}, "tool_choice.name"),
        ({"max_tokens": 10**9}, "max_tokens"),
        ({"thinking": {"type": "enabled", "budget_tokens": -5}}, "thinking.budget_tokens"),
        ({"top_k": 0}, "top_k"),
        (
            {"metadata": {"user_id": "u"}, "system": [{"type": "text", "text": "x", "cache_control": DEEP}]},
            "system",
        ),
        ({"stop_sequences": ["x"] * 100}, "stop_sequences"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "f", "input": {}}]}
                ]
            },
            "messages[0].content[0].type",
        ),
    ],
)
def test_bad_requests_name_the_field(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse(**fields)
    assert caught.value.param == param


def test_a_body_that_is_not_an_object_is_a_400() -> None:
    with pytest.raises(InvalidRequest):
        MESSAGES.parse(["not", "an", "object"])


def test_count_tokens_takes_a_request_without_max_tokens() -> None:
    request = parse_count_tokens(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER]}
    )
    assert request.messages[0].text() == "hi" and request.tools


# --- errors ---------------------------------------------------------------------------------------------------


def test_errors_take_anthropic_types_and_statuses() -> None:
    assert error_status(InvalidRequest("x")) == (400, "invalid_request_error")
    assert error_status(RateLimited("x")) == (429, "rate_limit_error")
    assert error_status(Overloaded("x")) == (529, "overloaded_error")
    assert error_status(QuotaExceeded("x")) == (429, "billing_error")
    status, body = MESSAGES.error(InvalidRequest("bad", param="max_tokens"))
    assert status == 400
    assert json.loads(body) == {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}


# --- the stream, rendered -------------------------------------------------------------------------------------


def chunk(delta: Delta | None = None, finish: str | None = None, **fields: Any) -> ChatChunk:
    choices = [ChunkChoice(index=0, delta=delta or Delta(), finish_reason=finish)] if delta or finish else []
    return ChatChunk(id="chatcmpl-1", created=1, model="m", choices=choices, **fields)


def events(frames: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for block in frames.decode().split("\n\n"):
        if block:
            name, data = block.split("\n")
            out.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


def test_stream_events_follow_anthropics_sequence() -> None:
    render = MESSAGES.stream(parse(stream=True))
    frames = render.frames([chunk(Delta(role="assistant")), chunk(Delta(reasoning_content="hmm"))])
    frames += render.frames([chunk(Delta(content="Hel")), chunk(Delta(content="lo"))])
    call = ToolCallDelta(index=0, id="call_1", type="function", function=FunctionCallDelta("f", '{"a"'))
    frames += render.frames([chunk(Delta(tool_calls=[call]))])
    more = ToolCallDelta(index=0, function=FunctionCallDelta(arguments=": 1}"))
    frames += render.frames([chunk(Delta(tool_calls=[more])), chunk(finish="tool_calls")])
    frames += render.frames([chunk(usage=make_usage(prompt=12, completion=7, cached=2))])
    frames += render.end()
    seen = events(frames)
    assert [name for name, _ in seen] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert seen[0][1]["message"]["id"] == "msg_chatcmpl-1"
    assert seen[2][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert seen[3][1]["delta"] == {"type": "thinking_delta", "thinking": "hmm"}
    assert seen[6][1] == {
        "type": "content_block_delta",
        "index": 1,
        "delta": {"type": "text_delta", "text": "Hel"},
    }
    assert seen[9][1]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "f", "input": {}}
    assert seen[11][1]["delta"] == {"type": "input_json_delta", "partial_json": ": 1}"}
    final = seen[13][1]
    assert final["delta"]["stop_reason"] == "tool_use"
    assert final["usage"] == {
        "input_tokens": 10,
        "output_tokens": 7,
        "cache_read_input_tokens": 2,
        "cache_creation_input_tokens": 0,
    }


def test_raw_chunks_are_read_and_a_broken_stream_ends_with_an_error_event() -> None:
    render = MESSAGES.stream(parse(stream=True))
    raw = b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"x"}}]}'
    frames = render.frames([raw]) + render.error(Overloaded("busy"))
    seen = events(frames)
    assert seen[3][1]["delta"]["text"] == "x"
    assert seen[-1] == ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})


# --- the official SDK against the app -------------------------------------------------------------------------


def test_sdk_create_whole(sdk: anthropic.Anthropic, http: TestClient) -> None:
    message = sdk.messages.create(
        model="claude-test",
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say hi"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and message.content[0].text == "Say hi"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


def test_sdk_stream_helper_assembles_the_message(sdk: anthropic.Anthropic) -> None:
    with sdk.messages.stream(
        model="claude-test", max_tokens=200, messages=[{"role": "user", "content": "Say hi"}]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == final.content[0].text  # type: ignore[union-attr]
    assert "".join(texts) == "Say hi"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0 and final.usage.input_tokens > 0


@pytest.mark.parametrize("stream", [False, True])
def test_sdk_tool_use_round_trip_with_parallel_calls(sdk: anthropic.Anthropic, stream: bool) -> None:
    ask = [{"role": "user", "content": "Call get_weather and get_time for Paris"}]
    if stream:
        with sdk.messages.stream(
            model="claude-test", max_tokens=300, tools=[WEATHER, TIME], messages=ask
        ) as s:
            message = s.get_final_message()
    else:
        message = sdk.messages.create(
            model="claude-test", max_tokens=300, tools=[WEATHER, TIME], messages=ask
        )
    assert message.stop_reason == "tool_use"
    uses = [block for block in message.content if block.type == "tool_use"]
    assert [use.name for use in uses] == ["get_weather", "get_time"]
    assert all(isinstance(use.input, dict) and "city" in use.input for use in uses)
    results = [{"type": "tool_result", "tool_use_id": use.id, "content": f"{use.name}: fine"} for use in uses]
    follow = sdk.messages.create(
        model="claude-test",
        max_tokens=300,
        tools=[WEATHER, TIME],
        messages=[
            *ask,
            {"role": "assistant", "content": message.content},
            {"role": "user", "content": results},
        ],
    )
    assert follow.stop_reason == "end_turn"
    assert "The tool returned" in follow.content[0].text  # type: ignore[union-attr]


def test_sdk_image_block_reaches_the_backend(tmp_path: Path) -> None:
    log = tmp_path / "interactions.jsonl"
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG + f"log: {{interactions: {{path: '{log}', max_bytes: 1000000, backups: 1}}}}\n")
    with TestClient(create_app(settings=load_settings(path, environ={}))) as http:
        sdk = anthropic.Anthropic(base_url=str(http.base_url), api_key="x", http_client=http, max_retries=0)
        image = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
        message = sdk.messages.create(
            model="claude-test",
            max_tokens=100,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": image},
                        {"type": "text", "text": "What is this?"},
                    ],
                }
            ],
        )
    assert message.content[0].type == "text"
    [entry] = [json.loads(line) for line in log.read_text().splitlines()]  # the call as it was routed
    parts = entry["request"]["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


def test_sdk_errors_raise_the_sdk_classes(sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        sdk.messages.create(model="claude-test", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.OverloadedError) as busy:
        sdk.messages.create(model="busy", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert busy.value.status_code == 529 and busy.value.response.headers["retry-after"]
    with pytest.raises(anthropic.RateLimitError):
        sdk.messages.create(model="limited:echo", max_tokens=10, messages=[{"role": "user", "content": "x"}])


def test_sdk_count_tokens(sdk: anthropic.Anthropic) -> None:
    short = sdk.messages.count_tokens(model="claude-test", messages=[{"role": "user", "content": "hi"}])
    long = sdk.messages.count_tokens(
        model="claude-test", messages=[{"role": "user", "content": "hi " * 200}], tools=[WEATHER]
    )
    assert 0 < short.input_tokens < long.input_tokens


def test_x_api_key_is_the_gateway_key(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(CONFIG + "server: {master_key: sk-master-test-123}\n")
    with TestClient(create_app(settings=load_settings(path, environ={}))) as http:
        good = anthropic.Anthropic(
            base_url=str(http.base_url), api_key="sk-master-test-123", http_client=http
        )
        assert good.messages.create(
            model="claude-test", max_tokens=20, messages=[{"role": "user", "content": "x"}]
        )
        bad = anthropic.Anthropic(
            base_url=str(http.base_url), api_key="wrong", http_client=http, max_retries=0
        )
        with pytest.raises(anthropic.AuthenticationError) as caught:
            bad.messages.create(
                model="claude-test", max_tokens=20, messages=[{"role": "user", "content": "x"}]
            )
        assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        with pytest.raises(anthropic.AuthenticationError):
            bad.messages.count_tokens(model="claude-test", messages=[{"role": "user", "content": "x"}])


def test_a_thinking_signature_is_a_signature_delta_and_part_of_the_whole_answer() -> None:
    render = MESSAGES.stream(parse(stream=True))
    frames = render.frames([chunk(Delta(reasoning_content="think")), chunk(Delta(reasoning_signature="SIG"))])
    frames += render.frames([chunk(Delta(content="answer")), chunk(finish="stop")]) + render.end()
    seen = events(frames)
    signature = [
        data
        for name, data in seen
        if name == "content_block_delta" and data["delta"]["type"] == "signature_delta"
    ]
    assert signature == [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "SIG"}}
    ]
    assert [data["index"] for name, data in seen if name == "content_block_start"] == [0, 1]

    accumulator = StreamAccumulator()
    for item in [
        chunk(Delta(reasoning_content="think")),
        chunk(Delta(reasoning_signature="SIG")),
        chunk(Delta(content="answer"), finish="stop"),
    ]:
        accumulator.add(item)
    whole = json.loads(MESSAGES.render(accumulator.response(), parse()))
    assert whole["content"][0] == {"type": "thinking", "thinking": "think", "signature": "SIG"}
    assert whole["content"][1] == {"type": "text", "text": "answer"}


def test_a_stream_that_breaks_raises_in_the_sdk(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    cut = "  cut: {type: mock, mock: {failure_rate: 1, failure: {kind: stream_cut, after_chunks: 2}}}\n"
    path.write_text(CONFIG.replace("models:\n", cut + "models:\n", 1))
    with TestClient(create_app(settings=load_settings(path, environ={}))) as http:
        sdk = anthropic.Anthropic(base_url=str(http.base_url), api_key="x", http_client=http, max_retries=0)
        with (
            pytest.raises(anthropic.APIStatusError) as caught,
            sdk.messages.stream(
                model="cut:echo", max_tokens=50, messages=[{"role": "user", "content": "a b c d e f"}]
            ) as s,
        ):
            s.get_final_message()
        assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_stop_sequences_over_the_bound_are_named_in_this_protocols_words() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse(stop_sequences=["x"] * 100)
    assert caught.value.param == "stop_sequences" and "'stop'" not in caught.value.message


def test_output_config_asks_for_a_checked_json_schema_answer() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    request = parse(output_config={"format": {"type": "json_schema", "schema": schema}})
    assert request.response_format is not None and request.response_format.type == "json_schema"
    assert (
        request.response_format.json_schema is not None
        and request.response_format.json_schema.schema == schema
    )


def test_a_failed_tool_result_says_so_in_its_text() -> None:
    turns = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": True}],
        },
    ]
    assert parse(messages=turns, tools=[WEATHER]).messages[2].content == "Error: boom"
    listed = [
        {
            "type": "tool_result",
            "tool_use_id": "t1",
            "is_error": True,
            "content": [{"type": "text", "text": "boom"}],
        }
    ]
    request = parse(messages=[*turns[:2], {"role": "user", "content": listed}], tools=[WEATHER])
    assert request.messages[2].text() == "Error:boom"  # a text part "Error:" first, then the result's


def test_a_tool_name_that_comes_after_the_first_fragment_still_names_the_block() -> None:
    render = MESSAGES.stream(parse(stream=True))
    first = ToolCallDelta(index=0, id="call_A", function=FunctionCallDelta(arguments='{"ci'))
    named = ToolCallDelta(index=0, function=FunctionCallDelta(name="get_weather", arguments='ty": "P"}'))
    frames = render.frames([chunk(Delta(tool_calls=[first]))])
    assert b"content_block_start" not in frames  # waits for the name
    frames += render.frames([chunk(Delta(tool_calls=[named])), chunk(finish="tool_calls")]) + render.end()
    seen = events(frames)
    starts = [data for name, data in seen if name == "content_block_start"]
    assert starts == [
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "call_A", "name": "get_weather", "input": {}},
        }
    ]
    fragments = [data["delta"]["partial_json"] for name, data in seen if name == "content_block_delta"]
    assert "".join(fragments) == '{"city": "P"}'


def test_a_tool_call_never_named_is_still_closed_at_the_end() -> None:
    render = MESSAGES.stream(parse(stream=True))
    nameless = ToolCallDelta(index=0, id="call_B", function=FunctionCallDelta(arguments="{}"))
    seen = events(render.frames([chunk(Delta(tool_calls=[nameless]))]) + render.end())
    assert [name for name, _ in seen][2:] == [
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert seen[2][1]["content_block"]["id"] == "call_B"


def test_sdk_structured_output_is_checked_like_chats(sdk: anthropic.Anthropic) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    raw = sdk.messages.with_raw_response.create(
        model="claude-test",
        max_tokens=100,
        messages=[{"role": "user", "content": "Name a city"}],
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )
    assert raw.headers["x-llmgate-schema"] == "valid"
    assert set(json.loads(raw.parse().content[0].text)) == {"city"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("pause_turn", "pause_turn"),
        ("eos", "end_turn"),
    ],
)
def test_finish_reasons_become_stop_reasons(finish: str, stop: str) -> None:
    render = MESSAGES.stream(parse(stream=True))
    seen = events(render.frames([chunk(Delta(content="x")), chunk(finish=finish)]) + render.end())
    assert next(data for name, data in seen if name == "message_delta")["delta"]["stop_reason"] == stop
