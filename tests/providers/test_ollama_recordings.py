"""Conformance of the Ollama adapter against real recorded native Ollama traffic (../shared/provider-recordings).

Request side: the OpenAI-shaped input equivalent to each recorded ``/api/chat`` or ``/api/embed`` request
must make the adapter send the recorded method, path and body (after the normalisations named below).
Response side: every recorded answer, NDJSON stream (in several fragmentations) and embedding must come out
as the canonical result read independently out of the recorded JSON. ``ollama_openai_compat__*`` files are
Ollama's OpenAI-compatible ``/v1`` endpoint and belong to the OpenAI adapter's suite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import pytest
from recordings import MISSING_REASON, RECORDINGS_DIR, Recording, fragmentations, load

from llmgate.core.accumulate import StreamAccumulator
from llmgate.core.codec import parse_chat_request, parse_embedding_request
from llmgate.core.errors import UnexpectedResponse
from llmgate.core.headroom import NOTHING_UNSUPPORTED
from llmgate.core.response import ChatChunk, ChatResponse
from llmgate.providers.base import HttpCall, Target
from llmgate.providers.ollama import OllamaProvider, OllamaWire
from llmgate.providers.sse import NDJSONDecoder
from llmgate.providers.transport import Transport

UNUSABLE: dict[str, str] = {
    "ollama__generate__langchaingo.json": (
        "/api/generate prompt completion ({prompt, system, template} -> {response, context}); "
        "the adapter speaks /api/chat"
    ),
}

# Request-body differences that are the recorder's doing, each exactly as observed.
KNOWN_REQUEST_GAPS: dict[str, frozenset[str]] = {
    # langchaingo puts "think" inside options, where Ollama ignores it (it is no model option:
    # https://github.com/ollama/ollama/blob/main/api/types.go); llmgate sends the top-level "think".
    "ollama__thinking_stream__langchaingo.json": frozenset({"$.options.think"}),
}

# Ollama finish reasons -> OpenAI's (stop with tool calls is tool_calls; none are recorded).
EXPECTED_FINISH = {"stop": "stop", "length": "length"}


if not RECORDINGS_DIR.is_dir():
    pytest.skip(
        MISSING_REASON,
        allow_module_level=True,
    )


RECORDINGS = load("ollama__*.json")


def _params(*, usable_only: bool = False) -> list[Any]:
    return [
        pytest.param(recording, id=recording.name.removesuffix(".json"))
        for recording in RECORDINGS
        if not (usable_only and recording.name in UNUSABLE)
    ]


def test_recordings_were_found() -> None:
    assert len(RECORDINGS) == 7


def test_skips_are_exactly_the_listed_ones() -> None:
    assert {r.name for r in RECORDINGS if r.path not in ("/api/chat", "/api/embed")} == set(UNUSABLE)
    assert set(KNOWN_REQUEST_GAPS) <= {r.name for r in RECORDINGS} - set(UNUSABLE)


def test_unusable_answer_is_not_mistaken_for_a_chat_answer() -> None:
    """The /api/generate answer must not parse as an empty chat success."""
    [recording] = [r for r in RECORDINGS if r.name in UNUSABLE]
    with pytest.raises(UnexpectedResponse):
        OllamaWire().parse_chat(json.dumps(recording.response["body"]).encode())


# --- request side ----------------------------------------------------------------------------------------


def _openai_equivalent(body: dict[str, Any]) -> dict[str, Any]:
    """The Chat Completions input that means what the recorded Ollama request means."""
    options = body.get("options") or {}
    renames = {
        "temperature": "temperature",
        "top_p": "top_p",
        "num_predict": "max_tokens",
        "stop": "stop",
        "seed": "seed",
    }
    out: dict[str, Any] = {"model": "llmgate-group", "messages": body["messages"]}
    out.update((renames[key], value) for key, value in options.items() if key in renames)
    if body.get("format") == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(body.get("format"), dict):
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": body["format"]},
        }
    return out


def _normalised(body: dict[str, Any]) -> dict[str, Any]:
    """The recorded body as the adapter means to send it: ``"format": ""`` is no format, and a missing
    ``stream`` is ``true``, Ollama's default (the recorded answers are NDJSON streams)."""
    out = dict(body)
    if out.get("format") == "":
        del out["format"]
    out.setdefault("stream", True)
    return out


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
    assert "authorization" not in sent  # no key configured: a local server gets no Authorization
    assert sent <= {name.lower() for name in recording.request["headers"]}


