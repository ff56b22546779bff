"""Untrusted JSON -> canonical requests, with errors naming the field."""

from __future__ import annotations

import msgspec
import pytest

from llmgate.core.codec import decode_json, parse_chat_request, parse_embedding_request
from llmgate.core.errors import InvalidRequest
from llmgate.core.request import ImagePart, TextPart


def chat(**fields: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}


def test_full_request_is_typed() -> None:
    request = parse_chat_request(
        chat(
            messages=[
                {"role": "system", "content": "be brief"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"},
                        },
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ],
            temperature=0.2,
            max_tokens=10,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            tool_choice={"type": "function", "function": {"name": "f"}},
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}},
            },
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    parts = request.messages[1].content
    assert isinstance(parts, list)
    assert isinstance(parts[0], TextPart)
    assert isinstance(parts[1], ImagePart)
    assert parts[1].image_url.detail == "low"
    assert request.messages[1].text() == "what is this?"
    assert request.messages[2].tool_calls is not None
    assert request.messages[2].tool_calls[0].function.name == "f"
    assert request.output_limit == 10
    assert request.wants_usage_chunk
    assert request.extra == {}


def test_unknown_fields_are_kept_for_passthrough() -> None:
    request = parse_chat_request(chat(prediction={"type": "content", "content": "x"}, extra="mine"))
    assert request.extra == {"prediction": {"type": "content", "content": "x"}, "extra": "mine"}
    builtins = msgspec.to_builtins(request)
    assert builtins["extra"]["prediction"]["type"] == "content"


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert parse_chat_request(chat(max_tokens=5, max_completion_tokens=7)).output_limit == 7


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m"}, "messages"),
        (chat(model=3), "model"),
        (chat(model=""), "model"),
        (chat(messages=[]), "messages"),
        (chat(messages="hi"), "messages"),
        (chat(messages=[{"role": "wizard", "content": "x"}]), "messages[0].role"),
        (chat(messages=[{"content": "x"}]), "messages[0].role"),
        (chat(messages=[{"role": "user", "content": [{"type": "video"}]}]), "messages[0].content[0].type"),
        (chat(temperature="hot"), "temperature"),
        (chat(temperature=3), "temperature"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(n=0), "n"),
        (chat(tools=[{"type": "function"}]), "tools[0].function"),
        (chat(tool_choice="sometimes"), "tool_choice"),
        (chat(response_format={"type": "yaml"}), "response_format.type"),
    ],
)
def test_bad_fields_are_named(body: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(body)
    assert caught.value.param == param
    assert param.rsplit(".", maxsplit=1)[-1].split("[", maxsplit=1)[0] in caught.value.message


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_body_must_be_an_object(body: object) -> None:
    with pytest.raises(InvalidRequest, match="JSON object"):
        parse_chat_request(body)


@pytest.mark.parametrize("raw", [b"{bad", b"", b"\xff\xfe", b'{"model": "m",}'])
def test_malformed_json_is_invalid_request(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_json(raw)
    assert caught.value.code == "invalid_json"


def test_embedding_input_forms() -> None:
    assert parse_embedding_request({"model": "e", "input": "a"}).texts() == ["a"]
    assert parse_embedding_request({"model": "e", "input": ["a", "b"]}).texts() == ["a", "b"]
    assert parse_embedding_request({"model": "e", "input": [[1, 2], [3]]}).texts() == []
    with pytest.raises(InvalidRequest) as caught:
        parse_embedding_request({"model": "e", "input": []})
    assert caught.value.param == "input"
    with pytest.raises(InvalidRequest):
        parse_embedding_request({"model": "e"})


def test_deeply_nested_bodies_are_invalid_requests_not_crashes() -> None:
    with pytest.raises(InvalidRequest, match="nested too deeply"):
        decode_json(b"[" * 200_000 + b"]" * 200_000)
    schema = b'{"a":' * 5000 + b"1" + b"}" * 5000
    body = (
        b'{"model": "m", "messages": [{"role": "user", "content": "x"}], '
        b'"tools": [{"type": "function", "function": {"name": "f", "parameters": ' + schema + b"}}]}"
    )
    with pytest.raises(InvalidRequest, match="nested too deeply"):
        parse_chat_request(decode_json(body))


def test_requests_are_bounded() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(chat(model="mock:" + "x" * 10_000))
    assert caught.value.param == "model"
    with pytest.raises(InvalidRequest) as caught:
        parse_chat_request(chat(messages=[{"role": "user", "content": "x"}] * 10_001))
    assert caught.value.param == "messages"
