"""Gemini adapter edge cases the recordings do not show: request mapping, schema conversion, tool-call ids
in streams, finish reasons, errors, and embeddings and streams over real HTTP (a local aiohttp upstream)."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from llmgate.core.accumulate import StreamAccumulator
from llmgate.core.codec import parse_chat_request, parse_embedding_request
from llmgate.core.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    ProviderAuthError,
    RateLimited,
    StreamInterrupted,
    UnexpectedResponse,
    UpstreamError,
    UpstreamTimeout,
)
from llmgate.core.headroom import Headroom, ParamReport
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatChunk, ChunkChoice
from llmgate.providers.base import ProviderSpec, Target, TimeoutPolicy
from llmgate.providers.gemini import (
    DEFAULT_BASE_URL,
    GeminiProvider,
    GeminiWire,
    MalformedFunctionCall,
    build,
)
from llmgate.providers.gemini.schema import to_gemini_schema
from llmgate.providers.transport import Transport

WIRE = GeminiWire(clock=lambda: 1234.0)
TARGET = Target(model="gemini-2.5-flash", api_key="AIza-unit-test-key-0000")
USER = {"role": "user", "content": "Hi"}


def request(**fields: Any) -> ChatRequest:
    return parse_chat_request({"model": "group", "messages": [USER], **fields})


def body_of(chat: ChatRequest, model: str = "gemini-2.5-flash") -> dict[str, Any]:
    call = WIRE.chat_call(chat, Target(model=model, api_key="k"), stream=False)
    return json.loads(call.body or b"")


def turn(role: str, *parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": role, "parts": list(parts)}


def call_part(
    name: str, args: dict[str, Any], call_id: str | None = None, sig: str | None = None
) -> dict[str, Any]:
    part: dict[str, Any] = {
        "functionCall": {"name": name, "args": args, **({"id": call_id} if call_id else {})}
    }
    return {**part, "thoughtSignature": sig} if sig else part


def result_part(name: str, response: dict[str, Any], call_id: str | None = None) -> dict[str, Any]:
    return {"functionResponse": {"name": name, "response": response, **({"id": call_id} if call_id else {})}}


# --- requests --------------------------------------------------------------------------------------------


def test_system_and_developer_messages_become_the_system_instruction() -> None:
    body = body_of(
        request(
            messages=[
                {"role": "system", "content": "Be brief."},
                USER,
                {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
                {"role": "assistant", "content": "Hello"},
            ]
        )
    )
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}, {"text": "Use metric units."}]}
    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello"}]},
    ]


def test_images_audio_and_files() -> None:
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png?size=2"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/photo"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}},
    ]
    [turn] = body_of(request(messages=[{"role": "user", "content": content}]))["contents"]
    assert turn["parts"] == [
        {"text": "What is this?"},
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png?size=2"}},
        {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}},
        {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}},
    ]


def test_a_data_url_that_is_not_base64_is_refused() -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/svg+xml,<svg/>"}}
    with pytest.raises(InvalidRequest) as caught:
        body_of(request(messages=[{"role": "user", "content": [image]}]))
    assert caught.value.param == "messages[0].content"


def test_openai_file_ids_are_refused_by_check() -> None:
    part = {"type": "file", "file": {"file_id": "file-abc123"}}
    chat = request(messages=[{"role": "user", "content": [part]}])
    assert WIRE.check(chat).refused == ("file_id",)
    with pytest.raises(InvalidRequest):
        body_of(chat)


TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Current weather",
        "strict": True,
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": False,
            "properties": {"city": {"type": "string"}},
            "required": ["city", "ghost"],
        },
    },
}


def test_tools_and_their_schema_reach_gemini_as_function_declarations() -> None:
    body = body_of(request(tools=[TOOL]))
    parameters = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    declaration = {"name": "weather", "description": "Current weather", "parameters": parameters}
    assert body["tools"] == [{"functionDeclarations": [declaration]}]
    assert "toolConfig" not in body


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        ("none", {"mode": "NONE"}),
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ({"function": {"name": "weather"}}, {"mode": "ANY", "allowedFunctionNames": ["weather"]}),
    ],
)
def test_tool_choice(choice: Any, config: dict[str, Any]) -> None:
    body = body_of(request(tools=[TOOL], tool_choice=choice))
    assert body["toolConfig"] == {"functionCallingConfig": config}


def test_legacy_functions_api() -> None:
    body = body_of(
        request(
            functions=[{"name": "lookup", "parameters": {"type": "object", "properties": {}}}],
            function_call={"name": "lookup"},
            messages=[
                USER,
                {"role": "assistant", "function_call": {"name": "lookup", "arguments": '{"q": 1}'}},
                {"role": "function", "name": "lookup", "content": "found"},
            ],
        )
    )
    assert body["tools"] == [
        {"functionDeclarations": [{"name": "lookup", "parameters": {"type": "object", "properties": {}}}]}
    ]
    assert body["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["lookup"]}
    }
    assert body["contents"][1:] == [
        turn("model", call_part("lookup", {"q": 1}, sig="skip_thought_signature_validator")),
        turn("user", result_part("lookup", {"output": "found"})),
    ]


def _call(call_id: str, name: str, arguments: str, **extra: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}, **extra}


def test_tool_calls_and_results_round_trip() -> None:
    signature = {"extra_content": {"google": {"thought_signature": "c2lnbmF0dXJl"}}}
    messages = [
        USER,
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                _call("call_a", "weather", '{"city": "Oslo"}', **signature),
                _call("call_b", "time", ""),
            ],
        },
        {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 3, "unit": "C"}'},
        {"role": "user", "content": "Thanks"},
    ]
    body = body_of(request(messages=messages))
    assert body["contents"][1] == turn(
        "model",
        {"text": "Let me check."},
        call_part("weather", {"city": "Oslo"}, "call_a", sig="c2lnbmF0dXJl"),
        call_part("time", {}, "call_b"),
    )
    # Parallel results (and the user's next words) form one user turn, as Gemini expects.
    assert body["contents"][2:] == [
        turn(
            "user",
            result_part("time", {"output": "12:00"}, "call_b"),
            result_part("weather", {"temp": 3, "unit": "C"}, "call_a"),
            {"text": "Thanks"},
        )
    ]


def test_unsigned_calls_get_the_documented_sentinel_on_the_first_call_of_each_step() -> None:
    messages = [
        USER,
        {"role": "assistant", "tool_calls": [_call("c1", "f", "{}"), _call("c2", "f", "{}")]},
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
        {"role": "tool", "tool_call_id": "c2", "content": "2"},
        {"role": "assistant", "tool_calls": [_call("c3", "f", "{}")]},
        {"role": "tool", "tool_call_id": "c3", "content": "3"},
    ]
    contents = body_of(request(messages=messages))["contents"]
    signatures = [[p.get("thoughtSignature") for p in c["parts"]] for c in contents if c["role"] == "model"]
    assert signatures == [["skip_thought_signature_validator", None], ["skip_thought_signature_validator"]]


def test_a_tool_result_for_an_unknown_call_is_refused() -> None:
    chat = request(messages=[USER, {"role": "tool", "tool_call_id": "nope", "content": "x"}])
    with pytest.raises(InvalidRequest) as caught:
        body_of(chat)
    assert caught.value.param == "messages[1].tool_call_id"


@pytest.mark.parametrize("arguments", ["[1, 2]", "{not json"])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    chat = request(messages=[USER, {"role": "assistant", "tool_calls": [_call("c", "f", arguments)]}])
    with pytest.raises(InvalidRequest):
        body_of(chat)


def test_empty_assistant_turns_are_left_out() -> None:
    body = body_of(
        request(messages=[USER, {"role": "assistant", "content": ""}, {"role": "user", "content": "?"}])
    )
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}, {"text": "?"}]}]


def test_generation_config() -> None:
    sampling = {"temperature": 0.3, "top_p": 0.9, "n": 2, "seed": 7}
    penalties = {"presence_penalty": 0.5, "frequency_penalty": -0.5}
    limits = {"max_tokens": 50, "max_completion_tokens": 100, "stop": "END"}
    body = body_of(request(**sampling, **penalties, **limits, response_format={"type": "json_object"}))
    assert body["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.9,
        "candidateCount": 2,
        "seed": 7,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
        "maxOutputTokens": 100,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
    }
    assert "generationConfig" not in body_of(request(response_format={"type": "text"}))


def test_json_schema_response_format() -> None:
    schema = {
        "type": "object",
        "properties": {"result": {"type": "number"}, "note": {"type": ["string", "null"]}},
        "required": ["result", "note"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    chat = request(response_format=fmt)
    assert body_of(chat)["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "object",
            "properties": {"result": {"type": "number"}, "note": {"type": "string", "nullable": True}},
            "required": ["result", "note"],
        },
    }
    assert WIRE.check(chat).dropped == ("strict",)


@pytest.mark.parametrize(
    ("model", "effort", "thinking"),
    [
        ("gemini-2.5-flash", "low", {"thinkingBudget": 1024}),
        ("gemini-2.5-flash", "none", {"thinkingBudget": 0}),
        ("gemini-2.5-pro", "none", {"thinkingBudget": 128}),
        ("gemini-flash-latest", "high", {"thinkingBudget": 24576}),
        ("gemini-3-pro-preview", "high", {"thinkingLevel": "high"}),
        ("models/gemini-3.5-flash", "minimal", {"thinkingLevel": "minimal"}),
    ],
)
def test_reasoning_effort_becomes_a_thinking_config(
    model: str, effort: str, thinking: dict[str, Any]
) -> None:
    assert body_of(request(reasoning_effort=effort), model)["generationConfig"] == {
        "thinkingConfig": thinking
    }


def test_native_gemini_fields_pass_through_and_others_are_dropped() -> None:
    safety = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    chat = request(
        reasoning_effort="low",
        top_k=40,
        safetySettings=safety,
        cached_content="cachedContents/abc",
        generationConfig={"thinkingConfig": {"includeThoughts": True}, "responseModalities": ["TEXT"]},
        service_tier="flex",
    )
    body = body_of(chat)
    assert body["safetySettings"] == safety
    assert body["cachedContent"] == "cachedContents/abc"
    assert body["generationConfig"] == {
        "topK": 40,
        "responseModalities": ["TEXT"],
        "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True},
    }
    assert "service_tier" not in body
    assert WIRE.check(chat).dropped == ("service_tier",)


def test_check_reports_dropped_and_refused_parameters() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}}
    chat = request(
        messages=[{"role": "user", "content": [image]}],
        logit_bias={"50256": -100},
        user="u1",
        metadata={"k": "v"},
        parallel_tool_calls=False,
        logprobs=True,
        top_logprobs=2,
        tools=[TOOL],
        reasoning_effort="extreme",
        audio={"voice": "alloy"},
        modalities=["text", "audio"],
    )
    report = WIRE.check(chat)
    dropped = "logit_bias user metadata parallel_tool_calls logprobs top_logprobs strict detail"
    assert report.dropped == tuple(dropped.split())
    assert report.refused == ("audio", "modalities", "reasoning_effort")
    assert WIRE.check(request(parallel_tool_calls=True, logprobs=False, modalities=["text"])) == ParamReport()


def test_calls_address_the_model_and_carry_the_key() -> None:
    call = WIRE.chat_call(request(), TARGET, stream=True)
    assert call.method == "POST"
    assert call.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert call.headers == {"Content-Type": "application/json", "x-goog-api-key": TARGET.api_key}
    wire = GeminiWire(api_version="v1", extra_headers={"x-goog-user-project": "p"})
    call = wire.chat_call(request(), Target(model="tunedModels/my-model"), stream=False)
    assert call.path == "/v1/tunedModels/my-model:generateContent"
    assert call.headers == {"Content-Type": "application/json", "x-goog-user-project": "p"}
    assert WIRE.chat_call(request(), Target(model="models/gemini-pro"), stream=False).path == (
        "/v1beta/models/gemini-pro:generateContent"
    )


# --- schema conversion -----------------------------------------------------------------------------------


def test_schema_references_are_inlined_and_cycles_cut() -> None:
    schema = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer", "format": "int64"},
                    "next": {"$ref": "#/$defs/Node"},
                },
            },
            "Color": {"enum": ["red", "green"]},
        },
        "type": "object",
        "properties": {
            "head": {"$ref": "#/$defs/Node", "description": "first"},
            "color": {"$ref": "#/$defs/Color"},
        },
    }
    assert to_gemini_schema(schema, param="tools") == {
        "type": "object",
        "properties": {
            "head": {
                "type": "object",
                "description": "first",
                "properties": {"value": {"type": "integer", "format": "int64"}, "next": {"type": "object"}},
            },
            "color": {"enum": ["red", "green"], "type": "string"},
        },
    }


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        (
            {"anyOf": [{"type": "integer", "exclusiveMinimum": 0}, {"type": "null"}], "description": "n"},
            {"description": "n", "nullable": True, "type": "integer"},
        ),
        (
            {"oneOf": [{"type": "string"}, {"type": "number"}]},
            {"anyOf": [{"type": "string"}, {"type": "number"}]},
        ),
        ({"type": ["string", "integer"]}, {"anyOf": [{"type": "string"}, {"type": "integer"}]}),
        ({"type": ["string", "null"]}, {"type": "string", "nullable": True}),
        ({"const": "yes"}, {"enum": ["yes"], "type": "string"}),
        ({"type": "integer", "enum": [1, 2, 3]}, {"type": "integer"}),
        ({"type": "string", "format": "email", "examples": ["a@b.c"]}, {"type": "string"}),
        ({"type": "string", "format": "date-time"}, {"type": "string", "format": "date-time"}),
        (
            {
                "allOf": [
                    {"properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "number"}}},
                ]
            },
            {"properties": {"a": {"type": "string"}, "b": {"type": "number"}}, "required": ["a"]},
        ),
        (
            {"type": "array", "items": {"type": "string", "pattern": "^x"}, "minItems": 1},
            {"type": "array", "items": {"type": "string", "pattern": "^x"}, "minItems": 1},
        ),
        (
            {"type": "object", "patternProperties": {"^x": {}}, "required": ["ghost"], "properties": {}},
            {"type": "object", "required": [], "properties": {}},
        ),
    ],
)
def test_schema_keywords(given: dict[str, Any], sent: dict[str, Any]) -> None:
    assert to_gemini_schema(given, param="tools") == sent


def test_an_unresolvable_schema_reference_is_refused() -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_gemini_schema({"$ref": "https://example.com/schema.json"}, param="response_format")
    assert caught.value.param == "response_format"


# --- responses -------------------------------------------------------------------------------------------


def answer(
    *parts: dict[str, Any], finish: str | None = "STOP", index: int | None = 0, **extra: Any
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": list(parts), "role": "model"}}
    if finish is not None:
        candidate["finishReason"] = finish
    if index is not None:
        candidate["index"] = index
    return {"candidates": [candidate], "responseId": "resp-1", "modelVersion": "gemini-2.5-flash", **extra}


def parse(payload: dict[str, Any]) -> Any:
    return WIRE.parse_chat(json.dumps(payload).encode())


def candidate(index: int, *parts: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"index": index, "content": {"parts": list(parts)}, **({"finishReason": finish} if finish else {})}


def test_thoughts_text_and_usage() -> None:
    usage = {
        "promptTokenCount": 100,
        "candidatesTokenCount": 10,
        "thoughtsTokenCount": 30,
        "cachedContentTokenCount": 60,
        "toolUsePromptTokenCount": 5,
        "totalTokenCount": 145,
    }
    response = parse(
        answer({"text": "hmm", "thought": True}, {"text": "Hi"}, {"text": " there"}, usageMetadata=usage)
    )
    message = response.choices[0].message
    assert (message.content, message.reasoning_content) == ("Hi there", "hmm")
    assert (response.id, response.model, response.created) == ("resp-1", "gemini-2.5-flash", 1234)
    usage_read = response.usage
    counts = (usage_read.prompt_tokens, usage_read.completion_tokens, usage_read.total_tokens)
    assert counts == (105, 40, 145)
    assert (usage_read.cached_tokens, usage_read.reasoning_tokens) == (60, 30)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("LANGUAGE", "language"),
        ("SOMETHING_NEW", "something_new"),
    ],
)
def test_finish_reasons(raw: str, reason: str) -> None:
    assert parse(answer({"text": "x"}, finish=raw)).choices[0].finish_reason == reason


@pytest.mark.parametrize("raw", ["MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL"])
def test_a_failed_function_call_is_an_error_not_a_stop(raw: str) -> None:
    payload = answer(finish=raw, finishMessage="Malformed function call: print(x")
    payload["candidates"][0]["finishMessage"] = "Malformed function call: print(x"
    with pytest.raises(MalformedFunctionCall, match="print\\(x") as caught:
        parse(payload)
    assert caught.value.code == "malformed_function_call"
    assert caught.value.retryable
    translator = WIRE.stream_translator(request())
    translator.feed(json.dumps(answer({"text": "Let me"}, finish=None)).encode())
    with pytest.raises(MalformedFunctionCall):
        translator.feed(json.dumps(payload).encode())


def test_a_blocked_prompt_is_a_content_filter_answer_streamed_or_not() -> None:
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 7, "totalTokenCount": 7},
    }
    response = parse(blocked)
    assert [(c.index, c.message.content, c.finish_reason) for c in response.choices] == [
        (0, None, "content_filter")
    ]
    assert response.usage.prompt_tokens == 7
    assert response.id.startswith("gemini-")
    translator = WIRE.stream_translator(request())
    chunks = translator.feed(json.dumps(blocked).encode())
    assert translator.finished
    assert [c.choices[0].finish_reason if c.choices else None for c in chunks] == ["content_filter", None]
    assert chunks[-1].usage.prompt_tokens == 7


def test_an_answer_without_candidates_or_feedback_is_unexpected() -> None:
    with pytest.raises(UnexpectedResponse):
        parse({"usageMetadata": {"promptTokenCount": 1}})


def test_parts_llmgate_cannot_relay_are_not_dropped_silently() -> None:
    with pytest.raises(UnexpectedResponse, match="inline_data"):
        parse(answer({"inlineData": {"mimeType": "image/png", "data": "AAAA"}}))


def test_an_error_inside_a_200_answer_or_a_stream_raises() -> None:
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    with pytest.raises(Overloaded):
        parse(error)
    with pytest.raises(Overloaded):
        WIRE.stream_translator(request()).feed(json.dumps(error).encode())
    with pytest.raises(UnexpectedResponse):
        WIRE.parse_chat(b"<html>")


def test_tool_call_ids_are_synthesised_deterministically() -> None:
    payload = answer(call_part("a", {"x": 1}), call_part("b", {}), call_part("c", {}, "gem-id"))
    first = parse(payload).choices[0]
    ids = [call.id for call in first.message.tool_calls]
    assert first.finish_reason == "tool_calls"
    assert ids == [call.id for call in parse(payload).choices[0].message.tool_calls]
    assert ids[2] == "gem-id"  # Gemini's own id wins when it sends one
    assert ids[0].startswith("call_") and ids[1].startswith("call_") and ids[0] != ids[1]
    other = parse({**payload, "responseId": "resp-2"}).choices[0].message.tool_calls
    assert other[0].id != ids[0]


def stream_events() -> list[dict[str, Any]]:
    """Two candidates; the second candidate's calls are spread over three events."""
    usage = {"promptTokenCount": 5, "candidatesTokenCount": 9, "totalTokenCount": 14}
    first = [candidate(0, {"text": "Checking"}), candidate(1, call_part("f", {"n": 1}))]
    last = [
        candidate(0, call_part("g", {}), finish="STOP"),
        candidate(1, call_part("f", {"n": 3}), finish="STOP"),
    ]
    return [
        {"candidates": first, "responseId": "resp-s", "modelVersion": "gemini-x"},
        {"candidates": [candidate(1, call_part("f", {"n": 2}))], "responseId": "resp-s"},
        {"candidates": last, "responseId": "resp-s", "usageMetadata": usage},
    ]


