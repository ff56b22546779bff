"""The Anthropic adapter's mapping edge cases: requests, answers, streams, errors and rate-limit headers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import msgspec
import pytest

from llmgate.core.accumulate import StreamAccumulator
from llmgate.core.codec import parse_chat_request
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
from llmgate.core.headroom import ParamReport
from llmgate.core.response import ChatChunk, ChatResponse
from llmgate.providers.anthropic import JSON_TOOL, AnthropicWire, build
from llmgate.providers.anthropic.ratelimit import anthropic_headroom
from llmgate.providers.base import ProviderSpec, Target
from llmgate.providers.transport import Transport

USER = {"role": "user", "content": "hi"}
PNG = "iVBORw0KGgo="
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
PERSON = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def _wire(**options: Any) -> AnthropicWire:
    return AnthropicWire(clock=lambda: 1000.0, **options)


def _body(
    payload: dict[str, Any], *, stream: bool = False, wire: AnthropicWire | None = None
) -> dict[str, Any]:
    request = parse_chat_request({"model": "group", "max_tokens": 1000, **payload})
    call = (wire or _wire()).chat_call(request, Target(model="claude-test", api_key="k"), stream=stream)
    assert call.body is not None
    body: dict[str, Any] = json.loads(call.body)
    return body


def _check(payload: dict[str, Any], **options: Any) -> ParamReport:
    return _wire(**options).check(parse_chat_request({"model": "group", **payload}))


def _call(call_id: str, name: str = "weather", arguments: str = '{"city": "Paris"}') -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# --- the HTTP call -------------------------------------------------------------------------------------


def test_call_shape() -> None:
    request = parse_chat_request({"model": "group", "messages": [USER]})
    call = _wire().chat_call(request, Target(model="claude-x", api_key="secret"), stream=True)
    assert (call.method, call.path) == ("POST", "/v1/messages")
    assert call.headers == {
        "x-api-key": "secret",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    body = json.loads(call.body or b"")
    assert body == {"model": "claude-x", "messages": [USER], "max_tokens": 4096, "stream": True}


def test_no_key_no_key_header_and_custom_version() -> None:
    wire = _wire(api_version="2099-01-01")
    call = wire.chat_call(
        parse_chat_request({"model": "g", "messages": [USER]}), Target(model="m"), stream=False
    )
    assert "x-api-key" not in call.headers
    assert call.headers["anthropic-version"] == "2099-01-01"
    assert "stream" not in json.loads(call.body or b"")


def test_build_uses_spec() -> None:
    default = build(ProviderSpec(name="a", type="anthropic"), Transport())
    assert default.base_url == "https://api.anthropic.com"
    spec = ProviderSpec(
        name="proxy",
        type="anthropic",
        base_url="https://proxy.example/anthropic/",
        headers={"x-team": "blue"},
        api_version="2024-01-01",
        options={"structured_outputs": True},
    )
    provider = build(spec, Transport(), default_max_tokens=lambda model: 123)
    assert provider.name == "proxy"
    assert provider.base_url == "https://proxy.example/anthropic"
    assert provider._headers == {"x-team": "blue"}
    assert isinstance(provider.wire, AnthropicWire)
    request = parse_chat_request(
        {
            "model": "g",
            "messages": [USER],
            "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}},
        }
    )
    call = provider.wire.chat_call(request, Target(model="m"), stream=False)
    body = json.loads(call.body or b"")
    assert call.headers["anthropic-version"] == "2024-01-01"
    assert body["max_tokens"] == 123
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": PERSON}}


# --- max_tokens ------------------------------------------------------------------------------------------


def test_max_tokens_default_comes_from_the_model() -> None:
    asked: list[str] = []

    def limit(model: str) -> int:
        asked.append(model)
        return 64000

    request = parse_chat_request({"model": "group", "messages": [USER]})
    call = _wire(default_max_tokens=limit).chat_call(request, Target(model="claude-haiku-4-5"), stream=False)
    assert json.loads(call.body or b"")["max_tokens"] == 64000
    assert asked == ["claude-haiku-4-5"]


def test_max_tokens_fallback_and_caller_values() -> None:
    request = parse_chat_request({"model": "group", "messages": [USER]})
    assert (
        json.loads(_wire().chat_call(request, Target(model="m"), stream=False).body or b"")["max_tokens"]
        == 4096
    )
    assert _body({"messages": [USER], "max_tokens": 77})["max_tokens"] == 77
    both = _body({"messages": [USER], "max_tokens": 77, "max_completion_tokens": 55})
    assert both["max_tokens"] == 55


# --- messages --------------------------------------------------------------------------------------------


def test_system_and_developer_are_hoisted_in_order() -> None:
    body = _body(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                USER,
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                {"role": "assistant", "content": "ok"},
            ]
        }
    )
    assert body["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use French."}]
    assert body["messages"] == [USER, {"role": "assistant", "content": "ok"}]


def test_single_string_system_stays_a_string() -> None:
    assert _body({"messages": [{"role": "system", "content": "S"}, USER]})["system"] == "S"


def test_consecutive_same_role_turns_merge() -> None:
    body = _body(
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "b"}]},
                {"role": "assistant", "content": "c"},
                {"role": "assistant", "content": "d"},
                {"role": "user", "content": "e"},
            ]
        }
    )
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]},
        {"role": "user", "content": "e"},
    ]
    roles = [turn["role"] for turn in body["messages"]]
    assert all(a != b for a, b in pairwise(roles))


def test_parallel_tool_calls_and_results() -> None:
    body = _body(
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [_call("t1"), _call("t2", arguments="")],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "rain"}]},
                {"role": "user", "content": "and tomorrow?"},
            ]
        }
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "t2", "name": "weather", "input": {}},
        ],
    }
    assert body["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "rain"}]},
            {"type": "text", "text": "and tomorrow?"},
        ],
    }
    assert len(body["messages"]) == 3


def test_assistant_text_before_tool_calls_is_kept_and_empty_text_dropped() -> None:
    with_text = _body(
        {"messages": [USER, {"role": "assistant", "content": "Let me look.", "tool_calls": [_call("t")]}]}
    )
    assert [block["type"] for block in with_text["messages"][1]["content"]] == ["text", "tool_use"]
    empty = _body({"messages": [USER, {"role": "assistant", "content": "", "tool_calls": [_call("t")]}]})
    assert [block["type"] for block in empty["messages"][1]["content"]] == ["tool_use"]


@pytest.mark.parametrize("arguments", ["not json", "[1, 2]"])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        _body({"messages": [USER, {"role": "assistant", "tool_calls": [_call("t", arguments=arguments)]}]})
    assert raised.value.param == "messages[1].tool_calls[0].function.arguments"


def test_tool_message_needs_its_call_id() -> None:
    with pytest.raises(InvalidRequest) as raised:
        _body({"messages": [USER, {"role": "tool", "content": "x"}]})
    assert raised.value.param == "messages[1].tool_call_id"


def test_images() -> None:
    body = _body(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
                        },
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    ],
                }
            ]
        }
    )
    assert body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_image_in_a_tool_result() -> None:
    image = {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG}"}}
    body = _body(
        {
            "messages": [
                USER,
                {"role": "assistant", "tool_calls": [_call("t")]},
                {"role": "tool", "tool_call_id": "t", "content": [image]},
            ]
        }
    )
    [result] = body["messages"][2]["content"]
    assert result["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}}
    ]


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "data:image/png,notbase64", "cat.png"])
def test_unreadable_image_urls_are_invalid(url: str) -> None:
    with pytest.raises(InvalidRequest):
        _body({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})


def test_pdf_becomes_a_document_and_other_files_are_refused() -> None:
    pdf = {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}}
    body = _body({"messages": [{"role": "user", "content": [pdf]}]})
    assert body["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
            "title": "a.pdf",
        }
    ]
    by_id = {"messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}]}
    assert _check(by_id).refused == ("messages.content.file",)
    with pytest.raises(InvalidRequest):
        _body(by_id)


def test_audio_and_function_messages_are_refused() -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    assert _check({"messages": [{"role": "user", "content": [audio]}]}).refused == (
        "messages.content.input_audio",
    )
    legacy = {"messages": [USER, {"role": "function", "name": "f", "content": "1"}]}
    assert _check(legacy).refused == ("messages.function_call",)


def test_image_in_system_is_refused() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    payload = {"messages": [{"role": "system", "content": [image]}, USER]}
    assert _check(payload).refused == ("messages.system.image_url",)
    with pytest.raises(InvalidRequest):
        _body(payload)


# --- top-level parameters --------------------------------------------------------------------------------


def test_sampling_stop_and_user() -> None:
    body = _body({"messages": [USER], "temperature": 0.2, "top_p": 0.9, "stop": "END", "user": "u-1"})
    assert (body["temperature"], body["top_p"]) == (0.2, 0.9)
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-1"}
    assert _body({"messages": [USER], "stop": ["a", "b"]})["stop_sequences"] == ["a", "b"]


def test_temperature_above_anthropics_range_is_dropped() -> None:
    payload = {"messages": [USER], "temperature": 1.5}
    assert _check(payload).dropped == ("temperature",)
    assert "temperature" not in _body(payload)
    assert _body({"messages": [USER], "temperature": 1})["temperature"] == 1


def test_tools_map_to_input_schema() -> None:
    body = _body({"messages": [USER], "tools": [WEATHER, {"type": "function", "function": {"name": "now"}}]})
    assert body["tools"] == [
        {
            "name": "weather",
            "description": "Weather for a city",
            "input_schema": WEATHER["function"]["parameters"],
        },
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        ({"type": "function", "function": {"name": "weather"}}, None, {"type": "tool", "name": "weather"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        (None, True, None),
    ],
)
def test_tool_choice(choice: Any, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    payload: dict[str, Any] = {"messages": [USER], "tools": [WEATHER]}
    if choice is not None:
        payload["tool_choice"] = choice
    if parallel is not None:
        payload["parallel_tool_calls"] = parallel
    assert _body(payload).get("tool_choice") == expected
    assert _check(payload) == ParamReport()


def test_tool_choice_without_tools_is_not_sent() -> None:
    assert "tool_choice" not in _body({"messages": [USER], "tool_choice": "required"})


def test_strict_tools_need_structured_outputs() -> None:
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    payload = {"messages": [USER], "tools": [strict]}
    assert _check(payload).dropped == ("tools.function.strict",)
    assert "strict" not in _body(payload)["tools"][0]
    assert _check(payload, structured_outputs=True) == ParamReport()
    assert _body(payload, wire=_wire(structured_outputs=True))["tools"][0]["strict"] is True


def test_dropped_and_refused_parameters() -> None:
    payload = {
        "messages": [USER],
        "logit_bias": {"1": 2},
        "presence_penalty": 0.5,
        "frequency_penalty": 0.5,
        "seed": 7,
        "logprobs": True,
        "top_logprobs": 2,
        "parallel_tool_calls": True,
        "service_tier": "flex",
        "n": 1,
    }
    report = _check(payload)
    assert report.dropped == (
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "seed",
        "logprobs",
        "top_logprobs",
        "service_tier",
    )
    assert report.refused == ()
    body = _body(payload)
    assert set(body) == {"model", "messages", "max_tokens"}


def test_neutral_values_are_not_reported() -> None:
    payload = {"messages": [USER], "presence_penalty": 0, "frequency_penalty": 0.0, "logprobs": False, "n": 1}
    assert _check(payload) == ParamReport()


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ({"n": 2}, ("n",)),
        ({"functions": [{"name": "f"}]}, ("functions",)),
        ({"modalities": ["text", "audio"], "audio": {"voice": "x"}}, ("audio", "modalities")),
    ],
)
def test_refused_parameters(extra: dict[str, Any], refused: tuple[str, ...]) -> None:
    payload = {"messages": [USER], **extra}
    assert _check(payload).refused == refused
    with pytest.raises(InvalidRequest) as raised:
        _body(payload)
    assert raised.value.param == refused[0]


def test_text_only_modalities_are_merely_dropped() -> None:
    assert _check({"messages": [USER], "modalities": ["text"]}) == ParamReport(dropped=("modalities",))


# --- JSON output -----------------------------------------------------------------------------------------


def _schema_format(name: str = "person", description: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"name": name, "schema": PERSON}
    if description:
        schema["description"] = description
    return {"type": "json_schema", "json_schema": schema}


def test_json_schema_by_forced_tool() -> None:
    body = _body({"messages": [USER], "response_format": _schema_format(description="A person.")})
    [tool] = body["tools"]
    assert tool["name"] == JSON_TOOL
    assert tool["input_schema"] == PERSON
    assert tool["description"].endswith("A person.")
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert "output_config" not in body


def test_json_object_by_forced_tool_with_any_object() -> None:
    body = _body({"messages": [USER], "response_format": {"type": "json_object"}})
    assert body["tools"][0]["input_schema"] == {"type": "object"}
    assert body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}


def test_json_with_the_callers_tools() -> None:
    auto = _body({"messages": [USER], "tools": [WEATHER], "response_format": _schema_format()})
    assert [t["name"] for t in auto["tools"]] == ["weather", JSON_TOOL]
    assert auto["tool_choice"] == {"type": "any"}
    none = _body(
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "none", "response_format": _schema_format()}
    )
    assert none["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    forced = _body(
        {
            "messages": [USER],
            "tools": [WEATHER],
            "tool_choice": "required",
            "response_format": _schema_format(),
        }
    )
    assert [t["name"] for t in forced["tools"]] == ["weather"]
    assert forced["tool_choice"] == {"type": "any"}


def test_json_tool_name_clash_is_refused() -> None:
    clash = {"type": "function", "function": {"name": JSON_TOOL}}
    assert _check({"messages": [USER], "tools": [clash], "response_format": _schema_format()}).refused == (
        "response_format",
    )


def test_json_schema_natively_with_structured_outputs() -> None:
    body = _body(
        {"messages": [USER], "response_format": _schema_format()}, wire=_wire(structured_outputs=True)
    )
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": PERSON}}
    assert "tools" not in body
    text = _body({"messages": [USER], "response_format": {"type": "text"}})
    assert "tools" not in text and "output_config" not in text


def test_json_tool_answer_comes_back_as_text() -> None:
    answer = {
        "type": "message",
        "id": "msg_1",
        "model": "claude",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": {"name": "Ann"}}],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 5, "output_tokens": 3},
    }
    parsed = _wire().parse_chat(json.dumps(answer).encode())
    [choice] = parsed.choices
    assert json.loads(choice.message.content or "") == {"name": "Ann"}
    assert choice.message.tool_calls is msgspec.UNSET
    assert choice.finish_reason == "stop"


def test_json_tool_answer_streams_as_text() -> None:
    events = [
        _start(),
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": JSON_TOOL, "input": {}},
        },
        _delta(0, {"type": "input_json_delta", "partial_json": '{"name": '}),
        _delta(0, {"type": "input_json_delta", "partial_json": '"Ann"}'}),
        {"type": "content_block_stop", "index": 0},
        _stop("tool_use"),
        {"type": "message_stop"},
    ]
    response = _stream(events)
    assert response.choices[0].message.content == '{"name": "Ann"}'
    assert response.choices[0].message.tool_calls is msgspec.UNSET
    assert response.choices[0].finish_reason == "stop"


# --- reasoning_effort -> thinking ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effort", "max_tokens", "budget"),
    [
        ("minimal", 64000, 1024),
        ("low", 64000, 2048),
        ("medium", 64000, 8192),
        ("high", 64000, 16384),
        ("xhigh", 128000, 32768),
        ("high", 10000, 5000),
    ],
)
def test_reasoning_effort_becomes_a_thinking_budget(effort: str, max_tokens: int, budget: int) -> None:
    payload = {"messages": [USER], "reasoning_effort": effort, "max_tokens": max_tokens}
    assert _body(payload)["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert _check(payload) == ParamReport()


@pytest.mark.parametrize(
    "payload",
    [
        {"reasoning_effort": "high", "max_tokens": 2000},  # half of 2000 is under Anthropic's 1024 minimum
        {"reasoning_effort": "max"},  # not an OpenAI value
        {"reasoning_effort": "high", "response_format": {"type": "json_object"}},  # JSON by forced tool
        {"reasoning_effort": "high", "tools": [WEATHER], "tool_choice": "required"},
    ],
)
def test_reasoning_effort_dropped_when_thinking_cannot_be_used(payload: dict[str, Any]) -> None:
    full = {"messages": [USER], **payload}
    assert _check(full).dropped == ("reasoning_effort",)
    assert "thinking" not in _body(full)


def test_no_thinking_for_none_and_thinking_with_native_json() -> None:
    assert "thinking" not in _body({"messages": [USER], "reasoning_effort": "none"})
    assert _check({"messages": [USER], "reasoning_effort": "none"}) == ParamReport()
    native = {
        "messages": [USER],
        "reasoning_effort": "low",
        "max_tokens": 8000,
        "response_format": _schema_format(),
    }
    assert _body(native, wire=_wire(structured_outputs=True))["thinking"]["budget_tokens"] == 2048


def test_sampling_that_thinking_forbids_is_dropped() -> None:
    payload = {
        "messages": [USER],
        "reasoning_effort": "low",
        "max_tokens": 8000,
        "temperature": 0.2,
        "top_p": 0.5,
    }
    assert _check(payload).dropped == ("temperature", "top_p")
    body = _body(payload)
    assert "temperature" not in body and "top_p" not in body
    allowed = {
        "messages": [USER],
        "reasoning_effort": "low",
        "max_tokens": 8000,
        "temperature": 1,
        "top_p": 0.97,
    }
    assert _check(allowed) == ParamReport()
    assert _body(allowed)["top_p"] == 0.97


def test_unknown_max_tokens_does_not_cap_the_budget_in_check() -> None:
    """check() runs before the deployment's model is known; the cap is applied when the call is built."""
    assert _check({"messages": [USER], "reasoning_effort": "xhigh"}) == ParamReport()
    request = parse_chat_request({"model": "g", "messages": [USER], "reasoning_effort": "xhigh"})
    call = _wire(default_max_tokens=lambda _: 8000).chat_call(request, Target(model="m"), stream=False)
    assert json.loads(call.body or b"")["thinking"]["budget_tokens"] == 4000