class _RecordedUpstream(OllamaProvider):
    """An ``OllamaProvider`` whose ``send`` captures the call and answers with the recorded response."""

    def __init__(self, recording: Recording) -> None:
        super().__init__(
            name="recorded", wire=OllamaWire(), transport=Transport(), base_url="http://recorded.invalid"
        )
        self.recording = recording
        self.calls: list[HttpCall] = []

    async def send(self, call: HttpCall, target: Target) -> tuple[int, dict[str, str], bytes]:
        self.calls.append(call)
        response = self.recording.response
        return int(response["status"]), {}, json.dumps(response["body"]).encode()


@pytest.mark.parametrize("recording", _params(usable_only=True))
async def test_request(recording: Recording) -> None:
    body = recording.body
    if recording.path == "/api/embed":
        equivalent = {key: value for key, value in body.items() if key != "model"}  # options pass through
        upstream = _RecordedUpstream(recording)
        await upstream.embed(
            parse_embedding_request({**equivalent, "model": "g"}), Target(model=body["model"])
        )
        [call] = upstream.calls
        assert (call.method, call.path) == ("POST", recording.path)
        _check_header_names(recording, dict(call.headers))
        assert _differences(json.loads(call.body or b""), body) == set()
        return
    request = parse_chat_request(_openai_equivalent(body))
    wire = OllamaWire()
    assert wire.check(request) is NOTHING_UNSUPPORTED
    expected = _normalised(body)
    call = wire.chat_call(request, Target(model=body["model"]), stream=expected["stream"])
    assert (call.method, call.path) == (recording.request["method"], recording.path)
    _check_header_names(recording, dict(call.headers))
    built = json.loads(call.body or b"")
    assert built["stream"] is expected["stream"]  # always explicit
    assert _differences(built, expected) == KNOWN_REQUEST_GAPS.get(recording.name, frozenset())


# --- response side: the oracle, read straight out of the recorded JSON -----------------------------------


@dataclass
class Outcome:
    """What a client ends up with, in plain values."""

    text: str | None
    reasoning: str | None
    tool_calls: list[tuple[str, str]]
    finish_reason: str | None
    usage: tuple[int, int, int] | None


def _outcome(response: ChatResponse) -> Outcome:
    [choice] = response.choices
    message = choice.message
    calls = message.tool_calls if isinstance(message.tool_calls, list) else []
    usage = response.usage
    return Outcome(
        text=message.content,
        reasoning=message.reasoning_content if isinstance(message.reasoning_content, str) else None,
        tool_calls=[(call.function.name, call.function.arguments) for call in calls],
        finish_reason=choice.finish_reason,
        usage=None if usage is None else (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),
    )


def _expected(answer: dict[str, Any]) -> Outcome:
    message = answer["message"]
    prompt, completion = answer.get("prompt_eval_count", 0), answer.get("eval_count", 0)
    return Outcome(
        text=message["content"] or None,
        reasoning=message.get("thinking") or None,
        tool_calls=[
            (c["function"]["name"], json.dumps(c["function"]["arguments"], separators=(",", ":")))
            for c in message.get("tool_calls", [])
        ],
        finish_reason=EXPECTED_FINISH[answer["done_reason"]],
        usage=(prompt, completion, prompt + completion),
    )


def _epoch(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp).timestamp())


