"""Settlements: corrections to counters, written at once or, for a shared store, give-backs gathered."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from llmgate.policies.settlements import Settlements, in_order
from llmgate.state.buckets import Take
from llmgate.state.memory import MemoryCounters
from llmgate.state.ports import Taken


class CountingCounters(MemoryCounters):
    """Memory counters that count their writes (the calls a remote store would get)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    async def adjust(self, bucket: str, delta: float, *, ttl: float | None) -> float:
        self.writes += 1
        return await super().adjust(bucket, delta, ttl=ttl)

    async def take_many(self, takes: Sequence[Take]) -> Taken:
        self.writes += 1
        return await super().take_many(takes)


async def test_without_an_interval_every_correction_is_a_write_of_its_own() -> None:
    counters = CountingCounters()
    settlements = Settlements(counters)
    await counters.adjust("a", 10, ttl=None)
    for delta in (-1, -2, 3):
        write = settlements.correct("a", delta, None)
        assert write is not None
        await write
    assert settlements.correct("a", 0, None) is None  # nothing to correct: no write
    assert (counters.writes, await counters.value("a")) == (4, 10)


async def test_give_backs_are_summed_per_bucket_and_written_in_one_call() -> None:
    counters = CountingCounters()
    for bucket in ("a", "b"):
        await counters.adjust(bucket, 100, ttl=None)
    settlements = Settlements(counters, every=0.02)
    for bucket, delta in (("a", -10), ("b", -1), ("a", -20), ("b", -2)):
        assert settlements.correct(bucket, delta, 60.0) is None
    assert await counters.value("a") == 100  # nothing written yet
    await asyncio.sleep(0.1)  # the interval passes: one write for both buckets
    assert counters.writes == 2 + 1
    assert (await counters.value("a"), await counters.value("b")) == (70, 97)
    assert settlements.correct("a", -500, 60.0) is None  # a new interval starts with the next give-back
    await settlements.close()  # closing writes it at once; a counter never goes below 0
    assert (counters.writes, await counters.value("a")) == (4, 0)


async def test_at_every_zero_the_give_backs_of_one_turn_are_written_at_the_next() -> None:
    counters = CountingCounters()
    await counters.adjust("a", 100, ttl=None)
    settlements = Settlements(counters, every=0.0)
    for delta in (-1, -2, -3):
        assert settlements.correct("a", delta, None) is None
    assert await counters.value("a") == 100
    for _ in range(3):
        await asyncio.sleep(0)
    assert (counters.writes, await counters.value("a")) == (2, 94)


async def test_closing_waits_for_a_write_under_way() -> None:
    class SlowCounters(CountingCounters):
        async def take_many(self, takes: Sequence[Take]) -> Taken:
            await asyncio.sleep(0.05)  # the write is on its way to a remote store
            return await super().take_many(takes)

    counters = SlowCounters()
    await counters.adjust("a", 100, ttl=None)
    settlements = Settlements(counters, every=0.0)
    assert settlements.correct("a", -40, None) is None
    for _ in range(3):
        await asyncio.sleep(0)  # the write has started, and waits on the store
    assert await counters.value("a") == 100
    await settlements.close()  # at shutdown: the give-back under way still lands
    assert await counters.value("a") == 60


async def test_an_overrun_is_written_at_once() -> None:
    counters = CountingCounters()
    settlements = Settlements(counters, every=60.0)
    write = settlements.correct("a", 5, None)
    assert write is not None
    await write
    assert await counters.value("a") == 5
    await settlements.close()


async def test_in_order_runs_every_write_and_raises_the_first_failure() -> None:
    ran = []

    async def write(name: str, fails: bool) -> None:
        ran.append(name)
        if fails:
            raise RuntimeError(name)

    with pytest.raises(RuntimeError, match="first"):
        await in_order([write("first", True), write("second", True), write("third", False)])
    assert ran == ["first", "second", "third"]
