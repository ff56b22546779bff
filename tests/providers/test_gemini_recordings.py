"""Conformance of the Gemini adapter against every real recorded Gemini exchange.

Request side: the recorded Gemini request is translated back, by this test's own reading, into the OpenAI
request a caller would send for it; the body llmgate builds from that must equal the recorded body, up to
the differences listed in ``NORMALISED`` (each a documented choice, applied to both sides). Response side:
complete answers, errors, embeddings and streams are read by the adapter and compared with values read
straight out of the recorded JSON.

Streams: ``alt=sse`` recordings go through the shared ``SSEDecoder`` in several fragmentations.
``json_array`` recordings were made without ``alt=sse`` (the server then streams one JSON array); llmgate
always asks for SSE, so the suite cuts the recorded array into its elements here and feeds each element's
JSON text to the translator as one event, exactly what an SSE event carries.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import msgspec
import pytest
from recordings import MISSING_REASON, RECORDINGS_DIR

from llmgate.core.accumulate import StreamAccumulator
from llmgate.core.codec import parse_chat_request, parse_embedding_request
from llmgate.core.errors import GatewayError, ProviderAuthError, RateLimited
from llmgate.core.response import ChatChunk, ChatResponse
from llmgate.core.usage import Usage
from llmgate.providers.base import HttpCall, Target
from llmgate.providers.gemini import GeminiProvider, GeminiWire
from llmgate.providers.sse import SSEDecoder
from llmgate.providers.transport import Transport

if not RECORDINGS_DIR.is_dir():
    pytest.skip(
        MISSING_REASON,
        allow_module_level=True,
    )

# Recordings the suite cannot use (none today; the classification below derives it from the data).
UNUSABLE: dict[str, str] = {}

# Accepted differences between the recorded body and llmgate's, each applied to both sides by _normalise.
NORMALISED = {
    "model": "the Go SDK repeats the model in the body; llmgate names it in the URL only",
    "systemInstruction.role": "a role on systemInstruction is ignored by Gemini; llmgate sends none",
    "generationConfig: {}": "an empty generationConfig is the same as none",
    "schema type case": "Gemini reads OBJECT and object alike; llmgate sends JSON Schema's lower case",
    "parameters_json_schema": (
        "pydantic-ai sends raw JSON Schema in parameters_json_schema; llmgate converts it to Gemini's "
        "Schema in parameters, dropping additionalProperties"
    ),
    "empty description": "a function description that is empty or null is left out",
    "call ids": "llmgate sends the OpenAI tool-call id on functionCall/functionResponse; dropped when the "
    "recording has none",
}

API_KEY = "AIza-test-recordings-000000000000"
CLOCK = 1_700_000_000.0


@dataclass(frozen=True)
class Recording:
    """One recorded exchange."""

    name: str
    scenario: str
    request: dict[str, Any]
    response: dict[str, Any]

    @property
    def body(self) -> Any:
        return self.request.get("body")

    @property
    def status(self) -> int:
        return int(self.response["status"])

    @property
    def url_path(self) -> str:
        return str(self.request["url_path"])


def _load() -> list[Recording]:
    recordings = []
    for path in sorted(RECORDINGS_DIR.glob("gemini*__*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        assert data["provider"] == "gemini"
        recordings.append(Recording(path.name, data["scenario"], data["request"], data["response"]))
    return recordings


RECORDINGS = _load()


def _params() -> list[Any]:
    return [pytest.param(r, id=r.name.removesuffix(".json")) for r in RECORDINGS]


def _wire() -> GeminiWire:
    return GeminiWire(clock=lambda: CLOCK)


# --- classification --------------------------------------------------------------------------------------


def _problem(recording: Recording) -> str | None:
    response, body = recording.response, recording.body
    if not isinstance(body, dict) or not ({"contents", "requests", "content"} & set(body)):
        return "request body is neither generateContent nor an embedding request"
    if not recording.request.get("url_path"):
        return "request URL not recorded"
    if "body_text" in response:
        return None if response.get("stream_format") in ("sse", "json_array") else "unknown stream format"
    if recording.status >= 400:
        return None if isinstance(response.get("body"), dict) else "error body is not JSON"
    answer = response.get("body")
    if isinstance(answer, dict) and ({"candidates", "embeddings", "embedding"} & set(answer)):
        return None
    return "200 response that is neither a generateContent answer nor embeddings"


def test_recordings_were_found() -> None:
    assert len(RECORDINGS) >= 17
    kinds = {
        "sse": sum(r.response.get("stream_format") == "sse" for r in RECORDINGS),
        "json_array": sum(r.response.get("stream_format") == "json_array" for r in RECORDINGS),
        "error": sum(r.status >= 400 for r in RECORDINGS),
        "tool": sum("tool" in r.scenario for r in RECORDINGS),
    }
    assert kinds == {"sse": 6, "json_array": 2, "error": 3, "tool": 7}


def test_skips_are_exactly_the_listed_ones() -> None:
    assert {r.name: _problem(r) for r in RECORDINGS if _problem(r)} == UNUSABLE


# --- request side: the OpenAI request equivalent to a recorded Gemini request ---------------------------


def _lower_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            key: value.lower() if key == "type" and isinstance(value, str) else _lower_types(value)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_lower_types(item) for item in schema]
    return schema


def _without(schema: Any, key: str) -> Any:
    if isinstance(schema, dict):
        return {k: _without(v, key) for k, v in schema.items() if k != key}
    if isinstance(schema, list):
        return [_without(item, key) for item in schema]
    return schema


class _Calls:
    """Ids for recorded function calls: the recorded id, else ``call_<n>``; responses find theirs by name."""

    def __init__(self) -> None:
        self.count = 0
        self.pending: dict[str, list[str]] = {}

    def issue(self, call: dict[str, Any]) -> str:
        self.count += 1
        identifier = call.get("id") or f"call_{self.count}"
        self.pending.setdefault(call["name"], []).append(identifier)
        return str(identifier)

    def answer(self, response: dict[str, Any]) -> str:
        queue = self.pending[response["name"]]
        identifier = response.get("id") or queue[0]
        queue.remove(identifier)
        return str(identifier)


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = [
        {"role": "system", "content": part["text"]}
        for part in body.get("systemInstruction", {}).get("parts", [])
    ]
    calls = _Calls()
    for content in body["contents"]:
        texts = [part["text"] for part in content["parts"] if "text" in part]
        if content["role"] == "model":
            tool_calls = []
            for part in content["parts"]:
                if "functionCall" in part:
                    call = part["functionCall"]
                    tool_call: dict[str, Any] = {
                        "id": calls.issue(call),
                        "type": "function",
                        "function": {"name": call["name"], "arguments": json.dumps(call["args"])},
                    }
                    if "thoughtSignature" in part:  # Google's OpenAI-compatible carrier of the signature
                        tool_call["extra_content"] = {
                            "google": {"thought_signature": part["thoughtSignature"]}
                        }
                    tool_calls.append(tool_call)
            message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
            if tool_calls:
                message["tool_calls"] = tool_calls
            messages.append(message)
            continue
        for part in content["parts"]:
            assert set(part) <= {"text", "functionResponse"}, f"unmapped user part {set(part)}"
            if "functionResponse" in part:
                response = part["functionResponse"]
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": calls.answer(response),
                        "content": json.dumps(response["response"]),
                    }
                )
        if texts:
            messages.append(
                {
                    "role": "user",
                    "content": texts[0] if len(texts) == 1 else [{"type": "text", "text": t} for t in texts],
                }
            )
    return messages


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = []
    for group in body.get("tools", []):
        assert set(group) == {"functionDeclarations"}
        for declaration in group["functionDeclarations"]:
            function: dict[str, Any] = {"name": declaration["name"]}
            if declaration.get("description") is not None:
                function["description"] = declaration["description"]
            schema = declaration.get("parameters", declaration.get("parameters_json_schema"))
            if schema is not None:
                function["parameters"] = _lower_types(schema)
            tools.append({"type": "function", "function": function})
    return tools


_GENERATION = {
    "temperature": "temperature",
    "topP": "top_p",
    "maxOutputTokens": "max_tokens",
    "candidateCount": "n",
    "stopSequences": "stop",
    "seed": "seed",
}


def _openai_equivalent(body: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI chat request whose Gemini translation the recording shows."""
    assert set(body) <= {
        "contents",
        "systemInstruction",
        "tools",
        "generationConfig",
        "safetySettings",
        "model",
    }
    request: dict[str, Any] = {"model": "llmgate-group", "messages": _messages(body)}
    if body.get("tools"):
        request["tools"] = _tools(body)
    native: dict[str, Any] = {}
    for key, value in (body.get("generationConfig") or {}).items():
        if key in _GENERATION:
            request[_GENERATION[key]] = value
        elif key == "topK":
            request["top_k"] = value
        elif key == "responseMimeType":
            assert value == "application/json"
            schema = body["generationConfig"].get("responseSchema")
            request["response_format"] = (
                {"type": "json_schema", "json_schema": {"name": "answer", "schema": _lower_types(schema)}}
                if schema is not None
                else {"type": "json_object"}
            )
        elif key != "responseSchema":
            native[key] = value  # thinkingConfig, responseModalities: Gemini-native, passed through
    if native:
        request["generationConfig"] = native
    if "safetySettings" in body:
        request["safetySettings"] = body["safetySettings"]
    return request