# --- complete answers ------------------------------------------------------------------------------------


def _message(**fields: Any) -> bytes:
    message = {
        "type": "message",
        "id": "msg_1",
        "model": "claude",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 10, "output_tokens": 2},
        **fields,
    }
    return json.dumps(message).encode()


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
        ("pause_turn", "pause_turn"),
        ("some_future_reason", "some_future_reason"),
        (None, None),
    ],
)
def test_finish_reasons(stop_reason: str | None, finish: str | None) -> None:
    parsed = _wire().parse_chat(_message(stop_reason=stop_reason))
    assert parsed.choices[0].finish_reason == finish


def test_thinking_text_and_tools_in_one_answer() -> None:
    parsed = _wire().parse_chat(
        _message(
            content=[
                {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                {"type": "redacted_thinking", "data": "xxx"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
            ],
            stop_reason="tool_use",
        )
    )
    message = parsed.choices[0].message
    assert message.reasoning_content == "hmm"
    assert message.content == "Checking."
    assert isinstance(message.tool_calls, list)
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("toolu_1", "weather", {"city": "Paris"})
    ]


def test_usage_with_prompt_cache() -> None:
    usage = {
        "input_tokens": 10,
        "cache_read_input_tokens": 200,
        "cache_creation_input_tokens": 30,
        "output_tokens": 5,
    }
    parsed = _wire().parse_chat(_message(usage=usage))
    assert parsed.usage is not None
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens, parsed.usage.total_tokens) == (
        240,
        5,
        245,
    )
    assert (parsed.usage.cached_tokens, parsed.usage.cache_creation_tokens) == (200, 30)


