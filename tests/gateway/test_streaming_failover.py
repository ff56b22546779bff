"""Streaming failover: invisible until the first content, loud after it; what counts as content.

The gateway tests use mock providers with injected failures; the ChatStream tests drive the stream
over scripted fake upstreams (no network, an injected clock for the health board).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from clock import FakeClock
from llmgate import Gateway, load_settings
from llmgate.calls import ChatStream, has_content
from llmgate.core.codec import parse_chat_request
from llmgate.core.errors import Overloaded, StreamInterrupted, UpstreamConnectionError
from llmgate.core.headroom import NOTHING_UNSUPPORTED, ParamReport
from llmgate.core.request import ChatRequest
from llmgate.core.response import (
    ChatChunk,
    ChatResponse,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    LastBatch,
    StreamItem,
    ToolCallDelta,
)
from llmgate.core.usage import make_usage
from llmgate.providers.base import Target
from llmgate.routing.backoff import Backoff
from llmgate.routing.deployments import Deployment, Hedge, ModelGroup, ProviderAccount
from llmgate.routing.failover import Failover, RetryPolicy
from llmgate.routing.health import HealthBoard
from llmgate.routing.strategies import make_strategy

HELLO = [{"role": "user", "content": "hello brave new world"}]
HANG_GUARD = 2.0  # seconds: not a timing assertion, only so that a regression fails instead of hanging


def gateway(tmp_path: Path, first: str) -> Gateway:
    """Group ``g``: the ``first`` provider (priority 0), then the healthy ``good`` one (priority 1)."""
    path = tmp_path / "c.yaml"
    path.write_text(
        f"""
routing: {{retries: 0}}
providers:
  bad: {{type: mock, mock: {first}}}
  good: {{type: mock}}
models:
  - name: g
    strategy: priority
    deployments:
      - {{provider: bad, model: flaky, priority: 0}}
      - {{provider: good, model: echo, priority: 1}}
"""
    )
    return Gateway(load_settings(path, environ={}))


STATUS_503 = "{failure_rate: 1.0, failure: {kind: status, status: 503}}"
CUT_BEFORE_CONTENT = "{failure_rate: 1.0, failure: {kind: stream_cut, after_chunks: 0}}"
CUT_AFTER_CONTENT = "{failure_rate: 1.0, failure: {kind: stream_cut, after_chunks: 1}}"


@pytest.mark.parametrize("failure", [STATUS_503, CUT_BEFORE_CONTENT], ids=["status-503", "cut-after-role"])
async def test_a_failure_before_the_first_content_fails_over_invisibly(tmp_path: Path, failure: str) -> None:
    async with gateway(tmp_path, failure) as gw:
        stream = gw.stream("g", HELLO)
        chunks = [chunk async for chunk in stream]

        assert stream.info.attempts == 2
        assert stream.info.deployment == "good/echo"
        assert {chunk.model for chunk in chunks} == {"echo"}  # nothing from the failed attempt
        roles = [c for c in chunks for choice in c.choices if choice.delta.role]
        assert len(roles) == 1
        text = "".join(choice.delta.content or "" for c in chunks for choice in c.choices)
        assert text == "hello brave new world"
        assert chunks[-1].choices[0].finish_reason == "stop"
        health = {row["deployment"]: row for row in gw.provider_health()}
        assert health["bad/flaky"]["total_errors"] == 1
        assert health["good/echo"]["total_errors"] == 0
        assert health["good/echo"]["in_flight"] == 0


async def test_a_failure_after_the_first_content_is_raised_from_the_iteration(tmp_path: Path) -> None:
    async with gateway(tmp_path, CUT_AFTER_CONTENT) as gw:
        stream = gw.stream("g", HELLO)
        received: list[ChatChunk] = []
        with pytest.raises(StreamInterrupted):
            async for chunk in stream:
                received.append(chunk)

        assert stream.info.deployment == "bad/flaky"
        assert any(choice.delta.content for c in received for choice in c.choices)
        assert not any(choice.finish_reason for c in received for choice in c.choices)  # no clean end
        health = {row["deployment"]: row for row in gw.provider_health()}
        assert health["bad/flaky"]["total_errors"] == 1
        assert health["bad/flaky"]["in_flight"] == 0
        assert gw.board.of("bad/flaky").breaker.consecutive_failures == 1
        assert health["good/echo"]["total_requests"] == 0  # no failover once content has flowed


# --- what counts as content ------------------------------------------------------------------------------


def piece(delta: Delta | None = None, finish: str | None = None) -> ChatChunk:
    choices = [] if delta is None else [ChunkChoice(index=0, delta=delta, finish_reason=finish)]
    return ChatChunk(id="c", created=0, model="m", choices=choices)


def usage_only() -> ChatChunk:
    return ChatChunk(id="c", created=0, model="m", choices=[], usage=make_usage(prompt=1, completion=0))


TOOL_DELTA = Delta(tool_calls=[ToolCallDelta(index=0, id="call_1", function=FunctionCallDelta(name="f"))])


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        ([], False),
        ([piece(Delta(role="assistant"))], False),
        ([piece(Delta(role="assistant", content=""))], False),
        ([piece(Delta(role="assistant")), piece(Delta(role="assistant", content=""))], False),
        ([piece(Delta(content="hi"))], True),
        ([piece(Delta(role="assistant")), piece(Delta(content="hi"))], True),
        ([piece(TOOL_DELTA)], True),
        ([piece(Delta(function_call=FunctionCallDelta(name="f")))], True),
        ([piece(Delta(), finish="stop")], True),
        ([piece(Delta(role="assistant"), finish="length")], True),
        ([usage_only()], True),
        ([piece(Delta(refusal="no"))], True),
        ([piece(Delta(reasoning_content="thinking"))], True),
        ([piece(Delta(reasoning="thinking"))], True),
    ],
    ids=[
        "empty-batch",
        "role-only",
        "role-with-empty-content",
        "two-role-chunks",
        "content",
        "role-then-content",
        "tool-calls",
        "function-call",
        "finish-reason",
        "role-with-finish-reason",
        "usage",
        "refusal",
        "reasoning-content",
        "reasoning",
    ],
)
def test_has_content(batch: list[ChatChunk], expected: bool) -> None:
    assert has_content(batch) is expected


# --- ChatStream over fake upstreams ----------------------------------------------------------------------


class Upstream:
    """A streaming provider: a role-only batch, then content batches; it can fail or stall on the way."""

    def __init__(
        self,
        name: str,
        *,
        fail_after: int | None = None,
        error: Exception | None = None,
        stall: asyncio.Event | None = None,
        pause: asyncio.Event | None = None,
        raw: bool = False,
    ) -> None:
        self.name = name
        self.raw = raw
        """Send the second content chunk as an OpenAI-compatible upstream's bytes."""
        self.fail_after = fail_after
        """Raise ``error`` after this many batches (1: after the role-only batch, before content)."""
        self.error = error or UpstreamConnectionError(f"{name}: connection reset")
        self.stall = stall
        """Blocks the stream before its first batch until set."""
        self.pause = pause
        """Blocks the stream after its first content until set."""
        self.opened = 0
        self.closed = 0

    def check(self, request: ChatRequest) -> ParamReport:
        return NOTHING_UNSUPPORTED

    async def chat(self, request: ChatRequest, target: Target) -> ChatResponse:
        raise NotImplementedError

    async def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[list[StreamItem]]:
        self.opened += 1
        try:
            if self.stall is not None:
                await self.stall.wait()
            two: StreamItem = piece(Delta(content=" two"))
            batches: list[list[StreamItem]] = [
                [piece(Delta(role="assistant"))],
                [piece(Delta(content=f"{self.name} one"))],
                [msgspec.json.encode(two) if self.raw else two],
                LastBatch([piece(Delta(), finish="stop"), usage_only()]),
            ]
            for sent, batch in enumerate(batches):
                if sent == self.fail_after:
                    raise self.error
                if sent == 2 and self.pause is not None:
                    await self.pause.wait()
                yield batch
        finally:
            self.closed += 1

    async def close(self) -> None:
        return None


