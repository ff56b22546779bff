"""The OpenAI Responses API in (``POST /v1/responses``): parse, render, stream and errors, checked against
the official SDK's models and its stream helper."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import msgspec
import openai
import pydantic
import pytest
from msgspec import UNSET
from openai.types.responses import Response, ResponseStreamEvent

from llmgate.core.accumulate import StreamAccumulator
from llmgate.core.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError
from llmgate.core.request import (
    MAX_MESSAGES,
    MAX_TOOLS,
    ChatRequest,
    FunctionCall,
    ImagePart,
    TextPart,
    ToolCall,
    ToolChoiceFunction,
)
from llmgate.core.response import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    ResponseMessage,
    StreamItem,
    ToolCallDelta,
)
from llmgate.core.usage import Usage, make_usage
from llmgate.protocols.responses import IGNORED_FIELDS, RESPONSES
from llmgate.protocols.responses.paths import responses_param

EVENT = pydantic.TypeAdapter(ResponseStreamEvent)


def parse(**fields: Any) -> ChatRequest:
    return RESPONSES.parse({"model": "m", "input": "hi", **fields})


def refused(body: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        RESPONSES.parse(body)
    return caught.value


def refused_with(**fields: Any) -> InvalidRequest:
    return refused({"model": "m", "input": "hi", **fields})


def as_dicts(request: ChatRequest) -> list[dict[str, Any]]:
    return [msgspec.to_builtins(message) for message in request.messages]


# -- parse: input ----------------------------------------------------------------------------------


def test_a_string_input_is_one_user_message_after_the_instructions() -> None:
    request = parse(instructions="be brief")
    assert request.model == "m"
    assert as_dicts(request) == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert request.stream is None and not request.wants_usage_chunk


def test_message_items_of_every_role_with_typed_parts() -> None:
    request = parse(
        input=[
            {"role": "system", "content": "sys"},
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev"}]},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is this?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
                    {"type": "input_image", "image_url": "https://x/y.png"},
                ],
            },
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "a cat", "annotations": []}],
            },
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
        ]
    )
    messages = request.messages
    assert [m.role for m in messages] == ["system", "developer", "user", "assistant", "assistant"]
    assert messages[1].content == "dev"
    user = messages[2].content
    assert isinstance(user, list)
    assert user[0] == TextPart(text="what is this?")
    assert (
        isinstance(user[1], ImagePart)
        and user[1].image_url.url.startswith("data:")
        and user[1].image_url.detail == "low"
    )
    assert isinstance(user[2], ImagePart) and user[2].image_url.detail is None
    assert messages[3].content == "a cat"
    assert messages[4].refusal == "no" and messages[4].content is None


def test_an_inline_file_is_a_file_part() -> None:
    request = parse(
        input=[
            {
                "role": "user",
                "content": [{"type": "input_file", "file_data": "JVBERi0=", "filename": "a.pdf"}],
            }
        ]
    )
    assert request.raw_messages == [
        {
            "role": "user",
            "content": [{"type": "file", "file": {"file_data": "JVBERi0=", "filename": "a.pdf"}}],
        }
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "input_image", "file_id": "file-1"}, "input[0].content[1].file_id"),
        ({"type": "input_image"}, "input[0].content[1].image_url"),
        ({"type": "input_file", "file_id": "file-1"}, "input[0].content[1].file_id"),
        ({"type": "input_file", "file_url": "https://x/a.pdf"}, "input[0].content[1].file_url"),
    ],
)
def test_a_file_stored_elsewhere_is_refused(part: dict[str, Any], param: str) -> None:
    error = refused_with(input=[{"role": "user", "content": [{"type": "input_text", "text": "see"}, part]}])
    assert error.param == param and error.code == "unsupported_parameter"
    assert "does not store files" in error.message


def test_consecutive_function_calls_are_one_assistant_turn_with_the_text_before_them() -> None:
    request = parse(
        input=[
            {"role": "user", "content": "weather in Paris and Rome?"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "xyz"},
            {"role": "assistant", "content": "Looking."},
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "c1",
                "name": "weather",
                "arguments": '{"city":"Paris"}',
            },
            {
                "type": "function_call",
                "call_id": "c2",
                "name": "weather",
                "arguments": '{"city":"Rome"}',
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "rain"}, {"type": "input_text", "text": "y"}],
            },
            {"type": "function_call", "call_id": "c3", "name": "clock", "arguments": "{}"},
        ]
    )
    assert as_dicts(request) == [
        {"role": "user", "content": "weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {
                    "id": "c1",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    "type": "function",
                },
                {
                    "id": "c2",
                    "function": {"name": "weather", "arguments": '{"city":"Rome"}'},
                    "type": "function",
                },
            ],
        },
        {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
        {"role": "tool", "content": "rainy", "tool_call_id": "c2"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c3", "function": {"name": "clock", "arguments": "{}"}, "type": "function"}
            ],
        },
    ]


def test_reasoning_items_are_dropped() -> None:
    request = parse(
        input=[{"type": "reasoning", "id": "rs_1", "summary": []}, {"role": "user", "content": "x"}]
    )
    assert as_dicts(request) == [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("items", "param", "code"),
    [
        (
            [{"role": "user", "content": "a"}, {"type": "web_search_call", "id": "ws"}],
            "input[1].type",
            "unsupported_value",
        ),
        ([{"type": "item_reference", "id": "msg_1"}], "input[0].type", "unsupported_parameter"),
        (["hello"], "input[0]", "invalid_type"),
        ([{"content": "no role, no type"}], "input[0].type", "missing_required"),
        ([{"type": ["message"], "role": "user", "content": "x"}], "input[0].type", "invalid_type"),
        ([{"role": "user"}], "input[0].content", "missing_required"),
        ([{"role": "tool", "content": "x"}], "input[0].role", "invalid_value"),
        (
            [{"role": "user", "content": [{"type": "input_text", "text": 5}]}],
            "input[0].content[0].text",
            "invalid_value",
        ),
        (
            [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "user", "content": [{"type": "input_audio"}]},
            ],
            "input[2].content[0].type",
            "invalid_value",
        ),
        (
            [{"role": "user", "content": [{"type": "refusal", "refusal": "x"}]}],
            "input[0].content[0].type",
            "invalid_value",
        ),
        (
            [{"role": "system", "content": [{"type": "input_image", "image_url": "https://x"}]}],
            "input[0].content[0].type",
            "invalid_value",
        ),
        (
            [{"role": "developer", "content": [{"type": "refusal", "refusal": "x"}]}],
            "input[0].content[0].type",
            "invalid_value",
        ),
        ([{"type": "function_call", "call_id": "c", "name": "f"}], "input[0].arguments", "missing_required"),
        (
            [
                {
                    "type": "function_call_output",
                    "call_id": "c",
                    "output": [{"type": "input_image", "image_url": "https://x"}],
                }
            ],
            "input[0].output[0].type",
            "invalid_value",
        ),
    ],
)
def test_bad_input_items_are_400_naming_the_member(items: list[Any], param: str, code: str) -> None:
    error = refused_with(input=items)
    assert (error.param, error.code) == (param, code), error.message
    assert param in error.message


def test_an_empty_input_is_refused_unless_instructions_stand_alone() -> None:
    assert refused_with(input=[]).param == "input"
    assert refused({"model": "m"}).param == "input"
    assert as_dicts(parse(input=[], instructions="talk")) == [{"role": "system", "content": "talk"}]


# -- parse: options ----------------------------------------------------------------------------------


def test_function_tools_and_tool_choice() -> None:
    tool = {
        "type": "function",
        "name": "f",
        "description": "d",
        "parameters": {"type": "object"},
        "strict": True,
    }
    request = parse(
        tools=[tool, {"type": "function", "name": "g"}],
        tool_choice={"type": "function", "name": "f"},
        parallel_tool_calls=False,
    )
    assert request.tools is not None
    assert [msgspec.to_builtins(t) for t in request.tools] == [
        {
            "function": {"name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True},
            "type": "function",
        },
        {"function": {"name": "g"}, "type": "function"},
    ]
    assert isinstance(request.tool_choice, ToolChoiceFunction) and request.tool_choice.function.name == "f"
    assert request.parallel_tool_calls is False
    for choice in ("auto", "none", "required"):
        assert parse(tool_choice=choice).tool_choice == choice
    assert parse(tools=[]).tools is None


@pytest.mark.parametrize(
    "kind",
    [
        "web_search",
        "web_search_preview",
        "file_search",
        "computer_use_preview",
        "mcp",
        "code_interpreter",
        "image_generation",
        "custom",
        7,
    ],
)
def test_built_in_tools_are_refused_by_type(kind: Any) -> None:
    error = refused_with(tools=[{"type": "function", "name": "f"}, {"type": kind, "name": "x"}])
    assert (error.param, error.code) == ("tools[1].type", "unsupported_parameter")
    assert "only 'function' tools" in error.message


@pytest.mark.parametrize(
    ("fields", "param", "code"),
    [
        ({"tools": [{"name": "f"}]}, "tools[0].type", "missing_required"),
        ({"tools": [{"type": "function"}]}, "tools[0].name", "missing_required"),
        ({"tools": ["f"]}, "tools[0]", "invalid_type"),
        (
            {"tools": [{"type": "function", "name": "f", "parameters": "x"}]},
            "tools[0].parameters",
            "invalid_value",
        ),
        (
            {"tools": [{"type": "function", "name": f"f{i}"} for i in range(MAX_TOOLS + 1)]},
            "tools",
            "invalid_value",
        ),
        ({"tool_choice": "sometimes"}, "tool_choice", "invalid_value"),
        (
            {"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}},
            "tool_choice.type",
            "unsupported_parameter",
        ),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice.type", "unsupported_parameter"),
        ({"tool_choice": {"type": "function"}}, "tool_choice.name", "missing_required"),
        ({"tool_choice": 3}, "tool_choice", "invalid_value"),
    ],
)
def test_bad_tools_are_400_naming_the_member(fields: dict[str, Any], param: str, code: str) -> None:
    error = refused_with(**fields)
    assert (error.param, error.code) == (param, code), error.message


def test_text_format_maps_to_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    request = parse(
        text={
            "format": {
                "type": "json_schema",
                "name": "out",
                "schema": schema,
                "strict": True,
                "description": "d",
            },
            "verbosity": "low",
        }
    )
    assert request.response_format is not None and request.response_format.type == "json_schema"
    assert msgspec.to_builtins(request.response_format.json_schema) == {
        "name": "out",
        "schema": schema,
        "description": "d",
        "strict": True,
    }
    json_object = parse(text={"format": {"type": "json_object"}}).response_format
    assert json_object is not None and json_object.type == "json_object" and json_object.json_schema is None
    plain = parse(text={"format": {"type": "text"}}).response_format
    assert plain is not None and plain.type == "text"
    assert parse(text={}).response_format is None


def test_sampling_limits_and_identity_options() -> None:
    request = parse(
        reasoning={"effort": "high", "summary": "auto"},
        max_output_tokens=123,
        temperature=0.5,
        top_p=0.9,
        user="u1",
        metadata={"k": "v"},
    )
    assert request.reasoning_effort == "high"
    assert request.max_completion_tokens == 123 and request.max_tokens is None
    assert (request.temperature, request.top_p, request.user, request.metadata) == (
        0.5,
        0.9,
        "u1",
        {"k": "v"},
    )
    assert parse(reasoning={"summary": "detailed"}).reasoning_effort is None


def test_streaming_always_asks_for_the_usage_chunk() -> None:
    request = parse(stream=True, stream_options={"include_obfuscation": False})
    assert request.stream is True and request.wants_usage_chunk
    assert parse(stream=False).stream is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("previous_response_id", "resp_1"),
        ("conversation", "conv_1"),
        ("conversation", {"id": "conv_1"}),
        ("background", True),
        ("store", True),
        ("prompt", {"id": "pmpt_1"}),
    ],
)
def test_stateful_features_are_refused(field: str, value: Any) -> None:
    error = refused_with(**{field: value})
    assert (error.param, error.code) == (field, "unsupported_parameter")
    assert "not stored by this gateway" in error.message and "'input'" in error.message


def test_their_stateless_values_are_fine() -> None:
    parse(store=False, background=False, previous_response_id=None, conversation=None, prompt=None)


@pytest.mark.parametrize("field", sorted(IGNORED_FIELDS))
def test_harmless_fields_are_ignored(field: str) -> None:
    request = parse(**{field: {"any": "thing"}})
    assert request.extra == {} and field not in msgspec.to_builtins(request)


def test_an_unknown_field_is_400_naming_it() -> None:
    error = refused_with(frobnicate=1)
    assert (error.param, error.code) == ("frobnicate", "unknown_parameter")


@pytest.mark.parametrize("body", [[], "text", None, 1, [{"model": "m"}]])
def test_a_body_that_is_not_an_object_is_400(body: Any) -> None:
    assert refused(body).code == "invalid_type"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": 5}, "model"),
        ({"model": ""}, "model"),
        ({"model": "a\r\nb"}, "model"),
        ({"input": 5}, "input"),
        ({"input": {"role": "user"}}, "input"),
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": 2}, "top_p"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_output_tokens": 10**12}, "max_output_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"store": "no"}, "store"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k": 1}}, "metadata[...]"),
        ({"reasoning": {"effort": 1}}, "reasoning.effort"),
        ({"reasoning": "high"}, "reasoning"),
        ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"instructions": ["x"]}, "instructions"),
        ({"parallel_tool_calls": "true"}, "parallel_tool_calls"),
    ],
)
def test_wrong_types_and_bounds_are_400_in_responses_terms(fields: dict[str, Any], param: str) -> None:
    error = refused({"model": "m", "input": "hi", **fields})
    assert error.param == param, error.message
    assert "max_completion_tokens" not in error.message and "response_format" not in error.message


def test_a_missing_model_is_named() -> None:
    error = refused({"input": "hi"})
    assert (error.param, error.code) == ("model", "missing_required")


def test_deep_free_form_json_is_400_in_responses_terms() -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    assert (
        refused_with(tools=[{"type": "function", "name": "f", "parameters": deep}]).param
        == "tools[0].parameters"
    )
    assert (
        refused_with(text={"format": {"type": "json_schema", "name": "n", "schema": deep}}).param
        == "text.format.schema"
    )


def test_huge_input_lists_are_400_before_any_work() -> None:
    error = refused_with(input=[{"role": "user", "content": "x"}] * (MAX_MESSAGES + 1))
    assert error.param == "input" and str(MAX_MESSAGES) in error.message


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        1.5,
        "s",
        [],
        {},
        [None],
        [[]],
        {"type": None},
        [{"type": {}}],
        [{"role": {}}],
        [{"role": "user", "content": {}}],
        [{"role": "user", "content": [None]}],
        [{"role": "user", "content": [{"type": {}}]}],
        [{"type": "function_call_output", "call_id": [], "output": 1}],
    ],
)
def test_hostile_shapes_anywhere_are_only_ever_invalid_request(value: Any) -> None:
    for field in ("input", "tools", "tool_choice", "text", "reasoning", "metadata", "instructions", "user"):
        body = {"model": "m", "input": "hi", field: value}
        try:
            RESPONSES.parse(body)
        except InvalidRequest as exc:
            assert exc.status == 400
            assert exc.param is None or exc.param.split(".")[0].split("[")[0] in {field, "input"}


@pytest.mark.parametrize(
    ("chat", "responses"),
    [
        ("messages[1].content", "input[4]"),
        ("messages[0]", "instructions"),
        ("messages", "input"),
        ("messages[9]", "input"),
        ("max_completion_tokens", "max_output_tokens"),
        ("reasoning_effort", "reasoning.effort"),
        ("response_format.json_schema.schema", "text.format.schema"),
        ("response_format.type", "text.format.type"),
        ("tools[3].function.parameters", "tools[3].parameters"),
        ("tool_choice.function.name", "tool_choice.name"),
        ("temperature", "temperature"),
    ],
)
def test_codec_params_are_renamed_to_responses_members(chat: str, responses: str) -> None:
    assert responses_param(chat, ["instructions", "input[4]"]) == responses


# -- render ----------------------------------------------------------------------------------------


def answer(
    content: str | None = "Hello",
    *,
    tool_calls: list[ToolCall] | None = None,
    reasoning: str | None = None,
    refusal: str | None = None,
    finish: str = "stop",
    usage: Usage | None = None,
    chat_id: str = "chatcmpl-abc123",
) -> ChatResponse:
    message = ResponseMessage(
        content=content, tool_calls=tool_calls or UNSET, reasoning_content=reasoning or UNSET, refusal=refusal
    )
    return ChatResponse(
        id=chat_id,
        created=1700000000,
        model="gpt-x",
        choices=[Choice(index=0, message=message, finish_reason=finish)],
        usage=usage if usage is not None else make_usage(prompt=10, completion=5, cached=4, reasoning=2),
    )


def rendered(response: ChatResponse, request: ChatRequest | None = None) -> tuple[Response, dict[str, Any]]:
    body = RESPONSES.render(response, request or parse())
    return Response.model_validate_json(body), json.loads(body)


def test_a_text_answer_is_a_response_the_sdk_validates() -> None:
    response, raw = rendered(answer())
    assert (
        response.id == "resp_abc123" and response.object == "response" and response.created_at == 1700000000
    )
    assert response.status == "completed" and response.model == "gpt-x" and response.error is None
    assert response.output_text == "Hello"
    [item] = raw["output"]
    assert item == {
        "type": "message",
        "id": "msg_abc123",
        "status": "completed",
        "content": [{"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}],
        "role": "assistant",
    }
    assert raw["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 15,
    }
    assert raw["store"] is False and raw["incomplete_details"] is None and raw["previous_response_id"] is None


def test_the_request_settings_are_echoed() -> None:
    request = parse(
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True}],
        tool_choice="required",
        parallel_tool_calls=False,
        temperature=0.2,
        top_p=0.5,
        max_output_tokens=50,
        metadata={"k": "v"},
        user="u",
        reasoning={"effort": "low"},
        text={"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}},
    )
    response, raw = rendered(answer(), request)
    assert raw["tools"] == [
        {
            "type": "function",
            "name": "f",
            "description": None,
            "parameters": {"type": "object"},
            "strict": True,
        }
    ]
    assert response.tool_choice == "required" and response.parallel_tool_calls is False
    assert (response.temperature, response.top_p, response.max_output_tokens, response.user) == (
        0.2,
        0.5,
        50,
        "u",
    )
    assert response.metadata == {"k": "v"}
    assert response.reasoning is not None and response.reasoning.effort == "low"
    assert raw["text"] == {
        "format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}
    }
    named, _ = rendered(answer(), parse(tool_choice={"type": "function", "name": "f"}))
    assert named.tool_choice.type == "function" and getattr(named.tool_choice, "name", None) == "f"
    default, raw_default = rendered(answer())
    assert default.tool_choice == "auto" and default.parallel_tool_calls is True and default.tools == []
    assert raw_default["text"] == {"format": {"type": "text"}} and raw_default["metadata"] == {}
    _, json_object = rendered(answer(), parse(text={"format": {"type": "json_object"}}))
    assert json_object["text"] == {"format": {"type": "json_object"}}


def test_reasoning_text_and_tool_calls_are_items_in_that_order() -> None:
    calls = [
        ToolCall(id="call_A1", function=FunctionCall(name="f", arguments='{"a":1}')),
        ToolCall(id="call_B2", function=FunctionCall(name="g", arguments="{}")),
    ]
    response, raw = rendered(
        answer("Let me check.", tool_calls=calls, reasoning="thinking", finish="tool_calls")
    )
    assert [item["type"] for item in raw["output"]] == [
        "reasoning",
        "message",
        "function_call",
        "function_call",
    ]
    assert raw["output"][0] == {
        "type": "reasoning",
        "id": "rs_abc123",
        "summary": [{"type": "summary_text", "text": "thinking"}],
    }
    assert raw["output"][2] == {
        "type": "function_call",
        "id": "fc_A1",
        "status": "completed",
        "call_id": "call_A1",
        "name": "f",
        "arguments": '{"a":1}',
    }
    assert raw["output"][3]["call_id"] == "call_B2" and raw["output"][3]["id"] == "fc_B2"
    assert response.status == "completed" and response.output_text == "Let me check."


def test_tool_calls_alone_and_a_missing_call_id() -> None:
    calls = [ToolCall(id="", function=FunctionCall(name="f", arguments="{}"))]
    _, raw = rendered(answer(None, tool_calls=calls, finish="tool_calls"))
    [item] = raw["output"]
    assert item["call_id"] == "call_abc123_0" and item["id"] == "fc_abc1230"


def test_a_refusal_is_a_refusal_part() -> None:
    response, raw = rendered(answer(None, refusal="I can't help with that."))
    assert raw["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't help with that."}]
    assert response.output_text == ""


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_a_cut_off_answer_is_incomplete(finish: str, reason: str) -> None:
    calls = [ToolCall(id="c1", function=FunctionCall(name="f", arguments="{}"))]
    response, raw = rendered(answer("partial", tool_calls=calls, finish=finish))
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == reason
    assert [item["status"] for item in raw["output"]] == ["completed", "incomplete"]


def test_no_usage_no_output_and_odd_ids() -> None:
    empty = ChatResponse(id="chatcmpl-a.b/c:d", created=1, model="", choices=[], usage=None)
    response, raw = rendered(empty, parse(model="asked"))
    assert (
        response.id == "resp_abcd"
        and raw["usage"] is None
        and raw["output"] == []
        and response.model == "asked"
    )
    assert rendered(ChatResponse(id="", created=1, model="m", choices=[]))[0].id == "resp_0"


def test_only_the_first_choice_is_rendered() -> None:
    response = answer("first")
    response.choices.append(Choice(index=1, message=ResponseMessage(content="second"), finish_reason="stop"))
    assert rendered(response)[0].output_text == "first"


# -- stream ----------------------------------------------------------------------------------------


def chunk(delta: Delta | None = None, finish: str | None = None, *, index: int = 0) -> ChatChunk:
    return ChatChunk(
        id="chatcmpl-s1",
        created=1700000001,
        model="gpt-x",
        choices=[ChunkChoice(index=index, delta=delta or Delta(), finish_reason=finish)],
    )


def usage_chunk(prompt: int = 7, completion: int = 3) -> ChatChunk:
    return ChatChunk(
        id="chatcmpl-s1",
        created=1700000001,
        model="gpt-x",
        choices=[],
        usage=make_usage(prompt=prompt, completion=completion),
    )


def call(
    index: int, call_id: str | None = None, name: str | None = None, arguments: str | None = None
) -> Delta:
    function = FunctionCallDelta(name=name, arguments=arguments) if name or arguments else None
    return Delta(tool_calls=[ToolCallDelta(index=index, id=call_id, function=function)])


TEXT_STREAM = [
    chunk(Delta(role="assistant", content="")),
    chunk(Delta(content="Hel")),
    chunk(Delta(content="lo")),
    chunk(finish="stop"),
    usage_chunk(),
]
TOOL_STREAM = [
    chunk(Delta(role="assistant", content="Checking.")),
    chunk(call(0, "call_p", "weather", '{"ci')),
    chunk(call(1, "call_r", "weather", "")),
    chunk(call(0, arguments='ty":"Paris"}')),
    chunk(call(1, arguments='{"city":')),
    chunk(call(1, arguments='"Rome"}')),
    chunk(finish="tool_calls"),
    usage_chunk(),
]
REASONING_STREAM = [
    chunk(Delta(reasoning_content="Think")),
    chunk(Delta(reasoning="ing.")),
    chunk(Delta(content="Answer.")),
    chunk(finish="stop"),
    usage_chunk(),
]


def run(
    request: ChatRequest, batches: Sequence[Sequence[StreamItem]], *, error: GatewayError | None = None
) -> bytes:
    renderer = RESPONSES.stream(request)
    body = b"".join(renderer.frames(batch) for batch in batches)
    return body + (renderer.error(error) if error is not None else renderer.end())


def sse(body: bytes) -> list[dict[str, Any]]:
    """The events of a body, checking the frame format and validating each with the SDK's models."""
    assert body.endswith(b"\n\n") and b"[DONE]" not in body
    events = []
    for frame in body.decode().split("\n\n")[:-1]:
        event_line, data_line = frame.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == event_line.removeprefix("event: ")
        EVENT.validate_python(data)
        events.append(data)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def final_render(chunks: Sequence[StreamItem], request: ChatRequest) -> dict[str, Any]:
    accumulator = StreamAccumulator()
    for item in chunks:
        accumulator.add(item)
    result: dict[str, Any] = json.loads(RESPONSES.render(accumulator.response(), request))
    return result