def _normalise(body: dict[str, Any], *, keep_ids: bool) -> dict[str, Any]:
    body = json.loads(json.dumps(body))
    body.pop("model", None)
    body.get("systemInstruction", {}).pop("role", None)
    if body.get("generationConfig") == {}:
        del body["generationConfig"]
    if "responseSchema" in body.get("generationConfig", {}):
        body["generationConfig"]["responseSchema"] = _lower_types(body["generationConfig"]["responseSchema"])
    for group in body.get("tools", []):
        for declaration in group["functionDeclarations"]:
            if "parameters_json_schema" in declaration:
                raw = declaration.pop("parameters_json_schema")
                declaration["parameters"] = _without(raw, "additionalProperties")
            if "parameters" in declaration:
                declaration["parameters"] = _lower_types(declaration["parameters"])
            if not declaration.get("description"):
                declaration.pop("description", None)
    if not keep_ids:
        for content in body["contents"]:
            for part in content["parts"]:
                for kind in ("functionCall", "functionResponse"):
                    if kind in part:
                        part[kind].pop("id", None)
    return body


def _recorded_ids(body: dict[str, Any]) -> bool:
    return any(
        "id" in part.get(kind, {})
        for content in body.get("contents", [])
        for part in content["parts"]
        for kind in ("functionCall", "functionResponse")
    )


