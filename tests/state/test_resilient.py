"""Outages: unreachable backends raise ``StateUnavailable``; the fallbacks keep serving and recover."""

from __future__ import annotations

from pathlib import Path

import pytest

from clock import FakeClock
from llmgate.state import StateUnavailable, Taken, open_database, open_redis
from llmgate.state.memory import MemoryBreakerBoard, MemoryCounters
from llmgate.state.postgres import PostgresStore
from llmgate.state.redis import RedisBreakerBoard, RedisCounters
from llmgate.state.resilient import FallbackBoard, FallbackCounters
from llmgate.state.sqlite import SqliteStore

CLOSED_REDIS = "redis://127.0.0.1:1/0"
CLOSED_POSTGRES = "postgresql://postgres@127.0.0.1:1/test"


class SwitchableCounters(MemoryCounters):
    """A primary that can be taken down and brought back; counts the calls that reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    async def take(self, bucket: str, amount: float, *, limit: float, ttl: float | None) -> Taken:
        self.calls += 1
        if self.down:
            raise StateUnavailable("primary is down")
        return await super().take(bucket, amount, limit=limit, ttl=ttl)


class SwitchableBoard(MemoryBreakerBoard):
    """A breaker board that can be taken down."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def tripped(self, now: float) -> dict[str, float]:
        if self.down:
            raise StateUnavailable("board is down")
        return await super().tripped(now)


async def test_unreachable_servers_raise_state_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StateUnavailable, match="Redis"):
        await RedisCounters.connect(CLOSED_REDIS)
    with pytest.raises(StateUnavailable, match="Redis"):
        await RedisBreakerBoard.connect(CLOSED_REDIS)
    with pytest.raises(StateUnavailable, match="PostgreSQL"):
        await PostgresStore.connect(CLOSED_POSTGRES, time_limit=2.0)
    with pytest.raises(StateUnavailable, match="SQLite"):
        await SqliteStore.connect(str(tmp_path / "missing-dir" / "state.db"))
    with pytest.raises(StateUnavailable):
        await open_database(CLOSED_POSTGRES)
    with pytest.raises(StateUnavailable):
        await open_redis(CLOSED_REDIS)


async def test_every_redis_call_raises_state_unavailable_when_down() -> None:
    counters = await RedisCounters.connect(CLOSED_REDIS, ping=False)
    board = RedisBreakerBoard(counters.client)
    calls = [
        counters.take("b", 1, limit=1, ttl=None),
        counters.adjust("b", 1, ttl=None),
        counters.value("b"),
        counters.take_many([("b", 1, 1, None)]),
        counters.next_turn("g"),
        board.trip("d", 1.0),
        board.tripped(0.0),
    ]
    for call in calls:
        with pytest.raises(StateUnavailable):
            await call
    await counters.close()


async def test_counters_fall_back_to_local_when_redis_is_unreachable() -> None:
    primary = await RedisCounters.connect(CLOSED_REDIS, ping=False)
    counters = FallbackCounters(primary, MemoryCounters())
    assert not counters.degraded
    assert await counters.take("rpm", 1, limit=2, ttl=60) == Taken(True, 1)
    assert counters.degraded
    assert counters.last_error is not None and "Redis" in counters.last_error
    assert await counters.take("rpm", 1, limit=2, ttl=60) == Taken(True, 2)
    assert await counters.take("rpm", 1, limit=2, ttl=60) == Taken(False, 2)
    assert await counters.next_turn("g") == 0
    await counters.close()


async def test_counters_retry_the_primary_after_the_pause_and_recover() -> None:
    clock = FakeClock()
    primary, local = SwitchableCounters(), MemoryCounters()
    counters = FallbackCounters(primary, local, retry_after=5.0, clock=clock)
    await primary.adjust("b", 10, ttl=None)
    primary.down = True

    assert await counters.take("b", 1, limit=100, ttl=None) == Taken(True, 1)  # served locally
    assert (counters.degraded, primary.calls) == (True, 1)
    primary.down = False
    clock.advance(4.9)
    assert await counters.take("b", 1, limit=100, ttl=None) == Taken(True, 2)  # still local: no retry yet
    assert primary.calls == 1

    clock.advance(0.2)
    assert await counters.take("b", 1, limit=100, ttl=None) == Taken(True, 11)  # the primary again
    assert (counters.degraded, counters.last_error, primary.calls) == (False, None, 2)


async def test_a_failed_retry_keeps_serving_locally_for_another_pause() -> None:
    clock = FakeClock()
    primary = SwitchableCounters()
    counters = FallbackCounters(primary, MemoryCounters(), retry_after=5.0, clock=clock)
    primary.down = True
    await counters.take("b", 1, limit=10, ttl=None)
    clock.advance(6)
    await counters.take("b", 1, limit=10, ttl=None)
    assert (counters.degraded, primary.calls) == (True, 2)
    clock.advance(4)
    await counters.take("b", 1, limit=10, ttl=None)
    assert primary.calls == 2
    assert await counters.value("b") == 3


async def test_board_falls_back_and_recovers() -> None:
    clock = FakeClock()
    primary = SwitchableBoard()
    local = MemoryBreakerBoard()
    board = FallbackBoard(primary, local, retry_after=5.0, clock=clock)
    await primary.trip("shared", 100.0)
    primary.down = True
    await local.trip("local", 100.0)
    assert await board.tripped(0.0) == {"local": 100.0}
    assert board.degraded and board.last_error == "board is down"
    primary.down = False
    clock.advance(5)
    assert await board.tripped(0.0) == {"shared": 100.0}
    assert not board.degraded


async def test_board_falls_back_when_redis_is_unreachable() -> None:
    board = FallbackBoard(await RedisBreakerBoard.connect(CLOSED_REDIS, ping=False), MemoryBreakerBoard())
    await board.trip("d", 50.0)
    assert await board.tripped(10.0) == {"d": 50.0}
    assert board.degraded
    await board.close()