def translate(events: list[dict[str, Any]], **fields: Any) -> tuple[list[ChatChunk], bool]:
    translator = WIRE.stream_translator(request(**fields))
    chunks = [chunk for event in events for chunk in translator.feed(json.dumps(event).encode())]
    return chunks, translator.finished


def test_streamed_tool_calls_keep_stable_indexes_and_ids() -> None:
    chunks, finished = translate(stream_events(), n=2)
    assert finished
    deltas = [
        (choice.index, call.index, call.id, call.function.arguments)
        for choice in choices(chunks)
        for call in choice.delta.tool_calls or ()
    ]
    expected = [(1, 0, '{"n":1}'), (1, 1, '{"n":2}'), (0, 0, "{}"), (1, 2, '{"n":3}')]
    assert [(c, i, args) for c, i, _, args in deltas] == expected
    assert len({call_id for *_, call_id, _ in deltas}) == 4
    accumulator = StreamAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    streamed = accumulator.response()
    calls = [call_part("f", {"n": k}) for k in (1, 2, 3)]
    merged = {
        "candidates": [
            candidate(0, {"text": "Checking"}, call_part("g", {}), finish="STOP"),
            candidate(1, *calls, finish="STOP"),
        ],
        "responseId": "resp-s",
        "modelVersion": "gemini-x",
        "usageMetadata": stream_events()[-1]["usageMetadata"],
    }
    assert streamed == parse(merged)
    assert [c.finish_reason for c in streamed.choices] == ["tool_calls", "tool_calls"]


