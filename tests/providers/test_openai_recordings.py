"""Conformance of the OpenAI wire format against real recorded traffic of OpenAI-compatible providers.

Every recording in ``../shared/provider-recordings`` whose provider speaks OpenAI Chat Completions is
checked on both sides: the request llmgate would send for the recorded request body, and what llmgate
reads out of the recorded answer (complete response, SSE stream in any fragmentation, or error). Expected
values are read out of the recorded JSON; recordings (or sides of them) that cannot be used are listed
below with the reason, and a test asserts that nothing else is skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest
from recordings import MISSING_REASON, RECORDINGS_DIR, fragmentations

from llmgate.core.accumulate import StreamAccumulator
from llmgate.core.codec import parse_chat_request, parse_embedding_request
from llmgate.core.errors import (
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    ProviderAuthError,
    RateLimited,
)
from llmgate.core.request import CHAT_FIELDS, EMBEDDING_FIELDS
from llmgate.core.response import ChatChunk, ChatResponse, as_chunk
from llmgate.core.usage import Usage
from llmgate.providers.base import HttpCall, Target
from llmgate.providers.openai import OpenAIProvider, OpenAIWire
from llmgate.providers.sse import SSEDecoder
from llmgate.providers.transport import Transport

OPENAI_COMPATIBLE = frozenset(
    {
        "openai",
        "groq",
        "mistral",
        "openrouter",
        "ollama_openai_compat",
        "huggingface",
        "huggingface_tgi",
        "azure_ai_foundry",
        "azure_openai",
    }
)

# Recordings the suite cannot use at all.
UNUSABLE: dict[str, str] = {
    "huggingface_tgi__native_generate__text-generation-inference.json": (
        "TGI native /generate response ({generated_text, details}), not an OpenAI chat shape; "
        "response-only snapshot with no request"
    ),
}

# Recordings whose response side is checked but whose request side cannot be rebuilt.
REQUEST_UNUSABLE: dict[str, str] = {
    "huggingface_tgi__tool_call__text-generation-inference.json": "response-only snapshot: no request",
    "huggingface_tgi__tool_call_stream__text-generation-inference.json": "response-only snapshot: no request",
    "huggingface__legacy_inference_api_404__langchaingo.json": (
        "legacy HF serverless Inference API body ({inputs, parameters}), not Chat Completions"
    ),
    "openai__error_401__ruby_llm.json": "OpenAI Responses API body (/v1/responses, input=[...]), not Chat",
}

# The source redacted the request URI: the body is checked, the URL path cannot be.
URL_NOT_RECORDED: dict[str, str] = {
    "azure_openai__chat_stream_usage__langchain.json": "langchain's cassette redacts the request URI",
}

# Request-body differences that are known defects elsewhere in llmgate (not in the wire format). Each
# entry must match the observed difference exactly, so fixing the defect makes the test fail until the
# entry is removed.
KNOWN_REQUEST_GAPS: dict[str, frozenset[str]] = {}

API_KEY = "sk-test-recordings-0000"


@dataclass(frozen=True)
class Recording:
    """One recorded exchange."""

    name: str
    provider: str
    scenario: str
    request: dict[str, Any]
    response: dict[str, Any]

    @property
    def body(self) -> Any:
        return self.request.get("body")

    @property
    def status(self) -> int:
        return int(self.response["status"])


def _load() -> list[Recording]:
    recordings = []
    for path in sorted(RECORDINGS_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("provider") in OPENAI_COMPATIBLE:
            recordings.append(
                Recording(
                    name=path.name,
                    provider=data["provider"],
                    scenario=data["scenario"],
                    request=data.get("request") or {},
                    response=data["response"],
                )
            )
    return recordings


if not RECORDINGS_DIR.is_dir():
    pytest.skip(
        MISSING_REASON,
        allow_module_level=True,
    )

RECORDINGS = _load()


def _params() -> list[Any]:
    return [pytest.param(recording, id=recording.name.removesuffix(".json")) for recording in RECORDINGS]


# --- classification: which recordings can be used, derived from the data --------------------------------


def _response_problem(recording: Recording) -> str | None:
    response = recording.response
    if "body_text" in response:
        return None if response.get("stream_format") == "sse" else "stream format is not SSE"
    if "body_chunks" in response:
        return None
    if recording.status >= 400:
        return None
    body = response.get("body")
    if isinstance(body, dict) and ("choices" in body or "data" in body):
        return None
    return "200 response that is neither a chat completion nor an embedding list"


def _request_problem(recording: Recording) -> str | None:
    body = recording.body
    if not isinstance(body, dict):
        return "no request body recorded"
    if "messages" not in body and "input" not in body:
        return "request body is neither Chat Completions nor embeddings"
    path = recording.request.get("url_path")
    if path is not None and not _path(path).endswith(("/chat/completions", "/embeddings")):
        return f"endpoint {path} is neither /chat/completions nor /embeddings"
    return None


def test_recordings_were_found() -> None:
    providers = {recording.provider for recording in RECORDINGS}
    assert providers == OPENAI_COMPATIBLE
    assert len(RECORDINGS) >= 45


def test_skips_are_exactly_the_listed_ones() -> None:
    """Nothing is skipped silently: the lists above are exactly what the data says cannot be used."""
    names = {recording.name for recording in RECORDINGS}
    whole = {r.name for r in RECORDINGS if _response_problem(r) and _request_problem(r)}
    request_only = {r.name for r in RECORDINGS if _request_problem(r) and not _response_problem(r)}
    response_only = {r.name for r in RECORDINGS if _response_problem(r) and not _request_problem(r)}
    assert whole == set(UNUSABLE)
    assert request_only == set(REQUEST_UNUSABLE)
    assert response_only == set()
    no_url = {r.name for r in RECORDINGS if isinstance(r.body, dict) and r.request.get("url_path") is None}
    assert no_url == set(URL_NOT_RECORDED)
    assert set(KNOWN_REQUEST_GAPS) <= names


# --- request side ----------------------------------------------------------------------------------------


def _path(url_path: str) -> str:
    return url_path.split("?", 1)[0]


def _body_differences(built: Any, recorded: Any, where: str = "$") -> set[str]:
    """Paths where the built JSON differs from the recorded JSON.

    A recorded ``null`` may be absent (llmgate omits unset fields), and so may a recorded top-level
    ``"stream": false`` (the API default; non-streaming calls omit ``stream`` and ``stream_options``).
    """
    if isinstance(recorded, dict) and isinstance(built, dict):
        differences: set[str] = set()
        for key in recorded.keys() | built.keys():
            path = f"{where}.{key}"
            if key not in built:
                omitted_default = where == "$" and key == "stream" and recorded[key] is False
                if recorded[key] is not None and not omitted_default:
                    differences.add(path)
            elif key not in recorded:
                differences.add(path)
            else:
                differences |= _body_differences(built[key], recorded[key], path)
        return differences
    if isinstance(recorded, list) and isinstance(built, list):
        if len(recorded) != len(built):
            return {where}
        differences = set()
        for index, (left, right) in enumerate(zip(built, recorded, strict=True)):
            differences |= _body_differences(left, right, f"{where}[{index}]")
        return differences
    if type(recorded) is bool or type(built) is bool:
        return set() if recorded is built else {where}
    return set() if recorded == built else {where}


def _expected_request_body(recording: Recording, *, stream: bool) -> dict[str, Any]:
    expected = dict(recording.body)
    if stream:
        expected["stream_options"] = {**(expected.get("stream_options") or {}), "include_usage": True}
    return expected


class _RecordedUpstream(OpenAIProvider):
    """An ``OpenAIProvider`` whose ``send`` captures the call and answers with a recorded response."""

    def __init__(self, recording: Recording) -> None:
        super().__init__(
            name="recorded",
            wire=OpenAIWire(),
            transport=Transport(),  # never opened: send() is replaced
            base_url="http://recorded.invalid/v1",
        )
        self.recording = recording
        self.calls: list[HttpCall] = []

    async def send(self, call: HttpCall, target: Target) -> tuple[int, dict[str, str], bytes]:
        self.calls.append(call)
        response = self.recording.response
        body = response.get("body")
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        return response["status"], _headers(response), raw


def _headers(response: dict[str, Any]) -> dict[str, str]:
    """Recorded headers as a lower-cased dict (repeated headers keep their last value)."""
    headers: dict[str, str] = {}
    for name, value in (response.get("headers") or {}).items():
        headers[name.lower()] = value[-1] if isinstance(value, list) else str(value)
    return headers


def _check_chat_request(recording: Recording) -> None:
    body = recording.body
    stream = bool(body.get("stream"))
    assert stream == ("body_text" in recording.response), "stream flag and recorded response disagree"
    # The caller names a model group; the wire format must send the deployment's upstream model.
    request = parse_chat_request({**body, "model": "llmgate-group"})
    call = OpenAIWire().chat_call(request, Target(model=body["model"], api_key=API_KEY), stream=stream)

    assert call.method == "POST"
    assert call.path == "/chat/completions"
    url_path = recording.request.get("url_path")
    if url_path is not None:
        assert _path(url_path).endswith(call.path)
    assert call.headers["Authorization"] == f"Bearer {API_KEY}"
    assert call.headers["Content-Type"] == "application/json"
    assert call.body is not None
    built = json.loads(call.body)

    if stream:
        assert built["stream"] is True
        assert built["stream_options"]["include_usage"] is True
    else:
        assert "stream_options" not in built
    differences = _body_differences(built, _expected_request_body(recording, stream=stream))
    assert differences == KNOWN_REQUEST_GAPS.get(recording.name, frozenset())

    unknown = set(body) - CHAT_FIELDS
    assert set(request.extra) == unknown
    for key in unknown:
        assert built[key] == body[key]


async def _check_embedding_request(recording: Recording) -> None:
    body = recording.body
    request = parse_embedding_request({**body, "model": "llmgate-group"})
    assert set(request.extra) == set(body) - EMBEDDING_FIELDS
    upstream = _RecordedUpstream(recording)
    try:
        await upstream.embed(request, Target(model=body["model"], api_key=API_KEY))
    except GatewayError:
        assert recording.status >= 400
    [call] = upstream.calls
    assert call.method == "POST"
    assert call.path == "/embeddings"
    assert _path(recording.request["url_path"]).endswith(call.path)
    assert call.headers["Authorization"] == f"Bearer {API_KEY}"
    assert call.body is not None
    assert _body_differences(json.loads(call.body), body) == set()


@pytest.mark.parametrize("recording", _params())
async def test_request(recording: Recording) -> None:
    reason = UNUSABLE.get(recording.name) or REQUEST_UNUSABLE.get(recording.name)
    if reason:
        pytest.skip(reason)
    if "messages" in recording.body:
        _check_chat_request(recording)
    else:
        await _check_embedding_request(recording)


def test_request_without_key_sends_no_authorization() -> None:
    [recording] = [r for r in RECORDINGS if r.name == "openai__chat_basic__langchaingo.json"]
    call = OpenAIWire().chat_call(parse_chat_request(recording.body), Target(model="m"), stream=False)
    assert "Authorization" not in call.headers
    assert json.loads(call.body or b"")["model"] == "m"


def test_unknown_fields_pass_through() -> None:
    """Not vacuous: at least one recording carries a non-standard top-level field."""
    carriers = [
        r
        for r in RECORDINGS
        if isinstance(r.body, dict) and "messages" in r.body and set(r.body) - CHAT_FIELDS
    ]
    assert "ollama_openai_compat__tool_call__ruby_llm.json" in {r.name for r in carriers}
    for recording in carriers:
        request = parse_chat_request(recording.body)
        built = json.loads(OpenAIWire().chat_call(request, Target(model="m"), stream=False).body or b"")
        for key in set(recording.body) - CHAT_FIELDS:
            assert built[key] == recording.body[key]
    ollama = next(r for r in carriers if r.name == "ollama_openai_compat__tool_call__ruby_llm.json")
    assert parse_chat_request(ollama.body).extra == {"enable_thinking": False}


def test_unknown_message_fields_pass_through() -> None:
    [recording] = [
        r for r in RECORDINGS if r.name == "ollama_openai_compat__tool_result_followup__ruby_llm.json"
    ]
    request = parse_chat_request(recording.body)
    built = json.loads(OpenAIWire().chat_call(request, Target(model="m"), stream=False).body or b"")
    recorded = recording.body["messages"][1]
    assert built["messages"][1]["reasoning_content"] == recorded["reasoning_content"]


# --- response side: complete responses -------------------------------------------------------------------


def _usage_numbers(usage: dict[str, Any]) -> dict[str, int]:
    """The counts llmgate prices by, read from a recorded usage object."""
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return {
        "prompt": usage.get("prompt_tokens", 0),
        "completion": usage.get("completion_tokens", 0),
        "total": usage.get("total_tokens", 0),
        "cached": prompt_details.get("cached_tokens", usage.get("cached_tokens", 0)),
        "reasoning": completion_details.get("reasoning_tokens", 0),
    }


def _parsed_usage_numbers(usage: Usage) -> dict[str, int]:
    return {
        "prompt": usage.prompt_tokens,
        "completion": usage.completion_tokens,
        "total": usage.total_tokens,
        "cached": usage.cached_tokens,
        "reasoning": usage.reasoning_tokens,
    }


def _recorded_tool_calls(message: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (call["id"], call["function"]["name"], call["function"]["arguments"])
        for call in message.get("tool_calls") or []
    ]


def _check_chat_response(recording: Recording) -> None:
    recorded = recording.response["body"]
    parsed = OpenAIWire().parse_chat(json.dumps(recorded).encode())
    assert isinstance(parsed, ChatResponse)
    assert parsed.id == recorded["id"]
    assert parsed.model == recorded["model"]
    assert parsed.created == recorded["created"]
    assert len(parsed.choices) == len(recorded["choices"]) >= 1
    for choice, expected in zip(parsed.choices, recorded["choices"], strict=True):
        message = expected["message"]
        assert choice.index == expected["index"]
        assert choice.finish_reason == expected["finish_reason"]
        assert choice.message.content == message.get("content")
        tool_calls = choice.message.tool_calls if isinstance(choice.message.tool_calls, list) else []
        assert [(c.id, c.function.name, c.function.arguments) for c in tool_calls] == _recorded_tool_calls(
            message
        )
        for call in tool_calls:
            json.loads(call.function.arguments)  # still valid JSON
        function_call = message.get("function_call")
        if function_call is not None:
            assert choice.message.function_call is not None
            assert msgspec.to_builtins(choice.message.function_call) == function_call
    if recorded.get("usage") is None:
        assert parsed.usage is None
    else:
        assert parsed.usage is not None
        assert _parsed_usage_numbers(parsed.usage) == _usage_numbers(recorded["usage"])


async def _check_embedding_response(recording: Recording) -> None:
    recorded = recording.response["body"]
    request = parse_embedding_request(recording.body)
    response = await _RecordedUpstream(recording).embed(request, Target(model=recording.body["model"]))
    assert response.model == recorded["model"]
    assert [item.index for item in response.data] == [item["index"] for item in recorded["data"]]
    assert [item.embedding for item in response.data] == [item["embedding"] for item in recorded["data"]]
    assert response.usage is not None
    assert response.usage.prompt_tokens == recorded["usage"]["prompt_tokens"]
    assert response.usage.total_tokens == recorded["usage"]["total_tokens"]


# --- response side: streams ------------------------------------------------------------------------------


@dataclass
class _Assembled:
    """What a client ends up with after a stream: per choice text, tool calls and finish reason."""

    text: dict[int, str] = field(default_factory=dict)
    tool_calls: dict[int, dict[int, list[Any]]] = field(default_factory=dict)
    finish_reason: dict[int, str | None] = field(default_factory=dict)
    usage: dict[str, int] | None = None

    def add(
        self, choice: int, *, content: str | None, tools: list[dict[str, Any]], finish: str | None
    ) -> None:
        self.text[choice] = self.text.get(choice, "") + (content or "")
        for tool in tools:
            slot = self.tool_calls.setdefault(choice, {}).setdefault(tool["index"], [None, None, ""])
            function = tool.get("function") or {}
            slot[0] = slot[0] or tool.get("id")
            slot[1] = slot[1] or function.get("name")
            slot[2] += function.get("arguments") or ""
        if finish is not None or choice not in self.finish_reason:
            self.finish_reason[choice] = finish if finish is not None else self.finish_reason.get(choice)


def _assemble_chunks(chunks: list[ChatChunk]) -> _Assembled:
    """The system under test's view: the shared accumulator's complete reply, in the oracle's terms."""
    accumulator = StreamAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    response = accumulator.response()
    assembled = _Assembled()
    for choice in response.choices:
        message = choice.message
        calls = message.tool_calls if isinstance(message.tool_calls, list) else []
        tools = [
            {"index": index, "id": call.id, "function": msgspec.to_builtins(call.function)}
            for index, call in enumerate(calls)
        ]
        assembled.add(choice.index, content=message.content, tools=tools, finish=choice.finish_reason)
    if response.usage is not None:
        assembled.usage = _parsed_usage_numbers(response.usage)
    return assembled


