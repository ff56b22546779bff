"""Slow, idle and too many clients, and requests that cannot be parsed, against real ``llmgate serve``
processes on loopback, over raw sockets.

The gateways run with short clocks (1 s for the head, 1 s + 1 s per 100 bytes for the body, 1 s idle),
so every case is decided in seconds; the bounds below are generous multiples of them, and every socket
has a timeout of its own.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import GatewayProcess, start_gateway, stop_process, wait_until

CLOCKS = {"header_timeout": 1, "body_timeout": 1, "body_min_rate": 100, "idle_timeout": 1}
CAP = 60
DECIDED_WITHIN = 10.0  # seconds: a case whose clock is 1-2 s is decided well within this
CHAT = {"model": "mock:echo", "messages": [{"role": "user", "content": "still here"}]}


@pytest.fixture(scope="module")
def gateway(config_gateway_factory: Callable[[dict[str, Any]], GatewayProcess]) -> GatewayProcess:
    """Short clocks, a cap of 60 connections."""
    return config_gateway_factory(
        {"server": {**CLOCKS, "max_connections": CAP}, "storage": {"database": "memory"}}
    )


@pytest.fixture(scope="module")
def capped_gateway(config_gateway_factory: Callable[[dict[str, Any]], GatewayProcess]) -> GatewayProcess:
    """Long clocks (idle connections stay), a cap of 20: the cap itself is what is tested."""
    server = {"header_timeout": 60, "body_timeout": 60, "idle_timeout": 60, "max_connections": 20}
    return config_gateway_factory({"server": server, "storage": {"database": "memory"}})


@pytest.fixture(scope="module")
def workers_gateway(e2e_tmp: Path, started_gateways: list[GatewayProcess]) -> Iterator[GatewayProcess]:
    """The short clocks under ``llmgate serve --workers 2``: each worker process builds its own app."""
    serve_with_workers = (
        "import sys; from llmgate.cli.main import main; sys.argv += ['--workers', '2']; main()"
    )
    config = {"server": {**CLOCKS, "max_connections": CAP}, "storage": {"database": "memory"}}
    gateway = start_gateway(e2e_tmp, config, launcher=[sys.executable, "-c", serve_with_workers])
    started_gateways.append(gateway)  # so that gateway_logs_no_tracebacks watches it too
    try:
        yield gateway
    finally:
        stop_process(gateway.proc)


def connect(gateway: GatewayProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    sock.settimeout(5)
    return sock


def read_until_closed(sock: socket.socket, within: float = DECIDED_WITHIN) -> tuple[bytes, bool]:
    """What the server sends until it closes (EOF or reset): the bytes, and whether it closed in time."""
    received = b""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([sock], [], [], left)
        if not readable:
            break
        try:
            chunk = sock.recv(65_536)
        except OSError:  # reset: closed too
            return received, True
        if not chunk:
            return received, True
        received += chunk
    return received, False


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """The first response in ``raw``: status, headers (lower-case names), body (by Content-Length)."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, rest[: int(headers.get("content-length", "0"))]


def openai_error(raw: bytes, status: int) -> dict[str, Any]:
    """The OpenAI error in ``raw``, which must be a ``status`` answer in JSON that closes the connection."""
    got, headers, body = parse(raw)
    assert got == status, raw[:300]
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error  # type: ignore[no-any-return]


def chat_request(body: bytes) -> bytes:
    head = "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode()


def test_idle_connections_are_closed_by_the_server(gateway: GatewayProcess) -> None:
    sockets = [connect(gateway) for _ in range(40)]
    try:
        for sock in sockets:
            received, closed = read_until_closed(sock)
            assert closed, "an idle connection is still open"
            assert received == b""  # nothing was asked: a bare close
    finally:
        for sock in sockets:
            sock.close()


def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(gateway: GatewayProcess) -> None:
    with connect(gateway) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
        received, closed = read_until_closed(sock, within=3.5)  # idle_timeout 1 s; uvicorn's default is 5
    assert closed
    assert parse(received)[0] == 200


def test_slow_header_clients_are_closed(gateway: GatewayProcess) -> None:
    sockets = [connect(gateway) for _ in range(20)]
    answers: dict[int, bytes] = {}
    deadline = time.monotonic() + DECIDED_WITHIN
    try:
        for sock in sockets:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n")
        while len(answers) < len(sockets) and time.monotonic() < deadline:
            for index, sock in enumerate(sockets):  # one more header byte each, every 200 ms
                if index in answers:
                    continue
                with contextlib.suppress(OSError):
                    sock.sendall(b"X")
                received, closed = read_until_closed(sock, within=0.01)
                if closed:
                    answers[index] = received
            time.sleep(0.2)
    finally:
        for sock in sockets:
            sock.close()
    assert len(answers) == len(sockets), "slow-header connections still open"
    for received in answers.values():  # a 408 in JSON, or a reset before it could be read
        if received:
            assert openai_error(received, 408)["code"] == "request_timeout"


