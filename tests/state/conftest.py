"""Backends for the conformance suites: each port's tests run against every backend implementing it.

PostgreSQL and Redis are real servers (``LLMGATE_TEST_POSTGRES_DSN`` / ``LLMGATE_TEST_REDIS_URL``, default
loopback); each test gets its own schema or key prefix, removed afterwards. When a server cannot be
reached its tests are skipped, saying why; nothing is mocked.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import asyncpg
import pytest
import redis.asyncio
import redis.exceptions

from clock import FakeClock
from llmgate.state import StateUnavailable
from llmgate.state.cache.memory import MemoryCache
from llmgate.state.cache.redis import RedisCache, RedisVectors
from llmgate.state.cache.sqlite import SqliteCache, SqliteVectors
from llmgate.state.cache.vectors import MemoryVectors
from llmgate.state.jobs.memory import MemoryJobs
from llmgate.state.jobs.postgres import PostgresJobs
from llmgate.state.jobs.sqlite import SqliteJobs
from llmgate.state.memory import MemoryBreakerBoard, MemoryCounters, MemoryKeyStore, MemoryLedger
from llmgate.state.postgres import PostgresStore
from llmgate.state.redis import RedisBreakerBoard, RedisCounters
from llmgate.state.sqlite import SqliteStore

POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"

T = TypeVar("T")


def postgres_dsn() -> str:
    """The test server's DSN (override with LLMGATE_TEST_POSTGRES_DSN)."""
    return os.environ.get("LLMGATE_TEST_POSTGRES_DSN", POSTGRES_DSN)


def redis_url() -> str:
    """The test server's URL (override with LLMGATE_TEST_REDIS_URL)."""
    return os.environ.get("LLMGATE_TEST_REDIS_URL", REDIS_URL)


@dataclass
class Backend(Generic[T]):
    """One backend under test: ``client()`` opens another client on the same data (memory: the same object)."""

    name: str
    opener: Callable[[], Awaitable[T]]
    clock: FakeClock
    real_time: bool = False
    """Expiry runs on the server's own clock (Redis): letting time pass means sleeping."""
    exits: AsyncExitStack = field(default_factory=AsyncExitStack)

    async def client(self) -> T:
        opened = await self.opener()
        self.exits.push_async_callback(opened.close)
        return opened

    async def wait(self, seconds: float) -> None:
        if self.real_time:
            await asyncio.sleep(seconds)
        else:
            self.clock.advance(seconds)


def _same(instance: T) -> Callable[[], Awaitable[T]]:
    async def opener() -> T:
        return instance

    return opener


async def _postgres(exits: AsyncExitStack, clock: FakeClock) -> Callable[[], Awaitable[PostgresStore]]:
    """An opener on a fresh schema, dropped when ``exits`` closes; skips when the server is unreachable."""
    dsn, schema = postgres_dsn(), f"test_{uuid.uuid4().hex[:12]}"

    async def opener() -> PostgresStore:
        return await PostgresStore.connect(dsn, schema=schema, clock=clock, time_limit=5.0)

    return await _fresh_schema(exits, dsn, schema, opener)


async def _fresh_schema(
    exits: AsyncExitStack, dsn: str, schema: str, opener: Callable[[], Awaitable[Any]]
) -> Callable[[], Awaitable[Any]]:
    try:
        first = await opener()
    except StateUnavailable as error:
        pytest.skip(f"PostgreSQL not reachable at {dsn}: {error}")

    async def drop() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()

    exits.push_async_callback(drop)
    await first.close()
    return opener


async def _redis_prefix(exits: AsyncExitStack) -> str:
    """A fresh key prefix whose keys are deleted when ``exits`` closes; skips when Redis is unreachable."""
    url, prefix = redis_url(), f"llmgate-test:{uuid.uuid4().hex[:12]}:"
    client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=2.0)
    try:
        await client.ping()
    except (redis.exceptions.ConnectionError, OSError) as error:
        await client.aclose()
        pytest.skip(f"Redis not reachable at {url}: {error}")

    async def delete() -> None:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()

    exits.push_async_callback(delete)
    return prefix