def _assemble_recorded(events: list[dict[str, Any]]) -> _Assembled:
    """The oracle: the recorded JSON events folded the same way, without llmgate's types."""
    assembled = _Assembled()
    for event in events:
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or {}
            assembled.add(
                choice["index"],
                content=delta.get("content"),
                tools=delta.get("tool_calls") or [],
                finish=choice.get("finish_reason"),
            )
        if event.get("usage"):
            assembled.usage = _usage_numbers(event["usage"])
    return assembled


def _recorded_events(text: str) -> tuple[list[dict[str, Any]], bool]:
    """A naive reading of the recorded SSE text (every recorded event is one ``data:`` line)."""
    events: list[dict[str, Any]] = []
    done = False
    for line in text.splitlines():
        if not line.startswith("data:"):
            continue
        payload = line[len("data:") :].strip()
        if payload == "[DONE]":
            done = True
        else:
            events.append(json.loads(payload))
    return events, done


def _translate(pieces: list[bytes]) -> tuple[list[ChatChunk], bool, int]:
    """The chunks of a stream, whether it finished, and how many were passed on as sent."""
    decoder = SSEDecoder()
    translator = OpenAIWire().stream_translator(
        parse_chat_request({"model": "m", "messages": [{"role": "user"}]})
    )
    chunks: list[ChatChunk] = []
    raw = 0
    for piece in [*pieces, b""]:
        events = decoder.feed(piece) if piece else decoder.close()
        for event in events:
            assert not translator.finished, "an event arrived after [DONE]"
            for item in translator.feed(event.data):
                if isinstance(item, bytes):
                    assert item == event.data, "a raw chunk is the upstream's bytes, unchanged"
                    raw += 1
                chunks.append(as_chunk(item))
    return chunks, translator.finished, raw


