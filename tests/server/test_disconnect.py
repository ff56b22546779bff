"""DisconnectWatch: a client that leaves cancels the work serving it; a quick call never starts a watcher."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from llmgate.server.disconnect import ClientGone, DisconnectWatch, until_disconnected


class Channel:
    """An ASGI ``receive`` whose client leaves when ``leave()`` is called; counts the reads."""

    def __init__(self) -> None:
        self.reads = 0
        self.reading = asyncio.Event()
        self._left = asyncio.Event()

    def leave(self) -> None:
        self._left.set()

    async def receive(self) -> Message:
        self.reads += 1
        self.reading.set()
        await self._left.wait()
        return {"type": "http.disconnect"}


async def test_a_client_that_leaves_cancels_the_work() -> None:
    channel = Channel()
    cancelled = asyncio.Event()

    async def slow_upstream() -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    async def client() -> None:
        await channel.reading.wait()  # the watcher is reading: now go away
        channel.leave()

    leaving = asyncio.create_task(client())
    watch = DisconnectWatch(channel.receive, after=0.001)
    with pytest.raises(ClientGone):
        await watch.guard(slow_upstream())
    watch.stop()
    await leaving
    assert cancelled.is_set()


async def test_a_call_answered_before_the_delay_never_reads_the_channel() -> None:
    channel = Channel()
    result = await until_disconnected(channel.receive, asyncio.sleep(0, result="answer"))
    assert result == "answer"
    await asyncio.sleep(0.05)  # past the watch delay: the timer was cancelled with the call
    assert channel.reads == 0


async def test_stopping_a_started_watch_cancels_its_watcher() -> None:
    channel = Channel()
    watch = DisconnectWatch(channel.receive, after=0.001)
    await asyncio.sleep(0.01)
    assert channel.reads == 1
    watch.stop()
    channel.leave()
    await asyncio.sleep(0.01)
    assert not watch.gone()  # the client left after the answer: nothing is cancelled