def test_a_body_trickled_at_1_byte_per_100ms_gets_408_instead_of_being_served(
    gateway: GatewayProcess,
) -> None:
    body = json.dumps({**CHAT, "user": "x" * 460}).encode()
    assert len(body) > 500  # at 10 B/s, ~50 s to send: far beyond 1 s + len / 100 B/s
    received = b""
    closed = False
    with connect(gateway) as sock:
        sock.sendall(chat_request(body))
        started = time.monotonic()
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            received, closed = read_until_closed(sock, within=0.1)
            if received or closed or time.monotonic() - started > DECIDED_WITHIN:
                break
        if not closed:
            more, closed = read_until_closed(sock)
            received += more
    assert closed, "the trickled body is still being accepted"
    if received:
        error = openai_error(received, 408)
        assert (error["type"], error["code"]) == ("invalid_request_error", "request_timeout")


class Slowloris:
    """``count`` connections that each send one header byte every 300 ms, reopened when the server
    closes them (as the attack tool does), on a thread of their own until ``stop``."""

    def __init__(self, gateway: GatewayProcess, count: int) -> None:
        self.gateway = gateway
        self.count = count
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Slowloris:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()

    def _open(self) -> socket.socket:
        sock = connect(self.gateway)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n")
        return sock

    def _run(self) -> None:
        sockets = [self._open() for _ in range(self.count)]
        try:
            while not self._stop.wait(0.3):
                for index, sock in enumerate(sockets):
                    try:
                        sock.sendall(b"X")
                        _, closed = read_until_closed(sock, within=0)
                    except OSError:
                        closed = True
                    if closed:
                        self.closed_by_server += 1
                        sock.close()
                        sockets[index] = self._open()
        finally:
            for sock in sockets:
                sock.close()


def test_chat_keeps_working_while_50_slowloris_connections_are_held(gateway: GatewayProcess) -> None:
    with Slowloris(gateway, 50) as attack, httpx.Client(base_url=gateway.url, timeout=5) as client:
        deadline = time.monotonic() + 3  # long enough for the attack to cycle through its connections
        served = 0
        while time.monotonic() < deadline or served < 20:
            reply = client.post("/v1/chat/completions", json=CHAT)
            assert reply.status_code == 200, reply.text
            assert reply.json()["choices"][0]["message"]["content"] == "still here"
            served += 1
    assert attack.closed_by_server >= 50, "the slowloris connections were never closed"


def test_over_the_cap_a_connection_gets_503_json_and_closing_others_frees_the_slots(
    capped_gateway: GatewayProcess,
) -> None:
    held = [connect(capped_gateway) for _ in range(20)]
    try:
        with connect(capped_gateway) as extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n")
            received, closed = read_until_closed(extra)
        assert closed
        _, headers, _ = parse(received)
        assert headers["retry-after"] == "1"
        error = openai_error(received, 503)
        assert (error["type"], error["code"]) == ("overloaded_error", "too_many_connections")
    finally:
        for sock in held:
            sock.close()

    def health_ok() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{capped_gateway.url}/health", timeout=2).status_code == 200
        return False

    wait_until(health_ok, timeout=DECIDED_WITHIN, interval=0.1)


MALFORMED = {
    "bad Content-Length": b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 12x\r\n\r\n",
    "bad chunk size": (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n"
    ),
    "Transfer-Encoding and Content-Length": (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    ),
    "unknown method": b"FOO / HTTP/1.1\r\nHost: gw\r\n\r\n",
    "header line without a colon": b"GET /health HTTP/1.1\r\nHost gw\r\n\r\n",
    "NUL in the request line": b"GET /he\x00alth HTTP/1.1\r\nHost: gw\r\n\r\n",
    "CONNECT": b"CONNECT gw:443 HTTP/1.1\r\nHost: gw\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_request_gets_400_with_an_openai_error_body(gateway: GatewayProcess, raw: bytes) -> None:
    logged = gateway.log_size()
    with connect(gateway) as sock:
        sock.sendall(raw)
        received, closed = read_until_closed(sock)
    assert closed
    error = openai_error(received, 400)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_http_request")
    assert error["message"].startswith("Invalid HTTP request")
    assert gateway.output_since(logged) == ""  # no warning per bad request: a client could fill the log


def test_with_workers_every_worker_closes_idle_clients_and_answers_json(
    workers_gateway: GatewayProcess,
) -> None:
    # Connections are spread over both workers by the kernel: 20 of each kind reach both, or nearly.
    idle = [connect(workers_gateway) for _ in range(20)]
    try:
        assert all(read_until_closed(sock) == (b"", True) for sock in idle)
    finally:
        for sock in idle:
            sock.close()
    for _ in range(20):
        with connect(workers_gateway) as sock:
            sock.sendall(MALFORMED["unknown method"])
            received, _ = read_until_closed(sock)
        assert openai_error(received, 400)["code"] == "invalid_http_request"
    reply = httpx.post(f"{workers_gateway.url}/v1/chat/completions", json=CHAT, timeout=5)
    assert reply.status_code == 200