def test_a_stream_is_finished_only_when_every_expected_candidate_is() -> None:
    events = stream_events()
    events[2]["candidates"].pop()  # candidate 1 never finishes
    chunks, finished = translate(events, n=2)
    assert not finished
    assert all(chunk.choices for chunk in chunks), "no usage chunk before the end"
    _, finished = translate([*stream_events()[:1], {"candidates": [{"index": 0, "finishReason": "STOP"}]}])
    assert not finished, "candidate 1 started but has not finished"
    chunks, finished = translate([answer({"text": "a"})])
    assert finished and chunks[-1].choices == [] and chunks[-1].usage is None


def choices(chunks: list[ChatChunk]) -> list[ChunkChoice]:
    return [choice for chunk in chunks for choice in chunk.choices]


def test_stream_chunks_carry_one_role_and_skip_empty_events() -> None:
    events = [
        answer({"text": "A"}, finish=None, index=None),
        answer({"text": ""}, finish=None, index=None),
        answer({"text": "B", "thought": True}, finish=None, index=None),
        answer(
            finish="MAX_TOKENS", index=None, usageMetadata={"promptTokenCount": 1, "candidatesTokenCount": 2}
        ),
    ]
    chunks, finished = translate(events)
    assert finished
    seen = [
        (c.delta.role, c.delta.content, c.delta.reasoning_content, c.finish_reason) for c in choices(chunks)
    ]
    assert seen == [("assistant", "A", None, None), (None, None, "B", None), (None, None, None, "length")]
    assert {(c.id, c.created, c.model) for c in chunks} == {("resp-1", 1234, "gemini-2.5-flash")}
    assert chunks[-1].usage.completion_tokens == 2


