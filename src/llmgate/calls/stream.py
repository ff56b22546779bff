"""A streamed reply: failover until the first content, then the chunks, then the accounting.

``start()`` runs the routing plan: each attempt opens an upstream stream and reads until the first
batch that carries content. Any failure before that moves to the next option, invisibly to the client.
After it, a failure ends the stream with the error (the server writes an SSE error event, never
``[DONE]``) and counts against the deployment that failed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, Self

from msgspec import UNSET

from llmgate.calls.stream_cache import StreamCache, cache_info
from llmgate.catalogue import cost_of
from llmgate.core.errors import ClientClosed, GatewayError, SchemaViolation, UnexpectedResponse
from llmgate.core.replay import replay_chunks
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatChunk, LastBatch, StreamItem, as_chunk
from llmgate.core.results import CallInfo
from llmgate.core.usage import Usage, make_usage
from llmgate.policies.cache import CachedAnswer
from llmgate.policies.guard import Pass
from llmgate.policies.structured import Expectation, text_violation
from llmgate.providers.base import Target
from llmgate.routing.failover import Failover, Served
from llmgate.routing.plan import Option, Plan

Prepare = Callable[[ChatRequest, Plan], Awaitable[tuple[ChatRequest, Plan, str | None]]]
"""The context stage before admission: the request and plan to route (fitted when they overflow)."""


@dataclass(slots=True)
class Opened:
    """An upstream stream that has produced its first content, and what it produced so far."""

    upstream: AsyncIterator[Sequence[StreamItem]]
    buffered: list[Sequence[StreamItem]]
    first_token: float


def has_content(batch: Sequence[StreamItem]) -> bool:
    """Whether a batch carries anything beyond a bare role announcement.

    A raw item counts: translators pass chunks on raw only after the stream's first substantive one.
    """
    return any(isinstance(item, bytes) or item.is_substantive for item in batch)


def stream_opener(request: ChatRequest) -> Callable[[Option, Target], Awaitable[Opened]]:
    """The attempt function for streams: open the upstream and read until its first content."""

    async def open_stream(option: Option, target: Target) -> Opened:
        started = time.monotonic()
        upstream = option.deployment.adapter.stream(request, target)
        buffered: list[Sequence[StreamItem]] = []
        try:
            async for batch in upstream:
                buffered.append(batch)
                if has_content(batch):
                    break
        except BaseException:
            await upstream.aclose()  # type: ignore[attr-defined]
            raise
        return Opened(upstream, buffered, time.monotonic() - started)

    return open_stream


async def discard_opened(opened: Opened) -> None:
    """Close the stream of an attempt that lost a hedging race."""
    await opened.upstream.aclose()  # type: ignore[attr-defined]


class Traced(Protocol):
    """A call's trace span (``observe.tracing.CallSpan``): current around routing."""

    def current(self) -> AbstractContextManager[None]:
        """Make it the parent of the attempt spans started inside."""
        ...


