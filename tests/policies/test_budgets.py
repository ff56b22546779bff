"""Budgets: worst-case reservations against a key's budget per period, settled with the real cost."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from clock import FakeClock
from llmgate.core.caller import ANONYMOUS, BudgetPeriod, Caller
from llmgate.core.errors import QuotaExceeded
from llmgate.policies.budgets import Budgets, period_start
from llmgate.policies.settlements import Settlements
from llmgate.state.memory import MemoryCounters
from llmgate.state.ports import StateUnavailable


def key(budget: float | None = 1.0, period: BudgetPeriod = "total", key_id: str = "key_1") -> Caller:
    return Caller(key_id=key_id, budget_usd=budget, budget_period=period)


async def reserved(budgets: Budgets, caller: Caller, cost: float, attempts: int) -> int:
    count = 0
    for _ in range(attempts):
        try:
            await budgets.reserve(caller, cost)
        except QuotaExceeded:
            continue
        count += 1
    return count


async def test_reserve_refuses_past_the_budget(counters: MemoryCounters, clock: FakeClock) -> None:
    budgets = Budgets(counters, clock=clock)
    caller = key(1.0)
    assert await reserved(budgets, caller, 0.25, 6) == 4
    with pytest.raises(QuotaExceeded) as refused:
        await budgets.reserve(caller, 0.25)
    assert refused.value.status == 429
    assert refused.value.code == "insufficient_quota"
    assert "budget of $1 per total is used up" in refused.value.message
    assert await budgets.spent(caller) == 1.0


async def test_give_backs_to_a_shared_store_wait_and_overruns_do_not(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    settlements = Settlements(counters, every=60.0)  # the test flushes by hand
    budgets = Budgets(counters, clock=clock, settlements=settlements)
    caller = key(1.0)
    holds = [await budgets.reserve(caller, 0.5) for _ in range(2)]
    assert budgets.start_settling(holds[0], 0.125) == []  # gathered: nothing to wait for
    assert await budgets.spent(caller) == 1.0  # the reservation holds until the give-back is written
    with pytest.raises(QuotaExceeded):
        await budgets.reserve(caller, 0.01)  # so the budget never admits more meanwhile
    await settlements.close()
    assert await budgets.spent(caller) == pytest.approx(0.625)
    await budgets.settle(holds[1], 0.75)  # an overrun: written at once
    assert await budgets.spent(caller) == pytest.approx(0.875)


async def test_no_budget_or_no_key_reserves_nothing(counters: MemoryCounters, clock: FakeClock) -> None:
    budgets = Budgets(counters, clock=clock)
    assert await budgets.reserve(key(None), 100.0) is None
    assert await budgets.reserve(Caller(budget_usd=1.0), 100.0) is None  # no key id
    assert await budgets.spent(ANONYMOUS) is None
    assert await budgets.spent(key(None)) is None


async def test_settle_replaces_the_reservation_with_the_real_cost(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    budgets = Budgets(counters, clock=clock)
    caller = key(1.0)
    hold = await budgets.reserve(caller, 0.5)
    assert await budgets.spent(caller) == 0.5
    await budgets.settle(hold, 0.125)  # down
    assert await budgets.spent(caller) == 0.125
    other = await budgets.reserve(caller, 0.25)
    await budgets.settle(other, 0.375)  # up: a call may cost more than its estimate
    assert await budgets.spent(caller) == 0.5
    await budgets.settle(None, 5.0)  # no hold: nothing happens
    assert await budgets.spent(caller) == 0.5


async def test_unknown_cost_keeps_the_reservation(counters: MemoryCounters, clock: FakeClock) -> None:
    budgets = Budgets(counters, clock=clock)
    caller = key(1.0)
    hold = await budgets.reserve(caller, 0.75)
    await budgets.settle(hold, None)
    assert await budgets.spent(caller) == 0.75
    with pytest.raises(QuotaExceeded):
        await budgets.reserve(caller, 0.5)


def test_period_buckets() -> None:
    now = datetime(2024, 3, 15, 13, 45, 10, tzinfo=UTC).timestamp()
    day, day_start, day_ttl = period_start("day", now)
    assert (day, day_start) == ("d:2024-03-15", datetime(2024, 3, 15, tzinfo=UTC).timestamp())
    assert day_ttl == 2 * 86_400
    month, month_start, month_ttl = period_start("month", now)
    assert (month, month_start) == ("m:2024-03", datetime(2024, 3, 1, tzinfo=UTC).timestamp())
    assert month_ttl is not None and month_ttl >= 31 * 86_400
    assert period_start("total", now) == ("total", 0.0, None)


@pytest.mark.parametrize(
    ("period", "step", "renews"),
    [("day", 86_400.0, True), ("month", 31 * 86_400.0, True), ("total", 400 * 86_400.0, False)],
)
async def test_a_new_period_starts_a_new_budget(
    counters: MemoryCounters, clock: FakeClock, period: BudgetPeriod, step: float, renews: bool
) -> None:
    clock.now = datetime(2024, 1, 10, 12, tzinfo=UTC).timestamp()
    budgets = Budgets(counters, clock=clock)
    caller = key(1.0, period)
    assert await reserved(budgets, caller, 0.5, 3) == 2
    clock.advance(step)
    assert await reserved(budgets, caller, 0.5, 3) == (2 if renews else 0)


async def test_concurrent_reservations_never_pass_the_budget(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    """100 concurrent reservations of $0.125 against $6.25 (exact in binary): exactly 50 pass."""
    budgets = Budgets(counters, clock=clock)
    caller = key(6.25)
    outcomes = await asyncio.gather(
        *(budgets.reserve(caller, 0.125) for _ in range(100)), return_exceptions=True
    )
    assert sum(1 for outcome in outcomes if not isinstance(outcome, BaseException)) == 50
    assert all(isinstance(o, QuotaExceeded) for o in outcomes if isinstance(o, BaseException))
    assert await budgets.spent(caller) == 6.25


async def test_concurrent_cent_reservations_never_overshoot(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    budgets = Budgets(counters, clock=clock)
    caller = key(0.5)
    outcomes = await asyncio.gather(
        *(budgets.reserve(caller, 0.01) for _ in range(100)), return_exceptions=True
    )
    passed = sum(1 for outcome in outcomes if not isinstance(outcome, BaseException))
    assert 49 <= passed <= 50
    spent = await budgets.spent(caller)
    assert spent is not None and spent <= 0.5 + 1e-9


async def test_cent_reservations_fill_the_budget_exactly(counters: MemoryCounters, clock: FakeClock) -> None:
    budgets = Budgets(counters, clock=clock)
    caller = key(0.5)
    outcomes = await asyncio.gather(
        *(budgets.reserve(caller, 0.01) for _ in range(100)), return_exceptions=True
    )
    assert sum(1 for outcome in outcomes if not isinstance(outcome, BaseException)) == 50


class Ledger:
    """What the usage ledger says a key spent since a time; counts the questions."""

    def __init__(self, spent: float, *, pause: bool = False, down: bool = False) -> None:
        self.spent = spent
        self.pause = pause
        self.down = down
        self.asked: list[tuple[str, float]] = []

    async def __call__(self, key_id: str, since: float) -> float:
        self.asked.append((key_id, since))
        if self.pause:
            await asyncio.sleep(0)  # a real database query yields to the loop
        if self.down:
            raise StateUnavailable("database down")
        return self.spent


async def test_the_counter_is_seeded_from_the_ledger_once(counters: MemoryCounters, clock: FakeClock) -> None:
    clock.now = datetime(2024, 5, 20, 8, tzinfo=UTC).timestamp()
    ledger = Ledger(0.75)
    budgets = Budgets(counters, spend_since=ledger, clock=clock)
    caller = key(1.0, "month")
    assert await reserved(budgets, caller, 0.125, 4) == 2  # 0.75 already spent this month
    assert ledger.asked == [("key_1", datetime(2024, 5, 1, tzinfo=UTC).timestamp())]
    assert await budgets.spent(caller) == 1.0


async def test_a_counter_already_counting_is_not_seeded(counters: MemoryCounters, clock: FakeClock) -> None:
    ledger = Ledger(0.75)
    await counters.adjust("budget:key_1:total", 0.25, ttl=None)  # e.g. counted by this process already
    budgets = Budgets(counters, spend_since=ledger, clock=clock)
    await budgets.reserve(key(1.0), 0.125)
    assert await budgets.spent(key(1.0)) == 0.375
    assert ledger.asked == []


async def test_concurrent_first_reservations_wait_for_the_seed(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    budgets = Budgets(counters, spend_since=Ledger(0.75, pause=True), clock=clock)
    caller = key(1.0)
    outcomes = await asyncio.gather(
        *(budgets.reserve(caller, 0.125) for _ in range(10)), return_exceptions=True
    )
    assert sum(1 for outcome in outcomes if not isinstance(outcome, BaseException)) == 2
    spent = await budgets.spent(caller)
    assert spent is not None and spent <= 1.0


async def test_ledger_outage_while_seeding(counters: MemoryCounters, clock: FakeClock) -> None:
    ledger = Ledger(0.75, down=True)
    budgets = Budgets(counters, spend_since=ledger, clock=clock)
    caller = key(1.0)
    with pytest.raises(Exception) as raised:
        await budgets.reserve(caller, 0.125)
    assert not isinstance(raised.value, StateUnavailable), "a storage error leaks out of the budget check"
    ledger.down = False
    assert await reserved(budgets, caller, 0.125, 4) == 2  # once the ledger is back, spend is loaded