# --- errors ----------------------------------------------------------------------------------------------


def google_error(code: int, status: str, message: str, *details: dict[str, Any]) -> bytes:
    return json.dumps(
        {"error": {"code": code, "message": message, "status": status, "details": list(details)}}
    ).encode()


def test_an_invalid_key_is_an_auth_error_despite_the_400() -> None:
    info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
    error = WIRE.parse_error(400, {}, google_error(400, "INVALID_ARGUMENT", "API key not valid.", info))
    assert type(error) is ProviderAuthError
    error = WIRE.parse_error(400, {}, google_error(400, "INVALID_ARGUMENT", "Bad value."))
    assert type(error) is InvalidRequest


def test_invalid_arguments() -> None:
    message = "The input token count (1283524) exceeds the maximum number of tokens allowed (1048576)."
    error = WIRE.parse_error(400, {}, google_error(400, "INVALID_ARGUMENT", message))
    assert type(error) is ContextLengthExceeded
    assert (error.code, error.param, error.message) == ("context_length_exceeded", "messages", message)
    violation = {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "generation_config.temperature", "description": "out of range"}],
    }
    error = WIRE.parse_error(400, {}, google_error(400, "INVALID_ARGUMENT", "bad temperature", violation))
    assert type(error) is InvalidRequest
    assert error.param == "generation_config.temperature"


