"""The upstream HTTP/1.1 client: pooled keep-alive connections (``connection.py``), each request written in
one piece, answers read whole or piece by piece.

aiohttp's client took about a third of a proxied chat call's CPU in the bench (request and response objects,
multidicts, timer handles, payload and cookie machinery); this client does what the providers need and
nothing more. It speaks plain HTTP and TLS (the system's CA store), caches DNS answers (one lookup at a
time per name), caps the connections in use, closes idle ones after a keep-alive time, and asks for gzip or
deflate and decodes them in bounded steps. It never follows redirects, keeps no cookies, knows no proxies
and no HTTP/2. Every failure is a ``ClientError`` (``ConnectTimeout`` when connecting took too long); a
connection that failed or was left mid-answer is closed, never reused.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import math
import re
import socket
import ssl
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from llmgate.providers.connection import AnswerTimeout, ClientError, Connection, ConnectTimeout

__all__ = ["Answer", "ClientError", "ConnectTimeout", "HttpClient", "Origin"]

USER_AGENT = "llmgate"
MAX_BODY = 256 << 20  # bytes of a body read whole (an embeddings answer of 2,048 long vectors fits)
DECODE_STEP = 1 << 20  # bytes a compressed body is inflated by at a time
_UNSAFE_TARGET = re.compile(rb"[^A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]|%(?![0-9A-Fa-f]{2})")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_DECODERS = {"gzip": 31, "x-gzip": 31, "deflate": 15}  # zlib wbits per Content-Encoding
_DEFAULT_HEADERS = {
    "user-agent": f"User-Agent: {USER_AGENT}",
    "accept-encoding": "Accept-Encoding: gzip, deflate",
}
_FRAMING = frozenset({"host", "content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: scheme, host and port, the Host header, the base URL's path, and the Basic
    credentials its user and password make (if it has them)."""

    tls: bool
    host: str
    port: int
    host_header: str
    prefix: str
    authorization: str | None = None

    @classmethod
    def parse(cls, url: str) -> Origin:
        """The origin of an ``http://`` or ``https://`` URL; ``ValueError`` for anything else."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host = parts.hostname if parts.hostname.isascii() else parts.hostname.encode("idna").decode()
        shown = f"[{host}]" if ":" in host else host
        host_header = shown if parts.port is None else f"{shown}:{port}"
        authorization = None
        if parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            authorization = "Basic " + base64.b64encode(pair.encode()).decode()
        return cls(tls, host, port, host_header, parts.path.rstrip("/"), authorization)


class Answer:
    """An answer's status and headers (names in lower case, repeated ones joined), and its body."""

    __slots__ = ("_client", "_connection", "_decoder", "_fed", "_origin", "_tail", "headers", "status")

    def __init__(self, client: HttpClient, origin: Origin, connection: Connection) -> None:
        self._client, self._origin = client, origin
        self._connection: Connection | None = connection
        self.status = connection.status
        self.headers: Mapping[str, str] = connection.headers
        self._tail = b""
        self._fed = False
        encoding = connection.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "") and encoding not in _DECODERS:
            self.release()
            raise ClientError(f"the server answered in an encoding llmgate does not read: {encoding}")
        self._decoder = zlib.decompressobj(_DECODERS[encoding]) if encoding in _DECODERS else None

    async def chunk(self, deadline: float = math.inf) -> bytes:
        """The next piece of the body (decoded); ``b""`` at its end; ``AnswerTimeout`` if it has to be
        waited for past ``deadline`` (loop time)."""
        connection = self._connection
        if connection is None:
            return b""
        decoder = self._decoder
        if decoder is None:
            return await connection.chunk(deadline)
        while True:
            data = self._tail or await connection.chunk(deadline)
            try:
                if not data:
                    if self._fed and not decoder.eof:
                        raise ClientError("the server's compressed body ended early")
                    return b""
                self._fed = True
                decoded = decoder.decompress(data, DECODE_STEP)  # bounded: no bomb inflates at once
            except zlib.error as error:
                raise ClientError(f"the server's compressed body is corrupt: {error}") from None
            self._tail = decoder.unconsumed_tail
            if decoded:
                return decoded

    async def read(self, deadline: float = math.inf) -> bytes:
        """The whole body (at most ``MAX_BODY`` bytes), in by ``deadline`` or ``AnswerTimeout``."""
        parts, size = [], 0
        while data := await self.chunk(deadline):
            size += len(data)
            if size > MAX_BODY:
                raise ClientError(f"the answer is larger than {MAX_BODY >> 20} MiB")
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool if the body was read to its end,
        or is closed. Safe to call more than once."""
        connection = self._connection
        if connection is not None:
            self._connection = None
            self._client.give_back(self._origin, connection)

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
        """``max_connections`` in use at once; ``tls``: the context for https origins (by default,
        certificates checked against the system's CA store)."""
        self._idle: dict[Origin, list[Connection]] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._keepalive = keepalive_seconds
        self._dns_seconds = dns_seconds
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._lookups: dict[tuple[str, int], asyncio.Future[list[str]]] = {}
        self._tls = tls
        self._sweeper: asyncio.TimerHandle | None = None
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
        deadline: float = math.inf,
    ) -> Answer:
        """Send a request to ``origin`` (``path`` below its base path) and wait for the answer's head.

        ``deadline`` (loop time) bounds it all, a wait for a free connection included: past it,
        ``AnswerTimeout`` (a ``TimeoutError``); connecting is bounded by ``connect_timeout`` too.
        """
        request = request_bytes(origin, method, path, headers, body)
        await self._take_slot(deadline)
        try:
            connection = self._pooled(origin) or await self._open(origin, connect_timeout, deadline)
        except BaseException:
            self._slots.release()
            raise
        try:
            await connection.begin(request, deadline)
        except BaseException:
            connection.close()
            self._slots.release()
            raise
        return Answer(self, origin, connection)

    async def _open(self, origin: Origin, connect_timeout: float, deadline: float) -> Connection:
        left = deadline - asyncio.get_running_loop().time()
        if left >= connect_timeout:
            return await self._connect(origin, connect_timeout)
        try:  # the deadline comes first
            return await self._connect(origin, max(left, 0.0))
        except ConnectTimeout:
            raise AnswerTimeout("no connection by the deadline") from None

    async def _take_slot(self, deadline: float) -> None:
        if not self._slots.locked() or deadline == math.inf:
            await self._slots.acquire()
            return
        try:  # every connection is in use: wait for one, until the deadline
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            raise AnswerTimeout("no free connection by the deadline") from None

    def give_back(self, origin: Origin, connection: Connection) -> None:
        """An answer is done with its connection: pool it if it can serve another request."""
        self._slots.release()
        if self._closed or not connection.settle():
            connection.close()
            return
        connection.idle_since = time.monotonic()
        self._idle.setdefault(origin, []).append(connection)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self._keepalive, self._sweep)

    async def close(self) -> None:
        """Close every idle connection; answers still being read close theirs when released."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def _pooled(self, origin: Origin) -> Connection | None:
        idle = self._idle.get(origin)
        stale = time.monotonic() - self._keepalive
        while idle:
            connection = idle.pop()  # the most recently used: the likeliest to be still open
            transport = connection.transport
            if (
                connection.lost
                or transport is None
                or transport.is_closing()
                or connection.idle_since <= stale
            ):
                connection.close()
                continue
            return connection
        return None

    def _sweep(self) -> None:
        """Close the connections idle for the keep-alive time (every keep-alive period while any is)."""
        self._sweeper = None
        stale = time.monotonic() - self._keepalive
        for origin, connections in list(self._idle.items()):
            keep = [c for c in connections if c.idle_since > stale and not c.lost]
            for connection in connections:
                if connection not in keep:
                    connection.close()
            if keep:
                self._idle[origin] = keep
            else:
                del self._idle[origin]
        if self._idle and not self._closed:
            self._sweeper = asyncio.get_running_loop().call_later(self._keepalive, self._sweep)

    async def _connect(self, origin: Origin, seconds: float) -> Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if origin.tls else None
        try:
            async with asyncio.timeout(seconds):
                addresses = await self._resolve(origin.host, origin.port)
                for index, address in enumerate(addresses):
                    try:
                        _, connection = await loop.create_connection(
                            Connection,
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
            raise ConnectTimeout(f"no connection to {origin.host_header} within {seconds:g}s") from None
        except (OSError, ssl.SSLError) as error:
            raise ClientError(f"cannot connect to {origin.host_header}: {error}") from None
        raise ClientError(f"{origin.host} has no address")

    async def _resolve(self, host: str, port: int) -> list[str]:
        try:
            ipaddress.ip_address(host)
            return [host]
        except ValueError:
            pass
        key = (host, port)
        cached = self._dns.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        lookup = self._lookups.get(key)
        if lookup is None:  # one lookup per name at a time; everyone waiting shares its answer
            lookup = self._lookups[key] = asyncio.ensure_future(self._lookup(host, port))
            lookup.add_done_callback(lambda _: self._lookups.pop(key, None))
        return await asyncio.shield(lookup)

    async def _lookup(self, host: str, port: int) -> list[str]:
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


def request_bytes(
    origin: Origin, method: str, path: str, headers: Mapping[str, str], body: bytes | None
) -> bytes:
    """The request's head and body; ``ClientError`` for a method, header name or value that would not
    stay one field (a line break, a NUL, a name that is not an HTTP token)."""
    if not _TOKEN.fullmatch(method):
        raise ClientError(f"not an HTTP method: {method!r}")
    target = (origin.prefix + path).encode()
    if _UNSAFE_TARGET.search(target):
        target = _UNSAFE_TARGET.sub(lambda match: b"".join(b"%%%02X" % byte for byte in match[0]), target)
    lines = [f"{method} {target.decode()} HTTP/1.1", f"Host: {origin.host_header}"]
    defaults = dict(_DEFAULT_HEADERS)
    if origin.authorization is not None:
        defaults["authorization"] = f"Authorization: {origin.authorization}"
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or _BAD_VALUE.search(value):
            raise ClientError(f"header {name!r}: not a valid field name, or a line break or NUL in its value")
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
