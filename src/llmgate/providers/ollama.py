"""Ollama's native API: ``POST /api/chat`` (whole, or NDJSON lines), ``POST /api/embed``, ``GET /api/tags``.

Ollama's messages carry plain-string content with base64 ``images`` beside it, tool-call arguments as JSON
objects, and sampling parameters inside ``options``; a stream is one JSON object per line, the last with
``done: true``, ``done_reason`` and the token counts. Tool calls have no ids before Ollama 0.12, so ids
are synthesised where missing. Reference: https://github.com/ollama/ollama/blob/main/docs/api.md and
https://docs.ollama.com/api (errors: https://docs.ollama.com/api/errors).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import uuid4

import msgspec
from msgspec import UNSET

from llmgate.core.errors import GatewayError, InvalidRequest, UnexpectedResponse
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
    ModelCard,
    ResponseMessage,
    ToolCallDelta,
    encode_vector,
)
from llmgate.core.usage import Usage, make_usage
from llmgate.providers.base import HttpCall, ProviderSpec, Target
from llmgate.providers.http import HttpProvider
from llmgate.providers.openai import error_from_body
from llmgate.providers.ratelimit import retry_after_seconds
from llmgate.providers.transport import Transport

DEFAULT_BASE_URL = "http://localhost:11434"

# Canonical parameters Ollama has no equivalent for; leaving them out does not change what is asked.
_DROPPED = ("logit_bias", "logprobs", "top_logprobs", "user", "metadata", "parallel_tool_calls")
# Ollama-native top-level fields and model options a caller may send as extra fields.
_PASSTHROUGH = frozenset({"keep_alive", "think", "truncate", "shift"})
_OPTION_EXTRAS = frozenset(
    {"options", "top_k", "min_p", "typical_p", "num_ctx", "repeat_penalty", "repeat_last_n"}
)
# ``think`` takes a bool or "low"/"medium"/"high" (https://docs.ollama.com/capabilities/thinking).
_THINK: Mapping[str, bool | str] = {
    "none": False,
    "minimal": "low",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "xhigh": "high",
}
_encoder = msgspec.json.Encoder()
_any_decoder = msgspec.json.Decoder()


# --- Ollama's shapes (only the fields llmgate reads) -----------------------------------------------------


class _Function(msgspec.Struct):
    name: str = ""
    arguments: dict[str, Any] | str = {}


class _ToolCall(msgspec.Struct):
    function: _Function
    id: str | None = None


class _Message(msgspec.Struct):
    content: str = ""
    thinking: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Line(msgspec.Struct):
    """A complete answer, or one line of a stream (an error line has only ``error`` and maybe ``status``)."""

    model: str = ""
    created_at: datetime | None = None
    message: _Message | None = None
    done: bool = False
    done_reason: str | None = None
    prompt_eval_count: int = 0
    eval_count: int = 0
    error: str | None = None
    status: int | None = None


class _EmbedResponse(msgspec.Struct):
    embeddings: list[list[float]]
    model: str = ""
    prompt_eval_count: int = 0


class _Tag(msgspec.Struct):
    name: str
    modified_at: datetime | None = None


class _Tags(msgspec.Struct):
    models: list[_Tag]


_line_decoder = msgspec.json.Decoder(_Line)
_embed_decoder = msgspec.json.Decoder(_EmbedResponse)
_tags_decoder = msgspec.json.Decoder(_Tags)


# --- the wire format --------------------------------------------------------------------------------------


class OllamaWire:
    """The Ollama native chat wire format."""

    stream_format = "ndjson"
    native_protocol: str | None = None

    def __init__(self, *, extra_headers: Mapping[str, str] | None = None) -> None:
        self._extra_headers = dict(extra_headers or {})

    def check(self, request: ChatRequest) -> ParamReport:
        """Dropped: parameters Ollama has no use for; refused: ``n`` > 1, forced tool use, legacy functions,
        images by URL (Ollama takes image bytes only), audio and files."""
        dropped = [name for name in _DROPPED if getattr(request, name) not in (None, False)]
        if request.reasoning_effort is not None and request.reasoning_effort not in _THINK:
            dropped.append("reasoning_effort")
        dropped += sorted(set(request.extra) - _PASSTHROUGH - _OPTION_EXTRAS)
        refused = [name for name in ("functions", "function_call") if getattr(request, name) is not None]
        if request.n is not None and request.n > 1:
            refused.insert(0, "n")
        if request.tool_choice is not None and request.tool_choice not in ("auto", "none"):
            refused.append("tool_choice")  # Ollama cannot force a tool call
        refused += _unsupported_content(request.messages)
        if not dropped and not refused:
            return NOTHING_UNSUPPORTED
        return ParamReport(dropped=tuple(dropped), refused=tuple(refused))

    def headroom(self, headers: Mapping[str, str]) -> Headroom | None:
        """Ollama sends no rate-limit headers."""
        return None

    def headers(self, target: Target) -> dict[str, str]:
        """Content type; a Bearer key only when one is configured (ollama.com, or a proxy in front)."""
        headers = {"Content-Type": "application/json", **self._extra_headers}
        if target.api_key:
            headers["Authorization"] = f"Bearer {target.api_key}"
        return headers

    def chat_call(self, request: ChatRequest, target: Target, *, stream: bool) -> HttpCall:
        """POST /api/chat; ``stream`` is always explicit, as Ollama streams when it is left out."""
        body = _encoder.encode(chat_body(request, target.model, stream=stream))
        return HttpCall("POST", "/api/chat", self.headers(target), body)

    def parse_chat(self, body: bytes) -> ChatResponse:
        """A complete ``/api/chat`` answer -> canonical."""
        line = _decode_line(body)
        if not line.done:
            raise UnexpectedResponse("ollama: the answer is not complete (done is false)")
        message = line.message or _Message()  # present: _decode_line checked
        calls = [_tool_call(call, position) for position, call in enumerate(message.tool_calls or ())]
        choice = Choice(
            index=0,
            message=ResponseMessage(
                content=message.content or None,
                tool_calls=calls or UNSET,
                reasoning_content=message.thinking or UNSET,
            ),
            finish_reason=finish_reason(line.done_reason, tool_calls=bool(calls)),
        )
        return ChatResponse(
            id=_answer_id(line),
            created=_epoch(line.created_at),
            model=line.model,
            choices=[choice],
            usage=make_usage(prompt=line.prompt_eval_count, completion=line.eval_count),
        )

    def stream_translator(self, request: ChatRequest) -> OllamaStream:
        """A translator for one stream."""
        return OllamaStream()

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """Ollama's ``{"error": "..."}`` -> the core error tree (404: model not pulled; 400 with the words
        "context length": the prompt does not fit)."""
        try:
            payload = _any_decoder.decode(body) if body else None
        except msgspec.DecodeError:
            payload = body.decode("utf-8", "replace")[:500]
        return error_from_body(payload, status=status, retry_after=retry_after_seconds(headers))


# --- request ----------------------------------------------------------------------------------------------


def chat_body(request: ChatRequest, model: str, *, stream: bool) -> dict[str, Any]:
    """The request as an Ollama ``/api/chat`` body for the given upstream model."""
    body: dict[str, Any] = {"model": model, "messages": _messages(request.messages), "stream": stream}
    if request.tools and request.tool_choice != "none":  # "none": not offering the tools is the same
        body["tools"] = msgspec.to_builtins(request.tools)
    response_format = _format(request.response_format)
    if response_format is not None:
        body["format"] = response_format
    options = _options(request)
    if options:
        body["options"] = options
    think = _THINK.get(request.reasoning_effort or "")
    if think is not None:
        body["think"] = think
    body.update((key, value) for key, value in request.extra.items() if key in _PASSTHROUGH)
    return body


def _options(request: ChatRequest) -> dict[str, Any]:
    stop = [request.stop] if isinstance(request.stop, str) else request.stop
    options = {
        key: value
        for key, value in (
            ("temperature", request.temperature),
            ("top_p", request.top_p),
            ("num_predict", request.output_limit),
            ("stop", stop),
            ("seed", request.seed),
            ("presence_penalty", request.presence_penalty),
            ("frequency_penalty", request.frequency_penalty),
        )
        if value is not None
    }
    extra = request.extra
    options.update((key, extra[key]) for key in _OPTION_EXTRAS - {"options"} if key in extra)
    if isinstance(extra.get("options"), dict):
        options.update(extra["options"])
    return options


def _format(response_format: ResponseFormat | None) -> str | dict[str, Any] | None:
    """``"json"`` for JSON mode, the schema itself for structured outputs
    (https://docs.ollama.com/capabilities/structured-outputs)."""
    if response_format is None or response_format.type == "text":
        return None
    schema = response_format.json_schema.schema if response_format.json_schema is not None else None
    return schema if schema is not None else "json"


def _messages(messages: list[Message]) -> list[dict[str, Any]]:
    """Ollama names a tool result by the tool's name (``tool_name``); newer servers also read
    ``tool_call_id``. The name is looked up from the assistant turn that made the call."""
    tool_names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for message in messages:
        role = "system" if message.role == "developer" else message.role
        if role == "function":
            raise InvalidRequest("Ollama has no legacy function messages; use tools", param="messages")
        item: dict[str, Any] = {"role": role, "content": message.text()}
        images = _images(message)
        if images:
            item["images"] = images
        if message.tool_calls:
            item["tool_calls"] = [_ollama_tool_call(call) for call in message.tool_calls]
            tool_names.update((call.id, call.function.name) for call in message.tool_calls)
        if message.tool_call_id is not None:
            item["tool_call_id"] = message.tool_call_id
            name = tool_names.get(message.tool_call_id) or message.name
            if name:
                item["tool_name"] = name
        out.append(item)
    return out


def _ollama_tool_call(call: ToolCall) -> dict[str, Any]:
    """Arguments travel as a JSON object, not a string."""
    try:
        arguments = _any_decoder.decode(call.function.arguments) if call.function.arguments.strip() else {}
    except msgspec.DecodeError as exc:
        raise InvalidRequest(
            f"tool call {call.id}: arguments are not JSON: {call.function.arguments[:100]!r}",
            param="messages",
        ) from exc
    return {"id": call.id, "function": {"name": call.function.name, "arguments": arguments}}


def _images(message: Message) -> list[str]:
    """Base64 payloads of ``data:`` image URLs; Ollama cannot fetch URLs (``check`` refuses them)."""
    if isinstance(message.content, str) or message.content is None:
        return []
    images = []
    for part in message.content:
        if isinstance(part, ImagePart):
            header, comma, payload = part.image_url.url.partition(",")
            if not (header.startswith("data:") and header.endswith(";base64") and comma):
                raise InvalidRequest("Ollama takes images as base64 data: URLs only", param="messages")
            images.append(payload)
        elif isinstance(part, AudioPart | FilePart):
            raise InvalidRequest("Ollama accepts text and images only", param="messages")
    return images


def _unsupported_content(messages: list[Message]) -> list[str]:
    found: set[str] = set()
    for message in messages:
        if message.role == "function":
            found.add("messages")
        for part in message.content if isinstance(message.content, list) else ():
            if isinstance(part, AudioPart):
                found.add("input_audio")
            elif isinstance(part, FilePart):
                found.add("file")
            elif isinstance(part, ImagePart) and not part.image_url.url.startswith("data:"):
                found.add("image_url")
    return sorted(found)


# --- response ---------------------------------------------------------------------------------------------


def finish_reason(done_reason: str | None, *, tool_calls: bool) -> str:
    """Ollama says ``stop`` also when it stopped to call tools; a missing reason (servers before 0.1.33)
    means it stopped; ``length`` is ``length``; anything else (``load``, ``unload``) is surfaced as is."""
    if done_reason in (None, "", "stop"):
        return "tool_calls" if tool_calls else "stop"
    return done_reason


def _tool_call(call: _ToolCall, position: int) -> ToolCall:
    name, arguments = call.function.name, _arguments(call.function.arguments)
    return ToolCall(id=call.id or _call_id(position, name, arguments), function=FunctionCall(name, arguments))


def _arguments(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else _encoder.encode(arguments).decode()


def _call_id(position: int, name: str, arguments: str) -> str:
    """Deterministic: the call's position in the answer plus a digest of what it calls, so the same call
    gets the same id streamed or not, and calls of different turns rarely share one."""
    digest = hashlib.sha256(f"{name}\0{arguments}".encode()).hexdigest()[:8]
    return f"call_{position}_{digest}"


def _decode_line(data: bytes) -> _Line:
    try:
        line = _line_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise UnexpectedResponse(f"ollama: unreadable answer: {data[:200]!r}") from exc
    if line.error is not None:
        # Errors after the stream has started arrive as a line, some with the status they would have had.
        raise error_from_body({"error": line.error}, status=line.status or 500)
    if line.message is None:  # e.g. an /api/generate answer ({"response": ...}): not a chat answer
        raise UnexpectedResponse(f"ollama: answer without a message: {data[:200]!r}")
    return line


def _epoch(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment is not None else 0


def _answer_id(line: _Line) -> str:
    """Ollama gives answers no id. One derived from the model and the (nanosecond) timestamp of the
    answer's first line keeps the id the same however the same bytes are read."""
    if line.created_at is None:
        return f"chatcmpl-{uuid4().hex}"
    digest = hashlib.sha256(f"{line.model}|{line.created_at.isoformat()}".encode()).hexdigest()
    return f"chatcmpl-{digest[:24]}"


class OllamaStream:
    """Translates one NDJSON stream: each line is a partial answer; ``done: true`` ends it."""

    __slots__ = ("_calls", "_created", "_id", "_model", "finished")

    def __init__(self) -> None:
        self.finished = False
        self._id = ""
        self._created = 0
        self._model = ""
        self._calls = 0

    def feed(self, data: bytes) -> list[ChatChunk]:
        """One line -> its chunks; the ``done`` line adds the finish chunk and the usage chunk."""
        line = _decode_line(data)
        if self.finished:
            raise UnexpectedResponse("ollama: a line arrived after done")
        chunks: list[ChatChunk] = []
        first = not self._id
        if first:
            self._id, self._created, self._model = _answer_id(line), _epoch(line.created_at), line.model
        delta = self._delta(line.message or _Message(), first=first)
        if delta is not None:
            chunks.append(self._chunk(delta))
        if line.done:
            self.finished = True
            chunks.append(self._chunk(Delta(), finish_reason(line.done_reason, tool_calls=self._calls > 0)))
            usage = make_usage(prompt=line.prompt_eval_count, completion=line.eval_count)
            chunks.append(
                ChatChunk(id=self._id, created=self._created, model=self._model, choices=[], usage=usage)
            )
        return chunks

    def _delta(self, message: _Message, *, first: bool) -> Delta | None:
        calls = []
        for call in message.tool_calls or ():
            complete = _tool_call(call, self._calls)
            calls.append(
                ToolCallDelta(
                    index=self._calls,
                    id=complete.id,
                    type="function",
                    function=FunctionCallDelta(
                        name=complete.function.name, arguments=complete.function.arguments
                    ),
                )
            )
            self._calls += 1
        if not (first or message.content or message.thinking or calls):
            return None
        return Delta(
            role="assistant" if first else None,
            content=message.content or None,
            reasoning_content=message.thinking or None,
            tool_calls=calls or None,
        )

    def _chunk(self, delta: Delta, finish: str | None = None) -> ChatChunk:
        choice = ChunkChoice(index=0, delta=delta, finish_reason=finish)
        return ChatChunk(id=self._id, created=self._created, model=self._model, choices=[choice])


# --- the provider -----------------------------------------------------------------------------------------


class OllamaProvider(HttpProvider):
    """A local (or remote) Ollama server: chat, streaming, embeddings and model listing."""

    async def embed(self, request: EmbeddingRequest, target: Target) -> EmbeddingResponse:
        """POST /api/embed."""
        call = HttpCall(
            "POST",
            "/api/embed",
            self._call_headers(target),
            _encoder.encode(embed_body(request, target.model)),
        )
        raw = await self._fetch(call, target)
        try:
            answer = _embed_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise UnexpectedResponse(
                f"ollama: unreadable embed answer: {raw[:200]!r}", provider=self.name
            ) from exc
        tokens = answer.prompt_eval_count
        return EmbeddingResponse(
            data=[
                Embedding(index=index, embedding=encode_vector(vector, request.encoding_format))
                for index, vector in enumerate(answer.embeddings)
            ],
            model=answer.model or target.model,
            usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
        )

    async def list_models(self, target: Target) -> list[ModelCard]:
        """GET /api/tags: the models pulled onto this server."""
        raw = await self._fetch(HttpCall("GET", "/api/tags", self._call_headers(target)), target)
        try:
            tags = _tags_decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise UnexpectedResponse(
                f"ollama: unreadable model list: {raw[:200]!r}", provider=self.name
            ) from exc
        return [
            ModelCard(id=tag.name, created=_epoch(tag.modified_at), owned_by="ollama") for tag in tags.models
        ]

    async def _fetch(self, call: HttpCall, target: Target) -> bytes:
        status, headers, raw = await self.send(call, target)
        if status >= 400:
            raise self._error(status, headers, raw, target)
        return raw

    def _call_headers(self, target: Target) -> dict[str, str]:
        assert isinstance(self.wire, OllamaWire)
        return self.wire.headers(target)


def embed_body(request: EmbeddingRequest, model: str) -> dict[str, Any]:
    """The embeddings request as an Ollama ``/api/embed`` body (text only: no token-id input)."""
    texts = request.texts()
    if not texts or (not isinstance(request.input, str) and len(texts) != len(request.input)):
        raise InvalidRequest("Ollama embeds text only, not token ids", param="input")
    body: dict[str, Any] = {"model": model, "input": request.input}
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    body.update(
        (key, value) for key, value in request.extra.items() if key in {"keep_alive", "truncate", "options"}
    )
    return body


def build(spec: ProviderSpec, transport: Transport) -> OllamaProvider:
    """An Ollama provider from its spec (``base_url`` defaults to http://localhost:11434)."""
    return OllamaProvider(
        name=spec.name,
        wire=OllamaWire(extra_headers=spec.headers),
        transport=transport,
        base_url=spec.base_url or DEFAULT_BASE_URL,
    )