def _passed_as_sent(events: list[dict[str, Any]]) -> int:
    """How many events come after the first substantive chunk with choices and without usage."""
    first = next(index for index, event in enumerate(events) if _substantive(event))
    return sum(1 for event in events[first + 1 :] if "choices" in event and not event.get("usage"))


def _substantive(event: dict[str, Any]) -> bool:
    if event.get("usage"):
        return True
    output = ("content", "tool_calls", "function_call", "refusal", "reasoning_content", "reasoning")
    for choice in event.get("choices") or []:
        delta = choice.get("delta") or {}
        if choice.get("finish_reason") is not None or any(delta.get(name) for name in output):
            return True
    return False


def _check_stream(recording: Recording) -> None:
    text = recording.response["body_text"]
    events, done = _recorded_events(text)
    assert done, "every recorded OpenAI-compatible stream ends with [DONE]"
    chunk_events = [event for event in events if event.get("object") == "chat.completion.chunk"]
    # The only other events recorded are Azure's opening content-filter reports, which yield no chunk.
    for event in events:
        if event not in chunk_events:
            assert "prompt_filter_results" in event
            assert event["choices"] == []

    results = {name: _translate(pieces) for name, pieces in fragmentations(text.encode()).items()}
    chunks, finished, raw = results.pop("whole")
    assert finished
    for name, result in results.items():
        assert result == (chunks, True, raw), f"fragmentation {name!r} changed the chunks"
    assert raw == _passed_as_sent(events), "after the first content, plain chunks pass as sent"

    # Usage that a server put on a content chunk comes out as its own final chunk with no choices.
    usage_on_content = [e for e in chunk_events if e.get("usage") and e.get("choices")]
    expected_ids = [(e["id"], e["created"], e["model"]) for e in chunk_events]
    expected_ids += [(e["id"], e["created"], e["model"]) for e in usage_on_content]
    assert [(c.id, c.created, c.model) for c in chunks] == expected_ids
    usage_chunks = [c for c in chunks if c.usage]
    assert len(usage_chunks) == 1
    assert usage_chunks[0].choices == []
    assert chunks[-1] is usage_chunks[0] or not usage_on_content
    assembled, expected = _assemble_chunks(chunks), _assemble_recorded(chunk_events)
    assert assembled == expected
    assert expected.finish_reason.get(0) is not None, "the recording ends its choice"
    assert expected.usage is not None, "the recording reports usage"
    assert expected.text.get(0) or expected.tool_calls.get(0), "the recording produced output"
    for calls in assembled.tool_calls.values():
        for _id, _name, arguments in calls.values():
            json.loads(arguments)