def _path_and_query(url_path: str) -> tuple[str, str]:
    path, _, query = url_path.partition("?")
    return path, query


def _upstream_model(url_path: str) -> str:
    match = re.search(r"/models/([^/:]+):", url_path)
    assert match is not None, url_path
    return match.group(1)


def _check_chat_request(recording: Recording) -> None:
    body = recording.body
    stream = ":streamGenerateContent" in recording.url_path
    request = parse_chat_request(_openai_equivalent(body))
    assert _wire().check(request).refused == ()
    target = Target(model=_upstream_model(recording.url_path), api_key=API_KEY)
    call = _wire().chat_call(request, target, stream=stream)

    assert call.method == recording.request["method"] == "POST"
    path, query = _path_and_query(call.path)
    assert path == _path_and_query(recording.url_path)[0]
    assert query == ("alt=sse" if stream else "")
    if recording.response.get("stream_format") == "sse":
        assert call.path == recording.url_path
    names = {name.lower() for name in call.headers}
    assert {"x-goog-api-key", "content-type"} & set(recording.request["headers"]) <= names
    assert call.headers["x-goog-api-key"] == API_KEY
    assert call.body is not None
    keep_ids = _recorded_ids(body)
    assert _normalise(json.loads(call.body), keep_ids=keep_ids) == _normalise(body, keep_ids=keep_ids)