def test_rate_limits_use_retry_after_or_retry_info() -> None:
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
    body = google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.", retry)
    error = WIRE.parse_error(429, {}, body)
    assert type(error) is RateLimited
    assert error.retry_after == 7.0
    assert WIRE.parse_error(429, {"retry-after": "3"}, body).retry_after == 3.0
    fractional = google_error(429, "RESOURCE_EXHAUSTED", "q", {**retry, "retryDelay": "0.25s"})
    assert WIRE.parse_error(429, {}, fractional).retry_after == 0.25
    assert WIRE.parse_error(429, {}, google_error(429, "RESOURCE_EXHAUSTED", "q")).retry_after is None


@pytest.mark.parametrize(
    ("status", "google", "cls"),
    [
        (401, "UNAUTHENTICATED", ProviderAuthError),
        (403, "PERMISSION_DENIED", ProviderAuthError),
        (404, "NOT_FOUND", ModelNotFound),
        (400, "FAILED_PRECONDITION", UpstreamError),
        (500, "INTERNAL", UpstreamError),
        (503, "UNAVAILABLE", Overloaded),
        (504, "DEADLINE_EXCEEDED", UpstreamTimeout),
        (499, "CANCELLED", UpstreamError),
    ],
)
def test_google_statuses(status: int, google: str, cls: type[Exception]) -> None:
    error = WIRE.parse_error(status, {}, google_error(status, google, "boom"))
    assert type(error) is cls
    assert "boom" in error.message


