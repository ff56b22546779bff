"""OpenAI Chat Completions, as spoken by OpenAI and every OpenAI-compatible server.

The canonical types already are OpenAI's shapes, so this wire format only swaps the model name, asks
streaming upstreams for usage, passes unknown request fields through, and translates errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from llmgate.core.errors import (
    ContextLengthExceeded,
    GatewayError,
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
from llmgate.core.headroom import NOTHING_UNSUPPORTED, Headroom, ParamReport
from llmgate.core.request import ChatRequest, EmbeddingRequest
from llmgate.core.response import ChatChunk, ChatResponse, EmbeddingResponse, ModelCard, StreamItem
from llmgate.providers.base import HttpCall, Target
from llmgate.providers.http import HttpProvider
from llmgate.providers.ratelimit import openai_headroom, retry_after_seconds

_encoder = msgspec.json.Encoder()
_response_decoder = msgspec.json.Decoder(ChatResponse)
_chunk_decoder = msgspec.json.Decoder(ChatChunk)
_embedding_decoder = msgspec.json.Decoder(EmbeddingResponse)
_any_decoder = msgspec.json.Decoder()

# Servers that have no error code for it say so in words; these are the phrasings of OpenAI, vLLM,
# llama.cpp, Mistral and Groq (e.g. vLLM: "This model's maximum context length is 4096 tokens").
_CONTEXT_WORDS = re.compile(
    r"maximum context length|context[ _]length|context window|too many tokens|prompt is too long"
    r"|exceeds? the (?:model'?s? )?(?:maximum|max) (?:number of )?tokens",
    re.IGNORECASE,
)


class _ModelList(msgspec.Struct, gc=False):
    data: list[ModelCard]


class _Glance(msgspec.Struct, gc=False):
    """What a chunk must show to be forwarded as sent: JSON with choices, and no usage."""

    choices: msgspec.Raw
    usage: msgspec.Raw = msgspec.Raw(b"null")


_glance_decoder = msgspec.json.Decoder(_Glance)
_NULL = msgspec.Raw(b"null")


class OpenAIStream:
    """Translates one OpenAI SSE stream: each ``data:`` is already a canonical chunk.

    Chunks are decoded until the first substantive one (routing needs to see it); after that, a chunk
    that is well-formed JSON with choices and no usage is passed on as the bytes the upstream sent.
    Some compatible servers (Mistral, Groq, OpenRouter, Together) put ``usage`` on their last content
    chunk instead of a separate one; that usage is moved to its own final chunk with no choices, as
    OpenAI sends it, so every client sees one shape.
    """

    __slots__ = ("_passing", "_seen", "_usage_chunk", "finished")

    def __init__(self) -> None:
        self.finished = False
        self._seen = False
        self._passing = False
        self._usage_chunk: ChatChunk | None = None

    def feed(self, data: bytes) -> list[StreamItem]:
        """One event's data -> its chunk; ``[DONE]`` ends the stream; an error event raises."""
        if data == b"[DONE]":
            if not self._seen:  # [DONE] with no chunk at all is not an answer
                raise StreamInterrupted("the upstream ended the stream without sending any chunk")
            self.finished = True
            pending, self._usage_chunk = self._usage_chunk, None
            return [pending] if pending is not None else []
        if self._passing:
            try:
                glance = _glance_decoder.decode(data)
            except msgspec.DecodeError:
                pass  # not a plain chunk (an error event, or unreadable): the full decode says which
            else:
                if glance.usage == _NULL:
                    return [data]
        try:
            chunk = _chunk_decoder.decode(data)
        except msgspec.DecodeError as exc:
            if _is_prompt_filter_report(data):
                return []
            raise stream_error(data) from exc
        self._seen = True
        if not self._passing:
            self._passing = chunk.is_substantive
        usage = chunk.usage
        if usage and chunk.choices:
            chunk.usage = None
            self._usage_chunk = msgspec.structs.replace(chunk, choices=[], usage=usage)
        elif usage:
            self._usage_chunk = None  # the server sent its own usage chunk
        return [chunk]


def _is_prompt_filter_report(data: bytes) -> bool:
    """Azure OpenAI opens a stream with a content-filter report that is not a chunk and carries no output
    (``"object": ""``, ``"choices": []``, ``"prompt_filter_results": [...]``); see
    https://learn.microsoft.com/azure/foundry/openai/concepts/content-streaming
    """
    try:
        payload = _any_decoder.decode(data)
    except msgspec.DecodeError:
        return False
    return isinstance(payload, dict) and "prompt_filter_results" in payload and not payload.get("choices")


def stream_error(data: bytes) -> GatewayError:
    """An in-band error event (``data: {"error": ...}``) or an unreadable event."""
    try:
        payload = _any_decoder.decode(data)
    except msgspec.DecodeError:
        payload = None
    if isinstance(payload, dict) and "error" in payload:
        return error_from_body(payload, status=502)
    return UnexpectedResponse(f"unreadable stream event: {data[:200]!r}")