class _RecordedUpstream(GeminiProvider):
    """A ``GeminiProvider`` whose ``send`` records the call and answers with the recorded response."""

    def __init__(self, recording: Recording) -> None:
        super().__init__(
            name="recorded", wire=_wire(), transport=Transport(), base_url="http://recorded.invalid"
        )
        self.recording = recording
        self.calls: list[HttpCall] = []

    async def send(self, call: HttpCall, target: Target) -> tuple[int, dict[str, str], bytes]:
        self.calls.append(call)
        return self.recording.status, {}, json.dumps(self.recording.response["body"]).encode()


def _embedding_equivalent(body: dict[str, Any]) -> tuple[dict[str, Any], str]:
    requests = body["requests"]
    dimensions = {r.get("outputDimensionality") for r in requests}
    assert len(dimensions) == 1
    texts = [r["content"]["parts"][0]["text"] for r in requests]
    request: dict[str, Any] = {"model": "llmgate-group", "input": texts}
    if None not in dimensions:
        request["dimensions"] = dimensions.pop()
    return request, requests[0]["model"].removeprefix("models/")


async def _check_embeddings(recording: Recording) -> None:
    openai_request, model = _embedding_equivalent(recording.body)
    upstream = _RecordedUpstream(recording)
    response = await upstream.embed(
        parse_embedding_request(openai_request), Target(model=model, api_key=API_KEY)
    )
    [call] = upstream.calls
    assert call.path == recording.url_path
    assert call.headers["x-goog-api-key"] == API_KEY
    assert json.loads(call.body or b"") == recording.body

    recorded = recording.response["body"]["embeddings"]
    assert [item.embedding for item in response.data] == [item["values"] for item in recorded]
    assert [item.index for item in response.data] == list(range(len(recorded)))
    assert response.model == model
    assert response.usage is not None
    assert response.usage.prompt_tokens > 0  # an estimate: Gemini reports no embedding usage


@pytest.mark.parametrize("recording", _params())
async def test_request(recording: Recording) -> None:
    if recording.name in UNUSABLE:
        pytest.skip(UNUSABLE[recording.name])
    if "contents" in recording.body:
        _check_chat_request(recording)
    else:
        await _check_embeddings(recording)


# --- response side: the oracle, read straight from the recorded JSON -------------------------------------


@dataclass
class _Expected:
    """Per candidate index: text, thoughts, calls, raw finish reason; and the last usage metadata."""

    text: dict[int, str] = field(default_factory=dict)
    thoughts: dict[int, str] = field(default_factory=dict)
    calls: dict[int, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)
    finish: dict[int, str] = field(default_factory=dict)
    usage: dict[str, Any] | None = None

    def add(self, event: dict[str, Any]) -> None:
        for position, candidate in enumerate(event.get("candidates", [])):
            index = candidate.get("index", position)
            self.text.setdefault(index, "")
            self.thoughts.setdefault(index, "")
            self.calls.setdefault(index, [])
            for part in candidate.get("content", {}).get("parts", []):
                if "functionCall" in part:
                    self.calls[index].append(
                        (part["functionCall"]["name"], part["functionCall"].get("args", {}))
                    )
                elif part.get("thought"):
                    self.thoughts[index] += part.get("text", "")
                else:
                    self.text[index] += part.get("text", "")
            if "finishReason" in candidate:
                self.finish[index] = candidate["finishReason"]
        if "usageMetadata" in event:
            self.usage = event["usageMetadata"]


def _expected_finish(raw: str, called: bool) -> str:
    return {"STOP": "tool_calls" if called else "stop", "MAX_TOKENS": "length"}[raw]


def _usage_numbers(usage: Usage) -> dict[str, int]:
    return {
        "prompt": usage.prompt_tokens,
        "completion": usage.completion_tokens,
        "total": usage.total_tokens,
        "cached": usage.cached_tokens,
        "reasoning": usage.reasoning_tokens,
    }


def _expected_usage(meta: dict[str, Any]) -> dict[str, int]:
    prompt = meta.get("promptTokenCount", 0) + meta.get("toolUsePromptTokenCount", 0)
    completion = meta.get("candidatesTokenCount", 0) + meta.get("thoughtsTokenCount", 0)
    assert prompt + completion == meta["totalTokenCount"], "Gemini's total adds up"
    return {
        "prompt": prompt,
        "completion": completion,
        "total": meta["totalTokenCount"],
        "cached": meta.get("cachedContentTokenCount", 0),
        "reasoning": meta.get("thoughtsTokenCount", 0),
    }