def test_unreadable_and_array_wrapped_error_bodies() -> None:
    error = WIRE.parse_error(502, {}, b"<html>Bad Gateway</html>")
    assert type(error) is UpstreamError
    assert error.message == "<html>Bad Gateway</html>"
    assert WIRE.parse_error(500, {}, b"").message == "upstream answered HTTP 500"
    wrapped = b"[" + google_error(404, "NOT_FOUND", "models/x is not found") + b"]"
    assert type(WIRE.parse_error(404, {}, wrapped)) is ModelNotFound


def test_headroom_is_only_a_retry_after() -> None:
    assert WIRE.headroom({"content-type": "application/json"}) is None
    assert WIRE.headroom({"retry-after": "12"}) == Headroom(retry_after=12.0)


# --- over HTTP: a local upstream -------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FAST = TimeoutPolicy(connect=2.0, first_token=2.0, idle=2.0, total=5.0)


@asynccontextmanager
async def upstream(handler: Handler) -> AsyncIterator[tuple[GeminiProvider, list[dict[str, Any]]]]:
    """A local Gemini stand-in on 127.0.0.1; yields a provider pointed at it and what it received."""
    received: list[dict[str, Any]] = []

    async def record(http_request: web.Request) -> web.StreamResponse:
        raw = await http_request.read()
        received.append(
            {"path": http_request.path_qs, "headers": dict(http_request.headers), "json": json.loads(raw)}
        )
        return await handler(http_request)

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", record)
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    transport = Transport()
    spec = ProviderSpec(name="gemini", type="gemini", base_url=f"http://{host}:{port}")
    try:
        yield build(spec, transport), received
    finally:
        await transport.close()
        await runner.cleanup()


