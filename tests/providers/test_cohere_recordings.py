"""Conformance of the Cohere adapter against real recorded Cohere traffic (../shared/provider-recordings).

Request side: the OpenAI-shaped input equivalent to each recorded Cohere v2 request must make the adapter
send exactly the recorded method, path and body (header names as recorded). Response side: every recorded
answer, SSE stream (in several fragmentations), error and embedding must come out as the canonical result
read independently out of the recorded JSON. Recordings that cannot be used are listed with the reason,
and a test asserts the list is exactly what the data says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from recordings import MISSING_REASON, RECORDINGS_DIR, Recording, fragmentations, load

from llmgate.core.accumulate import StreamAccumulator
from llmgate.core.codec import parse_chat_request, parse_embedding_request
from llmgate.core.errors import ContextLengthExceeded, InvalidRequest, ProviderAuthError, RateLimited
from llmgate.core.headroom import NOTHING_UNSUPPORTED
from llmgate.core.response import ChatChunk, ChatResponse
from llmgate.providers.base import HttpCall, Target
from llmgate.providers.cohere import CohereProvider, CohereWire
from llmgate.providers.ratelimit import retry_after_seconds
from llmgate.providers.sse import SSEDecoder
from llmgate.providers.transport import Transport

API_KEY = "co-test-recordings-0000"

# Recordings the suite cannot use at all: Cohere's legacy v1 API, a different wire format.
UNUSABLE: dict[str, str] = {
    "cohere_v1__chat_basic__langchain-cohere.json": (
        "legacy v1 /v1/chat: {message, chat_history} request, {text, chat_history} answer; llmgate speaks v2"
    ),
    "cohere_v1__chat_stream__langchain-cohere.json": (
        "legacy v1 /v1/chat stream: NDJSON stream-start/text-generation/stream-end events, not v2 SSE"
    ),
    "cohere_v1__generate__langchaingo.json": "legacy /v1/generate prompt completion (deprecated by Cohere)",
    "cohere_v1__tool_call__langchain-cohere.json": (
        "legacy v1 tools (parameter_definitions) and v1 answer (tool_calls with parameters objects)"
    ),
    "cohere_v1__tool_call_stream__langchain-cohere.json": (
        "legacy v1 NDJSON stream (tool-calls-chunk / tool-calls-generation events)"
    ),
}

# Usable, with the URL path left unchecked: the v1 embed body and answer (embeddings_by_type) have the same
# shape as v2's (https://docs.cohere.com/reference/embed), only the path differs.
PATH_DIFFERS: dict[str, str] = {
    "cohere_v1__embeddings__langchain-cohere.json": "v1 /v1/embed; llmgate calls /v2/embed (same body shape)",
}

# Header names a recording may lack because its recorder filtered them.
FILTERED_HEADERS: dict[str, str] = {
    "authorization": "langchain-cohere's cassettes drop the Authorization header",
}

# Cohere finish reasons -> OpenAI's (https://docs.cohere.com/reference/chat, response.finish_reason).
EXPECTED_FINISH = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}


if not RECORDINGS_DIR.is_dir():
    pytest.skip(
        MISSING_REASON,
        allow_module_level=True,
    )


RECORDINGS = load("cohere_*.json")


def _params(*, usable_only: bool = False) -> list[Any]:
    return [
        pytest.param(recording, id=recording.name.removesuffix(".json"))
        for recording in RECORDINGS
        if not (usable_only and recording.name in UNUSABLE)
    ]


def _problem(recording: Recording) -> str | None:
    """Why the data says a recording cannot be used (``None``: usable)."""
    if recording.path == "/v2/chat":
        return None
    body = recording.response.get("body")
    if recording.path.endswith("/embed") and isinstance(body, dict) and "float" in body.get("embeddings", {}):
        return None
    return f"{recording.path} is neither v2 chat nor an embed call answered with embeddings_by_type"


def test_recordings_were_found() -> None:
    assert len(RECORDINGS) == 17
    assert sum(r.name.startswith("cohere_v2__") for r in RECORDINGS) == 11


def test_skips_are_exactly_the_listed_ones() -> None:
    assert {r.name for r in RECORDINGS if _problem(r)} == set(UNUSABLE)
    usable = [r for r in RECORDINGS if r.name not in UNUSABLE]
    assert {r.name for r in usable if r.path not in ("/v2/chat", "/v2/embed")} == set(PATH_DIFFERS)


# --- request side ----------------------------------------------------------------------------------------


def _openai_equivalent(body: dict[str, Any]) -> dict[str, Any]:
    """The Chat Completions input that means what the recorded Cohere v2 request means."""
    renames = {"p": "top_p", "stop_sequences": "stop", "model": "_upstream_model"}
    out = {renames.get(key, key): value for key, value in body.items()}
    del out["_upstream_model"]
    response_format = body.get("response_format")
    if response_format is not None:
        schema = response_format.get("json_schema")
        out["response_format"] = (
            {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
            if schema is not None
            else {"type": "json_object"}
        )
    if "tool_choice" in body:
        out["tool_choice"] = body["tool_choice"].lower()
    return {**out, "model": "llmgate-group"}


def _differences(built: Any, recorded: Any, where: str = "$") -> set[str]:
    """Paths where two JSON values differ (booleans are not numbers)."""
    if isinstance(built, dict) and isinstance(recorded, dict):
        found: set[str] = set()
        for key in built.keys() | recorded.keys():
            if key not in built or key not in recorded:
                found.add(f"{where}.{key}")
            else:
                found |= _differences(built[key], recorded[key], f"{where}.{key}")
        return found
    if isinstance(built, list) and isinstance(recorded, list):
        if len(built) != len(recorded):
            return {where}
        return set().union(
            *(
                _differences(a, b, f"{where}[{i}]")
                for i, (a, b) in enumerate(zip(built, recorded, strict=True))
            )
        )
    if isinstance(built, bool) or isinstance(recorded, bool):
        return set() if built is recorded else {where}
    return set() if built == recorded else {where}


def _check_header_names(recording: Recording, headers: dict[str, str]) -> None:
    sent = {name.lower() for name in headers}
    recorded = {name.lower() for name in recording.request["headers"]}
    assert "authorization" in sent
    assert sent - set(FILTERED_HEADERS) <= recorded
    assert "content-type" in recorded


class _RecordedUpstream(CohereProvider):
    """A ``CohereProvider`` whose ``send`` captures the call and answers with the recorded response."""

    def __init__(self, recording: Recording) -> None:
        super().__init__(
            name="recorded", wire=CohereWire(), transport=Transport(), base_url="http://recorded.invalid"
        )
        self.recording = recording
        self.calls: list[HttpCall] = []

    async def send(self, call: HttpCall, target: Target) -> tuple[int, dict[str, str], bytes]:
        self.calls.append(call)
        return (
            self.recording.status,
            _headers(self.recording.response),
            json.dumps(self.recording.response["body"]).encode(),
        )


def _headers(response: dict[str, Any]) -> dict[str, str]:
    return {
        name.lower(): value[-1] if isinstance(value, list) else str(value)
        for name, value in response["headers"].items()
    }


async def _check_embed_request(recording: Recording) -> None:
    body = recording.body
    equivalent: dict[str, Any] = {"model": "llmgate-group", "input": body["texts"]}
    if body["input_type"] != "search_document":  # the adapter's default must produce the default
        equivalent["input_type"] = body["input_type"]
    upstream = _RecordedUpstream(recording)
    await upstream.embed(parse_embedding_request(equivalent), Target(model=body["model"], api_key=API_KEY))
    [call] = upstream.calls
    assert (call.method, call.path) == ("POST", "/v2/embed")
    if recording.name not in PATH_DIFFERS:
        assert recording.path == call.path
    _check_header_names(recording, dict(call.headers))
    recorded = {key: value for key, value in body.items() if value is not None}  # "truncate": null = default
    assert _differences(json.loads(call.body or b""), recorded) == set()


@pytest.mark.parametrize("recording", _params(usable_only=True))
async def test_request(recording: Recording) -> None:
    if recording.path.endswith("/embed"):
        await _check_embed_request(recording)
        return
    body = recording.body
    request = parse_chat_request(_openai_equivalent(body))
    wire = CohereWire()
    assert wire.check(request) is NOTHING_UNSUPPORTED  # every recorded parameter is honoured
    call = wire.chat_call(request, Target(model=body["model"], api_key=API_KEY), stream=body["stream"])
    assert (call.method, call.path) == (recording.request["method"], recording.path)
    assert call.headers["Authorization"] == f"Bearer {API_KEY}"
    _check_header_names(recording, dict(call.headers))
    assert _differences(json.loads(call.body or b""), body) == set()


# --- response side: the oracle, read straight out of the recorded JSON -----------------------------------


@dataclass
class Outcome:
    """What a client ends up with, in plain values."""

    text: str | None
    reasoning: str | None
    tool_calls: list[tuple[str, str, str]]
    finish_reason: str | None
    usage: tuple[int, int, int, int] | None  # prompt, completion, total, cached


def _recorded_usage(usage: dict[str, Any] | None) -> tuple[int, int, int, int] | None:
    if usage is None:
        return None
    tokens = usage["tokens"]  # the adapter prefers tokens over billed_units
    prompt, completion = int(tokens["input_tokens"]), int(tokens["output_tokens"])
    return prompt, completion, prompt + completion, int(usage.get("cached_tokens", 0))


def _outcome(response: ChatResponse) -> Outcome:
    [choice] = response.choices
    message = choice.message
    calls = message.tool_calls if isinstance(message.tool_calls, list) else []
    usage = response.usage
    return Outcome(
        text=message.content,
        reasoning=message.reasoning_content if isinstance(message.reasoning_content, str) else None,
        tool_calls=[(call.id, call.function.name, call.function.arguments) for call in calls],
        finish_reason=choice.finish_reason,
        usage=None
        if usage is None
        else (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, usage.cached_tokens),
    )


def _expected_whole(body: dict[str, Any]) -> Outcome:
    message = body["message"]
    text = "".join(item["text"] for item in message.get("content", []) if item["type"] == "text")
    return Outcome(
        text=text or None,
        reasoning=message.get("tool_plan") or None,
        tool_calls=[
            (call["id"], call["function"]["name"], call["function"]["arguments"])
            for call in message.get("tool_calls", [])
        ],
        finish_reason=EXPECTED_FINISH[body["finish_reason"]],
        usage=_recorded_usage(body.get("usage")),
    )


def _recorded_events(text: str) -> list[dict[str, Any]]:
    """A naive reading of the recorded SSE text: every event is one ``data:`` line; ``[DONE]`` ends it."""
    lines = [line[len("data: ") :] for line in text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def _fold_events(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The recorded stream folded into the non-streamed answer Cohere would have sent for it."""
    text, plan, calls = "", "", {}
    end: dict[str, Any] = {}
    for event in events:
        message = event.get("delta", {}).get("message", {})
        if event["type"] == "content-delta":
            text += message["content"]["text"]
        elif event["type"] == "tool-plan-delta":
            plan += message["tool_plan"]
        elif event["type"] == "tool-call-start":
            calls[event["index"]] = message["tool_calls"]
        elif event["type"] == "tool-call-delta":
            calls[event["index"]]["function"]["arguments"] += message["tool_calls"]["function"]["arguments"]
        elif event["type"] == "message-end":
            end = event["delta"]
    answer: dict[str, Any] = {"role": "assistant"}
    if text:
        answer["content"] = [{"type": "text", "text": text}]
    if plan:
        answer["tool_plan"] = plan
    if calls:
        answer["tool_calls"] = [calls[index] for index in sorted(calls)]
    return {
        "id": events[0]["id"],
        "message": answer,
        "finish_reason": end["finish_reason"],
        "usage": end["usage"],
    }


