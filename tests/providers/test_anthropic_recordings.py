"""Conformance of the Anthropic adapter against every recorded Anthropic exchange.

For each recording in ``../shared/provider-recordings`` (``anthropic__*.json``):

- request side: the recorded Messages body is read back into the OpenAI-shaped request a caller would have
  sent (``_canonical``, a small inverse mapping written independently of the adapter); the adapter must
  then build the recorded method, path, protocol headers and the recorded body;
- answer side: the recorded response, SSE stream (in several fragmentations) or error must come out as
  the canonical result read straight from the recorded JSON.

Recordings (or sides of them) the suite cannot use are listed with the reason, and a test asserts that the
lists are exactly what the data says.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import msgspec
import pytest
from recordings import MISSING_REASON, RECORDINGS_DIR, fragmentations

from llmgate.core.accumulate import StreamAccumulator
from llmgate.core.codec import parse_chat_request
from llmgate.core.errors import (
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    ProviderAuthError,
)
from llmgate.core.response import ChatChunk, ChatResponse
from llmgate.providers.anthropic import AnthropicWire, build
from llmgate.providers.anthropic.ratelimit import anthropic_headroom
from llmgate.providers.base import HttpCall, ProviderSpec, Target
from llmgate.providers.http import HttpProvider
from llmgate.providers.sse import SSEDecoder
from llmgate.providers.transport import Transport

API_KEY = "sk-ant-test-recordings-0000"
NOW = 1_700_000_000.0

# Recordings the suite cannot use at all (none so far: every side of every recording is checked).
UNUSABLE: dict[str, str] = {}

# Recordings whose answer is checked but whose request llmgate would never build.
REQUEST_UNUSABLE: dict[str, str] = {
    "anthropic__error_400__pydantic-ai.json": (
        "pydantic-ai sent output_config.effort='xhigh' (the Opus 4.5+ effort parameter, rejected here by "
        "the model); llmgate maps reasoning_effort to a thinking budget, which every thinking model takes"
    ),
}

# Request headers the source's recorder removed before committing the cassette: pydantic-ai's VCR config
# keeps only a few headers; llm-anthropic's vcrpy config filters the API key header out.
HEADERS_NOT_RECORDED: dict[str, frozenset[str]] = {
    "pydantic/pydantic-ai": frozenset({"x-api-key", "anthropic-version"}),
    "simonw/llm-anthropic": frozenset({"x-api-key"}),
}
PROTOCOL_HEADERS = frozenset({"x-api-key", "anthropic-version", "content-type"})

# What the recorded stop reasons mean for an OpenAI client (the oracle's own table).
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
ERROR_CLASSES: dict[str, type[GatewayError]] = {
    "invalid_request_error": InvalidRequest,
    "authentication_error": ProviderAuthError,
}
# Extended-thinking budgets back to the reasoning_effort that asks for them.
EFFORT_FOR_BUDGET = {1024: "minimal", 2048: "low", 8192: "medium", 16384: "high", 32768: "xhigh"}


@dataclass(frozen=True)
class Recording:
    """One recorded exchange."""

    name: str
    scenario: str
    source: str
    request: dict[str, Any]
    response: dict[str, Any]

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = self.request["body"]
        return body

    @property
    def status(self) -> int:
        return int(self.response["status"])

    @property
    def headers(self) -> dict[str, str]:
        """Response headers, lower-cased (a repeated header keeps its last value)."""
        return {
            name.lower(): value[-1] if isinstance(value, list) else str(value)
            for name, value in (self.response.get("headers") or {}).items()
        }


if not RECORDINGS_DIR.is_dir():
    pytest.skip(
        MISSING_REASON,
        allow_module_level=True,
    )


def _load() -> list[Recording]:
    recordings = []
    for path in sorted(RECORDINGS_DIR.glob("anthropic__*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        recordings.append(
            Recording(
                name=path.name,
                scenario=data["scenario"],
                source=data["source"].split(":", 1)[0],
                request=data["request"],
                response=data["response"],
            )
        )
    return recordings


RECORDINGS = _load()
BY_NAME = {recording.name: recording for recording in RECORDINGS}


def _params(select: Any = None) -> list[Any]:
    return [
        pytest.param(r, id=r.name.removesuffix(".json")) for r in RECORDINGS if select is None or select(r)
    ]


def _wire(*, structured_outputs: bool = False) -> AnthropicWire:
    return AnthropicWire(structured_outputs=structured_outputs, clock=lambda: NOW)


# --- the inverse mapping: a recorded Messages body -> the OpenAI request a caller would send ---------------


class Unmappable(Exception):
    """The recorded body uses something llmgate never sends."""


def _canonical(body: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {"model": "llmgate-group", "max_tokens": body["max_tokens"]}
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system is not None:
        content = system if isinstance(system, str) else [_text_part(b) for b in system]
        messages.append({"role": "system", "content": content})
    for turn in body["messages"]:
        messages += _canonical_turn(turn)
    request["messages"] = messages
    for key, value in body.items():
        if key in ("model", "max_tokens", "system", "messages"):
            continue
        request.update(_canonical_field(key, value))
    return request


def _canonical_field(key: str, value: Any) -> dict[str, Any]:
    if key in ("temperature", "top_p", "stream"):
        return {key: value}
    if key == "stop_sequences":
        return {"stop": value}
    if key == "metadata":
        return {"user": value["user_id"]}
    if key == "tools":
        return {"tools": [_canonical_tool(tool) for tool in value]}
    if key == "tool_choice":
        return _canonical_tool_choice(value)
    if key == "thinking" and value.get("type") == "enabled" and value["budget_tokens"] in EFFORT_FOR_BUDGET:
        return {"reasoning_effort": EFFORT_FOR_BUDGET[value["budget_tokens"]]}
    if key == "output_config" and set(value) == {"format"} and value["format"]["type"] == "json_schema":
        schema = value["format"]["schema"]
        return {
            "response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
        }
    raise Unmappable(f"{key}={value!r}")


def _canonical_turn(turn: dict[str, Any]) -> list[dict[str, Any]]:
    content = turn["content"]
    if isinstance(content, str):
        return [{"role": turn["role"], "content": content}]
    if turn["role"] == "assistant":
        text = [_text_part(block) for block in content if block["type"] == "text"]
        calls = [_canonical_call(block) for block in content if block["type"] == "tool_use"]
        if len(text) + len(calls) != len(content):
            raise Unmappable("assistant block other than text/tool_use")
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        return [{**message, "tool_calls": calls}] if calls else [message]
    results = [block for block in content if block["type"] == "tool_result"]
    others = [_user_part(block) for block in content if block["type"] != "tool_result"]
    messages = [
        {
            "role": "tool",
            "tool_call_id": block["tool_use_id"],
            "content": block["content"]
            if isinstance(block["content"], str)
            else [_user_part(b) for b in block["content"]],
        }
        for block in results
    ]
    return messages + ([{"role": "user", "content": others}] if others else [])


def _text_part(block: dict[str, Any]) -> dict[str, Any]:
    if block["type"] != "text" or set(block) != {"type", "text"}:
        raise Unmappable(f"text block {block!r}")
    return {"type": "text", "text": block["text"]}


def _user_part(block: dict[str, Any]) -> dict[str, Any]:
    if block["type"] == "text":
        return _text_part(block)
    if block["type"] == "image" and block["source"]["type"] == "base64":
        source = block["source"]
        return {
            "type": "image_url",
            "image_url": {"url": f"data:{source['media_type']};base64,{source['data']}"},
        }
    if block["type"] == "image" and block["source"]["type"] == "url":
        return {"type": "image_url", "image_url": {"url": block["source"]["url"]}}
    raise Unmappable(f"user block {block['type']}")


def _canonical_call(block: dict[str, Any]) -> dict[str, Any]:
    arguments = json.dumps(block["input"])
    return {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": arguments},
    }


def _canonical_tool(tool: dict[str, Any]) -> dict[str, Any]:
    if set(tool) - {"name", "description", "input_schema"}:
        raise Unmappable(f"tool fields {sorted(tool)}")
    function = {"name": tool["name"], "parameters": tool["input_schema"]}
    if "description" in tool:
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _canonical_tool_choice(choice: dict[str, Any]) -> dict[str, Any]:
    kinds = {"auto": "auto", "any": "required", "none": "none"}
    mapped: dict[str, Any] = (
        {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
        if choice["type"] == "tool"
        else {"tool_choice": kinds[choice["type"]]}
    )
    if choice.get("disable_parallel_tool_use"):
        mapped["parallel_tool_calls"] = False
    return mapped


# --- classification ----------------------------------------------------------------------------------------


def _request_problem(recording: Recording) -> str | None:
    try:
        _canonical(recording.body)
    except Unmappable as exc:
        return f"unmappable request: {exc}"
    return None


def _answer_problem(recording: Recording) -> str | None:
    response = recording.response
    if "body_text" in response:
        return None if response.get("stream_format") == "sse" else "stream is not SSE"
    body = response.get("body")
    if not isinstance(body, dict):
        return "answer is not JSON"
    return None if body.get("type") in ("message", "error") else "answer is neither a message nor an error"


def test_recordings_were_found() -> None:
    assert len(RECORDINGS) >= 15
    assert {r.scenario for r in RECORDINGS} >= {"chat_basic", "chat_stream", "tool_call", "error_401"}


def test_skips_are_exactly_the_listed_ones() -> None:
    """Nothing is skipped silently: the lists are exactly what the data says cannot be used."""
    whole = {r.name for r in RECORDINGS if _request_problem(r) and _answer_problem(r)}
    request_only = {r.name for r in RECORDINGS if _request_problem(r) and not _answer_problem(r)}
    answer_only = {r.name for r in RECORDINGS if _answer_problem(r) and not _request_problem(r)}
    assert whole == set(UNUSABLE)
    assert request_only == set(REQUEST_UNUSABLE)
    assert answer_only == set()


# --- request side --------------------------------------------------------------------------------------------


def _without_query(url_path: str) -> str:
    # pydantic-ai's beta client adds ?beta=true; the endpoint is the same.
    return url_path.split("?", 1)[0]


def _differences(built: Any, recorded: Any, where: str = "$") -> set[str]:
    """Paths where the built JSON differs from the recorded JSON (a recorded top-level ``"stream": false``
    may be absent: it is the default and llmgate omits it)."""
    if isinstance(recorded, dict) and isinstance(built, dict):
        found: set[str] = set()
        for key in recorded.keys() | built.keys():
            if key not in built and where == "$" and key == "stream" and recorded[key] is False:
                continue
            if key not in built or key not in recorded:
                found.add(f"{where}.{key}")
            else:
                found |= _differences(built[key], recorded[key], f"{where}.{key}")
        return found
    if isinstance(recorded, list) and isinstance(built, list):
        if len(recorded) != len(built):
            return {where}
        return set().union(
            *(
                _differences(b, r, f"{where}[{i}]")
                for i, (b, r) in enumerate(zip(built, recorded, strict=True))
            )
        )
    if type(recorded) is bool or type(built) is bool:
        return set() if recorded is built else {where}
    return set() if recorded == built else {where}


def _built_call(recording: Recording) -> HttpCall:
    body = recording.body
    request = parse_chat_request(_canonical(body))
    wire = _wire(structured_outputs="output_config" in body)
    return wire.chat_call(
        request, Target(model=body["model"], api_key=API_KEY), stream=bool(body.get("stream"))
    )


@pytest.mark.parametrize("recording", _params())
def test_request(recording: Recording) -> None:
    reason = UNUSABLE.get(recording.name) or REQUEST_UNUSABLE.get(recording.name)
    if reason:
        pytest.skip(reason)
    call = _built_call(recording)

    assert call.method == recording.request["method"]
    assert call.path == _without_query(recording.request["url_path"])
    sent = {name.lower(): value for name, value in call.headers.items()}
    recorded = {name.lower(): value for name, value in recording.request["headers"].items()}
    unrecorded = HEADERS_NOT_RECORDED.get(recording.source, frozenset())
    assert set(sent) - set(recorded) <= unrecorded, "llmgate sends a header the recorded client did not"
    assert PROTOCOL_HEADERS & set(recorded) <= set(sent), "llmgate omits a protocol header"
    assert sent["x-api-key"] == API_KEY
    if "anthropic-version" in recorded:
        assert sent["anthropic-version"] == recorded["anthropic-version"]
    assert sent["content-type"] == "application/json"

    assert call.body is not None
    built = json.loads(call.body)
    assert _differences(built, recording.body) == set()
    assert set(built) <= set(recording.body), "every top-level field llmgate sends was in the recording"


def test_request_side_is_not_vacuous() -> None:
    """The checked recordings cover the mappings that matter: system, tools, tool results, thinking, JSON."""
    checked = [r for r in RECORDINGS if r.name not in REQUEST_UNUSABLE]
    keys = set().union(*(r.body for r in checked))
    assert {"system", "tools", "tool_choice", "thinking", "output_config", "stream"} <= keys
    merged = BY_NAME["anthropic__tool_result_followup_stream__llm-anthropic.json"]
    canonical = _canonical(merged.body)
    assert [m["role"] for m in canonical["messages"]] == ["user", "assistant", "tool", "tool"]
    assert len(merged.body["messages"]) == 3, "two tool messages became one user turn"


# --- answers: complete responses -----------------------------------------------------------------------


def _expected_usage(usage: dict[str, Any]) -> dict[str, int]:
    cached = usage.get("cache_read_input_tokens") or 0
    written = usage.get("cache_creation_input_tokens") or 0
    prompt = usage["input_tokens"] + cached + written
    return {
        "prompt": prompt,
        "completion": usage["output_tokens"],
        "total": prompt + usage["output_tokens"],
        "cached": cached,
        "cache_creation": written,
    }


def _usage_numbers(response: ChatResponse) -> dict[str, int]:
    usage = response.usage
    assert usage is not None
    return {
        "prompt": usage.prompt_tokens,
        "completion": usage.completion_tokens,
        "total": usage.total_tokens,
        "cached": usage.cached_tokens,
        "cache_creation": usage.cache_creation_tokens,
    }


def _outcome(response: ChatResponse) -> dict[str, Any]:
    """What a client reads out of a response, arguments as parsed JSON."""
    [choice] = response.choices
    message = choice.message
    calls = message.tool_calls if isinstance(message.tool_calls, list) else []
    return {
        "id": response.id,
        "model": response.model,
        "text": message.content,
        "reasoning": message.reasoning_text or None,
        "signature": message.reasoning_signature or None,
        "tool_calls": [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls],
        "finish_reason": choice.finish_reason,
        "usage": _usage_numbers(response),
    }


def _expected_outcome(message: dict[str, Any]) -> dict[str, Any]:
    """The oracle: the recorded message read without llmgate's code."""
    blocks = message["content"]
    text = "".join(b["text"] for b in blocks if b["type"] == "text")
    reasoning = "".join(b["thinking"] for b in blocks if b["type"] == "thinking")
    signature = "".join(b.get("signature", "") for b in blocks if b["type"] == "thinking")
    return {
        "id": message["id"],
        "model": message["model"],
        "text": text or None,
        "reasoning": reasoning or None,
        "signature": signature or None,
        "tool_calls": [(b["id"], b["name"], b["input"]) for b in blocks if b["type"] == "tool_use"],
        "finish_reason": FINISH[message["stop_reason"]],
        "usage": _expected_usage(message["usage"]),
    }


