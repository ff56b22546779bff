"""The adapter ports: what routing and the gateway may ask of a provider.

An adapter has a small fixed surface. Chat (with streaming) is required; embeddings and model listing
are separate optional protocols, so no adapter carries "not supported" stubs.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from llmgate.core.errors import GatewayError
from llmgate.core.headroom import Headroom, ParamReport
from llmgate.core.request import ChatRequest, EmbeddingRequest
from llmgate.core.response import ChatResponse, EmbeddingResponse, ModelCard, StreamItem


def key_label(api_key: str | None) -> str:
    """A stable, non-reversible name for an API key (for health, headroom and logs)."""
    if not api_key:
        return "no-key"
    return "key-" + hashlib.sha256(api_key.encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class TimeoutPolicy:
    """Seconds: to connect, to the first byte of the answer (streams), between stream events, in all."""

    connect: float = 5.0
    first_token: float = 30.0
    idle: float = 30.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class Target:
    """One call's destination inside a provider: the upstream model, which key, and the time allowed."""

    model: str
    api_key: str | None = None
    timeouts: TimeoutPolicy = field(default_factory=TimeoutPolicy)


@runtime_checkable
class ChatProvider(Protocol):
    """Anything that can answer a chat request, whole or streamed."""

    name: str

    def check(self, request: ChatRequest) -> ParamReport:
        """Which of the request's parameters this provider would drop or cannot honour."""
        ...

    async def chat(self, request: ChatRequest, target: Target) -> ChatResponse:
        """One complete response; raises a ``GatewayError`` subclass on failure."""
        ...

    def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[Sequence[StreamItem]]:
        """Canonical chunks as they arrive, in batches: the chunks that arrived together (one network
        read) come as one list, so the layers above pay their per-item cost once per read, not per token.
        Batches are never empty. The final usage chunk (no choices) is always included.
        """
        ...

    async def close(self) -> None:
        """Release what the provider holds (connections are owned by the transport)."""
        ...


@runtime_checkable
class HeadroomReporter(Protocol):
    """A provider that reads upstream rate-limit headers: the latest reading per API key label."""

    headroom: dict[str, Headroom]


@runtime_checkable
class EmbeddingProvider(Protocol):
    """A provider that can embed text."""

    async def embed(self, request: EmbeddingRequest, target: Target) -> EmbeddingResponse:
        """Vectors for the request's input."""
        ...


@runtime_checkable
class ModelLister(Protocol):
    """A provider that can say which models it serves."""

    async def list_models(self, target: Target) -> list[ModelCard]:
        """The upstream's model list."""
        ...


@dataclass(frozen=True, slots=True)
class HttpCall:
    """A request an adapter wants sent: method, path below the base URL, headers and body."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes | None = None


class StreamTranslator(Protocol):
    """Turns one upstream stream's events into canonical chunks; one per stream (it may keep state)."""

    def feed(self, data: bytes) -> Sequence[StreamItem]:
        """Translate one event's data; raise a ``GatewayError`` for an in-band error event."""
        ...

    @property
    def finished(self) -> bool:
        """Whether the upstream has signalled the end of the stream (e.g. OpenAI's ``[DONE]``)."""
        ...


class WireFormat(Protocol):
    """How to talk to one vendor over HTTP: build requests, read answers, streams and errors."""

    stream_format: str  # "sse" or "ndjson"
    native_protocol: str | None
    """The inbound protocol (``Native.protocol``) this vendor speaks itself, if any: a request that came
    in through it is sent on as the caller wrote it, and its answer kept as it came."""

    def check(self, request: ChatRequest) -> ParamReport:
        """Parameters this vendor would drop (meaning kept) or cannot honour (meaning lost)."""
        ...

    def headroom(self, headers: Mapping[str, str]) -> Headroom | None:
        """The rate-limit reading in a response's headers, if any."""
        ...

    def chat_call(self, request: ChatRequest, target: Target, *, stream: bool) -> HttpCall:
        """The HTTP request for a chat call."""
        ...

    def parse_chat(self, body: bytes) -> ChatResponse:
        """A complete response body -> canonical response."""
        ...

    def stream_translator(self, request: ChatRequest) -> StreamTranslator:
        """A fresh translator for one streamed response."""
        ...

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """An error response -> the matching error of the core tree."""
        ...


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """What it takes to build one provider (the gateway fills it in from the settings)."""

    name: str
    type: str
    base_url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    api_version: str | None = None
    options: Mapping[str, object] = field(default_factory=dict)


class AdapterConfigError(ValueError):
    """A provider's settings do not make sense for its adapter (e.g. Azure without a base URL)."""