def test_a_text_stream_in_the_official_order() -> None:
    request = parse(stream=True)
    events = sse(run(request, [TEXT_STREAM[:2], [], TEXT_STREAM[2:]]))
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = events[0]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["id"] == "resp_s1"
    assert events[2]["item"] == {
        "type": "message",
        "id": "msg_s1",
        "status": "in_progress",
        "content": [],
        "role": "assistant",
    }
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == ["Hel", "lo"]
    assert events[6]["text"] == "Hello" and events[7]["part"]["text"] == "Hello"
    assert events[8]["item"]["status"] == "completed" and events[8]["item"]["content"][0]["text"] == "Hello"
    completed = events[-1]["response"]
    assert completed == final_render(TEXT_STREAM, request)
    assert completed["usage"]["input_tokens"] == 7 and completed["status"] == "completed"


def test_the_completed_event_waits_for_the_end_after_the_usage_chunk() -> None:
    renderer = RESPONSES.stream(parse(stream=True))
    assert renderer.frames([]) == b""
    body = renderer.frames(TEXT_STREAM)
    assert b"response.output_text.delta" in body and b"response.completed" not in body
    end = renderer.end()
    assert types(sse(body + end))[-1] == "response.completed"
    assert b'"input_tokens":7' in end
    assert renderer.end() == b"" and renderer.frames(TEXT_STREAM) == b""