async def embedding_handler(http_request: web.Request) -> web.StreamResponse:
    if http_request.path.endswith(":embedContent"):
        return web.json_response({"embedding": {"values": [0.5, -0.25]}})
    requests = (await http_request.json())["requests"]
    return web.json_response({"embeddings": [{"values": [float(i), 1.0]} for i in range(len(requests))]})


def test_build_defaults() -> None:
    provider = build(ProviderSpec(name="g", type="gemini"), Transport())
    assert isinstance(provider, GeminiProvider)
    assert provider.base_url == DEFAULT_BASE_URL
    assert isinstance(provider.wire, GeminiWire) and provider.wire.api_version == "v1beta"
    custom = build(ProviderSpec(name="g", type="gemini", api_version="v1alpha"), Transport())
    assert isinstance(custom.wire, GeminiWire) and custom.wire.api_version == "v1alpha"


async def test_one_text_is_embedded_with_embed_content() -> None:
    async with upstream(embedding_handler) as (provider, received):
        target = Target(model="gemini-embedding-001", api_key="AIza-k", timeouts=FAST)
        chat = parse_embedding_request(
            {"model": "e", "input": "hello world", "dimensions": 2, "task_type": "RETRIEVAL_QUERY"}
        )
        response = await provider.embed(chat, target)
    [call] = received
    assert call["path"] == "/v1beta/models/gemini-embedding-001:embedContent"
    assert call["headers"]["x-goog-api-key"] == "AIza-k"
    content = {"parts": [{"text": "hello world"}]}
    assert call["json"] == {"content": content, "outputDimensionality": 2, "taskType": "RETRIEVAL_QUERY"}
    assert [(item.index, item.embedding) for item in response.data] == [(0, [0.5, -0.25])]
    assert response.model == "gemini-embedding-001"
    assert response.usage is not None and response.usage.prompt_tokens == 3  # estimated: 11 chars / 4