class OpenAIWire:
    """The OpenAI Chat Completions wire format."""

    stream_format = "sse"
    native_protocol: str | None = None

    def __init__(self, *, extra_headers: Mapping[str, str] | None = None) -> None:
        self._extra_headers = dict(extra_headers or {})

    def check(self, request: ChatRequest) -> ParamReport:
        """OpenAI-compatible servers get every parameter as sent."""
        return NOTHING_UNSUPPORTED

    def headroom(self, headers: Mapping[str, str]) -> Headroom | None:
        """``x-ratelimit-*`` readings."""
        return openai_headroom(headers)

    def path(self, target: Target, operation: str) -> str:
        """Where an operation lives below the base URL (``/chat/completions``, ``/embeddings``, ...)."""
        return f"/{operation}"

    def headers(self, target: Target) -> dict[str, str]:
        """Authentication and content type; OpenAI-compatible servers take a Bearer token."""
        headers = {"Content-Type": "application/json", **self._extra_headers}
        if target.api_key:
            headers["Authorization"] = f"Bearer {target.api_key}"
        return headers

    def chat_call(self, request: ChatRequest, target: Target, *, stream: bool) -> HttpCall:
        """POST /chat/completions with the upstream model name; streams always ask for usage."""
        return HttpCall(
            "POST",
            self.path(target, "chat/completions"),
            self.headers(target),
            _encoder.encode(chat_body(request, target.model, stream=stream)),
        )

    def parse_chat(self, body: bytes) -> ChatResponse:
        """Decode a complete response (an error object with status 200 is still an error)."""
        try:
            return _response_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise stream_error(body) from exc

    def stream_translator(self, request: ChatRequest) -> OpenAIStream:
        """A translator for one stream."""
        return OpenAIStream()

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """Translate an OpenAI-style error response."""
        try:
            payload = _any_decoder.decode(body) if body else None
        except msgspec.DecodeError:
            payload = body.decode("utf-8", "replace")[:500]
        return error_from_body(payload, status=status, retry_after=retry_after_seconds(headers))


def chat_body(request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    """The request as OpenAI JSON, unknown fields included, for the given upstream model."""
    raw_messages = request.raw_messages
    if raw_messages is not None:  # the caller's messages as sent: fields llmgate does not model survive
        body: dict[str, Any] = msgspec.to_builtins(
            msgspec.structs.replace(request, messages=[], raw_messages=None, native=None)
        )
        body["messages"] = raw_messages
    else:
        body = msgspec.to_builtins(msgspec.structs.replace(request, native=None))
    extra = body.pop("extra", None)
    if extra:
        body.update(extra)
    body["model"] = model
    if stream:
        body["stream"] = True
        options = body.get("stream_options")
        body["stream_options"] = (
            {**options, "include_usage": True} if isinstance(options, dict) else {"include_usage": True}
        )
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


def error_from_body(payload: Any, *, status: int, retry_after: float | None = None) -> GatewayError:
    """Map an OpenAI-style error (``{"error": {message, type, param, code}}`` and common variants)."""
    message, param, code = _error_fields(payload, status)
    if status in (400, 413, 422):
        if code == "context_length_exceeded" or _CONTEXT_WORDS.search(message):
            return ContextLengthExceeded(message, param=param or "messages")
        return InvalidRequest(message, param=param, code=code or "invalid_request")
    if status in (401, 403):
        return ProviderAuthError(message)  # the upstream's code (e.g. invalid_api_key) is not the caller's
    if status == 404:
        return ModelNotFound(message, code="model_not_found")
    if status == 408:
        return UpstreamTimeout(message)
    if status == 429:
        if code == "insufficient_quota":
            return RateLimited(message, code="insufficient_quota", retry_after=retry_after)
        return RateLimited(message, retry_after=retry_after)
    if status in (503, 529):
        return Overloaded(message, retry_after=retry_after)
    if status == 504:
        return UpstreamTimeout(message)
    if status >= 500:
        return UpstreamError(message, retry_after=retry_after)
    if 200 <= status < 300:
        return UnexpectedResponse(message)
    return UpstreamError(f"HTTP {status}: {message}")


def _error_fields(payload: Any, status: int) -> tuple[str, str | None, str | None]:
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(error, dict):
        message = error.get("message") or error.get("detail") or error.get("msg") or str(error)[:500]
        param = error.get("param") if isinstance(error.get("param"), str) else None
        code = error.get("code")
        return str(message), param, code if isinstance(code, str) else None
    if isinstance(error, str) and error:
        return error, None, None
    return f"upstream answered HTTP {status}", None, None


class OpenAIProvider(HttpProvider):
    """OpenAI or any OpenAI-compatible server: chat, streaming, embeddings and model listing."""

    async def embed(self, request: EmbeddingRequest, target: Target) -> EmbeddingResponse:
        """POST /embeddings."""
        body: dict[str, Any] = msgspec.to_builtins(request)
        body.update(body.pop("extra", None) or {})
        body["model"] = target.model
        wire = self._openai_wire
        call = HttpCall("POST", wire.path(target, "embeddings"), wire.headers(target), _encoder.encode(body))
        status, headers, raw = await self.send(call, target)
        if status >= 400:
            raise self._error(status, headers, raw, target)
        try:
            return _embedding_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise stream_error(raw) from exc

    async def list_models(self, target: Target) -> list[ModelCard]:
        """GET /models."""
        wire = self._openai_wire
        call = HttpCall("GET", wire.path(target, "models"), wire.headers(target))
        status, headers, raw = await self.send(call, target)
        if status >= 400:
            raise self._error(status, headers, raw, target)
        try:
            return msgspec.json.decode(raw, type=_ModelList).data
        except msgspec.DecodeError as exc:
            raise stream_error(raw) from exc

    @property
    def _openai_wire(self) -> OpenAIWire:
        assert isinstance(self.wire, OpenAIWire)
        return self.wire
