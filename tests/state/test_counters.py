"""``Counters`` conformance: memory, SQLite, PostgreSQL and Redis behave the same."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from llmgate.policies.settlements import NO_LIMIT
from llmgate.state import Taken

from .conftest import Backend


async def _clients(backend: Backend[Any], count: int) -> list[Any]:
    """Several clients on the same data (separate connections/pools for the server backends)."""
    return [await backend.client() for _ in range(count)]


async def test_take_within_and_over_limit(counters: Backend[Any]) -> None:
    c = await counters.client()
    assert await c.take("b", 3, limit=5, ttl=None) == Taken(True, 3)
    assert await c.take("b", 2, limit=5, ttl=None) == Taken(True, 5)
    assert await c.take("b", 0.5, limit=5, ttl=None) == Taken(False, 5)
    assert await c.value("b") == 5
    assert await c.value("never-written") == 0


async def test_take_larger_than_limit_on_empty_bucket(counters: Backend[Any]) -> None:
    c = await counters.client()
    assert await c.take("b", 6, limit=5, ttl=60) == Taken(False, 0)
    assert await c.value("b") == 0


async def test_fractional_amounts_are_kept_exactly(counters: Backend[Any]) -> None:
    c = await counters.client()
    await c.take("usd", 0.25, limit=1, ttl=None)
    assert await c.take("usd", 0.125, limit=1, ttl=None) == Taken(True, 0.375)
    assert await c.adjust("usd", 1e-9, ttl=None) == 0.375 + 1e-9
    assert await c.value("usd") == 0.375 + 1e-9


async def test_adjust_ignores_limits_and_floors_at_zero(counters: Backend[Any]) -> None:
    c = await counters.client()
    assert await c.adjust("b", 7, ttl=None) == 7
    assert await c.take("b", 1, limit=5, ttl=None) == Taken(False, 7)
    assert await c.adjust("b", -5, ttl=None) == 2
    assert await c.adjust("b", -5, ttl=None) == 0
    assert await c.adjust("fresh", -1, ttl=None) == 0
    assert await c.value("b") == 0


async def test_concurrent_takes_allow_exactly_the_limit(counters: Backend[Any]) -> None:
    clients = await _clients(counters, 3)
    results = await asyncio.gather(
        *(
            client.take("rpm", 1, limit=57, ttl=60)
            for client in itertools.islice(itertools.cycle(clients), 200)
        )
    )
    allowed = sorted(result.value for result in results if result.allowed)
    assert allowed == list(range(1, 58))
    assert all(result.value == 57 for result in results if not result.allowed)
    assert await clients[0].value("rpm") == 57


async def test_take_and_refund_race_stays_within_bounds(counters: Backend[Any]) -> None:
    clients = await _clients(counters, 3)
    seen: list[float] = []

    async def request(client: Any) -> bool:
        taken = await client.take("parallel", 1, limit=10, ttl=None)
        seen.append(taken.value)
        if taken.allowed:
            await asyncio.sleep(0)
            seen.append(await client.adjust("parallel", -1, ttl=None))
        return bool(taken.allowed)

    results = await asyncio.gather(*(request(clients[i % 3]) for i in range(150)))
    assert sum(results) >= 10
    assert all(0 <= value <= 10 for value in seen)
    assert await clients[0].value("parallel") == 0


async def test_concurrent_refunds_never_go_below_zero(counters: Backend[Any]) -> None:
    clients = await _clients(counters, 2)
    await clients[0].adjust("b", 5, ttl=None)
    values = await asyncio.gather(*(clients[i % 2].adjust("b", -1, ttl=None) for i in range(20)))
    assert min(values) == 0
    assert sorted(values)[-5:] == [0, 1, 2, 3, 4]
    assert await clients[1].value("b") == 0


async def test_take_many_is_all_or_nothing(counters: Backend[Any]) -> None:
    c = await counters.client()
    await c.take("full", 1, limit=1, ttl=None)
    refused = await c.take_many([("open", 1, 10, None), ("full", 1, 1, None), ("other", 1, 10, None)])
    assert refused == Taken(False, 1)
    assert [await c.value(name) for name in ("open", "full", "other")] == [0, 1, 0]

    allowed = await c.take_many([("open", 2, 10, 60), ("other", 3, 5, None)])
    assert allowed == Taken(True, 2)
    assert [await c.value(name) for name in ("open", "full", "other")] == [2, 1, 3]


async def test_take_many_reports_the_first_bucket_that_refused(counters: Backend[Any]) -> None:
    c = await counters.client()
    await c.adjust("a", 4, ttl=None)
    await c.adjust("b", 9, ttl=None)
    assert await c.take_many([("ok", 1, 10, None), ("a", 1, 4, None), ("b", 1, 9, None)]) == Taken(False, 4)
    assert await c.take_many([]) == Taken(True, 0)


async def test_take_many_counts_a_repeated_bucket_cumulatively(counters: Backend[Any]) -> None:
    c = await counters.client()
    assert await c.take_many([("a", 3, 5, None), ("a", 3, 5, None)]) == Taken(False, 0)
    assert await c.value("a") == 0
    assert await c.take_many([("a", 2, 5, None), ("a", 3, 5, None)]) == Taken(True, 5)
    assert await c.value("a") == 5


async def test_take_many_without_a_limit_adds_to_every_bucket_at_once(counters: Backend[Any]) -> None:
    # How gathered give-backs are written (policies/settlements.py): one call, floored at 0 like adjust.
    c = await counters.client()
    await c.adjust("a", 4, ttl=None)
    await c.adjust("b", 0.75, ttl=None)
    adds = [("a", -1.5, NO_LIMIT, 60), ("b", -2, NO_LIMIT, None), ("c", 0.25, NO_LIMIT, 60)]
    assert await c.take_many(adds) == Taken(True, 2.5)
    assert [await c.value(name) for name in ("a", "b", "c")] == [2.5, 0, 0.25]


async def test_concurrent_take_many_in_any_order_is_exact(counters: Backend[Any]) -> None:
    clients = await _clients(counters, 3)
    forward = [("x", 1.0, 20.0, 60.0), ("y", 1.0, 100.0, 60.0)]
    backward = list(reversed(forward))
    results = await asyncio.gather(
        *(clients[i % 3].take_many(forward if i % 2 else backward) for i in range(60))
    )
    assert sum(result.allowed for result in results) == 20
    assert await clients[0].value("x") == 20
    assert await clients[0].value("y") == 20


async def test_ttl_expires_a_bucket(counters: Backend[Any]) -> None:
    c = await counters.client()
    assert await c.take("window", 5, limit=5, ttl=0.3) == Taken(True, 5)
    assert await c.take("window", 1, limit=5, ttl=0.3) == Taken(False, 5)
    await counters.wait(0.45)
    assert await c.value("window") == 0
    assert await c.take("window", 5, limit=5, ttl=0.3) == Taken(True, 5)


async def test_each_write_with_a_ttl_restarts_it(counters: Backend[Any]) -> None:
    c = await counters.client()
    await c.take("b", 1, limit=10, ttl=0.4)
    await counters.wait(0.25)
    assert await c.adjust("b", 1, ttl=0.4) == 2
    await counters.wait(0.25)  # past the first expiry, within the second
    assert await c.value("b") == 2
    await counters.wait(0.3)
    assert await c.value("b") == 0


async def test_no_ttl_keeps_the_current_expiry(counters: Backend[Any]) -> None:
    c = await counters.client()
    await c.take("b", 1, limit=10, ttl=0.3)
    await c.adjust("b", 1, ttl=None)
    await c.take("b", 1, limit=10, ttl=None)
    await c.take_many([("b", 1, 10, None)])
    assert await c.value("b") == 4
    await c.adjust("forever", 1, ttl=None)
    await counters.wait(0.45)
    assert await c.value("b") == 0
    assert await c.value("forever") == 1


async def test_next_turn_is_one_sequence_shared_by_clients(counters: Backend[Any]) -> None:
    first, second = await _clients(counters, 2)
    assert [await first.next_turn("g"), await second.next_turn("g"), await first.next_turn("g")] == [0, 1, 2]
    assert await second.next_turn("other") == 0
    turns = await asyncio.gather(*((first, second)[i % 2].next_turn("busy") for i in range(100)))
    assert sorted(turns) == list(range(100))
