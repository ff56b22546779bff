"""DisconnectWatch: a client that leaves cancels the work serving it; a quick call never starts a watcher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from starlette.types import Message

from llmgate.core.errors import StreamInterrupted
from llmgate.core.response import LastBatch, StreamItem
from llmgate.server.disconnect import ClientGone, DisconnectWatch, EventStreamResponse, until_disconnected
from llmgate.server.wire import SSEBody


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


async def written(batches: AsyncIterator[list[StreamItem]], closed: list[bool]) -> list[tuple[bytes, bool]]:
    """The body messages an event-stream response sends for these batches (``closed`` notes the
    upstream's release)."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def close_upstream() -> None:
        closed.append(True)

    watch = DisconnectWatch(Channel().receive)
    response = EventStreamResponse(SSEBody(batches), {}, watch, close_upstream)
    await response({"type": "http"}, Channel().receive, send)
    return [(m["body"], m["more_body"]) for m in sent if m["type"] == "http.response.body"]


async def test_a_stream_ends_with_done_in_the_same_write_as_the_end_of_the_body() -> None:
    async def batches() -> AsyncIterator[list[StreamItem]]:
        yield [b'{"id":"c","choices":[]}']

    closed: list[bool] = []
    bodies = await written(batches(), closed)
    assert bodies == [(b'data: {"id":"c","choices":[]}\n\n', True), (b"data: [DONE]\n\n", False)]
    assert closed == [True]


async def test_a_broken_stream_ends_with_its_error_event_and_no_done() -> None:
    async def batches() -> AsyncIterator[list[StreamItem]]:
        yield [b'{"id":"c","choices":[]}']
        raise StreamInterrupted("the upstream went away")

    bodies = await written(batches(), [])
    assert len(bodies) == 3
    assert b"the upstream went away" in bodies[1][0] and bodies[1][1]
    assert bodies[2] == (b"", False)


async def test_the_final_batch_is_written_with_done_and_the_end_of_the_body() -> None:
    async def batches() -> AsyncIterator[list[StreamItem]]:
        yield [b'{"n":1}']
        yield LastBatch([b'{"n":2}', b'{"n":3}'])

    bodies = await written(batches(), [])
    assert bodies == [
        (b'data: {"n":1}\n\n', True),
        (b'data: {"n":2}\n\ndata: {"n":3}\n\ndata: [DONE]\n\n', False),
    ]
