"""The HTTP/1.1 connection: uvicorn's httptools protocol, bounded against slow, idle and too many clients,
and answering in the OpenAI error shape wherever it answers by itself.

uvicorn bounds only the wait between two requests (``timeout_keep_alive``). This subclass adds, per
worker process (Apache mod_reqtimeout's ``header=..., body=...,MinRate=...`` semantics):

* ``header_timeout``: the request line and headers must be in within this many seconds of the
  connection opening, or of the first byte of the next request on a kept-alive connection; then 408
  (nothing at all, for a connection that never sent a byte) and close;
* ``body_timeout`` + ``body_min_rate``: the body must be in by ``body_timeout + bytes_received /
  body_min_rate`` seconds after the headers, and no gap between two of its reads may last longer than
  ``body_timeout`` (a client that sends most of a large body fast and then stalls is not given the
  time its bytes earned); then 408 if no answer has started, and close;
* ``max_connections``: a connection over the cap gets a 503 with ``Retry-After`` and is closed, without
  reaching the app;
* a head over ``MAX_HEAD_BYTES`` that is still incomplete: 431 and close (llhttp has no limit of its
  own, and a fast sender would otherwise fill memory well within the header timeout);
* malformed requests: 400 with an OpenAI error body instead of uvicorn's text.

One timer per connection at most, armed only when a read leaves a request incomplete: a request whose
head and body come in one read (nearly every API call) arms none.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any, cast

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.utils import get_remote_addr
from uvicorn.server import ServerState

from llmgate.config.settings import ServerSettings
from llmgate.server.cycle import GatewayCycle, extensions
from llmgate.server.errors import encode_error

log = logging.getLogger("llmgate.server.protocol")

MAX_HEAD_BYTES = 64 * 1024
"""Request line and headers, at most (read by read: the bound is this plus one read, <= 256 KiB)."""
REFUSED_LINGER = 1.0
"""Seconds a refused connection is drained after its 503, so that the kernel does not reset it (and
discard the 503) for the request bytes it has not read; the client's own close ends it sooner."""