def routed(*upstreams: Upstream, hedge: Hedge | None = None) -> tuple[Failover, ModelGroup, HealthBoard]:
    deployments = tuple(
        Deployment(ProviderAccount(u.name, "fake", u, api_keys=("sk-k",)), "m", priority=i)
        for i, u in enumerate(upstreams)
    )
    group = ModelGroup("g", deployments, strategy="priority", hedge=hedge)
    board = HealthBoard(clock=FakeClock(500.0))
    failover = Failover(
        board=board,
        strategy_of=lambda _: make_strategy("priority"),
        resolve={"g": group}.__getitem__,
        policy=RetryPolicy(retries=0, backoff=Backoff(base=0.0, cap=0.0)),
        rng=random.Random(0),
    )
    return failover, group, board


def open_stream(failover: Failover, group: ModelGroup) -> ChatStream:
    request = parse_chat_request({"model": "g", "messages": HELLO, "stream": True})
    return ChatStream(request, failover.plan(request, group), failover, "req_test")


def content(chunks: list[ChatChunk]) -> str:
    return "".join(choice.delta.content or "" for c in chunks for choice in c.choices)


async def test_the_failed_attempt_is_closed_and_the_client_sees_only_the_second() -> None:
    first, second = Upstream("first", fail_after=1), Upstream("second")
    failover, group, board = routed(first, second)
    stream = open_stream(failover, group)

    chunks = [chunk async for chunk in stream]

    assert content(chunks) == "second one two"
    assert stream.info.attempts == 2
    assert stream.info.deployment == "second/m"
    assert (first.opened, first.closed) == (1, 1)
    assert second.closed == 1
    assert board.of("first/m").stats.total_errors == 1
    assert board.of("second/m").stats.total_errors == 0
    assert board.of("second/m").stats.in_flight == 0


async def test_start_surfaces_an_error_when_no_attempt_reaches_content() -> None:
    only = Upstream("only", fail_after=0, error=Overloaded("busy"))
    failover, group, _ = routed(only)
    stream = open_stream(failover, group)
    with pytest.raises(Overloaded):
        await stream.start()
    assert stream.served is None


