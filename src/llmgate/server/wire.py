"""The wire at the edge: reading bodies within limits, encoding responses and SSE frames."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Sequence

import msgspec
from starlette.requests import Request

from llmgate.core.errors import GatewayError, PayloadTooLarge
from llmgate.core.response import EmbeddingResponse, LastBatch, StreamItem
from llmgate.protocols.base import StreamRender
from llmgate.server.disconnect import ClientGone
from llmgate.server.errors import classify, encode_error, error_message

log = logging.getLogger("llmgate.server")
encoder = msgspec.json.Encoder()
DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SLICED_VALUES = 65_536  # embedding values encoded between two returns to the event loop


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The request body is {declared} bytes; the limit is {limit}.")
    receive = request.receive
    parts: list[bytes] = []
    size = 0
    while True:  # straight from the ASGI channel: a body comes in one message, most of the time
        message = await receive()
        if message["type"] == "http.disconnect":  # the client left while sending: nothing went wrong
            raise ClientGone
        part: bytes = message.get("body", b"")
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"The request body is over the limit of {limit} bytes.")
        if not message.get("more_body", False):
            return b"".join([*parts, part]) if parts else part
        parts.append(part)


async def encode_embeddings(response: EmbeddingResponse) -> bytes:
    """An embeddings response as JSON. A large one (up to ~120 MB) is encoded a slice of vectors at a
    time, giving the event loop back between slices: msgspec holds the GIL, so a thread would not."""
    data = response.data
    if sum(len(item.embedding) for item in data[:1]) * len(data) <= SLICED_VALUES:
        return encoder.encode(response)
    parts: list[bytes] = []
    step = max(1, SLICED_VALUES // max(1, len(data[0].embedding)))
    for start in range(0, len(data), step):
        parts.append(encoder.encode(data[start : start + step])[1:-1])
        await asyncio.sleep(0)
    head = encoder.encode(msgspec.structs.replace(response, data=[]))
    return head.replace(b'"data":[]', b'"data":[' + b",".join(parts) + b"]", 1)


def sse_frame(item: StreamItem) -> bytes:
    """One ``data:`` frame (a raw chunk as the upstream sent it)."""
    return b"data: " + (item if isinstance(item, bytes) else encoder.encode(item)) + b"\n\n"


def sse_error_frame(error: GatewayError) -> bytes:
    """The error event that ends a broken stream (never followed by ``[DONE]``)."""
    _, error_type = classify(error)
    return b"data: " + encode_error(error_message(error), error_type, error.param, error.code) + b"\n\n"


class OpenAIFrames:
    """OpenAI's SSE framing of a chat stream (a ``StreamRender``): a ``data:`` frame per chunk, then
    ``[DONE]``; an error event instead when the stream breaks."""

    __slots__ = ()

    def frames(self, batch: Sequence[StreamItem]) -> bytes:
        """The frames of one batch."""
        return b"".join([sse_frame(item) for item in batch])

    def end(self) -> bytes:
        """``[DONE]``."""
        return DONE

    def error(self, error: GatewayError) -> bytes:
        """The error event."""
        return sse_error_frame(error)


OPENAI_FRAMES = OpenAIFrames()


class SSEBody:
    """The SSE body of a stream, framed by a protocol's renderer (OpenAI's by default): every batch,
    then the renderer's end; a failure mid-way ends with its error event instead.

    ``frames()`` gives the frames of each batch as it arrives (one send per upstream read, not per
    token); ``ending`` is what closes the body once they are through, for the server to write with the
    end of the response. The final batch (the upstream signalled the end) goes into ``ending`` too: the
    stream's last three writes become one.
    """

    __slots__ = ("_batches", "_render", "ending")

    def __init__(
        self, batches: AsyncIterable[list[StreamItem]], render: StreamRender = OPENAI_FRAMES
    ) -> None:
        self._batches = batches
        self._render = render
        self.ending = b""

    async def frames(self) -> AsyncIterator[bytes]:
        """The frames of each batch, as the batches arrive."""
        held = b""
        render = self._render
        try:
            async for batch in self._batches:
                frames = render.frames(batch)
                if isinstance(batch, LastBatch):
                    held = frames  # nothing follows it: written once the stream has wound up
                elif frames:
                    yield frames
        except GatewayError as exc:
            yield held + render.error(exc)
            return
        except Exception as exc:  # a bug must still not look like a clean end of stream
            log.exception("stream failed")
            yield held + render.error(GatewayError(f"internal error: {type(exc).__name__}"))
            return
        self.ending = held + render.end()