class ChatStream:
    """A streamed reply. Iterate it; afterwards ``usage`` and ``cost`` hold the totals.

    ``start()`` routes the request and waits for the first content, so a failure before any content
    surfaces as an exception (the server turns it into a proper HTTP error, not a broken stream).
    ``batches()`` gives the chunks as they arrived together, for callers that write them out in bulk.
    """

    def __init__(
        self,
        request: ChatRequest,
        plan: Plan,
        failover: Failover,
        request_id: str,
        *,
        deadline: float | None = None,
        admit: Callable[[ChatRequest, Plan], Awaitable[Pass]] | None = None,
        prepare: Prepare | None = None,
        expected: Expectation | None = None,
        cache: StreamCache | None = None,
        span: Traced | None = None,
    ) -> None:
        self.request = request
        self._span = span
        self.info = CallInfo(request_id, "", "", "")
        self.usage: Usage | None = None
        self.cost: float | None = None
        self.first_token: float | None = None
        self._plan = plan
        self._failover = failover
        self._deadline = deadline
        self._admit = admit
        self._prepare = prepare
        self._expected = expected
        self._text: list[str] | None = [] if expected is not None else None
        self._finish_reason: str | None = None
        self._context: str | None = None
        self._pass: Pass | None = None
        self._served: Served[Opened] | None = None
        self._started = False
        self._closed = False
        self._forward_usage = request.wants_usage_chunk
        self._seen = 0  # chunks streamed so far: about one token each (a stream its client abandons)
        self._cache = cache
        self._replay: list[StreamItem] | None = None

    async def start(self) -> None:
        """Route the request and buffer the upstream's first content."""
        if self._started:
            return
        self._started = True
        cache = self._cache
        if cache is not None:
            ticket = await cache.open()
            if ticket.answer is not None:
                await self._start_replay(cache, ticket.answer, ticket.state)
                return
        try:
            if self._span is None:
                await self._route()
            else:
                with self._span.current():  # attempt spans become the call span's children
                    await self._route()
        except BaseException:
            if cache is not None:
                cache.failed()
            raise

    async def _route(self) -> None:
        try:
            if self._prepare is not None:
                self.request, self._plan, self._context = await self._prepare(self.request, self._plan)
            if self._admit is not None:
                self._pass = await self._admit(self.request, self._plan)
        except GatewayError as refused:
            refused.request_id = self.info.request_id
            raise
        cache = self._cache.state if self._cache is not None else "skip"
        try:
            served = await self._failover.run(
                self._plan, stream_opener(self.request), deadline=self._deadline, discard=discard_opened
            )
        except BaseException as exc:
            error = exc if isinstance(exc, GatewayError) else ClientClosed("the client went away")
            error.request_id = self.info.request_id
            self.info = CallInfo.failed(self.info.request_id, error, self.info.limit, cache=cache)
            if self._cache is not None:
                self._cache.failed(self.info, error)
            await self._close_pass(error)
            raise
        self._served = served
        option = served.option
        deployment = option.deployment
        self.first_token = served.value.first_token
        self.info = CallInfo(
            self.info.request_id,
            deployment.account.name,
            deployment.name,
            deployment.model,
            served.attempts,
            served.value.first_token * 1000,
            option.dropped,
            self._pass.limit if self._pass is not None else None,
            served.tried,
            cache,
            group=option.group.name,
            context=self._context,
        )

    async def _start_replay(self, cache: StreamCache, answer: CachedAnswer, state: str) -> None:
        """Serve the stream from the cache: the stored reply replayed as chunks, at no cost."""
        started = time.monotonic()
        try:
            self._pass = await cache.admit_free()
        except GatewayError as refused:
            refused.request_id = self.info.request_id
            raise
        self._replay = list(replay_chunks(answer.response, include_usage=self._forward_usage))
        self.cost = 0.0
        self.first_token = time.monotonic() - started
        self.info = cache_info(answer, self.info.request_id, self._pass, self.first_token * 1000, state)
        cache.replayed(answer, self.info)

    @property
    def served(self) -> Served[Opened] | None:
        """The attempt that is serving the stream, once started."""
        return self._served

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        return self._chunks()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _chunks(self) -> AsyncIterator[ChatChunk]:
        async for batch in self.batches():
            for item in batch:
                yield as_chunk(item)

    async def batches(self) -> AsyncIterator[list[StreamItem]]:
        """The chunks, in the batches they arrived in (never empty); raw items are for writing as is."""
        await self.start()
        if self._replay is not None:
            async for batch in self._replayed():
                yield batch
            return
        served = self._served
        assert served is not None
        error: GatewayError | None = None
        gone = False
        try:
            opened = served.value
            for buffered in opened.buffered:
                if batch := self._account(buffered):
                    yield batch
            opened.buffered = []
            async for upstream_batch in opened.upstream:
                if batch := self._account(upstream_batch):
                    yield batch
            self._check_schema()
        except GatewayError as exc:
            error = exc
            raise
        except Exception as exc:  # an adapter bug is still a failed call, never a success
            error = UnexpectedResponse(f"{served.option.deployment.name}: {type(exc).__name__}: {exc}")
            raise
        except BaseException:  # the caller went away (cancelled, or the generator closed): no verdict
            gone = True
            raise
        finally:
            await self._finish(error, gone=gone)
            await self.aclose()

    async def _finish(self, error: GatewayError | None, *, gone: bool = False) -> None:
        served = self._served
        if served is None or self._closed:
            return
        self._closed = True
        if gone:  # the caller left mid-stream: the call ends, but says nothing about the deployment
            if self._cache is not None:
                self._cache.failed(self.info, ClientClosed("the client went away"))
            served.board.of(served.option.deployment.name).abandoned(
                served.board.clock(), panic=served.option.panic
            )
            self._estimate_usage(served)
            await self._settle(served, ClientClosed("the client went away"))
            return
        upstream_failed = (
            error if not isinstance(error, SchemaViolation) else None
        )  # the upstream did its part
        served.finish(ok=upstream_failed is None, first_token=self.first_token, error=upstream_failed)
        if self._cache is not None:
            if error is None:
                await self._cache.finished(self.info, self.cost)
            else:
                self._cache.failed(self.info, error)
        await self._settle(served, error)

    async def _replayed(self) -> AsyncIterator[list[StreamItem]]:
        replay, self._replay = self._replay or [], []
        try:
            yield LastBatch(replay)
        finally:
            await self._close_replay()

    async def _close_replay(self) -> None:
        if self._pass is not None and not self._closed:
            self._closed = True
            first_token = self.first_token * 1000 if self.first_token is not None else None
            await self._pass.close(info=self.info, usage=None, cost=0.0, first_token_ms=first_token)

    def _estimate_usage(self, served: Served[Opened]) -> None:
        """A stream abandoned before its usage chunk: estimate what was generated (it was billed)."""
        if self.usage is None:  # OpenAI-style streams carry about one token per chunk
            self.usage = make_usage(prompt=self._plan.prompt_tokens, completion=self._seen)
            self.cost = cost_of(self.usage, served.option.deployment.prices)

    async def _settle(self, served: Served[Opened], error: GatewayError | None) -> None:
        usage = self.usage
        try:
            await self._failover.release(served, usage.total_tokens if usage is not None else None)
        finally:
            await self._close_pass(error)

    async def _close_pass(self, error: GatewayError | None) -> None:
        if self._pass is None:
            return
        first_token = self.first_token * 1000 if self.first_token is not None else None
        await self._pass.close(
            info=self.info, usage=self.usage, cost=self.cost, error=error, first_token_ms=first_token
        )

    def _check_schema(self) -> None:
        """A strict ``json_schema`` stream that ended off its schema ends with an error event."""
        expected = self._expected
        if expected is None or self._text is None:
            return
        violation = text_violation(expected, "".join(self._text), self._finish_reason)
        if violation is not None:
            raise SchemaViolation(
                f"the reply does not match the response_format schema '{expected.name[:64]}': {violation}",
                provider=self.info.provider,
            )

    def _watch_text(self, item: StreamItem) -> None:
        chunk = item if isinstance(item, ChatChunk) else as_chunk(item)
        assert self._text is not None
        for choice in chunk.choices:
            if choice.index == 0:
                if choice.delta.content:
                    self._text.append(choice.delta.content)
                if choice.finish_reason is not None:
                    self._finish_reason = choice.finish_reason

    def _account(self, batch: Sequence[StreamItem]) -> list[StreamItem]:
        forward = self._forward_usage
        kept: list[StreamItem] = LastBatch() if isinstance(batch, LastBatch) else []
        self._seen += len(batch)
        cache = self._cache
        for item in batch:
            if cache is not None:
                cache.watch(item)
            if self._text is not None:
                self._watch_text(item)
            if isinstance(item, bytes):  # never carries usage
                kept.append(item)
                continue
            usage = item.usage
            if usage:
                self.usage = usage
                if self._served is not None:
                    self.cost = cost_of(usage, self._served.option.deployment.prices)
                if not item.choices and not forward:
                    continue
            if not forward and usage is not UNSET:
                item.usage = UNSET
            kept.append(item)
        return kept

    async def aclose(self) -> None:
        """Stop the upstream (cancels the HTTP request when the caller goes away)."""
        served = self._served
        if served is not None:
            await self._finish(None, gone=True)  # closed before its end: the caller went away
            await served.value.upstream.aclose()  # type: ignore[attr-defined]
        elif self._replay is not None:
            await self._close_replay()
