"""The upstream HTTP/1.1 client against raw asyncio servers that answer exactly as each test says: framing
(length, chunked, until close), keep-alive and the pool, encodings, broken and malformed answers, header and
path safety, back-pressure and the connection cap."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
import subprocess
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from llmgate.providers import client as client_module
from llmgate.providers import connection as connection_module
from llmgate.providers.client import ClientError, ConnectTimeout, HttpClient, Origin, request_bytes

Reply = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Server:
    """A loopback server: every request it read (head and body) and how many connections it accepted."""

    port: int
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0

    def origin(self, prefix: str = "") -> Origin:
        return Origin.parse(f"http://127.0.0.1:{self.port}{prefix}")


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


@asynccontextmanager
async def serving(reply: Reply) -> AsyncIterator[Server]:
    server = Server(0)
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while (request := await _read_request(reader)) is not None:
                server.requests.append(request)
                await reply(request, writer)
                if writer.is_closing():
                    return
        except (ConnectionError, asyncio.CancelledError):  # the test is over: stop quietly
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers)


def answer(body: bytes, *, status: str = "200 OK", headers: str = "") -> Reply:
    async def reply(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body)
        await writer.drain()

    return reply


async def fetch(client: HttpClient, origin: Origin, path: str = "/v1/x", body: bytes | None = b"{}") -> bytes:
    async with await client.request(origin, "POST", path, {}, body, connect_timeout=2) as got:
        return await got.read()


async def test_a_request_is_written_with_host_length_agent_and_encoding_and_its_answer_read() -> None:
    async with serving(answer(b'{"ok":1}', headers="X-Request-Id: r1\r\n")) as server:
        client = HttpClient()
        got = await client.request(
            server.origin("/base"),
            "POST",
            "/v1/chat",
            {"Authorization": "Bearer k"},
            b"{}",
            connect_timeout=2,
        )
        assert (got.status, got.headers["x-request-id"]) == (200, "r1")
        assert await got.read() == b'{"ok":1}'
        got.release()
        await client.close()
    request = server.requests[0].decode()
    assert request.startswith("POST /base/v1/chat HTTP/1.1\r\n")
    for line in (f"Host: 127.0.0.1:{server.port}", "Authorization: Bearer k", "User-Agent: llmgate"):
        assert f"\r\n{line}\r\n" in request
    assert "Accept-Encoding: gzip, deflate" in request and "Content-Length: 2" in request
    assert request.endswith("\r\n\r\n{}")


async def test_connections_are_kept_alive_and_reused() -> None:
    async with serving(answer(b"a")) as server:
        client = HttpClient()
        assert [await fetch(client, server.origin()) for _ in range(5)] == [b"a"] * 5
        await client.close()
    assert server.connections == 1 and len(server.requests) == 5


async def test_idle_connections_older_than_the_keepalive_time_are_not_reused() -> None:
    async with serving(answer(b"a")) as server:
        client = HttpClient(keepalive_seconds=0)
        for _ in range(3):
            await fetch(client, server.origin())
        await client.close()
    assert server.connections == 3


async def test_a_connection_the_server_closed_after_answering_is_not_reused() -> None:
    async def close_after(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb")
        await writer.drain()
        writer.close()

    async with serving(close_after) as server:
        client = HttpClient()
        assert await fetch(client, server.origin()) == b"b"
        await asyncio.sleep(0.05)  # the close reaches the client
        assert await fetch(client, server.origin()) == b"b"
        await client.close()
    assert server.connections == 2


async def test_connection_close_in_the_answer_is_honoured() -> None:
    async with serving(answer(b"c", headers="Connection: close\r\n")) as server:
        client = HttpClient()
        await fetch(client, server.origin())
        await fetch(client, server.origin())
        await client.close()
    assert server.connections == 2


async def test_chunked_bodies_arrive_piece_by_piece() -> None:
    release = asyncio.Event()

    async def chunked(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")
        await writer.drain()

    async with serving(chunked) as server:
        client = HttpClient()
        async with await client.request(server.origin(), "POST", "/", {}, b"", connect_timeout=2) as got:
            assert await got.chunk() == b"first"  # before the rest was even sent
            release.set()
            assert await got.chunk() == b"second"
            assert await got.chunk() == b""
        assert await fetch(client, server.origin()) == b"firstsecond"  # reused after a complete chunked body
        await client.close()
    assert server.connections == 1


async def test_a_body_without_length_ends_when_the_server_closes_and_the_connection_is_not_pooled() -> None:
    async def until_close(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
        await writer.drain()
        writer.close()

    async with serving(until_close) as server:
        client = HttpClient()
        assert await fetch(client, server.origin()) == b"all of it"
        assert await fetch(client, server.origin()) == b"all of it"
        await client.close()
    assert server.connections == 2


async def test_response_header_names_are_lower_case_and_repeats_are_joined() -> None:
    headers = "Retry-After: 4\r\nX-Thing: a\r\nx-thing: b\r\n"
    async with serving(answer(b"", status="429 Too Many Requests", headers=headers)) as server:
        client = HttpClient()
        async with await client.request(server.origin(), "POST", "/", {}, b"", connect_timeout=2) as got:
            assert got.status == 429
            assert got.headers["retry-after"] == "4" and got.headers["x-thing"] == "a, b"
        await client.close()


@pytest.mark.parametrize(
    ("encoding", "pack"),
    [("gzip", gzip.compress), ("deflate", zlib.compress)],
)
async def test_gzip_and_deflate_answers_are_decoded(encoding: str, pack: Callable[[bytes], bytes]) -> None:
    text = b'{"choices": []}' * 1000
    async with serving(answer(pack(text), headers=f"Content-Encoding: {encoding}\r\n")) as server:
        client = HttpClient()
        assert await fetch(client, server.origin()) == text
        await client.close()


async def test_an_encoding_the_client_cannot_read_is_an_error() -> None:
    async with serving(answer(b"xx", headers="Content-Encoding: br\r\n")) as server:
        client = HttpClient()
        with pytest.raises(ClientError, match="encoding llmgate does not read: br"):
            await fetch(client, server.origin())
        await client.close()


async def test_a_corrupt_compressed_body_is_an_error() -> None:
    async with serving(answer(b"not gzip at all", headers="Content-Encoding: gzip\r\n")) as server:
        client = HttpClient()
        with pytest.raises(ClientError, match="compressed body is corrupt"):
            await fetch(client, server.origin())
        await client.close()


async def test_a_server_that_closes_before_answering_is_an_error() -> None:
    async def hang_up(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with serving(hang_up) as server:
        client = HttpClient()
        with pytest.raises(ClientError, match="closed the connection before answering"):
            await fetch(client, server.origin())
        await client.close()


async def test_a_body_cut_short_is_an_error_and_the_connection_is_dropped() -> None:
    async def short(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await writer.drain()
        writer.close()

    async with serving(short) as server:
        client = HttpClient()
        with pytest.raises(ClientError, match="closed the connection mid-answer"):
            await fetch(client, server.origin())
        await client.close()


async def test_a_malformed_answer_is_an_error() -> None:
    async def garbage(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()

    async with serving(garbage) as server:
        client = HttpClient()
        with pytest.raises(ClientError, match="unreadable answer"):
            await fetch(client, server.origin())
        await client.close()


async def test_informational_answers_are_skipped() -> None:
    async def early_hints(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Final: yes\r\n\r\nreal")
        await writer.drain()

    async with serving(early_hints) as server:
        client = HttpClient()
        async with await client.request(server.origin(), "POST", "/", {}, b"", connect_timeout=2) as got:
            assert (got.status, got.headers.get("x-final"), "link" in got.headers) == (200, "yes", False)
            assert await got.read() == b"real"
        await client.close()


@pytest.mark.parametrize("value", ["a\r\nX-Admin: 1", "a\nb", "a\x00b"])
async def test_a_header_that_would_split_the_request_is_refused_and_nothing_is_sent(value: str) -> None:
    async with serving(answer(b"")) as server:
        client = HttpClient()
        with pytest.raises(ClientError, match="a line break or NUL in its value"):
            await client.request(
                server.origin(), "POST", "/", {"Authorization": value}, b"", connect_timeout=2
            )
        await client.close()
    assert server.requests == []


async def test_framing_headers_of_the_caller_are_not_sent_twice() -> None:
    async with serving(answer(b"")) as server:
        client = HttpClient()
        sent = {"Content-Length": "999", "Host": "evil", "Accept-Encoding": "identity", "User-Agent": "me"}
        async with await client.request(server.origin(), "POST", "/", sent, b"{}", connect_timeout=2):
            pass
        await client.close()
    request = server.requests[0].decode().lower()
    assert request.count("content-length:") == 1 and "content-length: 2\r\n" in request
    assert request.count("host:") == 1 and "evil" not in request
    assert "accept-encoding: identity" in request and "gzip" not in request
    assert "user-agent: me" in request and "llmgate" not in request


async def test_a_path_with_unsafe_characters_is_percent_encoded() -> None:
    async with serving(answer(b"")) as server:
        client = HttpClient()
        async with await client.request(
            server.origin(), "POST", "/models/my model:generate?alt=sse", {}, b"", connect_timeout=2
        ):
            pass
        await client.close()
    assert server.requests[0].startswith(b"POST /models/my%20model:generate?alt=sse HTTP/1.1\r\n")


async def test_a_get_without_a_body_has_no_length() -> None:
    async with serving(answer(b"[]")) as server:
        client = HttpClient()
        async with await client.request(
            server.origin(), "GET", "/models", {}, None, connect_timeout=2
        ) as got:
            assert await got.read() == b"[]"
        await client.close()
    assert b"content-length" not in server.requests[0].lower()


async def test_an_answer_released_before_its_body_ended_closes_its_connection() -> None:
    later = asyncio.Event()

    async def slow_body(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        await writer.drain()
        if not later.is_set():
            later.set()
            await asyncio.sleep(0.1)
        writer.write(b"cd")
        await writer.drain()

    async with serving(slow_body) as server:
        client = HttpClient()
        async with await client.request(server.origin(), "POST", "/", {}, b"", connect_timeout=2):
            pass  # left before the body is complete
        assert await fetch(client, server.origin()) == b"abcd"
        await client.close()
    assert server.connections == 2


async def test_a_slow_reader_gets_every_byte_of_a_large_body() -> None:
    body = bytes(range(256)) * (16 * 1024)  # 4 MiB: past the high-water mark, so reading pauses
    async with serving(answer(body)) as server:
        client = HttpClient()
        async with await client.request(server.origin(), "POST", "/", {}, b"", connect_timeout=2) as got:
            parts = []
            while data := await got.chunk():
                parts.append(data)
                await asyncio.sleep(0.001)
        assert b"".join(parts) == body
        assert await fetch(client, server.origin()) == body  # and the connection is still good
        await client.close()
    assert server.connections == 1


async def test_the_connection_cap_makes_the_next_request_wait_for_a_release() -> None:
    async with serving(answer(b"ok")) as server:
        client = HttpClient(max_connections=1)
        first = await client.request(server.origin(), "POST", "/", {}, b"", connect_timeout=2)
        second = asyncio.ensure_future(fetch(client, server.origin()))
        await asyncio.sleep(0.05)
        assert not second.done()  # waiting for the one connection allowed
        assert await first.read() == b"ok"
        first.release()
        assert await asyncio.wait_for(second, 2) == b"ok"
        await client.close()


async def test_a_refused_connection_is_an_error() -> None:
    async with serving(answer(b"")) as server:
        port = server.port
    client = HttpClient()
    with pytest.raises(ClientError, match=r"cannot connect to 127\.0\.0\.1"):
        await fetch(client, Origin.parse(f"http://127.0.0.1:{port}"))
    await client.close()


async def test_host_names_are_resolved_and_the_answer_is_kept() -> None:
    async with serving(answer(b"named")) as server:
        client = HttpClient(keepalive_seconds=0)  # a new connection, so a lookup, each time
        origin = Origin.parse(f"http://localhost:{server.port}")
        assert await fetch(client, origin) == b"named"
        assert ("localhost", server.port) in client._dns
        assert await fetch(client, origin) == b"named"
        await client.close()


def test_origins_are_http_or_https_urls() -> None:
    origin = Origin.parse("https://api.example.com/v1/")
    assert (origin.tls, origin.host, origin.port, origin.host_header, origin.prefix) == (
        True,
        "api.example.com",
        443,
        "api.example.com",
        "/v1",
    )
    assert Origin.parse("http://[::1]:8080").host_header == "[::1]:8080"
    for bad in ("ftp://x", "localhost:80", "http://"):
        with pytest.raises(ValueError, match="not an http"):
            Origin.parse(bad)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1 (made by the openssl command)."""
    folder = tmp_path_factory.mktemp("tls")
    key, cert = str(folder / "key.pem"), str(folder / "cert.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


@asynccontextmanager
async def tls_server(certificate: tuple[str, str]) -> AsyncIterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate[1], certificate[0])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            while await _read_request(reader) is not None:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")
                await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()


