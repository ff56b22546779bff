"""The built-in mock provider: deterministic, labelled, and able to fail on purpose."""

from __future__ import annotations

import json

import pytest

from llmgate.core.accumulate import StreamAccumulator
from llmgate.core.codec import parse_chat_request, parse_embedding_request
from llmgate.core.errors import (
    Overloaded,
    RateLimited,
    StreamInterrupted,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeout,
)
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatChunk
from llmgate.providers.base import Target, TimeoutPolicy
from llmgate.providers.mock import MockBehaviour, MockFailurePlan, MockProvider

TARGET = Target("mock-model")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}


def request(text: str = "hello there", **fields: object) -> ChatRequest:
    return parse_chat_request({"model": "mock:x", "messages": [{"role": "user", "content": text}], **fields})


async def collect(provider: MockProvider, req: ChatRequest, target: Target = TARGET) -> list[ChatChunk]:
    return [chunk async for batch in provider.stream(req, target) for chunk in batch]


async def test_replies_are_deterministic_and_labelled() -> None:
    mock = MockProvider()
    first = await mock.chat(request("hello there"), TARGET)
    second = await mock.chat(request("hello there"), TARGET)
    other = await mock.chat(request("something else"), TARGET)
    assert first.text == second.text
    assert first.id == second.id
    assert first.text != other.text
    assert "simulated" in first.text
    assert "hello there" in first.text
    assert first.usage is not None
    assert first.usage.completion_tokens > 0
    assert first.choices[0].finish_reason == "stop"


async def test_echo_model_repeats_the_user() -> None:
    reply = await MockProvider().chat(request("repeat me"), Target("echo"))
    assert reply.text == "repeat me"


async def test_stream_adds_up_to_the_complete_reply() -> None:
    mock = MockProvider()
    req = request("a b c d e f")
    whole = await mock.chat(req, TARGET)
    chunks = await collect(mock, req)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == []
    assert chunks[-1].usage == whole.usage
    accumulator = StreamAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    rebuilt = accumulator.response()
    assert rebuilt.text == whole.text
    assert rebuilt.choices[0].finish_reason == "stop"


async def test_tool_calls_when_required_and_streamed_the_same() -> None:
    mock = MockProvider()
    req = request("weather in Paris?", tools=[WEATHER], tool_choice="required")
    reply = await mock.chat(req, TARGET)
    calls = reply.choices[0].message.tool_calls
    assert calls
    assert calls[0].function.name == "get_weather"
    assert set(json.loads(calls[0].function.arguments)) == {"city", "days"}
    assert reply.choices[0].finish_reason == "tool_calls"
    accumulator = StreamAccumulator()
    for chunk in await collect(mock, req):
        accumulator.add(chunk)
    streamed = accumulator.response().choices[0]
    assert streamed.message.tool_calls == calls
    assert streamed.finish_reason == "tool_calls"


async def test_auto_tool_choice_calls_named_tools_only() -> None:
    mock = MockProvider()
    named = await mock.chat(request("call get_weather please", tools=[WEATHER]), TARGET)
    assert named.choices[0].message.tool_calls
    plain = await mock.chat(request("just chat", tools=[WEATHER]), TARGET)
    assert not plain.choices[0].message.tool_calls
    never = await mock.chat(request("call get_weather", tools=[WEATHER], tool_choice="none"), TARGET)
    assert not never.choices[0].message.tool_calls


async def test_json_schema_reply_is_valid_json_of_the_schema() -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
    req = request(
        "x", response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}}
    )
    reply = await MockProvider().chat(req, TARGET)
    assert set(json.loads(reply.text)) == {"name", "age"}


async def test_tool_result_gets_a_text_answer() -> None:
    req = parse_chat_request(
        {
            "model": "m",
            "tools": [WEATHER],
            "tool_choice": "required",
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c", "content": "sunny"},
            ],
        }
    )
    reply = await MockProvider().chat(req, TARGET)
    assert "sunny" in reply.text
    assert not reply.choices[0].message.tool_calls


async def test_max_tokens_truncates() -> None:
    reply = await MockProvider().chat(request("x" * 400, max_tokens=5), TARGET)
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 5
    assert reply.choices[0].finish_reason == "stop"


def failing(kind: str, **plan: object) -> MockProvider:
    return MockProvider(behaviour=MockBehaviour(failure_rate=1.0, failure=MockFailurePlan(kind=kind, **plan)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "error"), [(429, RateLimited), (500, UpstreamError), (503, Overloaded), (529, Overloaded)]
)
async def test_injected_status_failures(status: int, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        await failing("status", status=status, retry_after=2.5).chat(request(), TARGET)
    if status == 429:
        assert caught.value.retry_after == 2.5  # type: ignore[attr-defined]


async def test_injected_reset_and_timeout() -> None:
    with pytest.raises(UpstreamConnectionError):
        await failing("reset").chat(request(), TARGET)
    quick = Target("m", timeouts=TimeoutPolicy(first_token=0.01))
    with pytest.raises(UpstreamTimeout):
        await failing("timeout").chat(request(), quick)


async def test_stream_cut_after_n_chunks() -> None:
    mock = failing("stream_cut", after_chunks=2)
    seen: list[ChatChunk] = []
    with pytest.raises(StreamInterrupted):
        async for batch in mock.stream(request("one two three four five"), TARGET):
            seen.extend(batch)
    assert len([c for c in seen if c.has_content]) == 2


async def test_failure_rate_is_seeded() -> None:
    mock = MockProvider(behaviour=MockBehaviour(failure_rate=0.5, seed=7))
    again = MockProvider(behaviour=MockBehaviour(failure_rate=0.5, seed=7))
    first = [mock._draw_failure() is None for _ in range(50)]
    second = [again._draw_failure() is None for _ in range(50)]
    assert first == second
    assert 10 < sum(first) < 40


async def test_embeddings_are_deterministic_unit_vectors() -> None:
    mock = MockProvider()
    result = await mock.embed(parse_embedding_request({"model": "e", "input": ["a", "b", "a"]}), TARGET)
    vectors = [item.embedding for item in result.data]
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    assert isinstance(vectors[0], list)
    assert sum(v * v for v in vectors[0]) == pytest.approx(1.0)
    sized = await mock.embed(parse_embedding_request({"model": "e", "input": "a", "dimensions": 5}), TARGET)
    assert len(sized.data[0].embedding) == 5