def test_unknown_content_block_is_not_success() -> None:
    with pytest.raises(UnexpectedResponse, match="server_tool_use"):
        _wire().parse_chat(
            _message(content=[{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}])
        )


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"type": "completion", "id": "x"}'])
def test_unreadable_answers_raise(body: bytes) -> None:
    with pytest.raises(UnexpectedResponse):
        _wire().parse_chat(body)


def test_error_object_with_status_200_raises_its_error() -> None:
    body = json.dumps(
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    ).encode()
    with pytest.raises(Overloaded):
        _wire().parse_chat(body)


# --- streams ---------------------------------------------------------------------------------------------


def _start(usage: dict[str, int] | None = None) -> dict[str, Any]:
    message = {
        "id": "msg_s",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [],
        "stop_reason": None,
    }
    return {
        "type": "message_start",
        "message": {**message, "usage": usage or {"input_tokens": 7, "output_tokens": 1}},
    }


def _delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _stop(reason: str, usage: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": reason, "stop_sequence": None},
        "usage": usage or {"output_tokens": 9},
    }


def _chunks(events: list[dict[str, Any]]) -> list[ChatChunk]:
    translator = _wire().stream_translator(parse_chat_request({"model": "g", "messages": [USER]}))
    chunks: list[ChatChunk] = []
    for event in events:
        chunks += translator.feed(json.dumps(event).encode())
    assert translator.finished == (events[-1]["type"] == "message_stop")
    return chunks


