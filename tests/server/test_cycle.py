"""The gateway's request cycle: a response's head goes out with its first (or only) body piece in one
socket write, checked as uvicorn checks the two messages it replaces; the hot path of the app uses it
for whole answers and for streams. Driven through ``GatewayProtocol`` with a transport that counts
its writes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response
from tests.server.test_protocol import (
    FakeTransport,
    ManualClockLoop,
    Server,
    responses,
)

from llmgate.server.app import GatewayApp
from llmgate.server.cycle import START_WITH_BODY
from llmgate.server.disconnect import DisconnectWatch, EventStreamResponse

POST = b"POST /v1/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}"


class CountingTransport(FakeTransport):
    """A fake transport that keeps each write apart."""

    def __init__(self, loop: ManualClockLoop) -> None:
        super().__init__(loop)
        self.writes: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))
        super().write(data)


def serve(loop: ManualClockLoop, app: Any, *requests: bytes) -> CountingTransport:
    """Connect to ``app``, send ``requests`` one read each, and let it answer them."""
    server = Server(loop, app)
    protocol, _ = server.connect()
    transport = CountingTransport(loop)
    transport.protocol = protocol
    protocol.transport = transport
    protocol.cycle = None
    for request in requests:
        protocol.data_received(request)
        loop.settle()
    return transport


def whole(body: bytes, *headers: tuple[bytes, bytes], status: int = 200) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": START_WITH_BODY, "status": status, "headers": list(headers), "body": body})

    return app


def test_the_scope_says_the_server_takes_the_message(loop: ManualClockLoop) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["extensions"])
        await send({"type": START_WITH_BODY, "status": 204, "headers": []})

    serve(loop, app, POST, POST)
    assert seen == [{START_WITH_BODY: {}}] * 2
    assert seen[0] is not seen[1]  # a dict of each request's own


def test_a_whole_answer_is_one_write_with_its_head_and_body(loop: ManualClockLoop) -> None:
    length = (b"content-length", b"7")
    transport = serve(loop, whole(b'{"a":1}', (b"Content-Type", b"application/json"), length), POST)
    [write] = transport.writes
    assert write.startswith(b"HTTP/1.1 200 OK\r\n")
    assert write.endswith(b'\r\n\r\n{"a":1}')
    [(status, headers, body)] = responses(write)
    assert (status, headers["content-type"], body) == (200, "application/json", b'{"a":1}')
    assert not transport.closed


def test_the_connection_is_kept_alive_for_the_next_request(loop: ManualClockLoop) -> None:
    transport = serve(loop, whole(b"ok", (b"content-length", b"2")), POST, POST, POST)
    assert len(transport.writes) == 3
    assert [answer[2] for answer in responses(bytes(transport.out))] == [b"ok"] * 3
    assert not transport.closed


def test_pipelined_requests_are_answered_in_turn(loop: ManualClockLoop) -> None:
    transport = serve(loop, whole(b"ok", (b"content-length", b"2")), POST * 3)
    assert [answer[2] for answer in responses(bytes(transport.out))] == [b"ok"] * 3


def test_connection_close_in_the_answer_closes_after_it(loop: ManualClockLoop) -> None:
    app = whole(b"ok", (b"content-length", b"2"), (b"connection", b"close"))
    transport = serve(loop, app, POST)
    [(_, headers, body)] = responses(bytes(transport.out))
    assert (headers["connection"], body) == ("close", b"ok")
    assert transport.closed


def test_an_http_1_0_request_is_answered_with_connection_close(loop: ManualClockLoop) -> None:
    transport = serve(loop, whole(b"ok", (b"content-length", b"2")), POST.replace(b"HTTP/1.1", b"HTTP/1.0"))
    [(_, headers, _)] = responses(bytes(transport.out))
    assert headers["connection"] == "close"
    assert transport.closed


@pytest.mark.parametrize("declared", [b"1", b"5"])
def test_a_length_that_does_not_match_the_body_fails_the_answer(
    loop: ManualClockLoop, declared: bytes
) -> None:
    transport = serve(loop, whole(b"okay", (b"content-length", declared)), POST)
    assert transport.closed  # uvicorn closes a connection whose app failed mid-answer
    assert b"okay" not in transport.out or declared == b"5"  # a longer body is refused before it is written


@pytest.mark.parametrize("header", [(b"x-bad", b"a\r\nb"), (b"bad name", b"v")])
def test_header_bytes_that_would_split_the_answer_are_refused(
    loop: ManualClockLoop, header: tuple[bytes, bytes]
) -> None:
    transport = serve(loop, whole(b"ok", header), POST)
    assert b"\r\nb" not in transport.out
    [(status, _, _)] = responses(bytes(transport.out))
    assert status == 500  # nothing was written: uvicorn's answer to a failed app


def test_without_a_length_the_answer_is_chunked(loop: ManualClockLoop) -> None:
    transport = serve(loop, whole(b"hello"), POST)
    [write] = transport.writes
    head, _, body = write.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head
    assert body == b"5\r\nhello\r\n0\r\n\r\n"


def test_a_message_after_the_response_started_is_refused(loop: ManualClockLoop) -> None:
    failures: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            await send({"type": START_WITH_BODY, "status": 200, "headers": [], "body": b"x"})
        except RuntimeError as exc:
            failures.append(exc)
        await send({"type": "http.response.body", "body": b""})

    serve(loop, app, POST)
    assert len(failures) == 1


def test_a_streamed_answer_starts_with_its_first_piece_and_goes_on_chunked(loop: ManualClockLoop) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": START_WITH_BODY, "status": 200, "headers": [], "body": b"one", "more_body": True})
        await send({"type": "http.response.body", "body": b"two", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    transport = serve(loop, app, POST)
    first, second, end = transport.writes
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and first.endswith(b"\r\n\r\n3\r\none\r\n")
    assert (second, end) == (b"3\r\ntwo\r\n", b"0\r\n\r\n")


def test_a_client_gone_before_the_answer_gets_no_write(loop: ManualClockLoop) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        await send({"type": START_WITH_BODY, "status": 200, "headers": [], "body": b"late"})

    server = Server(loop, app)
    protocol, transport = server.connect()
    protocol.data_received(POST)
    loop.settle()
    transport.close()
    loop.settle()
    assert transport.out == b""


# The app's hot path


class Pieces:
    """A ``StreamBody`` of fixed pieces."""

    def __init__(self, *pieces: bytes, ending: bytes = b"data: [DONE]\n\n") -> None:
        self.pieces = pieces
        self.ending = ending

    async def frames(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece


def hot_app(answer: Any) -> GatewayApp:
    app = GatewayApp(routes=[])
    app.calls = {"/v1/x": answer}
    return app


def test_the_apps_hot_path_writes_a_whole_answer_once(loop: ManualClockLoop) -> None:
    async def call(request: Request) -> Response:
        return Response(json.dumps({"ok": True}), media_type="application/json", headers={"x-a": "1"})

    transport = serve(loop, hot_app(call), POST)
    [write] = transport.writes
    [(status, headers, body)] = responses(write)
    assert (status, headers["x-a"], json.loads(body)) == (200, "1", {"ok": True})


def test_the_apps_errors_on_the_hot_path_are_one_write_too(loop: ManualClockLoop) -> None:
    async def call(request: Request) -> Response:
        raise RuntimeError("boom")

    transport = serve(loop, hot_app(call), POST)
    [write] = transport.writes
    [(status, _, body)] = responses(write)
    assert status == 500 and json.loads(body)["error"]["type"] == "api_error"


def stream_app(body: Pieces, closed: list[bool]) -> GatewayApp:
    async def call(request: Request) -> Response:
        async def close_upstream() -> None:
            closed.append(True)

        return EventStreamResponse(body, {"x-a": "1"}, DisconnectWatch(request.receive), close_upstream)

    return hot_app(call)


def test_a_stream_goes_out_with_its_head_on_the_first_piece(loop: ManualClockLoop) -> None:
    closed: list[bool] = []
    transport = serve(loop, stream_app(Pieces(b"data: 1\n\n", b"data: 2\n\n"), closed), POST)
    first, second, end = transport.writes
    assert first.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nx-a: 1\r\n" in first
    assert first.endswith(b"\r\n\r\n9\r\ndata: 1\n\n\r\n")
    assert second == b"9\r\ndata: 2\n\n\r\n"
    assert end == b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
    assert closed == [True]


def test_a_stream_that_came_in_one_read_is_one_write(loop: ManualClockLoop) -> None:
    closed: list[bool] = []
    transport = serve(loop, stream_app(Pieces(ending=b"data: all\n\n"), closed), POST)
    [write] = transport.writes
    assert write.endswith(b"\r\n\r\nb\r\ndata: all\n\n\r\n0\r\n\r\n")
    assert closed == [True]