def _translate(pieces: list[bytes]) -> tuple[list[ChatChunk], bool]:
    decoder = SSEDecoder()
    translator = CohereWire().stream_translator(
        parse_chat_request({"model": "m", "messages": [{"role": "user"}]})
    )
    chunks: list[ChatChunk] = []
    for piece in [*pieces, b""]:
        for event in decoder.feed(piece) if piece else decoder.close():
            chunks.extend(translator.feed(event.data))
    return chunks, translator.finished


def _accumulate(chunks: list[ChatChunk]) -> ChatResponse:
    accumulator = StreamAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    return accumulator.response()


def _timeless(chunks: list[ChatChunk]) -> list[Any]:
    return [{**msgspec.to_builtins(chunk), "created": 0} for chunk in chunks]


def _check_stream(recording: Recording) -> None:
    text = recording.response["body_text"]
    results = {name: _translate(pieces) for name, pieces in fragmentations(text.encode()).items()}
    chunks, finished = results.pop("whole")
    assert finished
    for name, result in results.items():
        # ``created`` is the translator's wall clock (Cohere sends none): two runs may straddle a second.
        assert _timeless(result[0]) == _timeless(chunks), f"fragmentation {name!r} changed the chunks"
        assert result[1]
    events = _recorded_events(text)
    assert {chunk.id for chunk in chunks} == {events[0]["id"]}
    assert len({chunk.created for chunk in chunks}) == 1
    *_, finish, usage = chunks
    assert finish.choices[0].finish_reason is not None and usage.choices == [] and usage.usage is not None
    assert all(chunk.choices and chunk.choices[0].finish_reason is None for chunk in chunks[:-2])

    streamed = _accumulate(chunks)
    folded = _fold_events(events)
    assert _outcome(streamed) == _expected_whole(folded)
    # Streamed and non-streamed agree: the same answer, sent whole, parses to the same response.
    whole = CohereWire().parse_chat(json.dumps(folded).encode())
    assert msgspec.structs.replace(whole, created=0) == msgspec.structs.replace(streamed, created=0)


