"""Structured output: schemas compiled before routing, invalid replies retried, then a clear failure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmgate.core.codec import parse_chat_request
from llmgate.core.errors import InvalidRequest, SchemaViolation
from llmgate.core.response import ChatResponse, Choice, ResponseMessage
from llmgate.core.results import CallInfo, ChatResult
from llmgate.policies.structured import StructuredOutput, parse_json

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def request(schema: Any = PERSON, *, strict: bool | None = True, kind: str = "json_schema") -> Any:
    fmt: dict[str, Any] = {"type": kind}
    if kind == "json_schema":
        fmt["json_schema"] = {"name": "person", "schema": schema, "strict": strict}
    return parse_chat_request(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "response_format": fmt}
    )


def result(content: str | None, finish: str = "stop", refusal: str | None = None) -> ChatResult:
    message = ResponseMessage(content=content, refusal=refusal)
    response = ChatResponse(
        id="x", created=1, model="m", choices=[Choice(index=0, message=message, finish_reason=finish)]
    )
    return ChatResult(response, CallInfo("req", "p", "p/m", "m"), 0.0)


class Replies:
    def __init__(self, *contents: str) -> None:
        self.contents = list(contents)
        self.calls = 0

    async def __call__(self) -> ChatResult:
        self.calls += 1
        return result(self.contents.pop(0))


async def test_a_valid_reply_passes_first_time() -> None:
    stage = StructuredOutput(retries=1)
    replies = Replies(json.dumps({"name": "Ann", "age": 3}))
    served = await stage.run(stage.expectation(request()), replies)
    assert replies.calls == 1
    assert served.info.schema == "valid"


async def test_an_invalid_reply_is_asked_for_again() -> None:
    stage = StructuredOutput(retries=1)
    replies = Replies('{"name": "Ann"}', '{"name": "Ann", "age": 3}')
    served = await stage.run(stage.expectation(request()), replies)
    assert replies.calls == 2
    assert json.loads(served.text) == {"name": "Ann", "age": 3}


async def test_strict_fails_after_the_retries_naming_the_first_violation() -> None:
    stage = StructuredOutput(retries=2)
    replies = Replies('{"name": "Ann", "age": "x"}', "{}", '{"name": 5, "age": 1}')
    with pytest.raises(SchemaViolation) as caught:
        await stage.run(stage.expectation(request()), replies)
    assert replies.calls == 3
    assert "schema 'person' after 3 attempts: at $.name: 5 is not of type \"string\"" in caught.value.message
    assert caught.value.status == 502


async def test_not_strict_returns_the_last_reply_marked_invalid() -> None:
    stage = StructuredOutput(retries=1)
    replies = Replies("not json", "still not json")
    served = await stage.run(stage.expectation(request(strict=False)), replies)
    assert replies.calls == 2
    assert served.info.schema == "invalid"


async def test_required_by_the_library_fails_even_without_strict() -> None:
    stage = StructuredOutput(retries=0)
    with pytest.raises(SchemaViolation, match="not JSON"):
        await stage.run(stage.expectation(request(strict=False), require=True), Replies("nope"))


async def test_json_object_must_be_an_object() -> None:
    stage = StructuredOutput(retries=0)
    expected = stage.expectation(request(kind="json_object"), require=True)
    with pytest.raises(SchemaViolation, match="JSON but not an object"):
        await stage.run(expected, Replies("[1, 2]"))
    assert (await stage.run(expected, Replies('{"a": 1}'))).info.schema == "valid"


async def test_a_cut_off_reply_is_a_violation() -> None:
    stage = StructuredOutput(retries=0)

    async def cut() -> ChatResult:
        return result('{"name": "An', finish="length")

    with pytest.raises(SchemaViolation, match="cut off at max_tokens"):
        await stage.run(stage.expectation(request()), cut)


async def test_a_refusal_is_an_answer() -> None:
    stage = StructuredOutput(retries=0)

    async def refused() -> ChatResult:
        return result(None, refusal="I can't help with that")

    assert (await stage.run(stage.expectation(request()), refused)).info.schema == "valid"


def test_an_invalid_schema_is_the_callers_400_before_any_call() -> None:
    with pytest.raises(InvalidRequest, match="not a valid JSON Schema") as caught:
        StructuredOutput().expectation(request({"type": "nonsense"}))
    assert caught.value.param == "response_format.json_schema.schema"


def test_remote_references_are_never_fetched() -> None:
    with pytest.raises(InvalidRequest, match="not a valid JSON Schema"):
        StructuredOutput().expectation(request({"$ref": "http://127.0.0.1:9/schema.json"}))


def test_off_or_text_means_nothing_to_check() -> None:
    assert StructuredOutput(enabled=False).expectation(request()) is None
    assert StructuredOutput().expectation(request(kind="text")) is None


def test_fenced_json_is_tolerated() -> None:
    assert parse_json('```json\n{"a": 1}\n```') == {"a": 1}
    with pytest.raises(ValueError):
        parse_json("```\nnot json\n```")


def test_a_reply_nested_too_deeply_is_not_json() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_json("[" * 5000 + "]" * 5000)


def test_patterns_run_on_a_linear_time_engine() -> None:
    # a look-behind over a repetition backtracks badly on a long reply: refused at compile time
    with pytest.raises(InvalidRequest, match="not a valid JSON Schema"):
        StructuredOutput().expectation(request({"type": "string", "pattern": "(?<=a+)b"}))
    plain = StructuredOutput().expectation(request({"type": "string", "pattern": "^a+b$"}))
    assert plain is not None and plain.validator.is_valid("aab")
