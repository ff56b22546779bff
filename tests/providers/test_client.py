"""The upstream HTTP/1.1 client against raw asyncio servers that answer exactly as each test says: framing
(length, chunked, until close), keep-alive and the pool, encodings, broken and malformed answers, header and
path safety, back-pressure and the connection cap."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from llmgate.providers import client as client_module
from llmgate.providers.client import ClientError, HttpClient, Origin

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
        with pytest.raises(ClientError, match="line break or NUL"):
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
    monkeypatch.setattr(client_module, "MAX_HEAD", 4096)

    async def headers_forever(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for index in range(1000):
            writer.write(f"X-Filler-{index}: {'x' * 100}\r\n".encode())
        await writer.drain()

    async with serving(headers_forever) as server:
        client = HttpClient()
        with pytest.raises(ClientError, match="headers exceed 4 KiB"):
            await fetch(client, server.origin())
        await client.close()


async def test_a_body_larger_than_the_cap_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MAX_BODY", 1 << 20)
    async with serving(answer(b"x" * (3 << 20))) as server:
        client = HttpClient()
        with pytest.raises(ClientError, match="larger than 1 MiB"):
            await fetch(client, server.origin())
        await client.close()