def _check_error(recording: Recording) -> None:
    body, headers = recording.response["body"], _headers(recording.response)
    error = CohereWire().parse_error(recording.status, headers, json.dumps(body).encode())
    expected = {
        400: ContextLengthExceeded if "context_length" in recording.scenario else InvalidRequest,
        401: ProviderAuthError,
    }
    assert type(error) is expected[recording.status]
    assert error.message == body["message"]
    assert error.retry_after == (retry_after_seconds(headers) if isinstance(error, RateLimited) else None)


async def _check_embeddings(recording: Recording) -> None:
    body, request = recording.response["body"], recording.body
    upstream = _RecordedUpstream(recording)
    response = await upstream.embed(
        parse_embedding_request({"model": "g", "input": request["texts"]}), Target(model="embed-x")
    )
    assert [item.embedding for item in response.data] == body["embeddings"]["float"]
    assert [item.index for item in response.data] == list(range(len(request["texts"])))
    assert response.model == "embed-x"
    assert response.usage is not None
    assert (
        response.usage.prompt_tokens
        == response.usage.total_tokens
        == body["meta"]["billed_units"]["input_tokens"]
    )


async def _check_whole(recording: Recording) -> None:
    body = recording.response["body"]
    parsed = CohereWire().parse_chat(json.dumps(body).encode())
    assert parsed.id == body["id"]
    assert _outcome(parsed) == _expected_whole(body)
    # Through the provider, the answer is named after the upstream model (Cohere does not echo it).
    served = await _RecordedUpstream(recording).chat(
        parse_chat_request(_openai_equivalent(recording.body)), Target(model="command-x")
    )
    assert served.model == "command-x"
    assert _outcome(served) == _outcome(parsed)


