"""One upstream HTTP/1.1 connection: a request written whole, its answer parsed by httptools, the body
handed over piece by piece with back-pressure. Used by ``client.py``, which pools these.

What a server gets to send is bounded: one final answer per request (bytes after it make the connection
unusable, never part of the next answer), at most ``MAX_HEADERS`` header fields and ``MAX_HEAD`` bytes
of them; trailers are read past, not merged into the headers.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque

import httptools

HIGH_WATER = 1 << 20  # bytes buffered from a server before it is asked to wait (pause_reading)
MAX_HEAD = 64 << 10  # bytes of header fields in one answer
MAX_HEADERS = 256  # header fields in one answer
NO_BODY = frozenset({204, 304})
CLOCK_SLACK = 0.001  # seconds: a timer that fires this close to its deadline has reached it


class ClientError(Exception):
    """The exchange failed: no connection, a malformed answer, or a connection that broke mid-answer."""


class ConnectTimeout(ClientError):
    """No connection within the time allowed for connecting."""


class AnswerTimeout(ClientError, TimeoutError):
    """The answer's head, or the next piece of its body, did not come by the caller's deadline (the
    connection is closed: what was asked is abandoned)."""


class Connection(asyncio.Protocol):
    """One socket, one exchange at a time: the answer's head, then its body.

    A wait for the answer can have a deadline (loop time). One timer per connection watches them: it
    is armed at the first deadline and, when it fires early for a later one, re-armed at that; a
    request pays for no timer of its own (``asyncio.timeout`` per call was ~3% of a request's CPU).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.idle_since = 0.0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.reusable = False
        self.complete = False
        self._parser: httptools.HttpResponseParser | None = None
        self._head: asyncio.Future[None] | None = None
        self._in_head = False
        self._repeated: dict[str, list[str]] = {}
        self._fields = 0
        self._head_size = 0
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._until_close = False
        self._error: ClientError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = math.inf  # the wait under way ends by then (loop time)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def begin(self, request: bytes, deadline: float = math.inf) -> asyncio.Future[None]:
        """Write a request; the future of its answer's head, which fails with ``AnswerTimeout`` if
        the head is not in by ``deadline``."""
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self._head = asyncio.get_running_loop().create_future()
        if deadline != math.inf:
            self._watch(deadline)
        self._start_head()
        self._body, self._buffered = deque(), 0
        self.complete = self._until_close = self.reusable = False
        self.transport.write(request)
        return self._head

    async def chunk(self, deadline: float = math.inf) -> bytes:
        """The next piece of the body as it arrived; ``b""`` at its end; ``AnswerTimeout`` if it has
        to be waited for past ``deadline``."""
        while not self._body and not self.complete and self._error is None:
            self._waiter = asyncio.get_running_loop().create_future()
            if deadline != math.inf:
                self._watch(deadline)
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._body:
            data = self._body.popleft() if len(self._body) == 1 else b"".join(self._body)
            self._body.clear()
            self._buffered = 0
            self._resume()
            return data
        if self._error is not None:
            raise self._error
        return b""

    def settle(self) -> bool:
        """Ready for another request (reading resumed, nothing of this one left unread)?"""
        if not (self.complete and self.reusable) or self.lost:
            return False
        self._body.clear()
        self._buffered = 0
        self._resume()
        return True

    def close(self) -> None:
        self.lost = True
        self._unwatch()
        if self.transport is not None:
            self.transport.close()

    # Deadlines

    def _watch(self, deadline: float) -> None:
        self._deadline = deadline
        if deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_deadline)
            self._timer_at = deadline

    def _unwatch(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf

    def _on_deadline(self) -> None:
        self._timer, self._timer_at = None, math.inf
        head = self._head
        if self._waiter is None and (head is None or head.done()):
            return  # no wait under way: the next one arms the timer again
        deadline = self._deadline
        if asyncio.get_running_loop().time() < deadline - CLOCK_SLACK:  # for an earlier wait's deadline
            self._watch(deadline)
            return
        self._fail(AnswerTimeout("no answer by the deadline"))
        self.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._parser is None or self.complete:  # nothing was asked: a server talking out of turn
            self.reusable = False
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ClientError("the server switched protocols (101): not HTTP/1.1 any more"))
            self.close()
        except httptools.HttpParserError as error:
            # After the final answer (more bytes in the same read, stopped by on_message_begin): the
            # answer stands and the connection is not used again. Before it: the answer is unreadable.
            if self.complete:
                self.reusable = False
            else:
                self._fail(ClientError(f"unreadable answer: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._unwatch()
        if self._parser is None or self.complete:
            return
        if self._head is not None and self._head.done() and self._until_close and exc is None:
            self.complete = True  # a body without a length ends when the server closes
            self._wake()
            return
        reason = f": {exc}" if exc is not None else ""
        stage = "before answering" if self._head is None or not self._head.done() else "mid-answer"
        self._fail(ClientError(f"the server closed the connection {stage}{reason}"))

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self.complete:
            raise _Overrun

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:  # a chunked body's trailer fields: read past
            return
        self._fields += 1
        self._head_size += len(name) + len(value)
        if self._fields > MAX_HEADERS or self._head_size > MAX_HEAD:
            if self._error is None:
                limit = f"{MAX_HEADERS} header fields or {MAX_HEAD >> 10} KiB of them"
                self._fail(ClientError(f"the answer has more than {limit}"))
                self.close()
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key in self.headers:  # joined once, when the head is complete
            self._repeated.setdefault(key, [self.headers[key]]).append(text)
        else:
            self.headers[key] = text

    def on_headers_complete(self) -> None:
        assert self._parser is not None and self._head is not None
        if self._error is not None:
            return
        self.status = self._parser.get_status_code()
        if self.status < 200:  # 100 Continue, 103 Early Hints: the answer itself follows
            return
        self._in_head = False
        headers = self.headers
        for key, values in self._repeated.items():
            headers[key] = ", ".join(values)
        chunked = headers.get("transfer-encoding", "").lower().rstrip().endswith("chunked")
        self._until_close = self.status not in NO_BODY and "content-length" not in headers and not chunked
        if not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        assert self._parser is not None
        if self.status < 200:
            self._start_head()
            return
        self.complete = True
        self.reusable = self._parser.should_keep_alive() and not self._until_close
        self._wake()

    def _start_head(self) -> None:
        self.headers, self._repeated, self._fields, self._head_size = {}, {}, 0, 0
        self._in_head = True

    def _resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def _fail(self, error: ClientError) -> None:
        if self._error is None:  # the first failure is the one told (a close that follows is its echo)
            self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class _Overrun(Exception):
    """A second message began after the final answer (raised inside httptools to stop it)."""
