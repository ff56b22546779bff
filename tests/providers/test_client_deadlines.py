"""Deadlines of the upstream client: a wait for an answer's head or the next piece of its body ends by
the caller's deadline with ``AnswerTimeout`` (a ``TimeoutError``), watched by one timer per connection
rather than a timer per call; waiting for a free connection and connecting are bounded by it too."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tests.providers.test_client import answer, serving, slow_lookups

from llmgate.providers.client import AnswerTimeout, ClientError, HttpClient, Origin


def late(body: bytes, *, head_after: float = 0.0, body_after: float = 0.0) -> Any:
    """An answer whose head comes ``head_after`` s after the request and its body ``body_after`` s later."""

    async def reply(request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(head_after)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        await writer.drain()
        await asyncio.sleep(body_after)
        writer.write(body)
        await writer.drain()

    return reply


def in_turn(*replies: Any) -> Any:
    """Each request gets the next of ``replies``."""
    pending = iter(replies)

    async def reply(request: bytes, writer: asyncio.StreamWriter) -> None:
        await next(pending)(request, writer)

    return reply


def soon(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def ask(client: HttpClient, origin: Origin, deadline: float) -> bytes:
    async with await client.request(
        origin, "POST", "/", {}, b"{}", connect_timeout=2, deadline=deadline
    ) as got:
        return await got.read(deadline)


def test_a_missed_deadline_is_a_timeout_and_a_client_error() -> None:
    assert issubclass(AnswerTimeout, TimeoutError) and issubclass(AnswerTimeout, ClientError)


async def test_a_head_not_in_by_the_deadline_is_a_timeout_and_the_connection_is_dropped() -> None:
    async with serving(late(b"ok", head_after=0.3)) as server:
        client = HttpClient()
        started = time.monotonic()
        with pytest.raises(AnswerTimeout):
            await ask(client, server.origin(), soon(0.1))
        assert time.monotonic() - started < 0.25
        assert await ask(client, server.origin(), soon(2)) == b"ok"  # on a new connection
        await client.close()
    assert server.connections == 2


async def test_a_body_that_stalls_past_the_deadline_is_a_timeout() -> None:
    async with serving(late(b"ok", body_after=0.3)) as server:
        client = HttpClient()
        deadline = soon(0.1)
        got = await client.request(
            server.origin(), "POST", "/", {}, b"", connect_timeout=2, deadline=deadline
        )
        with pytest.raises(AnswerTimeout):
            await got.read(deadline)
        got.release()
        await client.close()


async def test_an_answer_in_time_is_read_whole() -> None:
    async with serving(late(b"ok", head_after=0.05, body_after=0.05)) as server:
        client = HttpClient()
        assert await ask(client, server.origin(), soon(1)) == b"ok"
        await client.close()


async def test_requests_on_one_connection_share_its_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    real = loop.call_at

    def counting(when: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        if getattr(callback, "__name__", "") == "_on_deadline":  # not the connect's or the sweeper's
            armed.append(when)
        return real(when, callback, *args, **kwargs)

    async with serving(answer(b"ok")) as server:
        client = HttpClient()
        monkeypatch.setattr(loop, "call_at", counting)
        for _ in range(20):
            assert await ask(client, server.origin(), soon(30)) == b"ok"
        monkeypatch.undo()
        await client.close()
    assert server.connections == 1
    assert len(armed) == 1  # the first deadline's; the later ones are caught by it when it fires


async def test_a_deadline_passing_between_requests_leaves_the_pooled_connection_alone() -> None:
    async with serving(answer(b"ok")) as server:
        client = HttpClient()
        assert await ask(client, server.origin(), soon(0.05)) == b"ok"
        await asyncio.sleep(0.15)  # the connection's timer fires with no wait under way
        assert await ask(client, server.origin(), soon(1)) == b"ok"
        await client.close()
    assert server.connections == 1


async def test_a_timer_armed_for_an_earlier_deadline_waits_on_for_the_later_one() -> None:
    async with serving(in_turn(answer(b"first"), late(b"second", head_after=0.2))) as server:
        client = HttpClient()
        assert await ask(client, server.origin(), soon(0.05)) == b"first"
        # The timer armed for +0.05 s fires while this waits: it must wait on, to +1 s.
        assert await ask(client, server.origin(), soon(1)) == b"second"
        await client.close()
    assert server.connections == 1


async def test_an_earlier_deadline_than_the_timer_is_kept() -> None:
    async with serving(in_turn(answer(b"first"), late(b"second", head_after=0.5))) as server:
        client = HttpClient()
        assert await ask(client, server.origin(), soon(30)) == b"first"
        started = time.monotonic()
        with pytest.raises(AnswerTimeout):
            await ask(client, server.origin(), soon(0.1))
        assert time.monotonic() - started < 0.4
        await client.close()


async def test_waiting_for_a_free_connection_ends_at_the_deadline() -> None:
    async with serving(answer(b"ok")) as server:
        client = HttpClient(max_connections=1)
        first = await client.request(server.origin(), "POST", "/", {}, b"", connect_timeout=2)
        with pytest.raises(AnswerTimeout, match="no free connection"):
            await ask(client, server.origin(), soon(0.05))
        assert await first.read() == b"ok"
        first.release()
        assert await ask(client, server.origin(), soon(1)) == b"ok"  # the slot was given back
        await client.close()


async def test_connecting_ends_at_the_deadline_when_it_comes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    slow_lookups(monkeypatch)
    client = HttpClient()
    with pytest.raises(AnswerTimeout, match="no connection by the deadline"):
        await ask(client, Origin.parse("http://slow.test"), soon(0.1))
    await client.close()
