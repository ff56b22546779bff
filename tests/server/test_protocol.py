"""The connection protocol: header and body clocks, the connection cap, and OpenAI-shaped answers to what
cannot be parsed. Driven directly, with a fake transport and an event loop whose clock moves only when
the test moves it (timers fire on ``advance``, never on their own)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from llmgate.config.settings import ServerSettings
from llmgate.server.protocol import (
    MAX_HEAD_BYTES,
    REFUSED_LINGER,
    ConnectionLimits,
    GatewayProtocol,
    protocol_factory,
)

LIMITS = ConnectionLimits(
    header_timeout=10, body_timeout=10, body_min_rate=100, idle_timeout=30, max_connections=100
)
GET = b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n"
App = Callable[[Any, Any, Any], Any]


class ManualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only on ``advance``; it counts the timers armed on it."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 1_000.0
        self.timers_armed = 0

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Any, *args: Any, context: Any = None) -> asyncio.TimerHandle:
        self.timers_armed += 1
        return super().call_later(delay, callback, *args, context=context)

    def settle(self) -> None:
        """Run what is ready (app tasks, due timers, closes) without moving the clock."""
        for _ in range(8):
            self.run_until_complete(asyncio.sleep(0))

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.settle()


class FakeTransport(asyncio.Transport):
    """Records what the protocol writes; ``close`` reports the loss to it, as a real transport does."""

    def __init__(self, loop: ManualClockLoop) -> None:
        super().__init__()
        self.loop = loop
        self.protocol: GatewayProtocol | None = None
        self.out = bytearray()
        self.closed = self.eof = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            assert self.protocol is not None
            self.loop.call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40_000), "sockname": ("127.0.0.1", 8000)}.get(name, default)


class Server:
    """One worker's state: connections made to ``app`` under ``limits``."""

    def __init__(self, loop: ManualClockLoop, app: App, limits: ConnectionLimits = LIMITS) -> None:
        self.loop = loop
        self.limits = limits
        self.state = ServerState()
        self.config = Config(app=app, ws="none", lifespan="off", proxy_headers=False, log_config=None)
        self.transports: list[FakeTransport] = []

    def connect(self) -> tuple[GatewayProtocol, FakeTransport]:
        protocol = GatewayProtocol(self.config, self.state, {}, self.loop, limits=self.limits)
        transport = FakeTransport(self.loop)
        transport.protocol = protocol
        protocol.connection_made(transport)
        self.transports.append(transport)
        return protocol, transport


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    """Reads the whole body, answers its length as JSON."""
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    payload = json.dumps({"size": size}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def responses(raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The final HTTP responses in ``raw`` (not a 100 Continue): status, headers (lower-case names),
    body (by Content-Length)."""
    found = []
    while raw.startswith(b"HTTP/1.1 "):
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        size = int(headers.get("content-length", "0"))
        status = int(lines[0].split()[1])
        if status >= 200:
            found.append((status, headers, rest[:size]))
        raw = rest[size:]
    assert raw == b"", f"unparsed bytes: {raw!r}"
    return found


def only_error(transport: FakeTransport, status: int) -> dict[str, Any]:
    """The one response written, an OpenAI error with ``status`` that closes the connection."""
    (got, headers, body), *more = responses(bytes(transport.out))
    assert not more, "a second response after the error"
    assert got == status
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    assert transport.closed
    return error  # type: ignore[no-any-return]


@pytest.fixture
def server(loop: ManualClockLoop) -> Iterator[Server]:
    serving = Server(loop, echo_app)
    yield serving
    for transport in serving.transports:
        transport.close()


def test_a_connection_that_sends_nothing_is_closed_at_the_header_timeout_without_an_answer(
    loop: ManualClockLoop, server: Server
) -> None:
    _, transport = server.connect()
    loop.advance(9.9)
    assert not transport.closed
    loop.advance(0.2)
    assert transport.closed
    assert transport.out == b""
    assert not server.state.connections


def test_a_slow_head_gets_408_at_the_header_timeout_counted_from_the_open(
    loop: ManualClockLoop, server: Server
) -> None:
    protocol, transport = server.connect()
    for part in (b"GET /v1/models HTTP/1.1\r\n", b"Host: gw\r\n", b"X-Slow: 1\r\n"):  # a slowloris
        loop.advance(3)
        protocol.data_received(part)
    loop.advance(0.9)  # 9.9 s since the open
    assert not transport.closed
    loop.advance(0.2)
    error = only_error(transport, 408)
    assert error["code"] == "request_timeout"
    assert error["type"] == "invalid_request_error"


def test_a_request_in_time_stops_the_header_clock_and_the_idle_timeout_takes_over(
    loop: ManualClockLoop, server: Server
) -> None:
    protocol, transport = server.connect()
    loop.advance(5)
    protocol.data_received(GET)
    loop.settle()
    [(status, _, body)] = responses(bytes(transport.out))
    assert (status, json.loads(body)) == (200, {"size": 0})
    loop.advance(20)  # past the header timeout, within the idle timeout of 30 s
    assert not transport.closed
    loop.advance(10.1)
    assert transport.closed
    assert len(responses(bytes(transport.out))) == 1


def test_on_a_kept_alive_connection_the_header_clock_starts_at_the_first_byte_of_the_next_request(
    loop: ManualClockLoop, server: Server
) -> None:
    protocol, transport = server.connect()
    protocol.data_received(GET)
    loop.advance(25)  # idle, but within the idle timeout
    protocol.data_received(b"GET /v1/models HTTP/1.1\r\nHo")
    loop.advance(9.9)
    assert not transport.closed
    loop.advance(0.2)
    statuses = [status for status, _, _ in responses(bytes(transport.out))]
    assert statuses == [200, 408]
    assert transport.closed


def test_a_stray_crlf_between_requests_does_not_switch_the_clocks_off(
    loop: ManualClockLoop, server: Server
) -> None:
    # uvicorn stops its idle clock on any byte; without a header clock this connection stayed open.
    protocol, transport = server.connect()
    protocol.data_received(GET)
    loop.settle()
    protocol.data_received(b"\r\n")
    loop.advance(10.1)
    assert transport.closed


def test_the_body_deadline_grows_by_one_second_per_min_rate_bytes(
    loop: ManualClockLoop, server: Server
) -> None:
    protocol, transport = server.connect()
    protocol.data_received(b"POST /v1/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 2000\r\n\r\n")
    loop.advance(9)
    protocol.data_received(b"x" * 500)  # at 100 B/s: 5 more seconds, to 15 s after the headers
    loop.advance(5.9)
    assert not transport.closed
    assert transport.out == b""
    loop.advance(0.2)
    error = only_error(transport, 408)
    assert error["code"] == "request_timeout"
    assert "body" in error["message"]


def test_a_body_that_stalls_after_a_fast_start_gets_408_after_body_timeout_of_silence(
    loop: ManualClockLoop, server: Server
) -> None:
    protocol, transport = server.connect()
    protocol.data_received(b"POST /v1/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 100001\r\n\r\n")
    protocol.data_received(b"x" * 100_000)  # earned 1,000 s at 100 B/s; then the last byte never comes
    loop.advance(9.9)
    assert not transport.closed
    loop.advance(0.2)  # 10 s without a byte
    assert only_error(transport, 408)["code"] == "request_timeout"


def test_a_large_body_trickling_in_without_long_gaps_is_given_its_time(
    loop: ManualClockLoop, server: Server
) -> None:
    protocol, transport = server.connect()
    protocol.data_received(b"POST /v1/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 3000\r\n\r\n")
    for _ in range(5):  # 500 bytes every 4 s: 125 B/s, over the rate, each gap under 10 s
        loop.advance(4)
        protocol.data_received(b"x" * 500)
    loop.advance(9.9)  # 29.9 s in: the bytes earned 35 s, and no gap was 10 s long
    assert not transport.closed
    loop.advance(0.2)  # then 10 s of silence ends it, before the 35 s are up
    assert only_error(transport, 408)["code"] == "request_timeout"


def test_a_body_in_time_stops_the_body_clock(loop: ManualClockLoop, server: Server) -> None:
    protocol, transport = server.connect()
    protocol.data_received(b"POST /v1/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 600\r\n\r\n")
    loop.advance(8)
    protocol.data_received(b"x" * 600)
    loop.advance(12)  # past every body deadline, within the idle timeout
    [(status, _, body)] = responses(bytes(transport.out))
    assert (status, json.loads(body)) == (200, {"size": 600})
    assert not transport.closed


def test_the_body_clock_waits_while_the_gateway_has_not_asked_for_the_body(loop: ManualClockLoop) -> None:
    # Expect: 100-continue: the client may not send until the app reads, which here it does late.
    release = asyncio.Event()

    async def late_reader(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await echo_app(scope, receive, send)

    server = Server(loop, late_reader)
    protocol, transport = server.connect()
    head = b"POST /v1/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    protocol.data_received(head)
    loop.advance(35)
    assert transport.out == b""
    assert not transport.closed
    release.set()
    loop.settle()
    assert transport.out == b"HTTP/1.1 100 Continue\r\n\r\n"
    loop.advance(10.1)  # the client's own 10 s, from (about) the 100 Continue
    only_error(transport, 408)


async def early_answer(scope: Any, receive: Any, send: Any) -> None:
    """Answers without reading the body (as a 413 on the declared size does)."""
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def test_a_body_too_slow_after_its_answer_closes_without_a_second_answer(loop: ManualClockLoop) -> None:
    server = Server(loop, early_answer)
    protocol, transport = server.connect()
    protocol.data_received(b"POST /v1/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 600\r\n\r\n")
    loop.advance(10.1)
    assert transport.closed
    assert [status for status, _, _ in responses(bytes(transport.out))] == [413]


def test_a_connection_answered_before_its_body_came_in_still_closes_when_idle(loop: ManualClockLoop) -> None:
    server = Server(loop, early_answer)
    protocol, transport = server.connect()
    protocol.data_received(b"POST /v1/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 600\r\n\r\n")
    loop.settle()
    assert [status for status, _, _ in responses(bytes(transport.out))] == [413]
    loop.advance(2)
    protocol.data_received(b"x" * 600)  # the rest of the body, after the answer
    loop.advance(29.9)
    assert not transport.closed
    loop.advance(0.2)  # the idle timeout, from the end of the body
    assert transport.closed


def test_a_single_read_request_arms_no_timer_of_the_protocol(loop: ManualClockLoop, server: Server) -> None:
    protocol, transport = server.connect()
    protocol.data_received(GET)
    loop.settle()
    armed = loop.timers_armed
    for _ in range(50):
        protocol.data_received(b"POST /v1/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc")
        loop.settle()
    assert len(responses(bytes(transport.out))) == 51
    assert loop.timers_armed - armed == 50  # uvicorn's idle clock after each answer, and nothing else


def test_a_connection_over_the_cap_gets_503_and_never_reaches_the_app(loop: ManualClockLoop) -> None:
    calls = []

    async def counting_app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await echo_app(scope, receive, send)

    server = Server(loop, counting_app, dataclasses.replace(LIMITS, max_connections=3))
    held = [server.connect() for _ in range(3)]
    assert len(server.state.connections) == 3
    protocol, transport = server.connect()
    protocol.data_received(GET)
    loop.settle()
    (status, headers, body), *_ = responses(bytes(transport.out))
    assert status == 503
    assert headers["retry-after"] == "1"
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert (error["type"], error["code"]) == ("overloaded_error", "too_many_connections")
    assert transport.eof  # the 503 and a FIN at once; what the client sends meanwhile is drained
    assert protocol not in server.state.connections
    assert calls == []
    loop.advance(REFUSED_LINGER + 0.1)
    assert transport.closed
    held[0][1].close()
    loop.settle()
    protocol, transport = server.connect()
    protocol.data_received(GET)
    loop.settle()
    assert [status for status, _, _ in responses(bytes(transport.out))] == [200]
    assert calls == ["/v1/models"]


MALFORMED = {
    "bad Content-Length": b"POST /v1/x HTTP/1.1\r\nHost: gw\r\nContent-Length: abc\r\n\r\n",
    "bad chunk size": b"POST /v1/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "Transfer-Encoding and Content-Length": (
        b"POST /v1/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc"
    ),
    "unknown method": b"FOO / HTTP/1.1\r\nHost: gw\r\n\r\n",
    "header line without a colon": b"GET / HTTP/1.1\r\nHost gw\r\n\r\n",
    "NUL in the request line": b"GET /\x00 HTTP/1.1\r\nHost: gw\r\n\r\n",
    "CONNECT": b"CONNECT gw:443 HTTP/1.1\r\nHost: gw\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_request_gets_400_with_an_openai_error_body(
    loop: ManualClockLoop, server: Server, raw: bytes
) -> None:
    protocol, transport = server.connect()
    protocol.data_received(raw)
    loop.settle()
    error = only_error(transport, 400)  # also: the app (waiting for a chunked body) wrote nothing
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_http_request")
    assert error["message"].startswith("Invalid HTTP request: ")


def test_garbage_after_a_complete_request_finishes_its_answer_then_closes(
    loop: ManualClockLoop, server: Server
) -> None:
    protocol, transport = server.connect()
    protocol.data_received(GET + b"FOO / HTTP/1.1\r\n\r\n")
    loop.settle()
    [(status, headers, _)] = responses(bytes(transport.out))
    assert (status, headers["connection"]) == (200, "close")
    assert transport.closed


def test_a_head_over_the_bound_gets_431(loop: ManualClockLoop, server: Server) -> None:
    protocol, transport = server.connect()
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: gw\r\nX-Big: ")
    for _ in range(MAX_HEAD_BYTES // 16_384 + 1):
        protocol.data_received(b"a" * 16_384)
    loop.settle()
    assert only_error(transport, 431)["code"] == "request_header_fields_too_large"


def test_an_upgrade_request_is_served_as_plain_http(loop: ManualClockLoop, server: Server) -> None:
    protocol, transport = server.connect()
    protocol.data_received(
        b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    loop.settle()
    assert [status for status, _, _ in responses(bytes(transport.out))] == [200]


def test_the_factory_pickles_for_worker_processes_and_carries_the_settings(loop: ManualClockLoop) -> None:
    settings = ServerSettings(
        header_timeout=3, body_timeout=4, body_min_rate=50, idle_timeout=2, max_connections=7
    )
    factory = pickle.loads(pickle.dumps(protocol_factory(settings)))
    config = Config(app=echo_app, ws="none", lifespan="off", log_config=None)
    protocol = factory(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    assert isinstance(protocol, GatewayProtocol)
    assert protocol.limits == ConnectionLimits(3, 4, 50, 2, 7)
    assert protocol.timeout_keep_alive == 2