@pytest.mark.parametrize("recording", _params(lambda r: "body_text" not in r.response and r.status < 400))
def test_response(recording: Recording) -> None:
    recorded = recording.response["body"]
    parsed = _wire().parse_chat(json.dumps(recorded).encode())
    assert parsed.created == int(NOW)
    assert _outcome(parsed) == _expected_outcome(recorded)


# --- answers: streams ----------------------------------------------------------------------------------


def _events(text: str) -> list[dict[str, Any]]:
    """A naive reading of the recorded SSE text: every recorded event is one ``data:`` line."""
    return [json.loads(line[len("data:") :]) for line in text.splitlines() if line.startswith("data:")]


def _assembled_message(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The oracle: the complete message the recorded events add up to, by the documented event rules."""
    message: dict[str, Any] = {}
    partial: dict[int, str] = {}
    for event in events:
        kind = event["type"]
        if kind == "message_start":
            message = {**event["message"], "content": []}
        elif kind == "content_block_start":
            message["content"].append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] += delta["signature"]
            elif delta["type"] == "input_json_delta":
                partial[event["index"]] = partial.get(event["index"], "") + delta["partial_json"]
        elif kind == "content_block_stop" and event["index"] in partial:
            message["content"][event["index"]]["input"] = json.loads(partial[event["index"]] or "{}")
        elif kind == "message_delta":
            message.update(event["delta"])
            message["usage"] = {**message["usage"], **event["usage"]}
    return message


def _fragmentations(raw: bytes) -> dict[str, list[bytes]]:
    return {**fragmentations(raw), "crlf": [raw.replace(b"\n", b"\r\n")]}


def _translate(pieces: list[bytes]) -> tuple[list[ChatChunk], bool]:
    decoder = SSEDecoder()
    translator = _wire().stream_translator(parse_chat_request({"model": "m", "messages": [{"role": "user"}]}))
    chunks: list[ChatChunk] = []
    for piece in [*pieces, b""]:
        for event in decoder.feed(piece) if piece else decoder.close():
            assert not translator.finished, "an event arrived after message_stop"
            chunks += translator.feed(event.data)
    return chunks, translator.finished


def _accumulated(chunks: list[ChatChunk]) -> ChatResponse:
    accumulator = StreamAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    return accumulator.response()


STREAMS = _params(lambda r: "body_text" in r.response)


@pytest.mark.parametrize("recording", STREAMS)
def test_stream_fragmentation_does_not_matter(recording: Recording) -> None:
    results = {
        name: _translate(pieces)
        for name, pieces in _fragmentations(recording.response["body_text"].encode()).items()
    }
    chunks, finished = results.pop("whole")
    assert finished
    encode = msgspec.json.encode
    for name, (other, other_finished) in results.items():
        assert other_finished, name
        assert [encode(c) for c in other] == [encode(c) for c in chunks], (
            f"fragmentation {name!r} changed the chunks"
        )


@pytest.mark.parametrize("recording", STREAMS)
def test_stream(recording: Recording) -> None:
    events = _events(recording.response["body_text"])
    chunks, finished = _translate([recording.response["body_text"].encode()])
    assert finished
    expected = _expected_outcome(_assembled_message(events))

    assert {(c.id, c.model, c.created) for c in chunks} == {(expected["id"], expected["model"], int(NOW))}
    assert chunks[0].choices[0].delta.role == "assistant"
    *body, last = chunks
    assert last.choices == [] and last.usage, "the stream ends with the usage chunk"
    assert all(chunk.usage is msgspec.UNSET for chunk in body)
    finishes = [choice.finish_reason for chunk in body for choice in chunk.choices if choice.finish_reason]
    assert finishes == [expected["finish_reason"]]
    indexes = [call.index for c in body for choice in c.choices for call in choice.delta.tool_calls or ()]
    assert sorted(set(indexes)) == list(range(len(expected["tool_calls"])))

    assert _outcome(_accumulated(chunks)) == expected


@pytest.mark.parametrize("recording", STREAMS)
def test_stream_agrees_with_complete_parse(recording: Recording) -> None:
    """The same answer, streamed or whole, gives the same canonical response."""
    whole = _assembled_message(_events(recording.response["body_text"]))
    parsed = _wire().parse_chat(json.dumps(whole).encode())
    streamed = _accumulated(_translate([recording.response["body_text"].encode()])[0])
    assert _outcome(streamed) == _outcome(parsed)
    assert streamed.usage == parsed.usage


def _family(scenario: str) -> str:
    return {"chat_basic": "chat", "chat_stream": "chat"}.get(scenario, scenario.removesuffix("_stream"))


def _shape(response: ChatResponse) -> dict[str, Any]:
    [choice] = response.choices
    fields = {
        name
        for name in choice.message.__struct_fields__
        if getattr(choice.message, name) not in (None, msgspec.UNSET)
    }
    return {"finish_reason": choice.finish_reason, "fields": fields, "usage": response.usage is not None}


def _family_pairs() -> list[Any]:
    complete = [r for r in RECORDINGS if "body_text" not in r.response and r.status < 400]
    streamed = [r for r in RECORDINGS if "body_text" in r.response]
    return [
        pytest.param(
            whole, stream, id=f"{whole.scenario}-{whole.source.split('/')[1]}~{stream.source.split('/')[1]}"
        )
        for whole in complete
        for stream in streamed
        if _family(whole.scenario) == _family(stream.scenario) and whole.scenario != "chat_system_prompt"
    ]


FAMILIES = _family_pairs()


def test_families_exist() -> None:
    assert {_family(pair.values[0].scenario) for pair in FAMILIES} == {
        "chat",
        "tool_call",
        "tool_result_followup",
    }


@pytest.mark.parametrize(("whole", "stream"), FAMILIES)
def test_streamed_and_complete_families_agree(whole: Recording, stream: Recording) -> None:
    """Different conversations, same kind of answer: the same fields, finish reason and usage shape."""
    parsed = _wire().parse_chat(json.dumps(whole.response["body"]).encode())
    streamed = _accumulated(_translate([stream.response["body_text"].encode()])[0])
    assert _shape(streamed) == _shape(parsed)


# --- answers: errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("recording", _params(lambda r: r.status >= 400))
def test_error(recording: Recording) -> None:
    recorded = recording.response["body"]["error"]
    expected = (
        ContextLengthExceeded
        if recording.scenario.endswith("context_length")
        else ERROR_CLASSES[recorded["type"]]
    )
    error = _wire().parse_error(
        recording.status, recording.headers, json.dumps(recording.response["body"]).encode()
    )
    assert type(error) is expected
    assert error.message == recorded["message"]
    retry_after = recording.headers.get("retry-after")
    assert error.retry_after == (float(retry_after) if retry_after else None)
    if expected is ContextLengthExceeded:
        assert error.code == "context_length_exceeded"


class _RecordedUpstream(HttpProvider):
    """The real provider from ``build``, whose ``send`` answers with a recording instead of the network."""

    def __init__(self, recording: Recording) -> None:
        built = build(
            ProviderSpec(name="claude", type="anthropic"), Transport(), default_max_tokens=lambda _: 64
        )
        super().__init__(name=built.name, wire=built.wire, transport=Transport(), base_url=built.base_url)
        self.recording = recording

    async def send(self, call: HttpCall, target: Target) -> tuple[int, dict[str, str], bytes]:
        return (
            self.recording.status,
            self.recording.headers,
            json.dumps(self.recording.response["body"]).encode(),
        )


@pytest.mark.parametrize("recording", _params(lambda r: "body_text" not in r.response))
async def test_through_the_provider(recording: Recording) -> None:
    """The provider's chat(): a recorded success parses, a recorded error raises with the provider named."""
    provider = _RecordedUpstream(recording)
    request = parse_chat_request({"model": "g", "messages": [{"role": "user", "content": "hi"}]})
    target = Target(model="claude-x", api_key=API_KEY)
    if recording.status >= 400:
        with pytest.raises(GatewayError) as raised:
            await provider.chat(request, target)
        assert raised.value.provider == "claude"
        assert raised.value.message == recording.response["body"]["error"]["message"]
    else:
        response = await provider.chat(request, target)
        assert response.id == recording.response["body"]["id"]


# --- rate-limit headers --------------------------------------------------------------------------------


def _reset_seconds(stamp: str, now: float) -> float:
    return max(0.0, datetime.fromisoformat(stamp).timestamp() - now)


@pytest.mark.parametrize("recording", _params())
def test_headroom(recording: Recording) -> None:
    headers = recording.headers
    prefix = "anthropic-ratelimit-"
    if not any(name.startswith(prefix) for name in headers):
        assert anthropic_headroom(headers) is None
        return
    now = parsedate_to_datetime(headers["date"]).timestamp()
    reading = anthropic_headroom(headers, now=now)
    assert reading is not None
    assert reading.requests_limit == int(headers[f"{prefix}requests-limit"])
    assert reading.requests_remaining == int(headers[f"{prefix}requests-remaining"])
    assert reading.tokens_limit == int(headers[f"{prefix}tokens-limit"])
    assert reading.tokens_remaining == int(headers[f"{prefix}tokens-remaining"])
    assert reading.requests_reset == _reset_seconds(headers[f"{prefix}requests-reset"], now)
    assert reading.tokens_reset == _reset_seconds(headers[f"{prefix}tokens-reset"], now)
    assert reading.fraction_left is not None and 0 < reading.fraction_left <= 1


def test_headroom_is_not_vacuous() -> None:
    carriers = [r for r in RECORDINGS if "anthropic-ratelimit-requests-limit" in r.headers]
    assert len(carriers) >= 8
