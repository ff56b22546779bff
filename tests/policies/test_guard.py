"""Guard: model access, limits and budget before a call; settlement and one usage record after it."""

from __future__ import annotations

import asyncio

import pytest

from clock import FakeClock
from llmgate.core.caller import Caller, LimitStatus
from llmgate.core.errors import Overloaded, PermissionDenied, QuotaExceeded, UpstreamError
from llmgate.core.results import CallInfo
from llmgate.core.usage import make_usage
from llmgate.policies.budgets import Budgets
from llmgate.policies.guard import Call, Guard
from llmgate.policies.limits import CallerLimits, Rate
from llmgate.policies.settlements import Settlements
from llmgate.policies.usage import UsageRecorder
from llmgate.state.memory import MemoryCounters, MemoryLedger
from llmgate.state.ports import StateUnavailable

from .conftest import MINUTE_START

SLOW = 3600.0


def guard_of(
    counters: MemoryCounters,
    clock: FakeClock,
    ledger: MemoryLedger,
    *,
    closed: bool = False,
    **budget: object,
) -> Guard:
    return Guard(
        limits=CallerLimits(counters, global_rate=Rate(rpm=100, tpm=10_000), clock=clock),
        budgets=Budgets(counters, clock=clock, **budget),  # type: ignore[arg-type]
        recorder=UsageRecorder(ledger, flush_interval=SLOW),
        budgets_closed=lambda: closed,
    )


def key(**options: object) -> Caller:
    return Caller(key_id="key_1", name="team", **options)  # type: ignore[arg-type]