async def _backend(kind: str, port: str, tmp_path: Path) -> Backend[Any]:
    clock = FakeClock()
    exits = AsyncExitStack()
    if kind == "memory":
        memory: dict[str, Any] = {
            "counters": MemoryCounters(clock=clock),
            "keys": MemoryKeyStore(),
            "ledger": MemoryLedger(),
            "board": MemoryBreakerBoard(),
        }
        return Backend(kind, _same(memory[port]), clock, exits=exits)
    if kind == "sqlite":
        path = str(tmp_path / "state.db")
        return Backend(kind, lambda: SqliteStore.connect(path, clock=clock), clock, exits=exits)
    if kind == "postgres":
        return Backend(kind, await _postgres(exits, clock), clock, exits=exits)
    prefix = await _redis_prefix(exits)
    if port == "board":
        return Backend(
            kind, lambda: RedisBreakerBoard.connect(redis_url(), prefix=prefix), clock, True, exits
        )
    return Backend(kind, lambda: RedisCounters.connect(redis_url(), prefix=prefix), clock, True, exits)


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
async def counters(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend[Any]]:
    """Every ``Counters`` backend."""
    backend = await _backend(request.param, "counters", tmp_path)
    async with backend.exits:
        yield backend


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def keys(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend[Any]]:
    """Every ``KeyStore`` backend."""
    backend = await _backend(request.param, "keys", tmp_path)
    async with backend.exits:
        yield backend


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend[Any]]:
    """Every ``UsageLedger`` backend."""
    backend = await _backend(request.param, "ledger", tmp_path)
    async with backend.exits:
        yield backend


@pytest.fixture(params=["memory", "redis"])
async def board(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend[Any]]:
    """Every ``BreakerBoard`` backend."""
    backend = await _backend(request.param, "board", tmp_path)
    async with backend.exits:
        yield backend


CACHE_ENTRIES = 4
CACHE_BYTES = 10_000


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def cache(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend[Any]]:
    """Every ``ResponseCache`` backend (bounded to ``CACHE_ENTRIES`` entries and ``CACHE_BYTES``)."""
    clock = FakeClock()
    exits = AsyncExitStack()
    kind = request.param
    if kind == "memory":
        memory = MemoryCache(max_entries=CACHE_ENTRIES, max_bytes=CACHE_BYTES, clock=clock)
        backend: Backend[Any] = Backend(kind, _same(memory), clock, exits=exits)
    elif kind == "sqlite":
        path = str(tmp_path / "cache.db")

        def sqlite_cache() -> Awaitable[SqliteCache]:
            return SqliteCache.connect(path, max_entries=CACHE_ENTRIES, max_bytes=CACHE_BYTES, clock=clock)

        backend = Backend(kind, sqlite_cache, clock, exits=exits)
    else:
        prefix = await _redis_prefix(exits)
        backend = Backend(kind, lambda: RedisCache.connect(redis_url(), prefix=prefix), clock, True, exits)
    async with backend.exits:
        yield backend


VECTOR_ENTRIES = 50


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def vectors(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend[Any]]:
    """Every ``VectorIndex`` backend; ``client()`` opens another replica on the same data."""
    clock = FakeClock()
    exits = AsyncExitStack()
    kind = request.param
    if kind == "memory":
        backend: Backend[Any] = Backend(
            kind, _same(MemoryVectors(max_entries=VECTOR_ENTRIES, clock=clock)), clock, exits=exits
        )
    elif kind == "sqlite":
        path = str(tmp_path / "cache.db")
        backend = Backend(
            kind,
            lambda: SqliteVectors.connect(path, max_entries=VECTOR_ENTRIES, clock=clock),
            clock,
            exits=exits,
        )
    else:
        prefix = await _redis_prefix(exits)

        async def replica() -> RedisVectors:
            client = redis.asyncio.Redis.from_url(redis_url(), socket_connect_timeout=2.0)
            return RedisVectors(client, max_entries=VECTOR_ENTRIES, prefix=prefix, clock=clock)

        backend = Backend(kind, replica, clock, exits=exits)
    async with backend.exits:
        yield backend


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def jobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend[Any]]:
    """Every ``JobStore`` backend; ``client()`` opens another replica's store on the same data."""
    clock = FakeClock()
    exits = AsyncExitStack()
    kind = request.param
    if kind == "memory":
        backend: Backend[Any] = Backend(kind, _same(MemoryJobs()), clock, exits=exits)
    elif kind == "sqlite":
        path = str(tmp_path / "jobs.db")
        backend = Backend(kind, lambda: SqliteJobs.connect(path, clock=clock), clock, exits=exits)
    else:
        dsn, schema = postgres_dsn(), f"test_{uuid.uuid4().hex[:12]}"

        def postgres_jobs() -> Awaitable[PostgresJobs]:
            return PostgresJobs.connect(dsn, schema=schema, clock=clock, time_limit=5.0)

        backend = Backend(kind, await _fresh_schema(exits, dsn, schema, postgres_jobs), clock, exits=exits)
    async with backend.exits:
        yield backend