def _fold(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The recorded stream folded into the non-streamed answer Ollama sends for the same generation."""
    *_, last = lines
    assert last["done"] is True and all(line["done"] is False for line in lines[:-1])
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(line["message"]["content"] for line in lines),
    }
    thinking = "".join(line["message"].get("thinking", "") for line in lines)
    if thinking:
        message["thinking"] = thinking
    return {**last, "created_at": lines[0]["created_at"], "message": message}


def _translate(pieces: list[bytes]) -> tuple[list[ChatChunk], bool]:
    decoder = NDJSONDecoder()
    translator = OllamaWire().stream_translator(
        parse_chat_request({"model": "m", "messages": [{"role": "user"}]})
    )
    chunks: list[ChatChunk] = []
    for piece in [*pieces, b""]:
        for line in decoder.feed(piece) if piece else decoder.close():
            chunks.extend(translator.feed(line))
    return chunks, translator.finished


def _accumulate(chunks: list[ChatChunk]) -> ChatResponse:
    accumulator = StreamAccumulator()
    for chunk in chunks:
        accumulator.add(chunk)
    return accumulator.response()


def _check_stream(recording: Recording) -> None:
    text = recording.response["body_text"]
    results = {name: _translate(pieces) for name, pieces in fragmentations(text.encode()).items()}
    chunks, finished = results.pop("whole")
    assert finished
    for name, result in results.items():
        assert msgspec.to_builtins(result[0]) == msgspec.to_builtins(chunks), (
            f"fragmentation {name!r} changed the chunks"
        )
        assert result[1]
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert len({chunk.id for chunk in chunks}) == 1
    assert {(chunk.model, chunk.created) for chunk in chunks} == {
        (lines[0]["model"], _epoch(lines[0]["created_at"]))
    }
    *_, finish, usage = chunks
    assert finish.choices[0].finish_reason is not None and usage.choices == [] and usage.usage is not None
    assert all(chunk.choices and chunk.choices[0].finish_reason is None for chunk in chunks[:-2])

    streamed = _accumulate(chunks)
    folded = _fold(lines)
    assert _outcome(streamed) == _expected(folded)
    # Streamed and non-streamed agree: the same answer, sent whole, parses to the same response.
    assert OllamaWire().parse_chat(json.dumps(folded).encode()) == streamed


def _check_whole(recording: Recording) -> None:
    body = recording.response["body"]
    parsed = OllamaWire().parse_chat(json.dumps(body).encode())
    assert _outcome(parsed) == _expected(body)
    assert (parsed.model, parsed.created) == (body["model"], _epoch(body["created_at"]))
    assert parsed.id.startswith("chatcmpl-")


async def _check_embeddings(recording: Recording) -> None:
    body = recording.response["body"]
    response = await _RecordedUpstream(recording).embed(
        parse_embedding_request({"model": "g", "input": "x"}), Target(model="m")
    )
    assert [item.embedding for item in response.data] == body["embeddings"]
    assert [item.index for item in response.data] == list(range(len(body["embeddings"])))
    assert response.model == body["model"]
    assert response.usage is not None
    assert response.usage.prompt_tokens == response.usage.total_tokens == body["prompt_eval_count"]


@pytest.mark.parametrize("recording", _params())
async def test_response(recording: Recording) -> None:
    if recording.name in UNUSABLE:
        pytest.skip(UNUSABLE[recording.name])
    if "body_text" in recording.response:
        assert recording.response["stream_format"] == "ndjson"
        _check_stream(recording)
    elif recording.path == "/api/embed":
        await _check_embeddings(recording)
    else:
        _check_whole(recording)


def test_every_kind_of_response_is_covered() -> None:
    usable = [r for r in RECORDINGS if r.name not in UNUSABLE]
    assert sum("body_text" in r.response for r in usable) == 4
    assert sum(r.path == "/api/embed" for r in usable) == 1
    finishes = {
        json.loads(r.response["body_text"].splitlines()[-1])["done_reason"]
        for r in usable
        if "body_text" in r.response
    }
    assert finishes == {"stop", "length"}


def test_stream_and_whole_families_agree() -> None:
    """The same kind of exchange recorded whole (foobara) and streamed (langchaingo) has the same shape."""
    by_name = {r.name: r for r in RECORDINGS}
    whole = _outcome(
        OllamaWire().parse_chat(
            json.dumps(
                by_name["ollama__chat_basic_nonstream__foobara-ollama-api.json"].response["body"]
            ).encode()
        )
    )
    streamed = _outcome(
        _accumulate(
            _translate([by_name["ollama__chat_stream__langchaingo.json"].response["body_text"].encode()])[0]
        )
    )

    def shape(outcome: Outcome) -> tuple[Any, ...]:
        assert outcome.usage is not None
        prompt, completion, total = outcome.usage
        return (
            bool(outcome.text),
            outcome.reasoning,
            outcome.tool_calls,
            outcome.finish_reason,
            prompt > 0 < completion and total == prompt + completion,
        )

    assert shape(whole) == shape(streamed)
