"""CallerLimits: global and per-key requests/tokens per minute and parallel calls, on memory counters."""

from __future__ import annotations

import pytest

from clock import FakeClock
from llmgate.core.caller import ANONYMOUS, Caller, LimitStatus
from llmgate.core.errors import RateLimited
from llmgate.policies.limits import CallerLimits, Rate
from llmgate.policies.settlements import Settlements
from llmgate.state.memory import MemoryCounters

from .conftest import MINUTE_START


def key(key_id: str = "key_1", **limits: int | None) -> Caller:
    return Caller(key_id=key_id, name=key_id, **limits)  # type: ignore[arg-type]


def limits_of(counters: MemoryCounters, clock: FakeClock, **options: Rate) -> CallerLimits:
    return CallerLimits(counters, clock=clock, **options)


async def admitted(limits: CallerLimits, caller: Caller, attempts: int, tokens: int = 1) -> int:
    count = 0
    for _ in range(attempts):
        try:
            await limits.admit(caller, tokens)
        except RateLimited:
            continue
        count += 1
    return count


async def test_global_rpm_admits_exactly_the_limit_per_minute(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    limits = limits_of(counters, clock, global_rate=Rate(rpm=5))
    assert await admitted(limits, ANONYMOUS, 8) == 5
    assert await admitted(limits, key("key_a"), 3) == 0  # every caller shares the global limit
    clock.advance(60)
    assert await admitted(limits, ANONYMOUS, 8) == 5


async def test_key_rpm_is_per_key(counters: MemoryCounters, clock: FakeClock) -> None:
    limits = limits_of(counters, clock)
    assert await admitted(limits, key("key_a", rpm=2), 5) == 2
    assert await admitted(limits, key("key_b", rpm=3), 5) == 3
    assert await admitted(limits, ANONYMOUS, 5) == 5  # no key: only the (absent) global limit applies


async def test_default_key_applies_only_to_keys_without_their_own(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    limits = limits_of(counters, clock, default_key=Rate(rpm=3, tpm=1000))
    assert limits.key_rate(key("key_a")) == Rate(3, 1000)
    assert limits.key_rate(key("key_b", rpm=5)) == Rate(5, 1000)
    assert limits.key_rate(ANONYMOUS) is None
    assert await admitted(limits, key("key_a"), 6) == 3
    assert await admitted(limits, key("key_b", rpm=5), 6) == 5
    assert await admitted(limits, ANONYMOUS, 6) == 6


async def test_key_tpm_reserves_tokens_and_settles_with_real_usage(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    limits = limits_of(counters, clock)
    caller = key(tpm=1000)
    first = await limits.admit(caller, 600)
    with pytest.raises(RateLimited):
        await limits.admit(caller, 500)  # 600 reserved + 500 > 1000
    await limits.settle(first, 100)  # settled down: 500 of the reservation come back
    second = await limits.admit(caller, 800)  # 100 + 800 = 900
    await limits.settle(second, 850)  # settled up: the overrun is taken too, 100 + 850 = 950
    bucket = first.token_buckets[0]
    assert await counters.value(bucket) == 950
    with pytest.raises(RateLimited) as refused:
        await limits.admit(caller, 100)
    assert "this key's limit of 1000 tokens per minute" in refused.value.message
    await limits.admit(caller, 50)  # exactly up to the limit


async def test_unknown_usage_keeps_the_token_reservation(counters: MemoryCounters, clock: FakeClock) -> None:
    limits = limits_of(counters, clock, global_rate=Rate(tpm=100))
    ticket = await limits.admit(ANONYMOUS, 70)
    await limits.settle(ticket, None)
    assert await counters.value(ticket.token_buckets[0]) == 70


async def test_global_and_key_tokens_are_both_reserved_all_or_nothing(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    limits = limits_of(counters, clock, global_rate=Rate(rpm=100, tpm=1000))
    ticket = await limits.admit(key("key_a", rpm=10, tpm=300), 200)
    assert sorted(ticket.token_buckets) == sorted(
        [f"tpm:key:key_a:{int(clock() // 60)}", f"tpm:global:{int(clock() // 60)}"]
    )
    with pytest.raises(RateLimited):
        await limits.admit(key("key_a", rpm=10, tpm=300), 200)  # the key's tpm refuses...
    # ...and nothing of the refused request was counted in the global buckets.
    minute = int(clock() // 60)
    assert await counters.value(f"tpm:global:{minute}") == 200
    assert await counters.value(f"rpm:global:{minute}") == 1


async def test_max_parallel_refuses_then_frees_the_slot(counters: MemoryCounters, clock: FakeClock) -> None:
    limits = limits_of(counters, clock)
    caller = key(max_parallel=2)
    one = await limits.admit(caller, 1)
    await limits.admit(caller, 1)
    with pytest.raises(RateLimited) as refused:
        await limits.admit(caller, 1)
    assert "too many parallel requests" in refused.value.message
    assert refused.value.retry_after == 1.0
    await limits.settle(one, 1)
    await limits.admit(caller, 1)


async def test_parallel_slot_is_given_back_when_the_rate_limit_refuses(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    limits = limits_of(counters, clock)
    caller = key(max_parallel=1, rpm=1)
    ticket = await limits.admit(caller, 1)
    await limits.settle(ticket, 1)
    with pytest.raises(RateLimited) as refused:
        await limits.admit(caller, 1)  # refused by rpm, after taking the parallel slot
    assert "requests per minute" in refused.value.message
    assert await counters.value("par:key:key_1") == 0


async def test_refusal_names_the_limit_and_carries_status(counters: MemoryCounters, clock: FakeClock) -> None:
    clock.now = MINUTE_START + 40  # 20 s to go
    limits = limits_of(counters, clock, global_rate=Rate(rpm=3))
    await limits.admit(ANONYMOUS, 1)
    await limits.admit(key("key_a"), 1)
    await limits.admit(key("key_b", rpm=10), 1)
    with pytest.raises(RateLimited) as refused:
        await limits.admit(key("key_c", rpm=10), 1)
    error = refused.value
    assert (
        error.message
        == "Rate limit exceeded: the gateway's global limit of 3 requests per minute is reached."
    )
    assert error.retry_after == 20
    assert error.limit == LimitStatus(10, 10, 20.0)  # the key's own limit is the one reported

    with pytest.raises(RateLimited) as global_refused:
        await limits.admit(ANONYMOUS, 1)
    assert global_refused.value.limit == LimitStatus(3, 0, 20.0)


async def test_key_refusal_message(counters: MemoryCounters, clock: FakeClock) -> None:
    limits = limits_of(counters, clock, global_rate=Rate(rpm=100))
    await limits.admit(key(rpm=1), 1)
    with pytest.raises(RateLimited) as refused:
        await limits.admit(key(rpm=1), 1)
    assert (
        refused.value.message == "Rate limit exceeded: this key's limit of 1 requests per minute is reached."
    )
    assert refused.value.retry_after == 40  # START is 20 s into its minute


async def test_limit_status_after_admission_and_at_rest(counters: MemoryCounters, clock: FakeClock) -> None:
    clock.now = MINUTE_START + 15.5
    minute_end = MINUTE_START + 60
    limits = limits_of(counters, clock, global_rate=Rate(rpm=10))
    ticket = await limits.admit(key(rpm=4), 1)
    assert ticket.status == LimitStatus(4, 3, minute_end - clock())
    assert await limits.status(key(rpm=4)) == LimitStatus(4, 3, minute_end - clock())
    assert await limits.status(ANONYMOUS) == LimitStatus(10, 9, minute_end - clock())
    assert await limits.status(key("key_other")) == LimitStatus(10, 9, minute_end - clock())
    clock.advance(minute_end - clock())
    assert await limits.status(key(rpm=4)) == LimitStatus(4, 4, 60.0)


async def test_no_request_limit_means_no_status(counters: MemoryCounters, clock: FakeClock) -> None:
    limits = limits_of(counters, clock, global_rate=Rate(tpm=100))
    ticket = await limits.admit(ANONYMOUS, 1)
    assert ticket.status is None
    assert await limits.status(ANONYMOUS) is None


def test_applies_to(counters: MemoryCounters, clock: FakeClock) -> None:
    none = limits_of(counters, clock)
    assert not none.applies_to(ANONYMOUS)
    assert not none.applies_to(key())
    assert none.applies_to(key(rpm=1))
    assert none.applies_to(key(tpm=1))
    assert none.applies_to(key(max_parallel=1))
    assert not none.applies_to(Caller(max_parallel=1))  # no key id: nothing to count it under

    global_only = limits_of(counters, clock, global_rate=Rate(rpm=10))
    assert global_only.applies_to(ANONYMOUS)
    assert global_only.applies_to(key())

    default_only = limits_of(counters, clock, default_key=Rate(tpm=10))
    assert default_only.applies_to(key())
    assert not default_only.applies_to(ANONYMOUS)


async def test_settlements_to_a_shared_store_are_gathered_and_written_together(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    settlements = Settlements(counters, every=60.0)  # the test flushes by hand
    limits = CallerLimits(counters, clock=clock, settlements=settlements)
    caller = key(tpm=1000)
    tickets = [await limits.admit(caller, 200) for _ in range(3)]
    bucket = tickets[0].token_buckets[0]
    for ticket in tickets:
        assert limits.start_settling(ticket, 50) == []  # nothing to wait for: the give-back is gathered

    assert await counters.value(bucket) == 600  # reservations hold until the settlements are written
    with pytest.raises(RateLimited):
        await limits.admit(caller, 500)  # so the limit never admits more meanwhile
    await settlements.close()
    assert await counters.value(bucket) == 150  # three settlements, one write
    await limits.admit(caller, 500)


async def test_an_overrun_is_taken_at_once_even_when_give_backs_are_gathered(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    limits = CallerLimits(counters, clock=clock, settlements=Settlements(counters, every=60.0))
    caller = key(tpm=1000)
    ticket = await limits.admit(caller, 100)
    await limits.settle(ticket, 700)  # the call used more than its reservation
    assert await counters.value(ticket.token_buckets[0]) == 700  # written now: the next take sees it
    with pytest.raises(RateLimited):
        await limits.admit(caller, 400)


async def test_a_parallel_slot_is_freed_at_once_even_when_give_backs_are_gathered(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    limits = CallerLimits(counters, clock=clock, settlements=Settlements(counters, every=60.0))
    caller = key(tpm=1000, max_parallel=1)
    ticket = await limits.admit(caller, 100)
    writes = limits.start_settling(ticket, 10)
    assert len(writes) == 1  # the slot: the next call of the key must not wait a flush for it
    for write in writes:
        await write
    await limits.admit(caller, 100)


async def test_a_batch_caller_fills_only_its_share_and_leaves_the_rest(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    limits = limits_of(counters, clock, global_rate=Rate(rpm=10, tpm=1000))
    batch = Caller(key_id="key_a", name="a", rpm=8, batch_id="batch_1", limit_share=0.5)
    assert await admitted(limits, batch, 10) == 4  # half of the key's 8 (the tighter of key and global)
    interactive = key("key_a", rpm=8)
    assert await admitted(limits, interactive, 10) == 4  # the same bucket: the rest is the key's own use
    clock.advance(60)
    assert await admitted(limits, Caller(name="b", batch_id="b", limit_share=0.5), 10, tokens=100) == 5
    clock.advance(60)
    tiny = Caller(key_id="key_t", name="t", rpm=1, batch_id="b", limit_share=0.1)
    assert await admitted(limits, tiny, 3) == 1  # never below one request


async def test_a_request_larger_than_a_token_limit_is_refused_as_too_large(
    counters: MemoryCounters, clock: FakeClock
) -> None:
    limits = limits_of(counters, clock, global_rate=Rate(tpm=10_000))
    with pytest.raises(RateLimited) as refused:
        await limits.admit(key(tpm=1000), 1001)
    assert refused.value.code == "request_too_large" and refused.value.retry_after is None
    assert "this key's limit is 1000 tokens per minute" in refused.value.message
    batch = Caller(key_id="key_b", name="b", tpm=1000, batch_id="b", limit_share=0.5)
    with pytest.raises(RateLimited) as shared:
        await limits.admit(batch, 600)  # fits the key, not the batch's half of it
    assert shared.value.code == "request_too_large"
    assert await counters.value(f"tpm:key:key_b:{int(clock() // 60)}") == 0  # nothing was taken
    await limits.admit(batch, 500)
