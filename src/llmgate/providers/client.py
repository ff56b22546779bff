"""The upstream HTTP/1.1 client: pooled keep-alive connections, each request written in one piece, answers
parsed by httptools and read whole or piece by piece.

aiohttp's client took about half of a proxied chat call's CPU in the bench (request and response objects,
multidicts, timer handles, payload and cookie machinery); this client does what the providers need and
nothing more. It speaks plain HTTP and TLS (the system's CA store), caches DNS answers, caps the open
connections, drops idle ones after a keep-alive time, and stops reading from a server while a slow reader
catches up. It asks for gzip or deflate and decodes them. It never follows redirects, keeps no cookies,
knows no proxies and no HTTP/2. Every failure is a ``ClientError`` (a ``TimeoutError`` is the caller's own
deadline); a connection that failed or was left mid-answer is closed, never reused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import httptools

USER_AGENT = "llmgate"
HIGH_WATER = 1 << 20  # bytes buffered from a server before it is asked to wait (pause_reading)
MAX_HEAD = 256 << 10  # bytes of response headers: past this, a server is not speaking HTTP to us
MAX_BODY = 256 << 20  # bytes of a body read whole (an embeddings answer of 2,048 long vectors fits)
_UNSAFE_TARGET = re.compile(r"[^A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]")
_BAD_HEADER = re.compile(r"[\r\n\x00]")
_DECODERS = {"gzip": 31, "x-gzip": 31, "deflate": 15}  # zlib wbits per Content-Encoding
_DEFAULT_HEADERS = {
    "user-agent": f"User-Agent: {USER_AGENT}",
    "accept-encoding": "Accept-Encoding: gzip, deflate",
}
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class ClientError(Exception):
    """The exchange failed: no connection, a malformed answer, or a connection that broke mid-answer."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: scheme, host and port, the Host header, and the base URL's path."""

    tls: bool
    host: str
    port: int
    host_header: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> Origin:
        """The origin of an ``http://`` or ``https://`` URL; ``ValueError`` for anything else."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        return cls(tls, parts.hostname, port, parts.netloc.rpartition("@")[2], parts.path.rstrip("/"))


class _Connection(asyncio.Protocol):
    """One socket, one exchange at a time: the answer's head, then its body, as httptools parses them."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.idle_since = 0.0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.reusable = False
        self._parser: httptools.HttpResponseParser | None = None
        self._head: asyncio.Future[None] | None = None
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._head_size = 0
        self._paused = False
        self._complete = False
        self._until_close = False
        self._error: ClientError | None = None
        self._waiter: asyncio.Future[None] | None = None

    def begin(self, request: bytes) -> asyncio.Future[None]:
        """Write a request; the future of its answer's head."""
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self._head = asyncio.get_running_loop().create_future()
        self.headers, self._body, self._buffered, self._head_size = {}, deque(), 0, 0
        self._complete = self._until_close = self.reusable = False
        self.transport.write(request)
        return self._head

    async def chunk(self) -> bytes:
        """The next piece of the body as it arrived; ``b""`` at its end."""
        while not self._body and not self._complete and self._error is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._body:
            data = self._body.popleft() if len(self._body) == 1 else b"".join(self._body)
            self._body.clear()
            self._buffered = 0
            if self._paused and self.transport is not None:
                self._paused = False
                self.transport.resume_reading()
            return data
        if self._error is not None:
            raise self._error
        return b""

    @property
    def complete(self) -> bool:
        return self._complete

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._parser is None or self._complete:  # nothing was asked: a server talking out of turn
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(ClientError(f"unreadable answer: {error}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._parser is None or self._complete:
            return
        if self._head is not None and self._head.done() and self._until_close and exc is None:
            self._complete = True  # a body without a length ends when the server closes
            self._wake()
            return
        reason = f": {exc}" if exc is not None else ""
        stage = "before answering" if self._head is None or not self._head.done() else "mid-answer"
        self._fail(ClientError(f"the server closed the connection {stage}{reason}"))

    def pause_writing(self) -> None:  # requests are written whole; the transport buffers them
        pass

    def resume_writing(self) -> None:
        pass

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._head_size > MAX_HEAD:
            if self._error is None:
                self._fail(ClientError(f"the answer's headers exceed {MAX_HEAD >> 10} KiB"))
                self.close()
            return
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {text}" if key in self.headers else text

    def on_headers_complete(self) -> None:
        assert self._parser is not None and self._head is not None
        self.status = self._parser.get_status_code()
        if self.status < 200:  # 100 Continue, 103 Early Hints: the answer itself follows
            return
        headers = self.headers
        self._until_close = "content-length" not in headers and "chunked" not in headers.get(
            "transfer-encoding", ""
        )
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
            self.headers = {}
            return
        self._complete = True
        self.reusable = self._parser.should_keep_alive() and not self._until_close
        self._wake()

    def _fail(self, error: ClientError) -> None:
        self._error = error
        if self._head is not None and not self._head.done():
            self._head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Answer:
    """An answer's status and headers (names in lower case, repeated ones joined), and its body."""

    __slots__ = ("_client", "_connection", "_decoder", "_key", "headers", "status")

    def __init__(self, client: HttpClient, key: Origin, connection: _Connection) -> None:
        self._client, self._key = client, key
        self._connection: _Connection | None = connection
        self.status = connection.status
        self.headers: Mapping[str, str] = connection.headers
        encoding = connection.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "") and encoding not in _DECODERS:
            self.release()
            raise ClientError(f"the server answered in an encoding llmgate does not read: {encoding}")
        self._decoder = zlib.decompressobj(_DECODERS[encoding]) if encoding in _DECODERS else None

    async def chunk(self) -> bytes:
        """The next piece of the body (decoded); ``b""`` at its end."""
        connection = self._connection
        if connection is None:
            return b""
        while True:
            data = await connection.chunk()
            if self._decoder is None:
                return data
            try:
                decoded = self._decoder.decompress(data) if data else self._decoder.flush()
            except zlib.error as error:
                raise ClientError(f"the server's compressed body is corrupt: {error}") from None
            if decoded or not data:
                return decoded

    async def read(self) -> bytes:
        """The whole body (at most ``MAX_BODY`` bytes)."""
        first = await self.chunk()
        if not first:
            return first
        parts, size = [first], len(first)
        while data := await self.chunk():
            size += len(data)
            if size > MAX_BODY:
                raise ClientError(f"the answer is larger than {MAX_BODY >> 20} MiB")
            parts.append(data)
        return b"".join(parts)

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool if the body was read to its end,
        or is closed. Safe to call more than once."""
        connection = self._connection
        if connection is not None:
            self._connection = None
            self._client.give_back(self._key, connection)

    async def __aenter__(self) -> Answer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


class HttpClient:
    """Pooled HTTP/1.1 connections to any number of origins."""

    def __init__(
        self,
        *,
        max_connections: int = 1000,
        keepalive_seconds: float = 30.0,
        dns_seconds: float = 300.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: the context for https origins (by default, certificates checked against the system's
        CA store)."""
        self._idle: dict[Origin, list[_Connection]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._keepalive = keepalive_seconds
        self._dns_seconds = dns_seconds
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._tls = tls
        self._closed = False

    async def request(
        self,
        origin: Origin,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes | None,
        *,
        connect_timeout: float,
    ) -> Answer:
        """Send a request to ``origin`` (``path`` below its base path) and wait for the answer's head."""
        request = _request_bytes(origin, method, path, headers, body)
        await self._slots.acquire()
        try:
            connection = self._pooled(origin) or await self._connect(origin, connect_timeout)
        except BaseException:
            self._slots.release()
            raise
        try:
            await connection.begin(request)
        except BaseException:
            connection.close()
            self._slots.release()
            raise
        return Answer(self, origin, connection)

    def give_back(self, origin: Origin, connection: _Connection) -> None:
        """An answer is done with its connection: pool it if it can serve another request."""
        self._slots.release()
        if connection.complete and connection.reusable and not connection.lost and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(origin, []).append(connection)
        else:
            connection.close()

    async def close(self) -> None:
        """Close every idle connection; answers still being read close theirs when released."""
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def _pooled(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        stale = time.monotonic() - self._keepalive
        while idle:
            connection = idle.pop()  # the most recently used: the likeliest to be still open
            transport = connection.transport
            if (
                connection.lost
                or transport is None
                or transport.is_closing()
                or connection.idle_since < stale
            ):
                connection.close()
                continue
            return connection
        return None

    async def _connect(self, origin: Origin, seconds: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if origin.tls else None
        try:
            async with asyncio.timeout(seconds):
                addresses = await self._resolve(origin.host, origin.port)
                for index, address in enumerate(addresses):
                    try:
                        _, connection = await loop.create_connection(
                            _Connection,
                            address,
                            origin.port,
                            ssl=tls,
                            server_hostname=origin.host if tls is not None else None,
                        )
                        return connection
                    except OSError:
                        if index == len(addresses) - 1:
                            raise
        except TimeoutError:
            raise ClientError(f"no connection to {origin.host_header} within {seconds:g}s") from None
        except (OSError, ssl.SSLError) as error:
            raise ClientError(f"cannot connect to {origin.host_header}: {error}") from None
        raise ClientError(f"{origin.host} has no address")

    async def _resolve(self, host: str, port: int) -> list[str]:
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        loop = asyncio.get_running_loop()
        # socket.getaddrinfo in a thread (as the stdlib loop does); the answer is kept dns_seconds.
        infos = await loop.run_in_executor(None, socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if len(self._dns) > 1024:
            self._dns.clear()
        self._dns[(host, port)] = (time.monotonic() + self._dns_seconds, addresses)
        return addresses

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls


def _request_bytes(
    origin: Origin, method: str, path: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    """The request's head and body, refusing header names or values that would split it."""
    target = origin.prefix + path
    if _UNSAFE_TARGET.search(target):
        target = quote(target, safe="/:?#[]@!$&'()*+,;=%~")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {origin.host_header}"]
    defaults = dict(_DEFAULT_HEADERS)
    for name, value in headers.items():
        if _BAD_HEADER.search(name) or _BAD_HEADER.search(value):
            raise ClientError(f"header {name!r} holds a line break or NUL: not sent")
        lower = name.lower()
        if lower in _FRAMING:  # the client writes these itself, from the request it sends
            continue
        defaults.pop(lower, None)
        lines.append(f"{name}: {value}")
    lines += defaults.values()
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return head + body if body else head