def _check_against_oracle(response: ChatResponse, events: list[dict[str, Any]]) -> None:
    expected = _Expected()
    for event in events:
        expected.add(event)
    assert response.id == events[0]["responseId"]
    assert response.model == events[0]["modelVersion"]
    assert [choice.index for choice in response.choices] == sorted(expected.text)
    for choice in response.choices:
        index, message = choice.index, choice.message
        assert message.content == (expected.text[index] or None)
        assert message.reasoning_text == expected.thoughts[index]
        calls = message.tool_calls if isinstance(message.tool_calls, list) else []
        assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == expected.calls[index]
        assert all(c.id.startswith("call_") for c in calls)
        assert len({c.id for c in calls}) == len(calls)
        assert choice.finish_reason == _expected_finish(expected.finish[index], bool(calls))
    assert expected.usage is not None
    assert response.usage is not None
    assert _usage_numbers(response.usage) == _expected_usage(expected.usage)


def _check_chat_response(recording: Recording) -> None:
    raw = json.dumps(recording.response["body"]).encode()
    response = _wire().parse_chat(raw)
    _check_against_oracle(response, [recording.response["body"]])
    assert _wire().parse_chat(raw) == response, "reading the same answer twice gives the same ids"


# --- response side: streams ------------------------------------------------------------------------------


def _events(recording: Recording) -> list[str]:
    """Each event's JSON text as recorded: SSE ``data:`` lines, or the elements of the JSON array."""
    text = recording.response["body_text"]
    if recording.response["stream_format"] == "sse":
        return [line[len("data:") :].strip() for line in text.splitlines() if line.startswith("data:")]
    decoder, elements, position = json.JSONDecoder(), [], text.index("[") + 1
    while True:
        while text[position] in " \r\n\t,":
            position += 1
        if text[position] == "]":
            return elements
        _, end = decoder.raw_decode(text, position)
        elements.append(text[position:end])
        position = end


def _fragmentations(raw: bytes) -> dict[str, list[bytes]]:
    def split(points: list[int]) -> list[bytes]:
        edges = [0, *sorted(set(points)), len(raw)]
        return [raw[start:end] for start, end in pairwise(edges)]

    seeded = {}
    for seed in (1, 2, 3):
        rng = random.Random(seed)
        seeded[f"random-{seed}"] = split([rng.randrange(1, len(raw)) for _ in range(rng.randint(1, 200))])
    return {
        "bytes": [raw[i : i + 1] for i in range(len(raw))],
        "lines": raw.splitlines(keepends=True),
        **seeded,
    }


def _translate_sse(pieces: list[bytes]) -> tuple[list[ChatChunk], bool]:
    decoder = SSEDecoder()
    translator = _wire().stream_translator(parse_chat_request({"model": "m", "messages": [{"role": "user"}]}))
    chunks: list[ChatChunk] = []
    for piece in [*pieces, b""]:
        for event in decoder.feed(piece) if piece else decoder.close():
            assert not translator.finished, "an event arrived after the stream finished"
            chunks.extend(translator.feed(event.data))
    return chunks, translator.finished


def _translate_events(events: list[str]) -> tuple[list[ChatChunk], bool]:
    translator = _wire().stream_translator(parse_chat_request({"model": "m", "messages": [{"role": "user"}]}))
    chunks: list[ChatChunk] = []
    for event in events:
        assert not translator.finished
        chunks.extend(translator.feed(event.encode()))
    return chunks, translator.finished


