"""Gemini ``GenerateContentResponse`` -> canonical responses and stream chunks.

https://ai.google.dev/api/generate-content#generatecontentresponse. A streamed response (``alt=sse``) is a
series of the same objects, each carrying only the new parts, so one reader serves both paths.

Gemini gives function calls no id (only some models, sometimes), while OpenAI clients need one to answer
the call. Missing ids are derived from the response id, the candidate and the call's position among that
candidate's calls, so they are the same however a stream is cut, and the same when a response is read
twice (a cached or replayed answer keeps its ids).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import UNSET

from llmgate.core.errors import UnexpectedResponse
from llmgate.core.request import FunctionCall, ToolCall
from llmgate.core.response import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    ResponseMessage,
    ToolCallDelta,
)
from llmgate.core.usage import Usage, make_usage
from llmgate.providers.gemini.errors import GoogleError, error_from_google

_encoder = msgspec.json.Encoder()

# https://ai.google.dev/api/generate-content#FinishReason
FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}
# The model tried to call a function and failed: the answer is unusable, not finished (LiteLLM turned this
# into a silent "stop" with empty output: BerriAI/litellm#21744).
FAILED_CALL_REASONS = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL"})
# Parts llmgate cannot express in an OpenAI message; losing them silently would pass off a partial answer.
_UNREPRESENTABLE = ("inline_data", "file_data", "executable_code", "code_execution_result")


class MalformedFunctionCall(UnexpectedResponse):
    """Gemini ended the answer because the function call it generated was malformed (or not allowed)."""

    code = "malformed_function_call"


class _FunctionCall(msgspec.Struct):
    name: str
    args: dict[str, Any] | None = None
    id: str | None = None


class _Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool = False
    function_call: _FunctionCall | None = None
    inline_data: Any = None
    file_data: Any = None
    executable_code: Any = None
    code_execution_result: Any = None


class _Content(msgspec.Struct):
    parts: list[_Part] = []


class _Candidate(msgspec.Struct, rename="camel"):
    content: _Content | None = None
    finish_reason: str | None = None
    finish_message: str | None = None
    index: int | None = None


class UsageMetadata(msgspec.Struct, rename="camel"):
    """Gemini's token counts (https://ai.google.dev/api/generate-content#UsageMetadata)."""

    prompt_token_count: int = 0
    candidates_token_count: int = 0
    thoughts_token_count: int = 0
    cached_content_token_count: int = 0
    tool_use_prompt_token_count: int = 0
    total_token_count: int = 0


class _PromptFeedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class _Response(msgspec.Struct, rename="camel"):
    candidates: list[_Candidate] = []
    usage_metadata: UsageMetadata | None = None
    prompt_feedback: _PromptFeedback | None = None
    model_version: str | None = None
    response_id: str | None = None
    error: GoogleError | None = None


_decoder = msgspec.json.Decoder(_Response)


@dataclass(slots=True)
class _Read:
    """What one candidate's parts say: text, thought text and function calls."""

    text: str
    thoughts: str
    calls: list[ToolCall]


def decode(data: bytes) -> _Response:
    """One response object; an error object (in a 200 body or a stream) raises it."""
    try:
        response = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise UnexpectedResponse(f"gemini: unreadable response: {data[:200]!r}") from exc
    if response.error is not None:
        raise error_from_google(response.error, status=response.error.code or 502)
    return response


def fallback_id(data: bytes) -> str:
    """A response id for an answer that carries none: derived from its bytes, so stable on re-reading."""
    return "gemini-" + hashlib.sha256(data).hexdigest()[:24]


def call_id(response_id: str, candidate: int, position: int) -> str:
    """The id of a function call Gemini sent without one."""
    digest = hashlib.sha256(f"{response_id}/{candidate}/{position}".encode()).hexdigest()[:24]
    return f"call_{digest}"


def to_usage(meta: UsageMetadata | None) -> Usage | None:
    """OpenAI usage: tool-use prompt tokens count as prompt, thoughts as (reasoning) completion tokens."""
    if meta is None:
        return None
    return make_usage(
        prompt=meta.prompt_token_count + meta.tool_use_prompt_token_count,
        completion=meta.candidates_token_count + meta.thoughts_token_count,
        cached=meta.cached_content_token_count,
        reasoning=meta.thoughts_token_count,
    )


def finish_reason(candidate: _Candidate, *, called: bool) -> str | None:
    """The OpenAI finish reason; unknown ones surface lowercased, failed function calls raise."""
    raw = candidate.finish_reason
    if raw is None:
        return None
    if raw in FAILED_CALL_REASONS:
        detail = f": {candidate.finish_message}" if candidate.finish_message else ""
        raise MalformedFunctionCall(f"gemini: the model's function call failed ({raw}){detail}")
    if raw == "STOP" and called:
        return "tool_calls"
    return FINISH_REASONS.get(raw, raw.lower())


