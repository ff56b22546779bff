#!/usr/bin/env python3
"""Mock Anthropic- and Gemini-format upstreams for the benchmark, in the yardstick mock's style.

    MOCK_PORT=18110 python bench/vendor_mock.py

A tiny HTTP/1.1 server on raw asyncio protocols (uvloop when installed), answering from bytes built once,
so that it is never the bottleneck; the same answer as the yardstick's OpenAI mock (../shared/bench/
mock_upstream.py), said in each vendor's own format:

  POST /v1/messages                               Anthropic Messages: a message, or with "stream": true
                                                  its events (message_start ... message_stop)
  POST /v1beta/models/{m}:generateContent         Gemini: a GenerateContentResponse
  POST /v1beta/models/{m}:streamGenerateContent   Gemini SSE (``?alt=sse``): one response per event
  GET  /health                                    readiness

Each stream is one HTTP chunk per event, MOCK_CHUNKS (30) content events, as the OpenAI mock sends.
Keep-alive is always on; nothing is logged on the hot path.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from typing import Any

HOST = os.environ.get("MOCK_HOST", "127.0.0.1")
PORT = int(os.environ.get("MOCK_PORT", "8110"))
N_CHUNKS = int(os.environ.get("MOCK_CHUNKS", "30"))
COMPLETION_TOKENS = int(os.environ.get("MOCK_COMPLETION_TOKENS", "60"))
PROMPT_TOKENS = 25
ANSWER = (
    "Sure! Here is a short answer to your question. A language model gateway "
    "sits between your application and the providers, adding routing, retries, "
    "budgets and observability while keeping the OpenAI wire format unchanged."
)
_STREAM = re.compile(rb'"stream"\s*:\s*true')


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _pieces() -> list[str]:
    words = ANSWER.split(" ")
    per = max(1, -(-len(words) // N_CHUNKS))
    pieces = [" ".join(words[i : i + per]) + " " for i in range(0, len(words), per)]
    return (pieces + ["more "] * N_CHUNKS)[:N_CHUNKS]


def _whole(body: bytes) -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    return head + body


def _chunked(events: list[bytes]) -> list[bytes]:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    return [head, *(b"%x\r\n%s\r\n" % (len(event), event) for event in events), b"0\r\n\r\n"]


def _anthropic() -> tuple[bytes, list[bytes]]:
    usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS}
    message = {
        "id": "msg_mock0000000000000000000001",
        "type": "message",
        "role": "assistant",
        "model": "claude-mock",
        "content": [{"type": "text", "text": ANSWER}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }

    def event(name: str, data: dict[str, Any]) -> bytes:
        return b"event: " + name.encode() + b"\ndata: " + _json(data) + b"\n\n"

    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events = [
        event("message_start", {"type": "message_start", "message": start}),
        event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        event("ping", {"type": "ping"}),
        *(
            event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
            )
            for piece in _pieces()
        ),
        event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": COMPLETION_TOKENS},
            },
        ),
        event("message_stop", {"type": "message_stop"}),
    ]
    return _whole(_json(message)), _chunked(events)


def _gemini() -> tuple[bytes, list[bytes]]:
    usage = {
        "promptTokenCount": PROMPT_TOKENS,
        "candidatesTokenCount": COMPLETION_TOKENS,
        "totalTokenCount": PROMPT_TOKENS + COMPLETION_TOKENS,
    }

    def response(text: str, *, last: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if last:
            candidate["finishReason"] = "STOP"
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": "gemini-mock",
            "responseId": "mock1",
        }

    pieces = _pieces()
    events = [
        b"data: " + _json(response(piece, last=i == len(pieces) - 1)) + b"\r\n\r\n"
        for i, piece in enumerate(pieces)
    ]
    return _whole(_json(response(ANSWER, last=True))), _chunked(events)


ANTHROPIC, ANTHROPIC_STREAM = _anthropic()
GEMINI, GEMINI_STREAM = _gemini()
HEALTH = _whole(b'{"status":"ok"}')
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


class VendorProtocol(asyncio.Protocol):
    """One connection: requests parsed from the buffer, answered from the prebuilt bytes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:  # every complete request buffered (pipelining-safe)
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.buf[:end]).split(b"\r\n")
            method, path, _ = lines[0].split(b" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if len(self.buf) - end - 4 < length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            self._answer(method, path, body)

    def _answer(self, method: bytes, path: bytes, body: bytes) -> None:
        write = self.transport.write
        if method == b"GET":
            write(HEALTH if path.startswith(b"/health") else NOT_FOUND)
        elif path.startswith(b"/v1/messages"):
            for piece in ANTHROPIC_STREAM if _STREAM.search(body) else [ANTHROPIC]:
                write(piece)
        elif b":streamGenerateContent" in path:
            for piece in GEMINI_STREAM:
                write(piece)
        elif b":generateContent" in path:
            write(GEMINI)
        else:
            write(NOT_FOUND)


def main() -> int:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(
        loop.create_server(VendorProtocol, HOST, PORT, backlog=4096, reuse_address=True)
    )
    stop = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    print(f"vendor mock (anthropic, gemini) on http://{HOST}:{PORT}", flush=True)
    loop.run_until_complete(stop)
    server.close()
    loop.run_until_complete(server.wait_closed())
    return 0


if __name__ == "__main__":
    sys.exit(main())
