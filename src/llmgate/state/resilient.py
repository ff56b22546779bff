"""Keep serving when a shared backend is down: fall back to a local one, say so, and try again later.

While degraded, limits are enforced per process (the local backend starts from zero) and breaker trips
are not shared: requests keep flowing, and ``degraded`` / ``last_error`` let /health say why.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from llmgate.state.ports import BreakerBoard, Counters, StateUnavailable, Taken


class Closable(Protocol):
    """What ``Failover`` needs of a backend besides the calls it routes."""

    async def close(self) -> None:
        """Release connections."""
        ...


Backend = TypeVar("Backend", bound=Closable)
Result = TypeVar("Result")


class Failover(Generic[Backend]):
    """Routes calls to ``primary`` and, for ``retry_after`` seconds after it fails, to ``local``.

    When the pause is over, one call probes the primary while the others stay local; its success ends
    the degraded state.
    """

    def __init__(
        self, primary: Backend, local: Backend, *, retry_after: float, clock: Callable[[], float]
    ) -> None:
        self._primary = primary
        self._local = local
        self._retry_after = retry_after
        self._clock = clock
        self._retry_at: float | None = None
        self._last_error: str | None = None

    @property
    def degraded(self) -> bool:
        """Whether calls are being served by the local backend."""
        return self._retry_at is not None

    @property
    def last_error(self) -> str | None:
        """Why the primary failed, while degraded."""
        return self._last_error

    async def call(self, operation: Callable[[Backend], Awaitable[Result]]) -> Result:
        """Run ``operation`` on the primary, or on the local backend when the primary is down."""
        now = self._clock()
        probing = self._retry_at is not None
        if self._retry_at is not None:
            if now < self._retry_at:
                return await operation(self._local)
            self._retry_at = now + self._retry_after
        try:
            result = await operation(self._primary)
        except StateUnavailable as error:
            self._retry_at = self._clock() + self._retry_after
            self._last_error = str(error)
            return await operation(self._local)
        # A call that started before the primary failed proves nothing about it now; a probe does.
        if probing or self._retry_at is None:
            self._retry_at = None
            self._last_error = None
        return result

    async def close(self) -> None:
        """Close both backends."""
        try:
            await self._primary.close()
        finally:
            await self._local.close()


class _Fallback(Generic[Backend]):
    """What both fallbacks share: the failover between the backends, and whether it is degraded."""

    def __init__(
        self,
        primary: Backend,
        local: Backend,
        *,
        retry_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._failover = Failover[Backend](primary, local, retry_after=retry_after, clock=clock)

    @property
    def degraded(self) -> bool:
        """Whether the local backend is serving."""
        return self._failover.degraded

    @property
    def last_error(self) -> str | None:
        """Why the primary failed, while degraded."""
        return self._failover.last_error

    async def close(self) -> None:
        """Close both backends."""
        await self._failover.close()


class FallbackCounters(_Fallback[Counters]):
    """``Counters`` served by ``primary`` (e.g. Redis), or by ``local`` (memory) while it is unreachable."""

    async def take(self, bucket: str, amount: float, *, limit: float, ttl: float | None) -> Taken:
        """``Counters.take`` on the serving backend."""
        return await self._failover.call(lambda counters: counters.take(bucket, amount, limit=limit, ttl=ttl))

    async def adjust(self, bucket: str, delta: float, *, ttl: float | None) -> float:
        """``Counters.adjust`` on the serving backend."""
        return await self._failover.call(lambda counters: counters.adjust(bucket, delta, ttl=ttl))

    async def value(self, bucket: str) -> float:
        """``Counters.value`` on the serving backend."""
        return await self._failover.call(lambda counters: counters.value(bucket))

    async def take_many(self, takes: Sequence[tuple[str, float, float, float | None]]) -> Taken:
        """``Counters.take_many`` on the serving backend."""
        return await self._failover.call(lambda counters: counters.take_many(takes))

    async def next_turn(self, name: str) -> int:
        """``Counters.next_turn`` on the serving backend."""
        return await self._failover.call(lambda counters: counters.next_turn(name))


class FallbackBoard(_Fallback[BreakerBoard]):
    """``BreakerBoard`` served by ``primary``, or by ``local`` while it is unreachable."""

    async def trip(self, deployment: str, until: float) -> None:
        """``BreakerBoard.trip`` on the serving backend."""
        await self._failover.call(lambda board: board.trip(deployment, until))

    async def tripped(self, now: float) -> dict[str, float]:
        """``BreakerBoard.tripped`` on the serving backend."""
        return await self._failover.call(lambda board: board.tripped(now))
