"""One request's exchange on a gateway connection: uvicorn's ASGI cycle, plus one message of the
gateway's own that puts a response's head and its first (or only) body piece in one socket write.

ASGI sends a head and a body as two messages, and uvicorn writes each as it comes: two system calls
(on loopback the sender's also does the receiver's work) for an answer that was whole before its head
went out. An app that sees ``START_WITH_BODY`` in ``scope["extensions"]`` may send instead::

    {"type": "llmgate.response.start_with_body", "status": 200, "headers": [...],
     "body": b"...", "more_body": False}

which is ``http.response.start`` and ``http.response.body`` in one message, checked as uvicorn checks
them (header bytes, Content-Length against the body, ``connection: close``). With ``more_body`` the
response goes on with plain ``http.response.body`` messages.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

START_WITH_BODY = "llmgate.response.start_with_body"
NO_BODY = frozenset({204, 304})


def extensions() -> dict[str, dict[object, object]]:
    """What a request's ``scope["extensions"]`` says this server takes (a new dict per request: an app
    may write to its own)."""
    return {START_WITH_BODY: {}}


class GatewayCycle(RequestResponseCycle):
    """uvicorn's cycle, which also takes ``START_WITH_BODY``."""

    async def send(self, message: Any) -> None:
        """Send an ASGI message, or a head with its first body piece in one write."""
        if message["type"] != START_WITH_BODY:
            await RequestResponseCycle.send(self, message)
            return
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        if self.disconnected:
            return
        if self.response_started:
            raise RuntimeError(f"Unexpected ASGI message {START_WITH_BODY!r}: the response has started.")
        content = self._head(message["status"], message.get("headers", ()))
        more_body: bool = message.get("more_body", False)
        self._body(content, message.get("body", b""), more_body)
        self.transport.write(b"".join(content))
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()

    def _body(self, content: list[bytes], body: bytes, more_body: bool) -> None:
        """A body piece after the head, framed (chunked) or counted (Content-Length) as uvicorn does."""
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
        elif self.chunked_encoding:
            if body:
                content += (b"%x\r\n" % len(body), body, b"\r\n")
            if not more_body:
                content.append(b"0\r\n\r\n")
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            content.append(body)

    def _head(self, status: int, headers: Any) -> list[bytes]:
        """The status line and header lines; then the cycle's response state, set as uvicorn's
        ``http.response.start`` sets it (not before the headers passed: on a bad one, uvicorn's 500)."""
        content = [STATUS_LINE[status]]
        for name, value in self.default_headers:
            content += (name, b": ", value, b"\r\n")
        chunked, length, keep_alive = self.chunked_encoding, self.expected_content_length, self.keep_alive
        closes = False
        for raw_name, value in headers:
            if HEADER_RE.search(raw_name):
                raise RuntimeError("Invalid HTTP header name.")
            if HEADER_VALUE_RE.search(value):
                raise RuntimeError("Invalid HTTP header value.")
            name = raw_name.lower()
            if name == b"content-length" and chunked is None:
                length, chunked = int(value.decode()), False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                length, chunked = 0, True
            elif name == b"connection" and b"close" in [token.strip().lower() for token in value.split(b",")]:
                keep_alive, closes = False, True
            content += (name, b": ", value, b"\r\n")
        if not keep_alive and not closes:
            content.append(b"connection: close\r\n")
        if chunked is None and self.scope["method"] != "HEAD" and status not in NO_BODY:
            chunked = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self.chunked_encoding, self.expected_content_length, self.keep_alive = chunked, length, keep_alive
        self.response_started = True
        self.waiting_for_100_continue = False
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                self.scope.get("client"),
                self.scope["method"],
                self.scope["path"],
                self.scope["http_version"],
                status,
            )
        return content