def test_text_and_two_parallel_tool_calls_with_fragmented_arguments() -> None:
    request = parse(stream=True, tools=[{"type": "function", "name": "weather"}])
    events = sse(run(request, [TOOL_STREAM[:3], TOOL_STREAM[3:]]))
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"]) for e in added] == [
        (0, "message"),
        (1, "function_call"),
        (2, "function_call"),
    ]
    assert added[1]["item"] == {
        "type": "function_call",
        "id": "fc_p",
        "status": "in_progress",
        "call_id": "call_p",
        "name": "weather",
        "arguments": "",
    }
    deltas: dict[int, str] = {}
    for event in events:
        if event["type"] == "response.function_call_arguments.delta":
            assert event["item_id"] == added[event["output_index"]]["item"]["id"]
            deltas[event["output_index"]] = deltas.get(event["output_index"], "") + event["delta"]
    assert deltas == {1: '{"city":"Paris"}', 2: '{"city":"Rome"}'}
    done = {e["output_index"]: e for e in events if e["type"] == "response.function_call_arguments.done"}
    assert done[1]["arguments"] == '{"city":"Paris"}' and done[2]["name"] == "weather"
    items_done = [e for e in events if e["type"] == "response.output_item.done"]
    assert [e["output_index"] for e in items_done] == [0, 1, 2]
    assert (
        items_done[2]["item"]["arguments"] == '{"city":"Rome"}'
        and items_done[2]["item"]["status"] == "completed"
    )
    completed = events[-1]["response"]
    assert completed == final_render(TOOL_STREAM, request)
    assert [item["id"] for item in completed["output"]] == [e["item"]["id"] for e in added]


