"""The batch runner: input lines in, one result per line out, as each finishes.

At most ``concurrency`` lines are in flight, pulled from the input only when a slot frees (a million-line
input is never held whole). A 429 or a retryable failure (5xx, timeout, connection) backs off and goes
again instead of failing its item: a rate limit pauses every worker until it resets, other failures
retry with exponential backoff up to ``retries`` times. A spent budget or quota (``insufficient_quota``)
stops the run: lines not yet answered are left unanswered (``stopped`` says why), never failed, so a
resumed run can do them. So does a 401 (the key is wrong or revoked) and a line that never got an answer at
all, retries spent (a gateway that cannot be reached): their failure says nothing about the line.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from llmgate.batch.lines import BatchLine
from llmgate.batch.results import BatchResult, Outcome, Progress

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
STOP_CODES = frozenset({"insufficient_quota"})
FINAL_CODES = frozenset({"request_too_large"})
"""429s that no wait will cure: the line fails at once."""
MAX_RATE_WAITS = 100
"""Waits for a rate limit to reset, per item, before it fails (at most a minute each)."""
MAX_WAIT_S = 60.0


class Sender(Protocol):
    """Where a batch's lines go: the in-process gateway, or a running one over HTTP."""

    async def send(self, line: BatchLine) -> Outcome:
        """One attempt at a line; failures are outcomes, not exceptions."""
        ...


@dataclass
class RetryPolicy:
    """How failed attempts are retried."""

    retries: int = 5
    """Further attempts after a retryable failure (rate-limit waits are counted apart)."""
    base_delay: float = 0.5
    max_delay: float = 30.0


Sleep = Callable[[float], Awaitable[None]]


class Runner:
    """Runs lines through a sender with bounded concurrency, retries and a stop on spent budget."""

    def __init__(
        self,
        sender: Sender,
        *,
        concurrency: int = 8,
        retry: RetryPolicy | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        total: int | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.sender = sender
        self.concurrency = concurrency
        self.retry = retry or RetryPolicy()
        self.on_progress = on_progress
        self.progress = Progress(total=total, started=clock())
        self.stopped: str | None = None
        """Why the run stopped early (a spent budget or quota), ``None`` while it runs or ran out."""
        self._sleep = sleep
        self._clock = clock
        self._paused_until = 0.0
        self._jitter = random.Random()

    async def results(
        self, lines: Iterable[BatchLine] | AsyncIterable[BatchLine]
    ) -> AsyncGenerator[BatchResult, None]:
        """Each line's result as it finishes (input order is not kept: match by ``custom_id``)."""
        source = each(lines)
        running: set[asyncio.Task[BatchResult | None]] = set()
        exhausted = False
        try:
            while True:
                while not exhausted and self.stopped is None and len(running) < self.concurrency:
                    line = await anext(source, None)
                    if line is None:
                        exhausted = True
                        break
                    running.add(asyncio.ensure_future(self._item(line)))
                if not running:
                    return
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    result = task.result()
                    if result is not None:
                        self.count(result)
                        yield result
        finally:
            for task in running:
                task.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    def count(self, result: BatchResult) -> None:
        """Add a finished line to the progress (and tell ``on_progress``)."""
        self.progress.add(result, self._clock())
        if self.on_progress is not None:
            self.on_progress(self.progress)

    async def _item(self, line: BatchLine) -> BatchResult | None:
        """One line, retried until it succeeds, fails for good, or the run stops (``None``)."""
        attempts = failures = waits = 0
        while True:
            await self._wait_for_pause()
            if self.stopped is not None:
                return None
            attempts += 1
            outcome = await self.sender.send(line)
            if outcome.code in STOP_CODES or outcome.status == 401:  # the caller's key, not the line
                self.stopped = self.stopped or outcome.message or outcome.code or f"HTTP {outcome.status}"
                return None
            if outcome.code in FINAL_CODES or (outcome.status and outcome.status not in RETRY_STATUSES):
                return BatchResult(line.index, line.custom_id, outcome, attempts)
            if outcome.status == 429 and outcome.retry_after is not None and waits < MAX_RATE_WAITS:
                waits += 1
                self._pause(min(outcome.retry_after, MAX_WAIT_S))
                continue
            failures += 1
            if failures > self.retry.retries:
                if not outcome.status:  # never an answer (the gateway is unreachable): stop, not fail
                    self.stopped = self.stopped or f"no answer: {outcome.message or outcome.code}"
                    return None
                return BatchResult(line.index, line.custom_id, outcome, attempts)
            await self._sleep(self._backoff(failures, outcome.retry_after))

    def _backoff(self, failures: int, retry_after: float | None) -> float:
        delay = min(self.retry.max_delay, self.retry.base_delay * 2.0 ** (failures - 1))
        delay = delay * (0.5 + self._jitter.random() / 2)  # jitter: items that failed together spread out
        return max(delay, min(retry_after or 0.0, MAX_WAIT_S))

    def _pause(self, seconds: float) -> None:
        """Hold every worker until a rate limit resets (not only the one that hit it)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    async def _wait_for_pause(self) -> None:
        while (left := self._paused_until - self._clock()) > 0:
            await self._sleep(left + self._jitter.random() * 0.1)


T = TypeVar("T")


async def each(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    """The items of a plain or an async iterable, as an async iterator (read lazily)."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