async def test_a_failure_after_content_is_raised_and_counted_against_the_deployment() -> None:
    broken = Upstream("broken", fail_after=2, error=StreamInterrupted("cut"))
    spare = Upstream("spare")
    failover, group, board = routed(broken, spare)
    stream = open_stream(failover, group)

    received: list[ChatChunk] = []
    with pytest.raises(StreamInterrupted):
        async for chunk in stream:
            received.append(chunk)

    assert content(received) == "broken one"
    stats = board.of("broken/m").stats
    assert (stats.total_requests, stats.total_errors, stats.in_flight) == (1, 1, 0)
    assert stats.last_error == "StreamInterrupted: cut"
    assert board.of("broken/m").breaker.consecutive_failures == 1
    assert spare.opened == 0
    assert broken.closed == 1


async def test_a_stream_read_to_its_end_is_a_success_for_the_deployment() -> None:
    only = Upstream("only")
    failover, group, board = routed(only)
    stream = open_stream(failover, group)
    board.of("only/m").breaker.record_failure(board.clock())

    chunks = [chunk async for chunk in stream]

    assert content(chunks) == "only one two"
    assert stream.usage is not None
    assert board.of("only/m").breaker.consecutive_failures == 0
    stats = board.of("only/m").stats
    assert (stats.total_requests, stats.total_errors, stats.in_flight) == (1, 0, 0)


async def test_raw_items_and_the_mark_of_the_last_batch_pass_through() -> None:
    only = Upstream("only", raw=True)
    failover, group, _ = routed(only)
    batches = [batch async for batch in open_stream(failover, group).batches()]
    assert [item for batch in batches for item in batch if isinstance(item, bytes)] == [
        msgspec.json.encode(piece(Delta(content=" two")))
    ]
    assert isinstance(batches[-1], LastBatch)
    assert not any(isinstance(batch, LastBatch) for batch in batches[:-1])

    stream = open_stream(*routed(Upstream("again", raw=True))[:2])
    chunks = [chunk async for chunk in stream]  # the library API decodes raw items
    assert content(chunks) == "again one two"
    assert stream.usage is not None


async def test_a_stream_closed_early_by_its_caller_gives_no_verdict() -> None:
    only = Upstream("only")
    failover, group, board = routed(only)
    board.of("only/m").breaker.record_failure(board.clock())
    stream = open_stream(failover, group)

    async with stream:
        async for _ in stream:
            break

    assert only.closed == 1
    assert board.of("only/m").breaker.consecutive_failures == 1  # neither success nor failure
    stats = board.of("only/m").stats
    assert (stats.total_requests, stats.total_errors, stats.in_flight) == (1, 0, 0)


async def test_a_stream_whose_client_is_cancelled_mid_way_gives_no_verdict() -> None:
    paused = asyncio.Event()
    only = Upstream("only", pause=paused)
    failover, group, board = routed(only)
    board.of("only/m").breaker.record_failure(board.clock())
    stream = open_stream(failover, group)
    got_content = asyncio.Event()

    async def consume() -> None:
        async for chunk in stream:
            if any(choice.delta.content for choice in chunk.choices):
                got_content.set()

    task = asyncio.ensure_future(consume())
    await asyncio.wait_for(got_content.wait(), HANG_GUARD)
    task.cancel()  # the client went away while the upstream was still generating
    with pytest.raises(asyncio.CancelledError):
        await task

    assert only.closed == 1
    stats = board.of("only/m").stats
    assert (stats.total_requests, stats.total_errors, stats.in_flight) == (1, 0, 0)
    assert stats.percentile(0.5) is None  # no latency verdict either
    assert board.of("only/m").breaker.consecutive_failures == 1  # neither success nor failure


async def test_an_unexpected_exception_mid_stream_counts_as_a_failure() -> None:
    broken = Upstream("broken", fail_after=2, error=KeyError("choices"))
    failover, group, board = routed(broken)
    board.of("broken/m").breaker.record_failure(board.clock())
    stream = open_stream(failover, group)

    with pytest.raises(KeyError):
        async for _ in stream:
            pass

    stats = board.of("broken/m").stats
    assert (stats.in_flight, stats.total_errors) == (0, 1)
    assert board.of("broken/m").breaker.consecutive_failures == 2  # one before, plus this one


async def test_a_hedged_stream_closes_the_slow_upstream_and_streams_the_fast_one() -> None:
    stalled = asyncio.Event()
    slow, fast = Upstream("slow", stall=stalled), Upstream("fast")
    failover, group, board = routed(slow, fast, hedge=Hedge(after=0.01, max_share=1.0))
    stream = open_stream(failover, group)

    await asyncio.wait_for(stream.start(), HANG_GUARD)
    chunks = [chunk async for chunk in stream]

    assert content(chunks) == "fast one two"
    assert stream.info.attempts == 2
    assert (slow.opened, slow.closed) == (1, 1)
    assert board.of("slow/m").stats.in_flight == 0