def _stream(events: list[dict[str, Any]]) -> ChatResponse:
    accumulator = StreamAccumulator()
    for chunk in _chunks(events):
        accumulator.add(chunk)
    return accumulator.response()


def test_stream_tool_calls_are_indexed_per_call() -> None:
    events = [
        _start(),
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        _delta(0, {"type": "text_delta", "text": "Checking both."}),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {}},
        },
        _delta(1, {"type": "input_json_delta", "partial_json": '{"city":'}),
        _delta(1, {"type": "input_json_delta", "partial_json": ' "Paris"}'}),
        {"type": "content_block_stop", "index": 1},
        {"type": "ping"},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_b", "name": "now", "input": {}},
        },
        _delta(2, {"type": "input_json_delta", "partial_json": ""}),
        {"type": "content_block_stop", "index": 2},
        _stop("tool_use"),
        {"type": "message_stop"},
    ]
    chunks = _chunks(events)
    deltas = [call for chunk in chunks for choice in chunk.choices for call in choice.delta.tool_calls or ()]
    assert [(d.index, d.id) for d in deltas if d.id] == [(0, "toolu_a"), (1, "toolu_b")]
    response = _stream(events)
    message = response.choices[0].message
    assert message.content == "Checking both."
    assert isinstance(message.tool_calls, list)
    assert [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("toolu_a", "weather", '{"city": "Paris"}'),
        ("toolu_b", "now", "{}"),
    ]
    assert response.choices[0].finish_reason == "tool_calls"


