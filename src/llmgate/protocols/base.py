"""What every inbound protocol provides: parse a request, render answers, streams and errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from llmgate.core.errors import GatewayError
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatResponse, StreamItem


class StreamRender(Protocol):
    """The frames of one stream, in the protocol's own SSE events.

    ``frames`` is given every batch of canonical items in order (a batch may be empty; an item may be a
    ``ChatChunk`` or a raw OpenAI chunk in JSON bytes, see ``core.response.as_chunk``) and returns the
    bytes to send for it (``b""`` for nothing). After the last batch exactly one of ``end`` (the stream
    finished) or ``error`` (it broke: the protocol's error event) is called, once.
    """

    def frames(self, batch: Sequence[StreamItem]) -> bytes:
        """The SSE frames for one batch of items."""
        ...

    def end(self) -> bytes:
        """The frames that close a stream that finished."""
        ...

    def error(self, error: GatewayError) -> bytes:
        """The frames that close a stream that broke."""
        ...


class Rendering(Protocol):
    """How a protocol writes answers: a complete one as a body, a stream as SSE frames."""

    def render(self, response: ChatResponse, request: ChatRequest) -> bytes:
        """A complete canonical answer -> the protocol's response body (JSON)."""
        ...

    def stream(self, request: ChatRequest) -> StreamRender:
        """A renderer for one stream answering ``request``."""
        ...


class Inbound(Rendering, Protocol):
    """One inbound protocol (a module-level singleton per protocol: it holds no per-request state)."""

    name: str
    """The protocol's name (``anthropic.messages``)."""

    def parse(self, data: Any) -> ChatRequest:
        """A decoded JSON body -> the canonical request; ``InvalidRequest`` naming the field otherwise."""
        ...

    def error(self, error: GatewayError) -> tuple[int, bytes]:
        """The HTTP status and body of an error, in the protocol's error shape."""
        ...