def test_a_tool_call_named_late_keeps_its_early_arguments() -> None:
    stream = [
        chunk(call(0, "call_x", None, '{"a"')),
        chunk(call(0, None, "f", ":1}")),
        chunk(finish="tool_calls"),
        usage_chunk(),
    ]
    events = sse(run(parse(stream=True), [stream]))
    assert types(events)[2:4] == ["response.output_item.added", "response.function_call_arguments.delta"]
    assert (
        events[3]["delta"] == '{"a":1}' and types(events).count("response.function_call_arguments.delta") == 1
    )
    assert events[-1]["response"]["output"][0]["arguments"] == '{"a":1}'


def test_a_tool_call_never_named_is_still_announced_and_closed() -> None:
    stream = [chunk(call(0, "call_x", None, "{}")), usage_chunk()]
    events = sse(run(parse(stream=True), [stream]))
    assert "response.output_item.added" in types(events) and "response.output_item.done" in types(events)
    assert events[-1]["response"]["output"][0]["call_id"] == "call_x"


def test_reasoning_then_text() -> None:
    request = parse(stream=True)
    events = sse(run(request, [REASONING_STREAM]))
    assert types(events) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[2]["item"] == {"type": "reasoning", "id": "rs_s1", "summary": []}
    assert all(e["summary_index"] == 0 and e["item_id"] == "rs_s1" for e in events[3:6])
    assert events[9]["text"] == "Thinking." and events[11]["item"]["summary"] == [
        {"type": "summary_text", "text": "Thinking."}
    ]
    assert events[-1]["response"] == final_render(REASONING_STREAM, request)