def _check_chunk_snapshot(recording: Recording) -> None:
    """TGI snapshots hold the client-parsed chunks, not SSE bytes: feed each chunk's JSON as one event."""
    recorded = recording.response["body_chunks"]
    translator = OpenAIWire().stream_translator(
        parse_chat_request({"model": "m", "messages": [{"role": "user"}]})
    )
    chunks = [chunk for event in recorded for chunk in translator.feed(json.dumps(event).encode())]
    chunks += translator.feed(b"[DONE]")
    usage_on_content = [e for e in recorded if e.get("usage") and e.get("choices")]
    assert len(chunks) == len(recorded) + len(usage_on_content)
    assembled, expected = _assemble_chunks(chunks), _assemble_recorded(recorded)
    assert assembled == expected
    assert expected.tool_calls.get(0), "the snapshot streams a tool call"
    for call_id, name, arguments in expected.tool_calls[0].values():
        assert call_id
        assert name
        assert isinstance(json.loads(arguments), dict)


# --- response side: errors -------------------------------------------------------------------------------


def _provider_message(body: Any) -> str:
    """The human-readable message as the provider wrote it."""
    if isinstance(body, str):
        return body
    error = body.get("error", body)
    if isinstance(error, str):
        return error
    return str(error.get("message") or error["detail"])