def test_stream_first_chunk_thinking_and_usage_chunk() -> None:
    usage = {
        "input_tokens": 3,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 20,
        "output_tokens": 1,
    }
    events = [
        _start(usage),
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "thinking", "thinking": "", "signature": ""},
        },
        _delta(0, {"type": "thinking_delta", "thinking": "Let me think."}),
        _delta(0, {"type": "signature_delta", "signature": "abc"}),
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        _delta(1, {"type": "text_delta", "text": "Done."}),
        {"type": "content_block_stop", "index": 1},
        _stop("end_turn", {"output_tokens": 12}),
        {"type": "message_stop"},
    ]
    chunks = _chunks(events)
    assert msgspec.to_builtins(chunks[0].choices[0].delta) == {"role": "assistant", "content": ""}
    assert chunks[-1].choices == []
    usage_out = chunks[-1].usage
    assert not isinstance(usage_out, msgspec.UnsetType) and usage_out is not None
    assert (usage_out.prompt_tokens, usage_out.completion_tokens) == (123, 12)
    assert (usage_out.cached_tokens, usage_out.cache_creation_tokens) == (100, 20)
    message = _stream(events).choices[0].message
    assert (message.reasoning_content, message.content) == ("Let me think.", "Done.")


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("max_tokens", "length"), ("refusal", "content_filter"), ("pause_turn", "pause_turn")],
)
def test_stream_finish_reasons(reason: str, finish: str) -> None:
    assert _stream([_start(), _stop(reason), {"type": "message_stop"}]).choices[0].finish_reason == finish