def test_interleaved_items_stay_open_and_the_final_output_keeps_stream_order() -> None:
    stream = [
        chunk(Delta(reasoning_content="first, ")),
        chunk(call(0, "call_1", "f", "{}")),
        chunk(Delta(reasoning_content="then")),
        chunk(Delta(content="Done.")),
        chunk(finish="tool_calls"),
        usage_chunk(),
    ]
    events = sse(run(parse(stream=True), [stream]))
    added = [
        (e["output_index"], e["item"]["type"]) for e in events if e["type"] == "response.output_item.added"
    ]
    assert added == [(0, "reasoning"), (1, "function_call"), (2, "message")]
    summary = [e for e in events if e["type"] == "response.reasoning_summary_text.delta"]
    assert [e["output_index"] for e in summary] == [0, 0]
    first_done = types(events).index("response.output_item.done")
    assert first_done > types(events).index("response.output_text.delta")
    final = events[-1]["response"]["output"]
    assert [item["type"] for item in final] == ["reasoning", "function_call", "message"]
    assert final[0]["summary"][0]["text"] == "first, then"
    client = sdk(
        lambda _: httpx.Response(
            200, content=run(parse(stream=True), [stream]), headers={"content-type": "text/event-stream"}
        )
    )
    with client.responses.stream(model="m", input="x") as helper:
        assert helper.get_final_response().output_text == "Done."