def _expected_error_class(recording: Recording) -> type[GatewayError]:
    status = recording.status
    if status == 400:
        return ContextLengthExceeded if "context_length" in recording.scenario else InvalidRequest
    classes: dict[int, type[GatewayError]] = {
        401: ProviderAuthError,
        403: ProviderAuthError,
        404: ModelNotFound,
        429: RateLimited,
    }
    return classes[status]


def _expected_retry_after(headers: dict[str, str]) -> float | None:
    if float(headers.get("retry-after-ms") or 0) > 0:
        return float(headers["retry-after-ms"]) / 1000
    return float(headers["retry-after"]) if "retry-after" in headers else None


def _check_error(recording: Recording) -> None:
    response = recording.response
    body = response["body"]
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    headers = _headers(response)
    error = OpenAIWire().parse_error(recording.status, headers, raw)
    assert type(error) is _expected_error_class(recording)
    assert error.message == _provider_message(body)
    if isinstance(error, RateLimited):
        assert error.retry_after == _expected_retry_after(headers)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        recorded = body["error"]
        if isinstance(error, InvalidRequest) and isinstance(recorded.get("code"), str):
            assert error.code == recorded["code"]
        if isinstance(error, InvalidRequest):
            assert error.param == recorded.get("param")


@pytest.mark.parametrize("recording", _params())
async def test_response(recording: Recording) -> None:
    if recording.name in UNUSABLE:
        pytest.skip(UNUSABLE[recording.name])
    response = recording.response
    if "body_text" in response:
        _check_stream(recording)
    elif "body_chunks" in response:
        _check_chunk_snapshot(recording)
    elif recording.status >= 400:
        _check_error(recording)
    elif "choices" in response["body"]:
        _check_chat_response(recording)
    else:
        await _check_embedding_response(recording)


def test_every_kind_of_response_is_covered() -> None:
    """Guard against the suite shrinking: streams, tool calls, errors and embeddings are all exercised."""
    kinds = {
        "stream": sum("body_text" in r.response for r in RECORDINGS),
        "error": sum(r.status >= 400 for r in RECORDINGS),
        "embedding": sum(
            isinstance(r.body, dict) and "input" in r.body and "messages" not in r.body for r in RECORDINGS
        ),
        "tool_call": sum("tool_call" in r.scenario for r in RECORDINGS),
    }
    assert kinds["stream"] >= 13
    assert kinds["error"] >= 10
    assert kinds["embedding"] >= 3
    assert kinds["tool_call"] >= 8


def test_reasoning_field_is_kept() -> None:
    [recording] = [r for r in RECORDINGS if r.name == "ollama_openai_compat__chat_basic__ruby_llm.json"]
    recorded = recording.response["body"]["choices"][0]["message"]["reasoning"]
    parsed = OpenAIWire().parse_chat(json.dumps(recording.response["body"]).encode())
    assert parsed.choices[0].message.reasoning == recorded
    assert parsed.choices[0].message.reasoning_text == recorded
