"""Cohere's v2 API: ``POST /v2/chat`` (whole, or an SSE stream of typed events) and ``POST /v2/embed``.

Cohere v2 messages are close to OpenAI's (system/user/assistant/tool roles, OpenAI-shaped tools and tool
calls), so messages keep their shape; sampling parameters are renamed (``top_p`` -> ``p``, ``stop`` ->
``stop_sequences``) and the answer is translated back: content items -> text, ``tool_plan`` and thinking
items -> ``reasoning_content``, upper-case finish reasons -> OpenAI's.
Reference: https://docs.cohere.com/reference/chat, stream events: https://docs.cohere.com/docs/streaming,
embeddings: https://docs.cohere.com/reference/embed, errors: https://docs.cohere.com/reference/errors.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from time import time
from typing import Any

import msgspec
from msgspec import UNSET

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
from llmgate.core.headroom import NOTHING_UNSUPPORTED, Headroom, ParamReport
from llmgate.core.request import (
    AudioPart,
    ChatRequest,
    EmbeddingRequest,
    FilePart,
    FunctionCall,
    ImagePart,
    Message,
    ResponseFormat,
    ToolCall,
    ToolChoiceFunction,
)
from llmgate.core.response import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    Embedding,
    EmbeddingResponse,
    FunctionCallDelta,
    ResponseMessage,
    StreamItem,
    ToolCallDelta,
    encode_vector,
)
from llmgate.core.usage import Usage, make_usage
from llmgate.providers.base import HttpCall, ProviderSpec, Target
from llmgate.providers.http import HttpProvider
from llmgate.providers.ratelimit import retry_after_seconds
from llmgate.providers.transport import Transport

DEFAULT_BASE_URL = "https://api.cohere.com"

# Canonical parameters Cohere has no equivalent for; leaving them out does not change what is asked.
_DROPPED = ("logit_bias", "logprobs", "top_logprobs", "user", "metadata", "parallel_tool_calls")
# Cohere-native request fields a caller may send as extra fields (https://docs.cohere.com/reference/chat).
_PASSTHROUGH = frozenset(
    {"k", "safety_mode", "thinking", "documents", "citation_options", "strict_tools", "priority"}
)
_FINISH = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "CONTENT_BLOCKED": "content_filter",
}
# Cohere answers 400 with error_type TOO_MANY_TOKENS and "too many tokens: size limit exceeded by N tokens"
# (recorded); older answers carry no error_type, so the phrasing is the fallback.
_CONTEXT_WORDS = re.compile(r"too many tokens|size limit exceeded|context (?:length|window)", re.IGNORECASE)
_encoder = msgspec.json.Encoder()


# --- Cohere's shapes (only the fields llmgate reads) -----------------------------------------------------


class _Tokens(msgspec.Struct):
    input_tokens: float = 0
    output_tokens: float = 0


class _Usage(msgspec.Struct):
    billed_units: _Tokens | None = None
    tokens: _Tokens | None = None
    cached_tokens: float = 0


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    id: str | None = None
    function: _Function | None = None


class _ContentItem(msgspec.Struct):
    type: str = "text"
    text: str | None = None
    thinking: str | None = None


class _Message(msgspec.Struct):
    content: list[_ContentItem] | None = None
    tool_plan: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Response(msgspec.Struct):
    id: str
    finish_reason: str
    message: _Message | None = None
    usage: _Usage | None = None


class _DeltaMessage(msgspec.Struct):
    # message-start carries empty lists; the other events one object.
    content: _ContentItem | list[_ContentItem] | None = None
    tool_plan: str | None = None
    tool_calls: _ToolCall | list[_ToolCall] | None = None


class _EventDelta(msgspec.Struct):
    message: _DeltaMessage | None = None
    finish_reason: str | None = None
    usage: _Usage | None = None
    error: str | None = None


class _Event(msgspec.Struct):
    type: str
    id: str | None = None
    index: int = 0
    delta: _EventDelta | None = None


class _ErrorBody(msgspec.Struct):
    message: str | None = None
    error_type: str | None = None


class _Embeddings(msgspec.Struct):
    floats: list[list[float]] = msgspec.field(default_factory=list, name="float")


class _EmbedMeta(msgspec.Struct):
    billed_units: _Tokens | None = None


class _EmbedResponse(msgspec.Struct):
    embeddings: _Embeddings
    meta: _EmbedMeta | None = None


_response_decoder = msgspec.json.Decoder(_Response)
_event_decoder = msgspec.json.Decoder(_Event)
_error_decoder = msgspec.json.Decoder(_ErrorBody)
_embed_decoder = msgspec.json.Decoder(_EmbedResponse)


# --- the wire format --------------------------------------------------------------------------------------


class CohereWire:
    """The Cohere v2 Chat wire format."""

    stream_format = "sse"
    native_protocol: str | None = None

    def __init__(self, *, extra_headers: Mapping[str, str] | None = None) -> None:
        self._extra_headers = dict(extra_headers or {})

    def check(self, request: ChatRequest) -> ParamReport:
        """Dropped: parameters Cohere has no use for; refused: ``n`` > 1, legacy functions, audio/files."""
        dropped = [name for name in _DROPPED if getattr(request, name) not in (None, False)]
        dropped += sorted(set(request.extra) - _PASSTHROUGH)
        refused = [name for name in ("functions", "function_call") if getattr(request, name) is not None]
        if request.n is not None and request.n > 1:
            refused.insert(0, "n")
        refused += _unsupported_content(request.messages)
        if not dropped and not refused:
            return NOTHING_UNSUPPORTED
        return ParamReport(dropped=tuple(dropped), refused=tuple(refused))

    def headroom(self, headers: Mapping[str, str]) -> Headroom | None:
        """Trial keys report their per-minute call budget (``x-trial-endpoint-call-{limit,remaining}``);
        production keys send no rate-limit headers (https://docs.cohere.com/docs/rate-limits)."""
        limit, remaining = (
            headers.get("x-trial-endpoint-call-limit"),
            headers.get("x-trial-endpoint-call-remaining"),
        )
        if not limit or not remaining or not (limit.isdigit() and remaining.isdigit()):
            return None
        return Headroom(requests_limit=int(limit), requests_remaining=int(remaining))

    def headers(self, target: Target) -> dict[str, str]:
        """Content type and the Bearer key."""
        headers = {"Content-Type": "application/json", **self._extra_headers}
        if target.api_key:
            headers["Authorization"] = f"Bearer {target.api_key}"
        return headers

    def chat_call(self, request: ChatRequest, target: Target, *, stream: bool) -> HttpCall:
        """POST /v2/chat."""
        body = _encoder.encode(chat_body(request, target.model, stream=stream))
        return HttpCall("POST", "/v2/chat", self.headers(target), body)

    def parse_chat(self, body: bytes) -> ChatResponse:
        """A complete v2 chat response -> canonical (``model`` is left empty: Cohere does not echo it)."""
        try:
            response = _response_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise UnexpectedResponse(f"cohere: unreadable response: {body[:200]!r}") from exc
        message = response.message or _Message()
        text = "".join(item.text or "" for item in message.content or () if item.type == "text")
        thinking = "".join(item.thinking or "" for item in message.content or () if item.type == "thinking")
        reasoning = thinking + (message.tool_plan or "")
        calls = [_tool_call(call) for call in message.tool_calls or ()]
        choice = Choice(
            index=0,
            message=ResponseMessage(
                content=text or None, tool_calls=calls or UNSET, reasoning_content=reasoning or UNSET
            ),
            finish_reason=finish_reason(response.finish_reason),
        )
        return ChatResponse(
            id=response.id, created=int(time()), model="", choices=[choice], usage=_usage(response.usage)
        )

    def stream_translator(self, request: ChatRequest) -> CohereStream:
        """A translator for one stream."""
        return CohereStream()

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """Cohere's ``{"message": ..., "error_type"?: ...}`` -> the core error tree."""
        try:
            error = _error_decoder.decode(body)
            message, error_type = error.message or body.decode("utf-8", "replace")[:500], error.error_type
        except msgspec.DecodeError:
            message, error_type = body.decode("utf-8", "replace")[:500], None
        return error_for_status(
            status, message or f"upstream answered HTTP {status}", error_type, retry_after_seconds(headers)
        )


# --- request ----------------------------------------------------------------------------------------------


def chat_body(request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    """The request as a Cohere v2 chat body for the given upstream model."""
    body: dict[str, Any] = {"model": model, "messages": [_message(message) for message in request.messages]}
    body.update(_tools(request))
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    for key, value in (
        ("temperature", request.temperature),
        ("p", request.top_p),
        ("max_tokens", request.output_limit),
        ("stop_sequences", stop),
        ("seed", request.seed),
        ("frequency_penalty", request.frequency_penalty),
        ("presence_penalty", request.presence_penalty),
        ("response_format", _response_format(request.response_format)),
    ):
        if value is not None:
            body[key] = value
    if request.reasoning_effort is not None:  # reasoning models: https://docs.cohere.com/docs/reasoning
        body["thinking"] = {"type": "disabled" if request.reasoning_effort == "none" else "enabled"}
    body.update((key, value) for key, value in request.extra.items() if key in _PASSTHROUGH)
    body["stream"] = stream
    return body


def _message(message: Message) -> dict[str, Any]:
    role = "system" if message.role == "developer" else message.role
    if role == "function":
        raise InvalidRequest("Cohere has no legacy function messages; use tools", param="messages")
    out: dict[str, Any] = {"role": role}
    if message.content is not None:
        # Strings and text/image parts have the same shape in Cohere v2.
        if not isinstance(message.content, str) and _unsupported_content([message]):
            raise InvalidRequest("Cohere accepts only text (and images in user messages)", param="messages")
        out["content"] = msgspec.to_builtins(message.content)
    if message.tool_calls:
        out["tool_calls"] = msgspec.to_builtins(message.tool_calls)
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


def _unsupported_content(messages: list[Message]) -> list[str]:
    found: set[str] = set()
    for message in messages:
        if message.role == "function":
            found.add("messages")
        if isinstance(message.content, list):
            for part in message.content:
                if isinstance(part, AudioPart):
                    found.add("input_audio")
                elif isinstance(part, FilePart):
                    found.add("file")
                elif isinstance(part, ImagePart) and message.role != "user":
                    found.add("image_url")
    return sorted(found)


def _tools(request: ChatRequest) -> dict[str, Any]:
    """``tools``, ``tool_choice`` and ``strict_tools``: Cohere can force "some tool" (REQUIRED) or none
    (NONE); forcing one named tool is expressed by offering only that tool, REQUIRED."""
    if not request.tools:
        return {}
    tools, choice = request.tools, request.tool_choice
    if isinstance(choice, ToolChoiceFunction):
        tools = [tool for tool in tools if tool.function.name == choice.function.name]
        if not tools:
            raise InvalidRequest(
                f"tool_choice names an unknown tool: {choice.function.name}", param="tool_choice"
            )
    # Cohere has no per-function "strict"; one request-wide strict_tools flag does the same job.
    functions = [msgspec.structs.replace(tool.function, strict=None) for tool in tools]
    out: dict[str, Any] = {
        "tools": [{"type": "function", "function": msgspec.to_builtins(f)} for f in functions]
    }
    if any(tool.function.strict for tool in tools):
        out["strict_tools"] = True
    if choice == "none":
        out["tool_choice"] = "NONE"
    elif choice == "required" or isinstance(choice, ToolChoiceFunction):
        out["tool_choice"] = "REQUIRED"
    return out


def _response_format(response_format: ResponseFormat | None) -> dict[str, Any] | None:
    """JSON mode; a JSON schema rides in ``json_schema`` (https://docs.cohere.com/docs/structured-outputs)."""
    if response_format is None or response_format.type == "text":
        return None
    schema = response_format.json_schema.schema if response_format.json_schema is not None else None
    return {"type": "json_object", "json_schema": schema} if schema is not None else {"type": "json_object"}


# --- response ---------------------------------------------------------------------------------------------


def finish_reason(raw: str, error: str | None = None) -> str:
    """Cohere's finish reason -> OpenAI's; ERROR and TIMEOUT are failures, not endings. Unknown ones are
    surfaced lower-cased (Cohere's SDKs have spelled them in both cases)."""
    key = raw.upper()
    if key == "ERROR":
        raise UpstreamError(f"cohere: generation failed: {error or 'finish_reason ERROR'}")
    if key == "TIMEOUT":
        raise UpstreamTimeout(f"cohere: generation timed out: {error or 'finish_reason TIMEOUT'}")
    return _FINISH.get(key, raw.lower())


def _tool_call(call: _ToolCall) -> ToolCall:
    function = call.function or _Function()
    return ToolCall(
        id=call.id or "", function=FunctionCall(name=function.name or "", arguments=function.arguments or "")
    )


def _usage(usage: _Usage | None) -> Usage | None:
    """``tokens`` (what the model read and wrote, Cohere's own preamble included) is preferred over
    ``billed_units`` (what is charged, smaller): it is what fills the context window and what token
    rate limits count. ``cached_tokens`` is part of ``tokens.input_tokens``, so only kept alongside it."""
    if usage is None:
        return None
    if usage.tokens is not None:
        counts, cached = usage.tokens, int(usage.cached_tokens)
    elif usage.billed_units is not None:
        counts, cached = usage.billed_units, 0
    else:
        return None
    return make_usage(prompt=int(counts.input_tokens), completion=int(counts.output_tokens), cached=cached)


class CohereStream:
    """Translates one v2 chat stream. Citation events are ignored: OpenAI chunks have no place for them and
    the cited text already arrived as content."""

    __slots__ = ("_created", "_id", "finished")

    def __init__(self) -> None:
        self.finished = False
        self._id = ""
        self._created = int(time())

    def feed(self, data: bytes) -> list[ChatChunk]:
        """One event's data -> chunks; message-end ends the stream; unknown events raise."""
        if data == b"[DONE]":  # sent after message-end (recorded); before it, the stream is cut short
            if self.finished:
                return []
            raise UnexpectedResponse("cohere: the stream ended without message-end")
        try:
            event = _event_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise _stream_error(data) from exc
        if self.finished:
            raise UnexpectedResponse(f"cohere: {event.type} event after message-end")
        message = event.delta.message if event.delta is not None else None
        match event.type:
            case "message-start":
                self._id = event.id or ""
                return [self._chunk(Delta(role="assistant"))]
            case "content-start" | "content-delta":
                content = message.content if message is not None else None
                if isinstance(content, _ContentItem) and (content.text or content.thinking):
                    return [
                        self._chunk(Delta(content=content.text or None, reasoning_content=content.thinking))
                    ]
                return []
            case "tool-plan-delta":
                plan = message.tool_plan if message is not None else None
                return [self._chunk(Delta(reasoning_content=plan))] if plan else []
            case "tool-call-start" | "tool-call-delta":
                return self._tool_call(event.index, message)
            case "content-end" | "tool-call-end" | "citation-start" | "citation-end":
                return []
            case "message-end":
                return self._end(event.delta)
        raise UnexpectedResponse(f"cohere: unknown stream event type {event.type!r}")

    def _tool_call(self, index: int, message: _DeltaMessage | None) -> list[ChatChunk]:
        call = message.tool_calls if message is not None else None
        if not isinstance(call, _ToolCall):
            raise UnexpectedResponse("cohere: tool-call event without a tool call")
        function = call.function or _Function()
        delta = ToolCallDelta(
            index=index,
            id=call.id,
            type="function" if call.id else None,
            function=FunctionCallDelta(name=function.name, arguments=function.arguments or None),
        )
        return [self._chunk(Delta(tool_calls=[delta]))]

    def _end(self, delta: _EventDelta | None) -> list[ChatChunk]:
        if delta is None or not delta.finish_reason:
            raise UnexpectedResponse("cohere: message-end without a finish reason")
        finish = finish_reason(delta.finish_reason, delta.error)
        self.finished = True
        usage = ChatChunk(id=self._id, created=self._created, model="", choices=[], usage=_usage(delta.usage))
        return [self._chunk(Delta(), finish), usage]

    def _chunk(self, delta: Delta, finish: str | None = None) -> ChatChunk:
        choice = ChunkChoice(index=0, delta=delta, finish_reason=finish)
        return ChatChunk(id=self._id, created=self._created, model="", choices=[choice])


def _stream_error(data: bytes) -> GatewayError:
    """An event without a type: an in-band ``{"message": ...}`` error, or something unreadable."""
    try:
        error = _error_decoder.decode(data)
    except msgspec.DecodeError:
        return UnexpectedResponse(f"cohere: unreadable stream event: {data[:200]!r}")
    if error.message:
        return error_for_status(502, error.message, error.error_type, None)
    return UnexpectedResponse(f"cohere: unreadable stream event: {data[:200]!r}")


def error_for_status(
    status: int, message: str, error_type: str | None, retry_after: float | None
) -> GatewayError:
    """Cohere's status codes (https://docs.cohere.com/reference/errors) -> the core error tree."""
    if status in (400, 413, 422):
        if error_type == "TOO_MANY_TOKENS" or _CONTEXT_WORDS.search(message):
            return ContextLengthExceeded(message, param="messages")
        return InvalidRequest(message, code=(error_type or "invalid_request").lower())
    if status in (401, 403, 498):  # 498: invalid token
        return ProviderAuthError(message)
    if status == 402:  # payment required: this key's billing, another key may still work
        return RateLimited(message, code="insufficient_quota")
    if status == 404:
        return ModelNotFound(message)
    if status == 429:
        return RateLimited(message, retry_after=retry_after)
    if status == 503:
        return Overloaded(message, retry_after=retry_after)
    if status == 504:
        return UpstreamTimeout(message)
    if status >= 500 or status == 499:  # 499: Cohere says the request was cancelled
        return UpstreamError(message, retry_after=retry_after)
    return UpstreamError(f"HTTP {status}: {message}")


# --- the provider -----------------------------------------------------------------------------------------


class CohereProvider(HttpProvider):
    """Cohere: chat, streaming and embeddings. Cohere does not echo the model; the target's is filled in."""

    async def chat(self, request: ChatRequest, target: Target) -> ChatResponse:
        """One complete response, named after the upstream model."""
        response = await super().chat(request, target)
        response.model = response.model or target.model
        return response

    async def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[list[StreamItem]]:
        """Streamed chunks, named after the upstream model (Cohere's translator makes no raw ones)."""
        async for batch in super().stream(request, target):
            for chunk in batch:
                if isinstance(chunk, ChatChunk):
                    chunk.model = target.model
            yield batch

    async def embed(self, request: EmbeddingRequest, target: Target) -> EmbeddingResponse:
        """POST /v2/embed. ``input_type`` defaults to ``search_document`` (Cohere requires one for v3+
        models); callers override it with an extra ``input_type`` field."""
        call = HttpCall(
            "POST",
            "/v2/embed",
            self._cohere_wire.headers(target),
            _encoder.encode(embed_body(request, target.model)),
        )
        status, headers, raw = await self.send(call, target)
        if status >= 400:
            raise self._error(status, headers, raw, target)
        try:
            answer = _embed_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise UnexpectedResponse(
                f"cohere: unreadable embed response: {raw[:200]!r}", provider=self.name
            ) from exc
        vectors = answer.embeddings.floats
        billed = answer.meta.billed_units if answer.meta is not None else None
        tokens = int(billed.input_tokens) if billed is not None else 0
        return EmbeddingResponse(
            data=[
                Embedding(index=index, embedding=encode_vector(vector, request.encoding_format))
                for index, vector in enumerate(vectors)
            ],
            model=target.model,
            usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
        )

    @property
    def _cohere_wire(self) -> CohereWire:
        assert isinstance(self.wire, CohereWire)
        return self.wire


def embed_body(request: EmbeddingRequest, model: str) -> dict[str, Any]:
    """The embeddings request as a Cohere v2 embed body (float vectors; base64 is encoded here)."""
    texts = request.texts()
    if not texts or (not isinstance(request.input, str) and len(texts) != len(request.input)):
        raise InvalidRequest("Cohere embeds text only, not token ids", param="input")
    body: dict[str, Any] = {
        "model": model,
        "texts": texts,
        "input_type": request.extra.get("input_type", "search_document"),
        "embedding_types": ["float"],
    }
    if request.dimensions is not None:
        body["output_dimension"] = request.dimensions
    if "truncate" in request.extra:
        body["truncate"] = request.extra["truncate"]
    return body


def build(spec: ProviderSpec, transport: Transport) -> CohereProvider:
    """A Cohere provider from its spec (``base_url`` defaults to https://api.cohere.com)."""
    return CohereProvider(
        name=spec.name,
        wire=CohereWire(extra_headers=spec.headers),
        transport=transport,
        base_url=spec.base_url or DEFAULT_BASE_URL,
    )
