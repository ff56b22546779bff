"""The exact cache's key: every field that changes the answer changes it; nothing else does."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from llmgate.core.codec import decode_json, parse_chat_request
from llmgate.policies.cache.digest import is_deterministic, request_digest

BASE: dict[str, Any] = {"model": "g", "messages": [{"role": "user", "content": "hello"}]}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def digest(**fields: Any) -> str:
    return request_digest(parse_chat_request({**BASE, **fields}), "g")


CHANGES: list[dict[str, Any]] = [
    {"messages": [{"role": "user", "content": "hello!"}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]},
    {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]},
    {"messages": [{"role": "user", "content": "hello", "name": "ann"}]},
    {"messages": [{"role": "user", "content": "hello", "vendor_field": 1}]},
    {"tools": [TOOL]},
    {"tools": [TOOL], "tool_choice": "required"},
    {"response_format": {"type": "json_object"}},
    {"temperature": 0.5},
    {"top_p": 0.5},
    {"max_tokens": 10},
    {"max_completion_tokens": 10},
    {"stop": ["x"]},
    {"seed": 1},
    {"n": 2},
    {"logit_bias": {"50256": -100}},
    {"reasoning_effort": "high"},
    {"presence_penalty": 1},
    {"frequency_penalty": 1},
    {"logprobs": True},
    {"parallel_tool_calls": False},
    {"functions": [{"name": "f"}]},
    {"new_openai_parameter": "x"},
]


@pytest.mark.parametrize("fields", CHANGES, ids=[next(iter(f)) + str(i) for i, f in enumerate(CHANGES)])
def test_every_field_that_changes_the_answer_changes_the_key(fields: dict[str, Any]) -> None:
    assert digest(**fields) != digest()


def test_each_change_gives_its_own_key() -> None:
    keys = [digest(**fields) for fields in CHANGES]
    assert len(set(keys)) == len(keys)


def test_the_group_is_part_of_the_key() -> None:
    request = parse_chat_request(BASE)
    assert request_digest(request, "g") != request_digest(request, "other")


@pytest.mark.parametrize(
    "fields",
    [
        {"stream": True},
        {"stream": True, "stream_options": {"include_usage": True}},
        {"user": "u1"},
        {"metadata": {"a": "b"}},
    ],
)
def test_fields_that_cannot_change_the_answer_do_not(fields: dict[str, Any]) -> None:
    assert digest(**fields) == digest()


def test_key_order_and_whitespace_in_the_json_do_not_matter() -> None:
    one = b'{"model":"g","messages":[{"role":"user","content":"hello"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"integer"}}}}}],"temperature":0}'
    data = msgspec.json.decode(one)
    tool = data["tools"][0]["function"]["parameters"]
    tool["properties"] = dict(reversed(list(tool["properties"].items())))
    reordered = {key: data[key] for key in reversed(list(data))}
    spaced = msgspec.json.encode(reordered).replace(b",", b" ,\n  ").replace(b":", b" : ")
    first = request_digest(parse_chat_request(decode_json(one)), "g")
    assert request_digest(parse_chat_request(decode_json(spaced)), "g") == first


def test_deterministic_means_temperature_zero_or_a_seed() -> None:
    assert is_deterministic(parse_chat_request({**BASE, "temperature": 0}))
    assert is_deterministic(parse_chat_request({**BASE, "seed": 3}))
    assert not is_deterministic(parse_chat_request(BASE))
    assert not is_deterministic(parse_chat_request({**BASE, "temperature": 0.7}))