@pytest.mark.parametrize("recording", _params())
async def test_response(recording: Recording) -> None:
    if recording.name in UNUSABLE:
        pytest.skip(UNUSABLE[recording.name])
    if "body_text" in recording.response:
        _check_stream(recording)
    elif recording.status >= 400:
        _check_error(recording)
    elif recording.path.endswith("/embed"):
        await _check_embeddings(recording)
    else:
        await _check_whole(recording)


def test_every_kind_of_response_is_covered() -> None:
    usable = [r for r in RECORDINGS if r.name not in UNUSABLE]
    assert sum("body_text" in r.response for r in usable) == 3
    assert sum(r.status >= 400 for r in usable) == 2
    assert sum(r.path.endswith("/embed") for r in usable) == 2
    assert sum("tool_call" in r.scenario for r in usable) == 2


# Pairs of the same kind of exchange recorded whole and streamed: what a client gets has the same shape.
FAMILIES = [
    ("cohere_v2__chat_basic__langchain-cohere.json", "cohere_v2__chat_stream__langchain-cohere.json"),
    ("cohere_v2__tool_call__ruby_llm.json", "cohere_v2__tool_call_stream__langchain-cohere.json"),
]


def _shape(outcome: Outcome) -> tuple[Any, ...]:
    assert outcome.usage is not None
    prompt, completion, total, _cached = outcome.usage
    calls = [
        (bool(call_id), bool(name), isinstance(json.loads(arguments), dict))
        for call_id, name, arguments in outcome.tool_calls
    ]
    return (
        bool(outcome.text),
        bool(outcome.reasoning),
        calls,
        outcome.finish_reason,
        prompt > 0 and completion > 0 and total == prompt + completion,
    )


@pytest.mark.parametrize(("whole_name", "stream_name"), FAMILIES)
def test_stream_and_whole_families_agree(whole_name: str, stream_name: str) -> None:
    by_name = {r.name: r for r in RECORDINGS}
    whole = CohereWire().parse_chat(json.dumps(by_name[whole_name].response["body"]).encode())
    streamed = _accumulate(_translate([by_name[stream_name].response["body_text"].encode()])[0])
    assert _shape(_outcome(whole)) == _shape(_outcome(streamed))