def test_a_streamed_refusal() -> None:
    stream = [chunk(Delta(refusal="No")), chunk(Delta(refusal=".")), chunk(finish="stop"), usage_chunk()]
    events = sse(run(parse(stream=True), [stream]))
    assert "response.refusal.delta" in types(events)
    assert next(e for e in events if e["type"] == "response.refusal.done")["refusal"] == "No."
    assert events[-1]["response"]["output"][0]["content"] == [{"type": "refusal", "refusal": "No."}]


def test_a_stream_cut_off_by_the_token_limit_ends_incomplete() -> None:
    request = parse(stream=True, max_output_tokens=2)
    stream = [chunk(Delta(content="Hel")), chunk(finish="length"), usage_chunk()]
    events = sse(run(request, [stream]))
    assert types(events)[-1] == "response.incomplete"
    final = events[-1]["response"]
    assert final["status"] == "incomplete" and final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["max_output_tokens"] == 2
    assert (
        next(e for e in events if e["type"] == "response.output_item.done")["item"]["status"] == "incomplete"
    )
    assert final == final_render(stream, request)


def test_raw_chunk_bytes_render_the_same_frames() -> None:
    request = parse(stream=True)
    raw = [msgspec.json.encode(item) for item in TOOL_STREAM[1:-1]]
    assert run(request, [TOOL_STREAM[:1], raw, TOOL_STREAM[-1:]]) == run(request, [TOOL_STREAM])