# Where a connection is. One timer serves every phase: the header clock in _WAITING and _HEAD, the
# body clock in _BODY, the drain of a refused connection in _REFUSED.
_WAITING = 0  # open, no byte of a request yet
_HEAD = 1  # bytes of a request in, its headers not complete
_BODY = 2  # headers complete, body not
_DONE = 3  # the request is in: the app's turn, then uvicorn's keep-alive clock
_REFUSED = 4  # over the connection cap


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The bounds a connection lives within (seconds, bytes per second, connections per process)."""

    header_timeout: float
    body_timeout: float
    body_min_rate: int
    idle_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, server: ServerSettings) -> ConnectionLimits:
        """The limits configured under ``server``."""
        return cls(
            header_timeout=server.header_timeout,
            body_timeout=server.body_timeout,
            body_min_rate=server.body_min_rate,
            idle_timeout=server.idle_timeout,
            max_connections=server.max_connections,
        )


DEFAULT_LIMITS = ConnectionLimits.from_settings(ServerSettings())


def protocol_factory(server: ServerSettings) -> type[asyncio.Protocol]:
    """What ``uvicorn.run(http=...)`` takes: ``GatewayProtocol`` with the limits configured under
    ``server``. It pickles (a module-level class and a frozen dataclass of numbers, no secrets), so
    ``--workers N`` hands it to every worker process."""
    # uvicorn types http= as a class but only calls it, with keyword arguments: a partial does the same.
    factory = functools.partial(GatewayProtocol, limits=ConnectionLimits.from_settings(server))
    return cast(type[asyncio.Protocol], factory)


class GatewayProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the gateway's connection bounds and JSON protocol errors."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ConnectionLimits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        # uvicorn annotates it int, but it only ever reaches loop.call_later, which takes seconds as float.
        self.timeout_keep_alive = limits.idle_timeout  # type: ignore[assignment]
        self._phase = _WAITING
        self._timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._body_bytes = 0
        self._body_start = 0.0  # the body clock's origin: the deadline is this + body_bytes / min_rate
        self._body_last = 0.0  # when the body's last bytes came in

    # Connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the connection in, or refuse it when the process is at ``max_connections``."""
        if len(self.connections) >= self.limits.max_connections:
            self._refuse(cast(asyncio.Transport, transport))
            return
        super().connection_made(cast(asyncio.Transport, transport))
        self._timer = self.loop.call_later(self.limits.header_timeout, self._on_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the connection's timer with it."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse a read (uvicorn's, with JSON errors and debug-level logs), then arm the clock of the
        phase the read left the request in, if it is incomplete and no clock runs yet."""
        entered = self._phase
        if entered == _DONE:  # a next request (or a stray CRLF) has begun: its header clock starts now
            self._phase = _HEAD
        elif entered == _BODY:
            self._body_bytes += len(data)
            self._body_last = self.loop.time()
        elif entered == _REFUSED:
            return  # drained, unread: the 503 is already out
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:  # uvicorn's callbacks refused it: parsing its target
            self.send_400_response("Invalid HTTP request: its target is not a path (nor a full URL).")
            return
        except httptools.HttpParserError as exc:
            # llhttp's reason ("Invalid character in chunk size"): a fixed text, never the client's bytes.
            self.send_400_response(f"Invalid HTTP request: {exc}.")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
                return
            # Anything else (h2c, CONNECT) is served as plain HTTP, as uvicorn does, minus its two
            # warnings per request: a client could fill the log with them.
            self._debug("ignored an unsupported Upgrade")
        phase = self._phase
        if phase == _HEAD:
            if entered == _HEAD:
                self._head_bytes += len(data)
                if self._head_bytes > MAX_HEAD_BYTES:
                    message = f"The request line and headers are over {MAX_HEAD_BYTES} bytes."
                    self._answer_and_close(431, message, "request_header_fields_too_large")
                    return
            if self._timer is None:
                self._timer = self.loop.call_later(self.limits.header_timeout, self._on_deadline)
        elif phase == _BODY and self._timer is None:  # the headers completed in this read
            self._body_start = self._body_last = self.loop.time()
            self._timer = self.loop.call_later(self.limits.body_timeout, self._on_deadline)

    def send_400_response(self, msg: str) -> None:
        """The answer to a request that cannot be parsed: an OpenAI error body (uvicorn's is text), and
        a debug line only (uvicorn warns, so a client could fill the log)."""
        self._debug("%s", msg)
        self._answer_and_close(400, msg, "invalid_http_request")

    # Parser callbacks: the phase bookkeeping around uvicorn's own, which they call by name rather than
    # through super(): these run on every request, and super() costs a tenth of a microsecond each.

    def on_message_begin(self) -> None:
        """A request starts."""
        self._phase = _HEAD
        HttpToolsProtocol.on_message_begin(self)
        self.scope["extensions"] = extensions()

    def on_headers_complete(self) -> None:
        """The head is in: its request goes to the app; its clock stops, and the body's starts if the
        read ends before the body does."""
        self._start_cycle()  # may raise (a bad URL): the request stays in _HEAD
        self._phase = _BODY
        self._head_bytes = self._body_bytes = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start_cycle(self) -> None:
        """uvicorn's ``on_headers_complete``, but for the cycle's class (``GatewayCycle``) and the
        ``limit_concurrency`` check (never set: ``max_connections`` replaces it)."""
        parser, scope = self.parser, self.scope
        http_version = parser.get_http_version()
        scope["method"] = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        if parser.should_upgrade() and self._should_upgrade():
            return
        parsed_url = httptools.parse_url(self.url)
        raw_path = parsed_url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        scope["path"] = self.root_path + path
        scope["raw_path"] = self.root_path.encode("ascii") + raw_path
        scope["query_string"] = parsed_url.query or b""
        existing = self.cycle
        self.cycle = GatewayCycle(
            scope=scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=http_version != "1.0" and parser.should_keep_alive(),
            on_response=self.on_response_complete,
        )
        if existing is None or existing.response_complete:
            self._start_asgi_task(self.cycle, self.app)
        else:  # pipelined: answered in turn
            self.flow.pause_reading()
            self.pipeline.appendleft((self.cycle, self.app))

    def on_message_complete(self) -> None:
        """The request is in: no clock of ours runs while the app answers."""
        self._phase = _DONE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        HttpToolsProtocol.on_message_complete(self)
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and self.timeout_keep_alive_task is None:
            # Answered before its body was in (a 413 on the declared size, say): uvicorn armed its idle
            # clock at the answer, and the body's bytes stopped it. Without this the connection, now
            # idle, would stay open for good. (Not on an Upgrade: the transport may change hands.)
            if self.parser.should_upgrade():
                return
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    # Deadlines and answers

    def _on_deadline(self) -> None:
        self._timer = None
        phase = self._phase
        if phase == _BODY:
            left = self._body_time_left()
            if left > 0:  # bytes came in since the clock was armed: each buys 1 / min_rate seconds
                self._timer = self.loop.call_later(left, self._on_deadline)
                return
            self._debug("body too slow, %d bytes in", self._body_bytes)
            self._answer_and_close(408, "The request body did not arrive in time.", "request_timeout")
        elif phase == _HEAD:
            self._debug("request head too slow")
            self._answer_and_close(408, "The request headers did not arrive in time.", "request_timeout")
        elif phase == _WAITING:  # nothing was asked: a bare close, as for an idle kept-alive connection
            self._debug("no request within the header timeout")
            self.transport.close()
        elif phase == _REFUSED:  # the 503 went out a while ago
            self.transport.close()

    def _body_time_left(self) -> float:
        now = self.loop.time()
        limits = self.limits
        if self.flow.read_paused or self.cycle.waiting_for_100_continue:
            # The gateway holds the body back (the app has not read what came in, or has not asked for
            # it after Expect: 100-continue): the client's clock starts again once it may send.
            self._body_start = now - self._body_bytes / limits.body_min_rate
            self._body_last = now
        earned = self._body_start + limits.body_timeout + self._body_bytes / limits.body_min_rate - now
        return min(earned, self._body_last + limits.body_timeout - now)

    def _answer_and_close(self, status: int, message: str, code: str) -> None:
        """Answer an error of the connection itself and close, unless an answer is already on its way:
        a connection carries one response at a time."""
        cycle = self.cycle
        if self._phase == _BODY:  # the failing request has a cycle, and an app task waiting on its body
            cycle.disconnected = True  # the app's receive() says so and its answer goes nowhere
            cycle.message_event.set()
            if cycle.response_started or self.pipeline:  # its answer, or an earlier one, is under way
                self.transport.close()
                return
        elif cycle is not None and not cycle.response_complete:
            # A pipelined request failed while an earlier one is answered: finish that, then close.
            cycle.keep_alive = False
            self.flow.pause_reading()
            return
        self._write_error(status, encode_error(message, "invalid_request_error", None, code))
        self.transport.close()

    def _refuse(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._phase = _REFUSED
        limit = self.limits.max_connections
        message = f"The gateway is at its limit of {limit} connections; retry shortly."
        body = encode_error(message, "overloaded_error", None, "too_many_connections")
        self._write_error(503, body, retry_after=True)
        self._debug("refused, %d connections open", limit)
        if transport.can_write_eof():
            transport.write_eof()  # the 503 and a FIN go out now; what the client sends is drained
            self._timer = self.loop.call_later(REFUSED_LINGER, self._on_deadline)
        else:
            transport.close()

    def _write_error(self, status: int, body: bytes, *, retry_after: bool = False) -> None:
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: application/json\r\ncontent-length: ", b"%d\r\n" % len(body)])
        if retry_after:
            content.append(b"retry-after: 1\r\n")
        content.extend([b"connection: close\r\n\r\n", body])
        self.transport.write(b"".join(content))

    def _debug(self, what: str, *args: object) -> None:
        # Debug only, and nothing formatted unless it is on: a slowloris must not fill the log.
        if log.isEnabledFor(logging.DEBUG):
            peer = self.client or get_remote_addr(self.transport)
            log.debug("%s: " + what, f"{peer[0]}:{peer[1]}" if peer else "client", *args)
