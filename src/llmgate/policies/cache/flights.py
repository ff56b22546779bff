"""In-flight coalescing: of N identical requests that miss at once, one (the leader) goes upstream; the
others wait for its answer. A leader that fails hands nothing on: its followers go upstream themselves,
as ordinary requests, so one failure is not multiplied."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from llmgate.policies.cache.store import CachedAnswer
from llmgate.state.ports import CacheKey


@dataclass(slots=True)
class Flight:
    """One request's place in a flight: the leader makes the call, a follower waits for ``answer``."""

    key: CacheKey
    leader: bool
    _done: asyncio.Future[CachedAnswer | None]

    async def answer(self) -> CachedAnswer | None:
        """The leader's answer (``None`` when it failed); a follower's own cancellation stays its own."""
        return await asyncio.shield(self._done)


class Flights:
    """The requests in flight of one gateway process, by cache key."""

    def __init__(self) -> None:
        self._flying: dict[CacheKey, asyncio.Future[CachedAnswer | None]] = {}

    def join(self, key: CacheKey) -> Flight:
        """Lead a new flight for ``key``, or follow the one already in the air."""
        done = self._flying.get(key)
        if done is not None:
            return Flight(key, False, done)
        done = asyncio.get_running_loop().create_future()
        self._flying[key] = done
        return Flight(key, True, done)

    def land(self, flight: Flight, answer: CachedAnswer | None) -> None:
        """The leader is done: hand its answer (or ``None`` after a failure) to the followers."""
        if not flight.leader:
            return
        done = self._flying.pop(flight.key, None)
        if done is not None and not done.done():
            done.set_result(answer)

    def __len__(self) -> int:
        return len(self._flying)