def read_parts(candidate: _Candidate, response_id: str, index: int, first_call: int) -> _Read:
    """Text, thoughts and calls of a candidate; ``first_call`` is the position of its first call."""
    text: list[str] = []
    thoughts: list[str] = []
    calls: list[ToolCall] = []
    for part in candidate.content.parts if candidate.content is not None else ():
        if part.function_call is not None:
            function = part.function_call
            identifier = function.id or call_id(response_id, index, first_call + len(calls))
            arguments = _encoder.encode(function.args or {}).decode()
            calls.append(
                ToolCall(id=identifier, function=FunctionCall(name=function.name, arguments=arguments))
            )
        elif part.text:
            (thoughts if part.thought else text).append(part.text)
        else:
            kind = next((name for name in _UNREPRESENTABLE if getattr(part, name) is not None), None)
            if kind is not None:
                raise UnexpectedResponse(
                    f"gemini: the answer has a '{kind}' part, which llmgate cannot relay"
                )
    return _Read("".join(text), "".join(thoughts), calls)


def parse_response(body: bytes, *, created: int, model: str) -> ChatResponse:
    """A complete ``generateContent`` answer -> ``ChatResponse``."""
    response = decode(body)
    response_id = response.response_id or fallback_id(body)
    choices = []
    for position, candidate in enumerate(response.candidates):
        index = candidate.index if candidate.index is not None else position
        read = read_parts(candidate, response_id, index, 0)
        message = ResponseMessage(
            content=read.text or None,
            tool_calls=read.calls or UNSET,
            reasoning_content=read.thoughts or UNSET,
        )
        reason = finish_reason(candidate, called=bool(read.calls))
        choices.append(Choice(index=index, message=message, finish_reason=reason))
    if not choices:
        choices = [Choice(index=0, message=ResponseMessage(), finish_reason=_blocked(response))]
    return ChatResponse(
        id=response_id,
        created=created,
        model=response.model_version or model,
        choices=choices,
        usage=to_usage(response.usage_metadata),
    )


def _blocked(response: _Response) -> str:
    """A response without candidates is a blocked prompt (reported as ``content_filter``, like a filtered
    answer, streamed or not: https://ai.google.dev/api/generate-content#PromptFeedback); anything else
    without candidates is not an answer."""
    if response.prompt_feedback is None or response.prompt_feedback.block_reason is None:
        raise UnexpectedResponse("gemini: the response has no candidates and no prompt feedback")
    return "content_filter"


@dataclass(slots=True)
class _CandidateState:
    started: bool = False
    calls: int = 0
    finished: bool = False


class GeminiStream:
    """Translates one ``streamGenerateContent?alt=sse`` stream; each event is a partial response.

    The stream is finished once every candidate has a finish reason (at least ``n`` of them); then the
    usage chunk (no choices) follows, with the last ``usageMetadata`` seen.
    """

    __slots__ = ("_candidates", "_created", "_expected", "_id", "_model", "_usage", "finished")

    def __init__(self, *, created: int, model: str, expected_candidates: int = 1) -> None:
        self.finished = False
        self._created = created
        self._model = model
        self._expected = expected_candidates
        self._id = ""
        self._usage: UsageMetadata | None = None
        self._candidates: dict[int, _CandidateState] = {}

    def feed(self, data: bytes) -> list[ChatChunk]:
        """One event's data -> at most one content chunk, plus the usage chunk when the stream ends."""
        event = decode(data)
        if not self._id:
            self._id = event.response_id or fallback_id(data)
            self._model = event.model_version or self._model
        if event.usage_metadata is not None:
            self._usage = event.usage_metadata
        choices = [
            choice
            for position, candidate in enumerate(event.candidates)
            if (choice := self._choice(candidate, position)) is not None
        ]
        if not event.candidates and event.prompt_feedback and event.prompt_feedback.block_reason:
            self._candidates.setdefault(0, _CandidateState(started=True)).finished = True
            choices = [ChunkChoice(index=0, delta=Delta(role="assistant"), finish_reason=_blocked(event))]
        chunks = [self._chunk(choices)] if choices else []
        if not self.finished and self._done():
            self.finished = True
            usage_chunk = self._chunk([])
            usage_chunk.usage = to_usage(self._usage)
            chunks.append(usage_chunk)
        return chunks

    def _choice(self, candidate: _Candidate, position: int) -> ChunkChoice | None:
        index = candidate.index if candidate.index is not None else position
        state = self._candidates.setdefault(index, _CandidateState())
        read = read_parts(candidate, self._id, index, state.calls)
        first = state.calls
        state.calls += len(read.calls)
        reason = finish_reason(candidate, called=state.calls > 0)
        state.finished = state.finished or reason is not None
        if not (read.text or read.thoughts or read.calls or reason):
            return None
        deltas = [
            ToolCallDelta(
                index=first + offset,
                id=call.id,
                type="function",
                function=FunctionCallDelta(name=call.function.name, arguments=call.function.arguments),
            )
            for offset, call in enumerate(read.calls)
        ]
        delta = Delta(
            role=None if state.started else "assistant",
            content=read.text or None,
            reasoning_content=read.thoughts or None,
            tool_calls=deltas or None,
        )
        state.started = True
        return ChunkChoice(index=index, delta=delta, finish_reason=reason)

    def _done(self) -> bool:
        finished = sum(state.finished for state in self._candidates.values())
        return finished > 0 and finished >= max(self._expected, len(self._candidates))

    def _chunk(self, choices: list[ChunkChoice]) -> ChatChunk:
        return ChatChunk(id=self._id, created=self._created, model=self._model, choices=choices)