def test_other_choices_are_ignored() -> None:
    stream = [chunk(Delta(content="mine")), chunk(Delta(content="other"), index=1), usage_chunk()]
    events = sse(run(parse(stream=True), [stream]))
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == ["mine"]


def test_an_error_mid_stream_is_the_last_event() -> None:
    renderer = RESPONSES.stream(parse(stream=True))
    body = renderer.frames(TOOL_STREAM[:3])
    body += renderer.error(UpstreamError("boom with sk-abcdefghijklmnop", provider="openai"))
    events = sse(body)
    assert events[-1] == {
        "type": "error",
        "code": "upstream_error",
        "message": "openai: boom with <redacted>",
        "param": None,
        "sequence_number": len(events) - 1,
    }
    assert "response.completed" not in types(events)
    assert (
        renderer.end() == b""
        and renderer.frames(TOOL_STREAM[3:]) == b""
        and renderer.error(UpstreamError("x")) == b""
    )


def test_an_error_before_any_chunk_still_starts_the_response() -> None:
    events = sse(run(parse(stream=True), [[]], error=RateLimited("slow down", param="model")))
    assert types(events) == ["response.created", "response.in_progress", "error"]
    assert events[-1]["code"] == "rate_limit_exceeded" and events[-1]["param"] == "model"


def test_an_empty_stream_still_completes() -> None:
    events = sse(run(parse(stream=True, model="asked"), []))
    assert types(events) == ["response.created", "response.in_progress", "response.completed"]
    assert events[-1]["response"]["output"] == [] and events[-1]["response"]["model"] == "asked"


# -- errors ----------------------------------------------------------------------------------------


def test_errors_use_openai_s_shape() -> None:
    status, body = RESPONSES.error(InvalidRequest("bad", param="input[0].type", code="unsupported_value"))
    assert status == 400
    assert json.loads(body) == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": "input[0].type",
            "code": "unsupported_value",
        }
    }
    assert RESPONSES.error(RateLimited("slow"))[0] == 429
    assert RESPONSES.name == "openai.responses"


# -- the official SDK, against rendered bodies -------------------------------------------------------