@pytest.mark.parametrize(
    "event",
    [
        {"type": "message_bogus"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "web_search_tool_result"}},
        _delta(0, {"type": "citations_delta", "citation": {}}),
    ],
)
def test_stream_unknown_events_raise(event: dict[str, Any]) -> None:
    text_block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    before = [_start()] if event["type"] != "content_block_delta" else [_start(), text_block]
    with pytest.raises(UnexpectedResponse):
        _chunks([*before, event])


def test_stream_events_before_message_start_raise() -> None:
    with pytest.raises(UnexpectedResponse, match="before message_start"):
        _chunks([_delta(0, {"type": "text_delta", "text": "x"})])


def test_stream_unreadable_event_raises() -> None:
    translator = _wire().stream_translator(parse_chat_request({"model": "g", "messages": [USER]}))
    with pytest.raises(UnexpectedResponse):
        translator.feed(b"{not json")


@pytest.mark.parametrize(
    ("error_type", "expected"),
    [("overloaded_error", Overloaded), ("api_error", UpstreamError), ("rate_limit_error", RateLimited)],
)
def test_stream_error_event_raises_the_mapped_error(error_type: str, expected: type[GatewayError]) -> None:
    event = {"type": "error", "error": {"type": error_type, "message": "boom"}}
    with pytest.raises(expected) as raised:
        _chunks([_start(), event])
    assert type(raised.value) is expected
    assert raised.value.message == "boom"