def _merged(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The stream's events folded into the one answer ``generateContent`` would have given."""
    candidates: dict[int, dict[str, Any]] = {}
    for event in events:
        for position, candidate in enumerate(event.get("candidates", [])):
            index = candidate.get("index", position)
            slot = candidates.setdefault(index, {"index": index, "content": {"parts": [], "role": "model"}})
            slot["content"]["parts"] += candidate.get("content", {}).get("parts", [])
            if "finishReason" in candidate:
                slot["finishReason"] = candidate["finishReason"]
    return {
        "candidates": [candidates[index] for index in sorted(candidates)],
        "usageMetadata": events[-1]["usageMetadata"],
        "modelVersion": events[0]["modelVersion"],
        "responseId": events[0]["responseId"],
    }


def _check_chunks(chunks: list[ChatChunk], events: list[dict[str, Any]]) -> None:
    assert {chunk.id for chunk in chunks} == {events[0]["responseId"]}
    *content, last = chunks
    assert last.choices == [] and last.usage is not None, "the stream ends with one usage chunk"
    assert all(chunk.choices for chunk in content)
    roles = [choice.delta.role for chunk in content for choice in chunk.choices if choice.delta.role]
    assert roles == ["assistant"]
    for chunk in content:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                assert call.id and call.function and call.function.name  # Gemini's calls arrive whole
                json.loads(call.function.arguments or "")


def _check_stream(recording: Recording) -> None:
    texts = _events(recording)
    events = [json.loads(text) for text in texts]
    if recording.response["stream_format"] == "sse":
        raw = recording.response["body_text"].encode()
        chunks, finished = _translate_sse([raw])
        for name, pieces in _fragmentations(raw).items():
            assert _translate_sse(pieces) == (chunks, True), f"fragmentation {name!r} changed the chunks"
    else:
        chunks, finished = _translate_events(texts)
    assert finished
    _check_chunks(chunks, events)

    accumulator = StreamAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    streamed = accumulator.response()
    _check_against_oracle(streamed, events)
    # Streamed and whole answers agree, tool-call ids included.
    assert streamed == _wire().parse_chat(json.dumps(_merged(events)).encode())


# --- response side: errors -------------------------------------------------------------------------------

_ERRORS: dict[str, type[GatewayError]] = {
    "error_400_invalid_key": ProviderAuthError,  # a 400 INVALID_ARGUMENT with reason API_KEY_INVALID
    "error_403": ProviderAuthError,
    "error_429": RateLimited,
}


def _retry_delay(error: Mapping[str, Any]) -> float | None:
    for detail in error.get("details", []):
        if detail["@type"].endswith("google.rpc.RetryInfo"):
            return float(detail["retryDelay"].removesuffix("s"))
    return None


def _check_error(recording: Recording) -> None:
    body = recording.response["body"]
    headers = {k: v for k, v in recording.response["headers"].items() if isinstance(v, str)}
    error = _wire().parse_error(recording.status, headers, json.dumps(body).encode())
    assert type(error) is _ERRORS[recording.scenario]
    assert error.message == body["error"]["message"]
    if isinstance(error, RateLimited):
        assert "retry-after" not in headers
        assert error.retry_after == _retry_delay(body["error"]) == 48.0


@pytest.mark.parametrize("recording", _params())
async def test_response(recording: Recording) -> None:
    if recording.name in UNUSABLE:
        pytest.skip(UNUSABLE[recording.name])
    response = recording.response
    if "body_text" in response:
        _check_stream(recording)
    elif recording.status >= 400:
        _check_error(recording)
    elif "candidates" in response["body"]:
        _check_chat_response(recording)
    else:
        await _check_embeddings(recording)


def test_recorded_thought_signatures_round_trip() -> None:
    """Not vacuous: the follow-up recordings replay real signatures, and llmgate sends them unchanged."""
    carriers = [r for r in RECORDINGS if "thoughtSignature" in json.dumps(r.body)]
    assert len(carriers) == 3
    for recording in carriers:
        request = parse_chat_request(_openai_equivalent(recording.body))
        built = msgspec.json.decode(_wire().chat_call(request, Target(model="m"), stream=False).body or b"")
        signatures = [
            p.get("thoughtSignature") for c in built["contents"] for p in c["parts"] if "functionCall" in p
        ]
        recorded = [
            p.get("thoughtSignature")
            for c in recording.body["contents"]
            for p in c["parts"]
            if "functionCall" in p
        ]
        assert signatures == recorded
        assert "skip_thought_signature_validator" not in signatures
