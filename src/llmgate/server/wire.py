"""The OpenAI wire at the edge: reading bodies within limits, encoding responses and SSE frames."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, AsyncIterator

import msgspec
from starlette.requests import Request

from llmgate.core.errors import GatewayError, PayloadTooLarge
from llmgate.core.response import StreamItem
from llmgate.server.disconnect import ClientGone
from llmgate.server.errors import classify, encode_error, error_message

log = logging.getLogger("llmgate.server")
encoder = msgspec.json.Encoder()
DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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


def sse_frame(item: StreamItem) -> bytes:
    """One ``data:`` frame (a raw chunk as the upstream sent it)."""
    return b"data: " + (item if isinstance(item, bytes) else encoder.encode(item)) + b"\n\n"


def sse_error_frame(error: GatewayError) -> bytes:
    """The error event that ends a broken stream (never followed by ``[DONE]``)."""
    _, error_type = classify(error)
    return b"data: " + encode_error(error_message(error), error_type, error.param, error.code) + b"\n\n"


async def sse_stream(batches: AsyncIterable[list[StreamItem]]) -> AsyncIterator[bytes]:
    """OpenAI SSE framing: every chunk, then ``[DONE]``; a failure mid-way ends with an error event.

    Chunks that arrived together are written together: one send per upstream read, not per token.
    """
    try:
        async for batch in batches:
            yield b"".join([sse_frame(chunk) for chunk in batch])
    except GatewayError as exc:
        yield sse_error_frame(exc)
        return
    except Exception as exc:  # a bug must still not look like a clean end of stream
        log.exception("stream failed")
        yield sse_error_frame(GatewayError(f"internal error: {type(exc).__name__}"))
        return
    yield DONE