# --- errors ----------------------------------------------------------------------------------------------


def _error(
    status: int, error_type: str, message: str = "m", headers: dict[str, str] | None = None
) -> GatewayError:
    body = json.dumps(
        {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_1"}
    )
    return _wire().parse_error(status, headers or {}, body.encode())


@pytest.mark.parametrize(
    ("status", "error_type", "expected", "code"),
    [
        (400, "invalid_request_error", InvalidRequest, "invalid_request_error"),
        (401, "authentication_error", ProviderAuthError, "upstream_authentication_error"),
        (403, "permission_error", ProviderAuthError, "upstream_permission_error"),
        (404, "not_found_error", ModelNotFound, "model_not_found"),
        (413, "request_too_large", InvalidRequest, "request_too_large"),
        (429, "rate_limit_error", RateLimited, "rate_limit_exceeded"),
        (402, "billing_error", RateLimited, "insufficient_quota"),
        (500, "api_error", UpstreamError, "upstream_error"),
        (504, "timeout_error", UpstreamTimeout, "upstream_timeout"),
        (529, "overloaded_error", Overloaded, "upstream_overloaded"),
    ],
)
def test_error_types(status: int, error_type: str, expected: type[GatewayError], code: str) -> None:
    error = _error(status, error_type, "details")
    assert type(error) is expected
    assert error.code == code
    assert error.message == "details"


@pytest.mark.parametrize(
    "message",
    [
        "prompt is too long: 3333404 tokens > 200000 maximum",
        "input length and `max_tokens` exceed context limit: 197626 + 21333 > 200000, decrease input length",
    ],
)
def test_context_length_phrasings(message: str) -> None:
    error = _error(400, "invalid_request_error", message)
    assert type(error) is ContextLengthExceeded
    assert error.code == "context_length_exceeded"
    assert error.param == "messages"


def test_retry_after_is_read() -> None:
    assert _error(429, "rate_limit_error", headers={"retry-after": "17"}).retry_after == 17.0
    assert _error(529, "overloaded_error", headers={"retry-after": "3"}).retry_after == 3.0
    assert _error(429, "rate_limit_error").retry_after is None


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (529, b"", Overloaded),
        (529, b"<html>busy</html>", Overloaded),
        (502, b"<html>bad gateway</html>", UpstreamError),
        (500, b'{"type": "error", "error": {"type": "brand_new_error", "message": "x"}}', UpstreamError),
        (400, b'{"type": "error", "error": {"type": "brand_new_error", "message": "x"}}', InvalidRequest),
    ],
)
def test_errors_without_a_known_type_use_the_status(
    status: int, body: bytes, expected: type[GatewayError]
) -> None:
    assert type(_wire().parse_error(status, {}, body)) is expected