def sdk(handler: Callable[[httpx.Request], httpx.Response]) -> openai.OpenAI:
    transport = httpx.MockTransport(handler)
    return openai.OpenAI(
        base_url="http://test/v1", api_key="x", max_retries=0, http_client=httpx.Client(transport=transport)
    )


def serving(
    chunks: Sequence[StreamItem], seen: list[ChatRequest]
) -> Callable[[httpx.Request], httpx.Response]:
    """A fake /v1/responses: parses what the SDK sent, answers with the given chunks, whole or streamed."""

    def handler(http: httpx.Request) -> httpx.Response:
        assert http.url.path == "/v1/responses"
        request = RESPONSES.parse(json.loads(http.content))
        seen.append(request)
        if request.stream:
            body = run(request, [chunks])
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
        accumulator = StreamAccumulator()
        for item in chunks:
            accumulator.add(item)
        return httpx.Response(
            200,
            content=RESPONSES.render(accumulator.response(), request),
            headers={"content-type": "application/json"},
        )

    return handler


WEATHER_TOOL: Any = {
    "type": "function",
    "name": "weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_the_sdk_creates_a_whole_response() -> None:
    seen: list[ChatRequest] = []
    client = sdk(serving(TOOL_STREAM, seen))
    response = client.responses.create(
        model="m", input="weather?", instructions="be brief", tools=[WEATHER_TOOL], store=False
    )
    assert response.output_text == "Checking."
    calls = [item for item in response.output if item.type == "function_call"]
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in calls] == [
        ("call_p", "weather", {"city": "Paris"}),
        ("call_r", "weather", {"city": "Rome"}),
    ]
    assert response.usage is not None and (
        response.usage.input_tokens,
        response.usage.output_tokens,
        response.usage.total_tokens,
    ) == (7, 3, 10)
    [request] = seen
    assert request.messages[0].role == "system" and request.tools is not None and not request.stream


def test_the_sdk_stream_helper_assembles_the_stream() -> None:
    seen: list[ChatRequest] = []
    client = sdk(serving(REASONING_STREAM + TOOL_STREAM[1:], seen))
    with client.responses.stream(model="m", input="weather?", tools=[WEATHER_TOOL]) as stream:
        snapshots = [event.snapshot for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert snapshots == ["Answer."]
    assert final.output_text == "Answer."
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call", "function_call"]
    assert final.output[2].type == "function_call" and final.output[2].arguments == '{"city":"Paris"}'
    assert final.usage is not None and final.usage.total_tokens == 10
    assert seen[0].wants_usage_chunk


def test_the_sdk_stream_helper_parses_structured_output() -> None:
    class Weather(pydantic.BaseModel):
        city: str

    stream = [
        chunk(Delta(content='{"city":')),
        chunk(Delta(content='"Oslo"}')),
        chunk(finish="stop"),
        usage_chunk(),
    ]
    seen: list[ChatRequest] = []
    client = sdk(serving(stream, seen))
    with client.responses.stream(model="m", input="where?", text_format=Weather) as events:
        final = events.get_final_response()
    assert final.output_parsed == Weather(city="Oslo")
    assert seen[0].response_format is not None and seen[0].response_format.type == "json_schema"
    parsed = client.responses.parse(model="m", input="where?", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Oslo")


def test_the_sdk_iterates_a_raw_stream() -> None:
    client = sdk(serving(TEXT_STREAM, []))
    events = list(client.responses.create(model="m", input="hi", stream=True))
    assert [event.type for event in events][:2] == ["response.created", "response.in_progress"]
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == "Hello"
    completed = events[-1]
    assert completed.type == "response.completed" and completed.response.usage is not None
    assert completed.response.output_text == "Hello"


def test_the_sdk_sees_an_error_event_and_no_completion() -> None:
    def handler(http: httpx.Request) -> httpx.Response:
        request = RESPONSES.parse(json.loads(http.content))
        body = run(request, [TEXT_STREAM[:2]], error=UpstreamError("upstream broke"))
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    client = sdk(handler)
    events = list(client.responses.create(model="m", input="hi", stream=True))
    assert events[-1].type == "error" and events[-1].message == "upstream broke"
    with (
        client.responses.stream(model="m", input="hi") as stream,
        pytest.raises(RuntimeError, match=r"response\.completed"),
    ):
        stream.get_final_response()


def test_the_sdk_raises_on_a_refused_request() -> None:
    def handler(http: httpx.Request) -> httpx.Response:
        try:
            RESPONSES.parse(json.loads(http.content))
        except InvalidRequest as exc:
            status, body = RESPONSES.error(exc)
            return httpx.Response(status, content=body, headers={"content-type": "application/json"})
        raise AssertionError("expected a refusal")

    client = sdk(handler)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="m", input="hi", previous_response_id="resp_1")
    assert caught.value.param == "previous_response_id" and caught.value.code == "unsupported_parameter"
    with pytest.raises(openai.BadRequestError) as hosted:
        client.responses.create(model="m", input="hi", tools=[{"type": "web_search"}])
    assert hosted.value.param == "tools[0].type"
