"""Corrections to counters once a call is done: what a reservation held and the call did not use is
given back, an overrun is taken.

Against a shared store, give-backs are gathered per bucket and written together a moment later (``every``
seconds; 0: at the next turn of the event loop, after the turn's other calls have ended): one call to the
store for all of them, not one per request and bucket. A give-back that waits only keeps a limit or budget
stricter meanwhile, so nothing is admitted that the written counters would refuse; overruns are written
at once for the same reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from llmgate.state.ports import Counters

log = logging.getLogger("llmgate.limits")

NO_LIMIT = 1e300
"""A limit no counter reaches: a take with it always succeeds."""


class Settlements:
    """Writes corrections to ``counters``: at once, or give-backs gathered for ``every`` seconds."""

    def __init__(self, counters: Counters, *, every: float | None = None) -> None:
        self.counters = counters
        self.every = every
        self._gathered: dict[str, tuple[float, float | None]] = {}
        self._flusher: asyncio.Task[None] | None = None
        """The next write, while it waits for its moment (cancelling it then loses nothing)."""
        self._writing: set[asyncio.Task[None]] = set()
        """Every write not yet done, the one waiting included (``close`` waits for the others)."""

    def correct(self, bucket: str, delta: float, ttl: float | None) -> Awaitable[float] | None:
        """Add ``delta`` to a bucket: the write to await now, or ``None`` when there is none to wait for
        (nothing to correct, or a give-back gathered for the next write)."""
        if not delta:
            return None
        if self.every is None or delta > 0:
            return self.counters.adjust(bucket, delta, ttl=ttl)
        gathered = self._gathered.get(bucket)
        self._gathered[bucket] = (delta + gathered[0] if gathered is not None else delta, ttl)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_later())
            self._writing.add(self._flusher)
            self._flusher.add_done_callback(self._writing.discard)
        return None

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.every or 0.0)
        self._flusher = None
        try:
            await self.flush()
        except Exception as error:  # a task of its own: nobody else would hear of it
            log.warning("give-backs not written: %s: %s", type(error).__name__, error)

    async def flush(self) -> None:
        """Write the give-backs gathered so far, all in one call (a take without a limit is an add)."""
        gathered, self._gathered = self._gathered, {}
        adds = [(bucket, delta, NO_LIMIT, ttl) for bucket, (delta, ttl) in gathered.items() if delta]
        if adds:
            await self.counters.take_many(adds)

    async def close(self) -> None:
        """Write what is gathered, and let the writes under way end."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()  # still waiting: what it would write is still gathered
        await self.flush()
        for write in [task for task in self._writing if task is not flusher]:
            await write


async def in_order(writes: list[Awaitable[object]]) -> None:
    """Await every write, one after the other; the first failure is raised once all have run."""
    failure: BaseException | None = None
    for write in writes:
        try:
            await write
        except Exception as error:  # the next writes still run: each frees something of its own
            failure = failure or error
    if failure is not None:
        raise failure
