"""The pipelined script connection: replies in order, callers that leave, timeouts, NOSCRIPT, set-up.

A fake RESP server on loopback answers each command with its last argument (after a delay, or never),
and keeps what it was sent; one test runs against the real Redis.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import hiredis
import pytest
import redis.asyncio
import redis.exceptions

from llmgate.state.redis_line import ScriptLine, pack

from .conftest import redis_url


@dataclass
class FakeRedis:
    """Answers every command with its last argument as a bulk string, ``delay`` seconds later; with
    ``silent_connections`` N, the first N connections never answer."""

    delay: float = 0.0
    silent_connections: int = 0
    connections: int = 0
    commands: list[list[bytes]] = field(default_factory=list)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        silent = self.connections <= self.silent_connections
        parser = hiredis.Reader()
        try:
            while data := await reader.read(65536):
                parser.feed(data)
                while (command := parser.gets()) is not False:
                    self.commands.append(command)
                    if not silent:
                        await asyncio.sleep(self.delay)
                        last = command[-1]
                        writer.write(b"$%d\r\n%s\r\n" % (len(last), last))
        finally:
            writer.close()


@pytest.fixture
async def fake() -> AsyncIterator[FakeRedis]:
    server_state = FakeRedis()
    server = await asyncio.start_server(server_state.serve, "127.0.0.1", 0)
    server_state.port = server.sockets[0].getsockname()[1]
    try:
        yield server_state
    finally:
        server.close()


def test_commands_are_packed_as_resp_arrays() -> None:
    assert pack(["EVALSHA", "ab", 1, "k", 0.5, b"raw"]) == (
        b"*6\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n1\r\n$1\r\nk\r\n$3\r\n0.5\r\n$3\r\nraw\r\n"
    )


async def test_replies_reach_their_callers_in_order_and_one_who_left_keeps_its_place(fake: FakeRedis) -> None:
    fake.delay = 0.05
    line = ScriptLine("127.0.0.1", fake.port, time_limit=5)
    first = asyncio.ensure_future(line.call(["ECHO", "first"]))
    second = asyncio.ensure_future(line.call(["ECHO", "second"]))
    third = asyncio.ensure_future(line.call(["ECHO", "third"]))
    await asyncio.sleep(0.01)
    second.cancel()  # its reply still comes, and must not go to the third caller
    assert await first == b"first"
    assert await third == b"third"
    assert second.cancelled()
    assert fake.connections == 1  # one connection, pipelined
    await line.close()


async def test_the_commands_of_one_turn_of_the_loop_go_out_in_one_write(
    fake: FakeRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = ScriptLine("127.0.0.1", fake.port, time_limit=5)
    assert await line.call(["ECHO", "open"]) == b"open"
    connection = line._connection
    assert connection is not None and connection.transport is not None
    writes: list[bytes] = []
    write = connection.transport.write
    monkeypatch.setattr(connection.transport, "write", lambda data: (writes.append(data), write(data)))
    replies = await asyncio.gather(*(line.call(["ECHO", str(n)]) for n in range(10)))
    assert replies == [str(n).encode() for n in range(10)]
    assert writes == [b"".join(pack(["ECHO", str(n)]) for n in range(10))]
    assert await line.call(["ECHO", "alone"]) == b"alone"  # a later turn: a write of its own
    assert writes[1:] == [pack(["ECHO", "alone"])]
    await line.close()


async def test_a_reply_that_does_not_come_in_time_breaks_the_connection(fake: FakeRedis) -> None:
    fake.silent_connections = 1
    line = ScriptLine("127.0.0.1", fake.port, time_limit=0.2)
    with pytest.raises(redis.exceptions.TimeoutError):
        await line.call(["ECHO", "lost"])
    assert await line.call(["ECHO", "again"]) == b"again"  # a new connection: replies match again
    assert fake.connections == 2
    await line.close()


async def test_replies_that_come_in_time_keep_the_connection_however_long_it_runs(fake: FakeRedis) -> None:
    fake.delay = 0.04
    line = ScriptLine("127.0.0.1", fake.port, time_limit=0.1)
    for n in range(8):  # 0.3 s in all, each reply within its own time limit
        assert await line.call(["ECHO", str(n)]) == str(n).encode()
    assert fake.connections == 1
    await line.close()


async def test_an_unreachable_server_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        line = ScriptLine("127.0.0.1", port, time_limit=1)
        with pytest.raises(redis.exceptions.ConnectionError):
            await line.call(["PING"])


async def test_login_and_database_come_first_on_a_new_connection(fake: FakeRedis) -> None:
    line = ScriptLine("127.0.0.1", fake.port, db=3, username="u", password="p", time_limit=5)
    replies = await asyncio.gather(*(line.call(["ECHO", str(n)]) for n in range(5)))
    assert replies == [str(n).encode() for n in range(5)]
    assert fake.commands[:2] == [[b"AUTH", b"u", b"p"], [b"SELECT", b"3"]]
    await line.close()


async def test_a_script_new_to_the_server_is_loaded_and_run() -> None:
    client = redis.asyncio.Redis.from_url(redis_url())
    try:
        await client.ping()
    except (redis.exceptions.ConnectionError, OSError) as error:
        await client.aclose()
        pytest.skip(f"Redis not reachable: {error}")
    line = ScriptLine.for_client(client, time_limit=2)
    assert line is not None
    try:
        nonce = uuid.uuid4().hex  # this run's own script: no other run's script cache is touched
        source = f"return ARGV[1] .. '{nonce}' .. KEYS[1]"
        sha = hashlib.sha1(source.encode()).hexdigest()
        assert await client.script_exists(sha) == [False]
        assert await line.evalsha(sha, source, ["k"], ["a-"]) == f"a-{nonce}k".encode()  # NOSCRIPT, loaded
        assert await client.script_exists(sha) == [True]
        assert await line.evalsha(sha, source, ["j"], ["b-"]) == f"b-{nonce}j".encode()
        with pytest.raises(redis.exceptions.ResponseError):  # a script's own error is a reply error
            await line.call(["EVAL", "return redis.error_reply('boom')", 0])
    finally:
        await line.close()
        await client.aclose()
