"""Usage records: one per request, queued in memory and written in batches off the request path.

A background task writes the queue every ``flush_interval`` seconds (or sooner when it grows), in one
transaction per batch; ``close()`` writes whatever is left, so a graceful shutdown loses nothing. On a
crash, at most the last ``flush_interval`` seconds of records are lost. When the database is
unreachable the records stay queued (up to ``max_queued``) and are written once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from llmgate.state.ports import StateUnavailable, UsageLedger, UsageRecord

log = logging.getLogger("llmgate.usage")
BATCH_SIZE = 500
MAX_QUEUED = 100_000
CLOSE_ROUNDS = 10


class UsageRecorder:
    """Queues usage records and writes them to the ledger in batches."""

    def __init__(
        self, ledger: UsageLedger, *, flush_interval: float = 1.0, max_queued: int = MAX_QUEUED
    ) -> None:
        self.ledger = ledger
        self.flush_interval = flush_interval
        self.max_queued = max_queued
        self._queue: list[UsageRecord] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.dropped = 0
        self.written = 0
        self.last_error: str | None = None
        self._stopping = False
        self._waiting_since: float | None = None  # monotonic: when the oldest queued record (at most) came
        self._last_write: float | None = None
        self.listeners: list[Callable[[Sequence[UsageRecord]], None]] = []
        """Told of every record once, in batches, off the request path (metrics, request logs)."""
        self._announced = 0  # records at the head of the queue the listeners have been told of

    def record(self, record: UsageRecord) -> None:
        """Queue one record (never blocks, never fails the request)."""
        if len(self._queue) >= self.max_queued:
            self.dropped += 1  # the database has been down for long: keep memory bounded
            self._tell([record])  # the metrics still count it
            return
        if not self._queue:
            self._waiting_since = time.monotonic()
        self._queue.append(record)
        if self._task is None and not self._stopping:
            self._task = asyncio.get_running_loop().create_task(self._run())
        if len(self._queue) >= BATCH_SIZE:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Records not yet written."""
        return len(self._queue)

    def status(self) -> dict[str, Any]:
        """The writer's lag: what a crash (SIGKILL) would lose right now, besides the calls in flight."""
        now = time.monotonic()
        since, last = self._waiting_since, self._last_write
        return {
            "pending": len(self._queue),
            "lag_s": round(now - since, 3) if since is not None and self._queue else 0.0,
            "last_write_s_ago": None if last is None else round(now - last, 3),
            "flush_interval_s": self.flush_interval,
            "written": self.written,
            "dropped": self.dropped,
            "last_error": self.last_error,
        }

    @property
    def degraded(self) -> bool:
        """Whether the last write failed (records are waiting for the database)."""
        return self.last_error is not None

    async def flush(self) -> None:
        """Write the records queued now (in batches of up to ``BATCH_SIZE``).

        Records that arrive during the write wait for the next flush: under steady load, writing
        them at once would chase the queue with a transaction every few records.
        """
        async with self._lock:
            started = time.monotonic()
            self._announce()
            remaining = len(self._queue)
            while remaining > 0:
                batch = self._queue[: min(BATCH_SIZE, remaining)]
                remaining -= len(batch)
                try:
                    await self.ledger.write(batch)
                except StateUnavailable as error:
                    self.last_error = str(error)
                    log.warning("usage records are waiting for the database: %s", error)
                    return
                del self._queue[: len(batch)]
                self._announced -= len(batch)
                self.written += len(batch)
                self.last_error = None
                self._last_write = time.monotonic()
            # What is left arrived after this flush began: it has waited at most since then.
            self._waiting_since = started if self._queue else None

    def _announce(self) -> None:
        fresh = self._queue[self._announced :]
        self._announced = len(self._queue)
        if fresh:
            self._tell(fresh)

    def _tell(self, records: Sequence[UsageRecord]) -> None:
        for listener in self.listeners:
            try:
                listener(records)
            except Exception:  # a consumer's bug must not cost the records
                log.exception("a usage-record listener failed")

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # a bug in a backend must not kill the recorder: log it, keep the records
                log.exception("writing usage records failed")

    async def close(self) -> None:
        """Stop the background writer (it finishes the write it is doing) and write what is left."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            self._wake.set()
            await task  # never cancelled mid-write: a batch must not be written twice
        for _ in range(CLOSE_ROUNDS):  # then what arrived during those writes (calls still ending)
            await self.flush()
            if not self._queue or self.last_error is not None:
                return
