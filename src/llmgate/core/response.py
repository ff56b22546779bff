"""The canonical chat response, streamed chunk and embedding result, in OpenAI's shape.

Optional members default to ``UNSET`` so they are left out of the wire form unless a provider set them,
while ``content`` and ``finish_reason`` are always present (``null`` when empty), as OpenAI sends them.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from llmgate.core.request import FunctionCall, ToolCall
from llmgate.core.usage import Usage

FinishReason = str
"""``stop``, ``length``, ``tool_calls``, ``content_filter`` or ``function_call``; others surface as-is."""

KNOWN_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})


class ResponseMessage(msgspec.Struct, gc=False):
    """The assistant's message in a complete response."""

    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | UnsetType | None = UNSET
    function_call: FunctionCall | UnsetType | None = UNSET
    refusal: str | None = None
    """Always sent (``null`` without one): OpenAI's schema requires the member."""
    reasoning_content: str | UnsetType | None = UNSET
    reasoning: str | UnsetType | None = UNSET
    reasoning_signature: str | UnsetType | None = UNSET
    """Anthropic's signature of its thinking, which must come back with it in a later turn (an extension
    of OpenAI's shape, set only for Anthropic backends)."""
    annotations: list[Any] | UnsetType | None = UNSET

    @property
    def reasoning_text(self) -> str:
        """The model's visible reasoning, under either name servers use for it."""
        for value in (self.reasoning_content, self.reasoning):
            if isinstance(value, str) and value:
                return value
        return ""


class Choice(msgspec.Struct, gc=False, kw_only=True):
    """One choice of a complete response."""

    index: int
    message: ResponseMessage
    logprobs: Any = None
    finish_reason: FinishReason | None = None


class ChatResponse(msgspec.Struct, gc=False, kw_only=True):
    """A complete chat response, fields in OpenAI's order."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | UnsetType | None = UNSET
    service_tier: str | UnsetType | None = UNSET
    native: bytes | UnsetType = UNSET
    """The upstream's answer as it came, when the request was sent in the upstream's own protocol
    (``ChatRequest.native``): that protocol answers with it untouched. Never set otherwise."""

    @property
    def text(self) -> str:
        """The first choice's text (empty when it only called tools)."""
        return (self.choices[0].message.content or "") if self.choices else ""


class FunctionCallDelta(msgspec.Struct, gc=False, omit_defaults=True):
    """A piece of a tool call's function: the name arrives once, arguments in fragments."""

    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, gc=False, omit_defaults=True):
    """A piece of one tool call, keyed by ``index`` across chunks."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class Delta(msgspec.Struct, gc=False, omit_defaults=True):
    """What one chunk adds to a choice."""

    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None
    function_call: FunctionCallDelta | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None  # Ollama, Groq and OpenRouter's name for reasoning_content
    reasoning_signature: str | None = None  # Anthropic's, see ResponseMessage


class ChunkChoice(msgspec.Struct, gc=False, kw_only=True):
    """One choice of a streamed chunk."""

    index: int
    delta: Delta
    logprobs: Any = None
    finish_reason: FinishReason | None = None


class ChatChunk(msgspec.Struct, gc=False, kw_only=True):
    """The one canonical stream event: an OpenAI ``chat.completion.chunk``.

    A chunk with no choices and a ``usage`` is the final usage chunk.
    """

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | UnsetType | None = UNSET
    system_fingerprint: str | UnsetType | None = UNSET
    service_tier: str | UnsetType | None = UNSET

    @property
    def has_content(self) -> bool:
        """Whether this chunk carries generated output (text, reasoning, tool calls or a refusal)."""
        for choice in self.choices:
            delta = choice.delta
            if delta.content or delta.tool_calls or delta.function_call or delta.refusal:
                return True
            if delta.reasoning_content or delta.reasoning:
                return True
        return False

    @property
    def is_substantive(self) -> bool:
        """Whether this chunk is more than a bare role announcement: output, a finish reason or usage."""
        if self.usage or self.has_content:
            return True
        return any(choice.finish_reason is not None for choice in self.choices)


StreamItem = ChatChunk | bytes
"""What a stream yields: a chunk, or a chunk still in the JSON an OpenAI-compatible upstream sent it.

The second kind is forwarded to clients byte for byte (never decoded and re-encoded). Translators
produce it only after the stream's first substantive chunk, and never for a chunk that carries usage.
"""


class LastBatch(list[StreamItem]):
    """A stream's final batch: the upstream has signalled the end of the stream, nothing follows."""

    __slots__ = ()


_chunk_decoder = msgspec.json.Decoder(ChatChunk)


def as_chunk(item: StreamItem) -> ChatChunk:
    """The chunk an item stands for (a raw one is decoded)."""
    return item if isinstance(item, ChatChunk) else _chunk_decoder.decode(item)


class Embedding(msgspec.Struct, gc=False, kw_only=True):
    """One vector (or its base64 form when the caller asked for it)."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


def encode_vector(vector: list[float], encoding_format: str | None) -> list[float] | str:
    """A vector as the caller asked for it: floats, or OpenAI's base64 of little-endian float32 bytes."""
    if encoding_format != "base64":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


class EmbeddingResponse(msgspec.Struct, gc=False, kw_only=True):
    """The result of an embeddings call."""

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage | None = None


class ModelCard(msgspec.Struct, gc=False, kw_only=True):
    """An entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