def minute(clock: FakeClock) -> int:
    return int(clock() // 60)


async def test_a_model_outside_the_keys_list_is_403_and_counts_nothing(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    guard = guard_of(counters, clock, MemoryLedger())
    with pytest.raises(PermissionDenied) as refused:
        await guard.open(key(models=("a",)), Call("b", 100, 0.5))
    assert refused.value.status == 403 and refused.value.param == "model"
    assert await counters.value(f"rpm:global:{minute(clock)}") == 0
    await guard.open(key(models=("a",)), Call("a", 100, 0.5))
    await guard.open(key(), Call("anything", 100, 0.5))  # an empty list allows every model


async def test_success_settles_with_real_usage_and_records_once(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    clock.now = MINUTE_START + 10
    ledger = MemoryLedger()
    guard = guard_of(counters, clock, ledger)
    caller = key(rpm=5, tpm=1000, max_parallel=1, budget_usd=1.0)
    gate = await guard.open(caller, Call("chat", 300, 0.25, stream=True))
    assert gate.limit == LimitStatus(5, 4, 50.0)
    assert await counters.value(f"tpm:key:key_1:{minute(clock)}") == 300
    assert await counters.value("budget:key_1:total") == 0.25
    info = CallInfo("req_1", "mock", "mock/echo", "echo", attempts=2)
    await gate.close(info=info, usage=make_usage(prompt=40, completion=10), cost=0.0625, first_token_ms=12.0)
    await gate.close(info=info, usage=make_usage(prompt=40, completion=10), cost=0.0625)  # once only
    assert await counters.value(f"tpm:key:key_1:{minute(clock)}") == 50
    assert await counters.value(f"tpm:global:{minute(clock)}") == 50
    assert await counters.value("budget:key_1:total") == 0.0625
    assert await counters.value("par:key:key_1") == 0
    assert guard.recorder is not None
    await guard.recorder.close()
    [record] = await ledger.records()
    assert (record.request_id, record.key_id, record.model_group, record.provider) == (
        "req_1",
        "key_1",
        "chat",
        "mock",
    )
    assert (record.deployment, record.upstream_model, record.attempts, record.stream) == (
        "mock/echo",
        "echo",
        2,
        True,
    )
    assert (record.prompt_tokens, record.completion_tokens, record.cost_usd) == (40, 10, 0.0625)
    assert (record.status, record.error_type, record.ttft_ms) == (200, None, 12.0)


async def test_against_a_shared_store_a_closing_pass_leaves_its_give_backs_for_one_write(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    settlements = Settlements(counters, every=SLOW)
    guard = Guard(
        limits=CallerLimits(counters, global_rate=Rate(tpm=10_000), clock=clock, settlements=settlements),
        budgets=Budgets(counters, clock=clock, settlements=settlements),
        recorder=None,
    )
    gates = [await guard.open(key(budget_usd=1.0), Call("chat", 300, 0.25)) for _ in range(2)]
    for gate in gates:
        await gate.close(info=None, usage=make_usage(prompt=40, completion=10), cost=0.0625)
    assert await counters.value(f"tpm:global:{minute(clock)}") == 600  # held until the write
    assert await counters.value("budget:key_1:total") == 0.5
    await guard.close()
    assert await counters.value(f"tpm:global:{minute(clock)}") == 100
    assert await counters.value("budget:key_1:total") == pytest.approx(0.125)


async def test_a_failed_call_gives_everything_back_and_records_the_error(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    ledger = MemoryLedger()
    guard = guard_of(counters, clock, ledger)
    gate = await guard.open(key(tpm=1000, max_parallel=1, budget_usd=1.0), Call("chat", 300, 0.25))
    error = UpstreamError("boom", provider="mock")
    await gate.close(info=CallInfo("req_2", "", "", ""), usage=None, cost=None, error=error)
    assert await counters.value(f"tpm:key:key_1:{minute(clock)}") == 0
    assert await counters.value("budget:key_1:total") == 0
    assert await counters.value("par:key:key_1") == 0
    assert await counters.value(f"rpm:global:{minute(clock)}") == 1  # the request itself still counts
    assert guard.recorder is not None
    await guard.recorder.close()
    [record] = await ledger.records()
    assert (record.status, record.error_type, record.cost_usd, record.key_id) == (
        502,
        "upstream_error",
        0.0,
        "key_1",
    )


async def test_over_budget_gives_back_the_token_reservation_and_the_slot(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    guard = guard_of(counters, clock, MemoryLedger())
    caller = key(tpm=1000, max_parallel=1, budget_usd=0.5)
    with pytest.raises(QuotaExceeded) as refused:
        await guard.open(caller, Call("chat", 300, 0.75))
    assert refused.value.status == 429 and refused.value.code == "insufficient_quota"
    assert await counters.value(f"tpm:key:key_1:{minute(clock)}") == 0
    assert await counters.value("par:key:key_1") == 0
    assert await counters.value("budget:key_1:total") == 0
    await guard.open(caller, Call("chat", 300, 0.5))  # a call that fits is still admitted


async def test_unknown_price_reserves_nothing_and_keeps_nothing(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    guard = guard_of(counters, clock, MemoryLedger())
    gate = await guard.open(key(budget_usd=0.5), Call("chat", 10, None))
    await gate.close(info=None, usage=make_usage(prompt=5, completion=5), cost=None)
    assert await counters.value("budget:key_1:total") == 0


async def test_budgets_closed_during_an_outage(counters: MemoryCounters, clock: FakeClock) -> None:
    guard = guard_of(counters, clock, MemoryLedger(), closed=True)
    with pytest.raises(Overloaded) as refused:
        await guard.open(key(tpm=1000, max_parallel=1, budget_usd=1.0), Call("chat", 300, 0.25))
    assert refused.value.status == 503 and refused.value.retry_after == 5
    assert "budget_on_outage" in refused.value.message
    assert await counters.value(f"tpm:key:key_1:{minute(clock)}") == 0
    assert await counters.value("par:key:key_1") == 0
    await guard.open(key(tpm=1000), Call("chat", 300, 0.25))  # keys without a budget keep flowing


async def test_a_ledger_outage_while_seeding_does_not_leak_the_parallel_slot(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    async def spend_since(key_id: str, since: float) -> float:
        raise StateUnavailable("database down")

    guard = guard_of(counters, clock, MemoryLedger(), spend_since=spend_since)
    caller = key(max_parallel=1, budget_usd=1.0)
    with pytest.raises(Exception):  # noqa: B017 - whatever it raises, it must not keep the slot
        await guard.open(caller, Call("chat", 10, 0.1))
    assert await counters.value("par:key:key_1") == 0


class SlowCounters(MemoryCounters):
    """Memory counters whose adjustments wait on the network, like a remote store's."""

    async def adjust(self, bucket: str, delta: float, *, ttl: float | None) -> float:
        await asyncio.sleep(0.01)
        return await super().adjust(bucket, delta, ttl=ttl)


async def test_a_caller_cancelled_while_closing_still_settles_everything(clock: FakeClock) -> None:
    # The client leaves while the settlement waits on the store: the parallel slot and the budget
    # hold are still released, and the record is written.
    counters = SlowCounters(clock=clock)
    ledger = MemoryLedger()
    guard = guard_of(counters, clock, ledger)
    caller = key(rpm=5, max_parallel=1, budget_usd=1.0)
    gate = await guard.open(caller, Call("chat", 300, 0.25))
    closing = asyncio.create_task(gate.close(info=None, usage=make_usage(prompt=4, completion=1), cost=0.01))
    await asyncio.sleep(0)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    await asyncio.sleep(0.1)  # the shielded settlement finishes on its own
    assert await counters.value("par:key:key_1") == 0
    assert await counters.value("budget:key_1:total") == pytest.approx(0.01)
    assert guard.recorder is not None
    await guard.recorder.close()
    assert len(await ledger.records()) == 1


async def test_a_failed_take_gives_the_parallel_slot_back(clock: FakeClock) -> None:
    class Broken(MemoryCounters):
        async def take_many(self, takes: object) -> object:  # type: ignore[override]
            raise StateUnavailable("connection reset")

    counters = Broken(clock=clock)
    guard = guard_of(counters, clock, MemoryLedger())
    with pytest.raises(StateUnavailable):
        await guard.open(key(rpm=5, max_parallel=1), Call("chat", 10, None))
    assert await counters.value("par:key:key_1") == 0


class CountingCounters(MemoryCounters):
    """Memory counters that count the calls that would be round trips to a shared store."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def take(self, bucket: str, amount: float, *, limit: float, ttl: float | None = None):  # type: ignore[no-untyped-def,override]
        self.calls.append("take")
        return await super().take(bucket, amount, limit=limit, ttl=ttl)

    async def take_many(self, takes):  # type: ignore[no-untyped-def,override]
        self.calls.append("take_many")
        return await super().take_many(takes)


async def test_limits_and_the_budget_are_taken_in_one_call(clock: FakeClock) -> None:
    counters = CountingCounters()
    guard = guard_of(counters, clock, MemoryLedger())  # type: ignore[arg-type]
    caller = key(rpm=10, tpm=1000, budget_usd=1.0)
    admitted = await guard.open(caller, Call("chat", 100, 0.25))
    assert counters.calls == ["take_many"]  # key and global rpm / tpm and the budget: one round trip
    assert await counters.value("budget:key_1:total") == 0.25
    assert admitted.hold is not None and admitted.hold.amount == 0.25
    counters.calls.clear()
    with pytest.raises(QuotaExceeded) as refused:  # the budget refuses: nothing is taken, anywhere
        await guard.open(caller, Call("chat", 100, 0.9))
    assert refused.value.code == "insufficient_quota" and refused.value.limit is not None
    assert await counters.value(f"rpm:key:key_1:{minute(clock)}") == 1
    assert await counters.value(f"tpm:global:{minute(clock)}") == 100
    assert await counters.value("budget:key_1:total") == 0.25
