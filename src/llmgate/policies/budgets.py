"""Budgets of virtual keys: the worst-case cost of a call is reserved before it and settled after it.

A key's spend per period lives in a ``Counters`` bucket (``take`` refuses a reservation that would
pass the budget), so concurrent requests cannot overshoot, on one process or, with Redis, on many.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from llmgate.core.caller import Caller
from llmgate.core.errors import Overloaded, QuotaExceeded
from llmgate.policies.settlements import Settlements, in_order
from llmgate.state.ports import Counters, StateUnavailable

DAY = 86_400.0
CENT_FRACTION = 1e-9  # float sums of cents drift (0.49000000000000027): allow that much over
SpendSince = Callable[[str, float], Awaitable[float]]
"""(key id, since) -> USD spent, from the usage ledger (to start a period's counter after a restart)."""


@dataclass(slots=True)
class Hold:
    """A reservation against a key's budget."""

    bucket: str
    amount: float
    ttl: float | None


@dataclass(frozen=True, slots=True)
class BudgetTake:
    """A reservation to make: taken alone (``reserve``) or with the rate limits' buckets, in the same
    all-or-nothing call (one round trip to a shared store)."""

    bucket: str
    amount: float
    limit: float
    ttl: float | None

    @property
    def take(self) -> tuple[str, float, float, float | None]:
        """As one of ``Counters.take_many``'s takes."""
        return (self.bucket, self.amount, self.limit, self.ttl)

    def hold(self) -> Hold:
        """What the reservation holds once taken."""
        return Hold(self.bucket, self.amount, self.ttl)


def period_start(period: str, now: float) -> tuple[str, float, float | None]:
    """The bucket suffix, start time and counter lifetime of the period containing ``now``."""
    moment = datetime.fromtimestamp(now, UTC)
    if period == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        return f"d:{start:%Y-%m-%d}", start.timestamp(), 2 * DAY
    if period == "month":
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return f"m:{start:%Y-%m}", start.timestamp(), 32 * DAY
    return "total", 0.0, None


class Budgets:
    """Reserves and settles spend against the budgets of virtual keys."""

    def __init__(
        self,
        counters: Counters,
        *,
        spend_since: SpendSince | None = None,
        clock: Callable[[], float] = time.time,
        settlements: Settlements | None = None,
    ) -> None:
        self.counters = counters
        self.settlements = settlements if settlements is not None else Settlements(counters)
        """Where settlements go (give-backs gathered against a shared store)."""
        self._spend_since = spend_since
        self._clock = clock
        self._seeded: set[str] = set()
        self._seeding = asyncio.Lock()

    async def reserve(self, caller: Caller, worst_cost: float | None) -> Hold | None:
        """Reserve the worst-case cost of a call, or raise ``QuotaExceeded`` (429 insufficient_quota)."""
        planned = await self.plan(caller, worst_cost)
        return await self.take(caller, planned) if planned is not None else None

    async def take(self, caller: Caller, planned: BudgetTake) -> Hold:
        """Make a planned reservation on its own, or raise ``QuotaExceeded``."""
        taken = await self.counters.take(planned.bucket, planned.amount, limit=planned.limit, ttl=planned.ttl)
        if not taken.allowed:
            raise await self.refusal(caller, planned)
        return planned.hold()

    async def plan(self, caller: Caller, worst_cost: float | None) -> BudgetTake | None:
        """The reservation a call needs (``None`` for a key without a budget), its counter seeded."""
        if caller.budget_usd is None or caller.key_id is None:
            return None
        suffix, start, ttl = period_start(caller.budget_period, self._clock())
        bucket = f"budget:{caller.key_id}:{suffix}"
        await self._seed(bucket, caller.key_id, start, ttl)
        return BudgetTake(bucket, worst_cost or 0.0, caller.budget_usd + CENT_FRACTION, ttl)

    async def refusal(self, caller: Caller, planned: BudgetTake) -> QuotaExceeded:
        """The error for a reservation the budget refused (read back on the refusal path only)."""
        spent = await self.counters.value(planned.bucket)
        return QuotaExceeded(
            f"This key's budget of ${caller.budget_usd:g} per {caller.budget_period} is used up "
            f"(${spent:.6f} spent or reserved; this call could cost up to ${planned.amount:.6f}).",
        )

    async def settle(self, hold: Hold | None, actual_cost: float | None) -> None:
        """Replace the reservation with what the call really cost (unknown cost: keep the reservation)."""
        await in_order(self.start_settling(hold, actual_cost))

    def start_settling(self, hold: Hold | None, actual_cost: float | None) -> list[Awaitable[object]]:
        """Settle, gathering what can wait: the writes still to await (none when all is gathered)."""
        if hold is None or actual_cost is None:
            return []
        write = self.settlements.correct(hold.bucket, actual_cost - hold.amount, hold.ttl)
        return [write] if write is not None else []

    async def spent(self, caller: Caller) -> float | None:
        """What the caller's key has spent (or reserved) in the current period."""
        if caller.key_id is None or caller.budget_usd is None:
            return None
        suffix, _, _ = period_start(caller.budget_period, self._clock())
        return await self.counters.value(f"budget:{caller.key_id}:{suffix}")

    async def _seed(self, bucket: str, key_id: str, start: float, ttl: float | None) -> None:
        """Start a process-local counter from the ledger once (a restart must not reset spend).

        Reservations wait for it; if the ledger is unreachable the next reservation tries again.
        """
        if self._spend_since is None or bucket in self._seeded:
            return
        async with self._seeding:
            if bucket in self._seeded:
                return
            if await self.counters.value(bucket) == 0:
                try:
                    spent = await self._spend_since(key_id, start)
                except StateUnavailable:
                    raise Overloaded(
                        "The key's spend cannot be read while the database is unreachable.", retry_after=5
                    ) from None
                if spent:
                    await self.counters.adjust(bucket, spent, ttl=ttl)
            self._seeded.add(bucket)