async def test_https_origins_are_spoken_to_over_tls_with_the_certificate_checked(
    certificate: tuple[str, str],
) -> None:
    async with tls_server(certificate) as port:
        trusting = HttpClient(tls=ssl.create_default_context(cafile=certificate[1]))
        assert await fetch(trusting, Origin.parse(f"https://localhost:{port}")) == b"secret"
        assert await fetch(trusting, Origin.parse(f"https://localhost:{port}")) == b"secret"
        await trusting.close()
        default = HttpClient()  # the system's CA store does not know a self-signed certificate
        with pytest.raises(ClientError, match="CERTIFICATE_VERIFY_FAILED"):
            await fetch(default, Origin.parse(f"https://localhost:{port}"))
        await default.close()


async def test_an_endless_header_block_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection_module, "MAX_HEAD", 4096)

    async def headers_forever(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for index in range(1000):
            writer.write(f"X-Filler-{index}: {'x' * 100}\r\n".encode())
        await writer.drain()

    async with serving(headers_forever) as server:
        client = HttpClient()
        with pytest.raises(ClientError, match="more than 256 header fields or 4 KiB of them"):
            await fetch(client, server.origin())
        await client.close()


async def test_a_body_larger_than_the_cap_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MAX_BODY", 1 << 20)
    async with serving(answer(b"x" * (3 << 20))) as server:
        client = HttpClient()
        with pytest.raises(ClientError, match="larger than 1 MiB"):
            await fetch(client, server.origin())
        await client.close()


# --- what a misbehaving server may not do -------------------------------------------------------------


async def test_bytes_after_the_answer_in_the_same_read_neither_change_it_nor_survive() -> None:
    async def two_answers(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: first\r\n\r\nhello"
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 9\r\nX-A: second\r\n\r\nSMUGGLED!"
        )
        await writer.drain()

    async with serving(two_answers) as server:
        client = HttpClient()
        async with await client.request(server.origin(), "POST", "/", {}, b"", connect_timeout=2) as got:
            assert (got.status, dict(got.headers)) == (200, {"content-length": "5", "x-a": "first"})
            assert await got.read() == b"hello"
        assert await fetch(client, server.origin()) == b"hello"  # on a new connection, not the spoiled one
        await client.close()
    assert server.connections == 2


async def test_a_connection_paused_for_a_slow_reader_is_resumed_before_it_is_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(connection_module, "HIGH_WATER", 1024)
    body = b"y" * 8000  # arrives in one read, past the (lowered) high-water mark: complete, and paused
    async with serving(answer(body)) as server:
        client = HttpClient()
        got = await client.request(server.origin(), "POST", "/", {}, b"", connect_timeout=2)
        for _ in range(50):  # the whole body arrives while nobody reads: reading is paused
            await asyncio.sleep(0.01)
            if got._connection is not None and got._connection.complete:
                break
        got.release()  # complete but unread
        assert await asyncio.wait_for(fetch(client, server.origin()), 3) == body
        await client.close()
    assert server.connections == 1


async def test_many_repeats_of_one_header_are_joined_once() -> None:
    headers = "".join(f"X-Many: {index}\r\n" for index in range(200))
    async with serving(answer(b"", headers=headers)) as server:
        client = HttpClient()
        async with await client.request(server.origin(), "POST", "/", {}, b"", connect_timeout=2) as got:
            assert got.headers["x-many"] == ", ".join(str(index) for index in range(200))
        await client.close()


async def test_too_many_header_fields_are_an_error() -> None:
    headers = "".join(f"X-{index}: v\r\n" for index in range(300))
    async with serving(answer(b"", headers=headers)) as server:
        client = HttpClient()
        with pytest.raises(ClientError, match="more than 256 header fields"):
            await fetch(client, server.origin())
        await client.close()


@pytest.mark.parametrize("coding", ["chunked", "Chunked", "CHUNKED", "gzip, chunked"])
async def test_chunked_framing_is_recognised_in_any_case(coding: str) -> None:
    async def cut(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 200 OK\r\nTransfer-Encoding: {coding}\r\n\r\n5\r\nhello\r\n".encode())
        await writer.drain()
        writer.close()

    async with serving(cut) as server:
        client = HttpClient()
        with pytest.raises(ClientError, match="mid-answer"):  # cut short: never taken for a whole body
            async with await client.request(server.origin(), "POST", "/", {}, b"", connect_timeout=2) as got:
                await got.read()
        await client.close()


async def test_trailer_fields_are_not_taken_for_headers() -> None:
    async def with_trailer(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Ok: 1\r\n\r\n"
            b"1\r\na\r\n0\r\nContent-Encoding: gzip\r\nX-Late: 1\r\n\r\n"
        )
        await writer.drain()

    async with serving(with_trailer) as server:
        client = HttpClient()
        async with await client.request(server.origin(), "POST", "/", {}, b"", connect_timeout=2) as got:
            assert await got.read() == b"a"
            assert "x-late" not in got.headers and "content-encoding" not in got.headers
        await client.close()


async def test_answers_without_a_body_leave_the_connection_reusable() -> None:
    async with serving(answer(b"", status="204 No Content")) as server:
        client = HttpClient()
        for _ in range(3):
            assert await fetch(client, server.origin()) == b""
        await client.close()
    assert server.connections == 1


async def test_switching_protocols_is_an_error() -> None:
    async def upgrade(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nxx"
        )
        await writer.drain()

    async with serving(upgrade) as server:
        client = HttpClient()
        with pytest.raises(ClientError, match="switched protocols"):
            await fetch(client, server.origin())
        await client.close()


async def test_a_truncated_gzip_body_is_an_error() -> None:
    packed = gzip.compress(b"x" * 10_000)[:-12]
    async with serving(answer(packed, headers="Content-Encoding: gzip\r\n")) as server:
        client = HttpClient()
        with pytest.raises(ClientError, match="compressed body ended early"):
            await fetch(client, server.origin())
        await client.close()


async def test_a_compressed_body_is_inflated_in_bounded_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "DECODE_STEP", 64 << 10)
    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB from a few KiB
    async with serving(answer(bomb, headers="Content-Encoding: gzip\r\n")) as server:
        client = HttpClient()
        async with await client.request(server.origin(), "POST", "/", {}, b"", connect_timeout=2) as got:
            sizes = []
            while data := await got.chunk():
                sizes.append(len(data))
        assert sum(sizes) == 8 << 20 and max(sizes) <= 64 << 10
        await client.close()


async def test_idle_connections_are_closed_after_the_keepalive_time() -> None:
    async with serving(answer(b"a")) as server:
        client = HttpClient(keepalive_seconds=0.2)
        await fetch(client, server.origin())
        (connection,) = client._idle[server.origin()]
        await asyncio.sleep(0.5)  # nobody uses it: the sweep closes it
        assert connection.lost and server.origin() not in client._idle
        await client.close()


def slow_lookups(monkeypatch: pytest.MonkeyPatch, seconds: float = 0.5) -> None:
    """Every name takes ``seconds`` to resolve, to 127.0.0.1."""
    real = socket.getaddrinfo

    def slow(host: str, *args: object) -> object:
        time.sleep(seconds)
        return real("127.0.0.1", *args)  # type: ignore[call-overload]

    monkeypatch.setattr(socket, "getaddrinfo", slow)


async def test_a_slow_connect_is_a_connect_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    slow_lookups(monkeypatch)
    client = HttpClient()
    with pytest.raises(ConnectTimeout, match=r"no connection to slow\.test within 0\.1s"):
        await client.request(Origin.parse("http://slow.test"), "GET", "/", {}, None, connect_timeout=0.1)
    await client.close()


async def test_concurrent_requests_share_one_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    real, calls = socket.getaddrinfo, []

    def counted(host: str, *args: object) -> object:
        calls.append(host)
        time.sleep(0.05)
        return real(host, *args)  # type: ignore[call-overload]

    monkeypatch.setattr(socket, "getaddrinfo", counted)
    async with serving(answer(b"ok")) as server:
        client = HttpClient()
        origin = Origin.parse(f"http://localhost:{server.port}")
        assert await asyncio.gather(*(fetch(client, origin) for _ in range(20))) == [b"ok"] * 20
        await client.close()
    assert calls == ["localhost"]


# --- what the client will not send ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Content-Length ", "X Y", " X", "X:", "Ä"])
def test_a_header_name_that_is_not_a_token_is_refused(name: str) -> None:
    with pytest.raises(ClientError, match="not a valid field name"):
        request_bytes(Origin.parse("http://h"), "POST", "/", {name: "v"}, b"")


def test_a_method_that_is_not_a_token_is_refused() -> None:
    with pytest.raises(ClientError, match="not an HTTP method"):
        request_bytes(Origin.parse("http://h"), "POST / HTTP/1.1\r\nX:", "/", {}, b"")


def test_a_fragment_mark_and_a_stray_percent_are_encoded_and_valid_escapes_kept() -> None:
    head = request_bytes(Origin.parse("http://h"), "GET", "/a#b/100%/c%20d/é", {}, None)
    assert head.startswith(b"GET /a%23b/100%25/c%20d/%C3%A9 HTTP/1.1\r\n")


def test_credentials_in_the_base_url_become_basic_authorization_unless_one_is_given() -> None:
    origin = Origin.parse("https://user:p%40ss@proxy.example:8443/llm")
    assert (origin.host_header, origin.prefix) == ("proxy.example:8443", "/llm")
    head = request_bytes(origin, "POST", "/v1", {}, b"")
    assert b"Authorization: Basic dXNlcjpwQHNz\r\n" in head  # user:p@ss
    head = request_bytes(origin, "POST", "/v1", {"Authorization": "Bearer k"}, b"")
    assert b"Basic" not in head and b"Authorization: Bearer k\r\n" in head


def test_an_international_host_name_is_sent_in_its_ascii_form() -> None:
    origin = Origin.parse("https://bücher.example/v1")
    assert origin.host == origin.host_header == "xn--bcher-kva.example"