async def test_a_list_is_embedded_in_batches_gemini_accepts() -> None:
    texts = [f"text {i}" for i in range(130)]
    async with upstream(embedding_handler) as (provider, received):
        chat = parse_embedding_request({"model": "e", "input": texts, "encoding_format": "base64"})
        response = await provider.embed(chat, Target(model="text-embedding-004", timeouts=FAST))
    assert [call["path"] for call in received] == ["/v1beta/models/text-embedding-004:batchEmbedContents"] * 2
    assert [len(call["json"]["requests"]) for call in received] == [100, 30]
    content = {"parts": [{"text": "text 100"}]}
    assert received[1]["json"]["requests"][0] == {"model": "models/text-embedding-004", "content": content}
    assert [item.index for item in response.data] == list(range(130))
    encoded = response.data[101].embedding
    assert isinstance(encoded, str)
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (1.0, 1.0)


async def test_embedding_errors_and_token_input() -> None:
    async def quota(_: web.Request) -> web.StreamResponse:
        return web.json_response(
            json.loads(google_error(429, "RESOURCE_EXHAUSTED", "slow down AIza-k-secret-0000")), status=429
        )

    async with upstream(quota) as (provider, _):
        target = Target(model="m", api_key="AIza-k-secret-0000", timeouts=FAST)
        with pytest.raises(RateLimited) as caught:
            await provider.embed(parse_embedding_request({"model": "e", "input": "x"}), target)
        assert "AIza-k-secret-0000" not in caught.value.message
        with pytest.raises(InvalidRequest):
            await provider.embed(parse_embedding_request({"model": "e", "input": [[1, 2, 3]]}), target)


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(event).encode() + b"\r\n\r\n" for event in events)


async def test_chat_and_stream_over_http() -> None:
    async def handler(http_request: web.Request) -> web.StreamResponse:
        if "streamGenerateContent" not in http_request.path:
            return web.json_response(answer({"text": "whole"}))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(http_request)
        await response.write(sse(answer({"text": "str"}, finish=None)))
        await response.write(
            sse(answer({"text": "eamed"}, usageMetadata={"promptTokenCount": 2, "candidatesTokenCount": 3}))
        )
        return response

    async with upstream(handler) as (provider, received):
        target = Target(model="gemini-2.5-flash", api_key="AIza-k", timeouts=FAST)
        whole = await provider.chat(request(), target)
        batches = [batch async for batch in provider.stream(request(), target)]
    assert whole.text == "whole"
    accumulator = StreamAccumulator()
    for chunk in (chunk for batch in batches for chunk in batch):
        accumulator.add(chunk)
    streamed = accumulator.response()
    assert streamed.usage is not None
    assert (streamed.text, streamed.choices[0].finish_reason, streamed.usage.total_tokens) == (
        "streamed",
        "stop",
        5,
    )
    assert [call["path"] for call in received] == [
        "/v1beta/models/gemini-2.5-flash:generateContent",
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
    ]


async def test_a_stream_that_ends_without_a_finish_reason_is_interrupted() -> None:
    async def handler(http_request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(http_request)
        await response.write(sse(answer({"text": "cut off"}, finish=None)))
        return response

    async with upstream(handler) as (provider, _):
        chunks: list[ChatChunk] = []
        with pytest.raises(StreamInterrupted):
            async for batch in provider.stream(request(), Target(model="m", timeouts=FAST)):
                chunks += batch
    assert [chunk.choices[0].delta.content for chunk in chunks] == ["cut off"]