def test_unknown_error_type_in_a_stream_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="brand_new_error"):
        _chunks([_start(), {"type": "error", "error": {"type": "brand_new_error", "message": "x"}}])


# --- rate-limit headers ----------------------------------------------------------------------------------


def _stamp(now: datetime, seconds: int) -> str:
    return (now + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_headroom_reads_requests_and_tokens() -> None:
    now = datetime(2026, 4, 5, 14, 28, 37, tzinfo=UTC)
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "10",
        "anthropic-ratelimit-requests-reset": _stamp(now, 12),
        "anthropic-ratelimit-tokens-limit": "1000",
        "anthropic-ratelimit-tokens-remaining": "900",
        "anthropic-ratelimit-tokens-reset": _stamp(now, 30),
        "anthropic-ratelimit-input-tokens-limit": "800",
        "anthropic-ratelimit-input-tokens-remaining": "1",
        "retry-after": "5",
    }
    reading = anthropic_headroom(headers, now=now.timestamp())
    assert reading is not None
    assert (reading.requests_limit, reading.requests_remaining, reading.requests_reset) == (50, 10, 12.0)
    assert (reading.tokens_limit, reading.tokens_remaining, reading.tokens_reset) == (1000, 900, 30.0)
    assert reading.retry_after == 5.0
    assert reading.fraction_left == 0.2


def test_headroom_uses_the_tighter_of_input_and_output_tokens() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    headers = {
        "anthropic-ratelimit-input-tokens-limit": "1000",
        "anthropic-ratelimit-input-tokens-remaining": "500",
        "anthropic-ratelimit-input-tokens-reset": _stamp(now, 1),
        "anthropic-ratelimit-output-tokens-limit": "100",
        "anthropic-ratelimit-output-tokens-remaining": "10",
        "anthropic-ratelimit-output-tokens-reset": _stamp(now, 2),
    }
    reading = anthropic_headroom(headers, now=now.timestamp())
    assert reading is not None
    assert (reading.tokens_limit, reading.tokens_remaining, reading.tokens_reset) == (100, 10, 2.0)
    assert reading.requests_limit is None
    only_input = {k: v for k, v in headers.items() if "input" in k}
    reading = anthropic_headroom(only_input, now=now.timestamp())
    assert reading is not None
    assert (reading.tokens_limit, reading.tokens_remaining) == (1000, 500)


def test_headroom_past_resets_and_nothing_to_read() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    past = {"anthropic-ratelimit-requests-limit": "5", "anthropic-ratelimit-requests-reset": _stamp(now, -60)}
    reading = anthropic_headroom(past, now=now.timestamp())
    assert reading is not None and reading.requests_reset == 0.0
    assert anthropic_headroom({"content-type": "application/json"}) is None
    garbled = {"anthropic-ratelimit-requests-limit": "lots", "anthropic-ratelimit-requests-reset": "soon"}
    assert anthropic_headroom(garbled) is None
    assert _wire().headroom({"retry-after": "2"}) is not None
