"""Shared state: the storage ports and the helpers that open a backend from a URL.

Routing and policies depend on the ports (``llmgate.state.ports``); only the composition root picks a
backend, through ``open_database`` / ``open_redis`` or the backend modules themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmgate.state.ports import (
    BreakerBoard,
    Counters,
    Database,
    GroupBy,
    KeyExists,
    KeyStore,
    StateUnavailable,
    Taken,
    UsageLedger,
    UsageRecord,
    UsageRow,
    VirtualKey,
)

if TYPE_CHECKING:
    from llmgate.state.redis import RedisCounters

__all__ = [
    "BreakerBoard",
    "Counters",
    "Database",
    "GroupBy",
    "KeyExists",
    "KeyStore",
    "StateUnavailable",
    "Taken",
    "UsageLedger",
    "UsageRecord",
    "UsageRow",
    "VirtualKey",
    "open_database",
    "open_redis",
    "shared_state",
]

DATABASE_URLS = "'memory', 'sqlite:///path.db' or 'postgresql://user@host/db'"
REDIS_URLS = "'redis://host:6379/0', 'rediss://...' or 'unix:///path/to/redis.sock'"


def _scheme(url: str) -> str:
    """The URL's scheme, for an error message: never the rest, which may carry a password."""
    if "://" in url:
        return url.partition("://")[0] + "://..."
    return url if not set(url) & set(":@/") else "(a value without a scheme)"


async def open_database(url: str) -> Database:
    """The keys/usage/counters backend a URL names: ``memory``, ``sqlite:///...`` or ``postgresql://...``.

    Raises ``ValueError`` for a URL of another kind and ``StateUnavailable`` when the database cannot be
    reached.
    """
    # Backends are imported on demand: the drivers cost ~0.2 s to import, and most deployments use one.
    if url == "memory":
        from llmgate.state.memory import MemoryStore

        return MemoryStore()
    if url.startswith("sqlite:"):
        from llmgate.state.sqlite import SqliteStore

        return await SqliteStore.connect(url)
    if url.startswith(("postgresql://", "postgres://")):
        from llmgate.state.postgres import PostgresStore

        return await PostgresStore.connect(url)
    raise ValueError(f"unsupported database URL {_scheme(url)!r}: expected {DATABASE_URLS}")


async def open_redis(url: str, *, prefix: str = "llmgate:") -> RedisCounters:
    """Counters on the Redis server a ``redis://``, ``rediss://`` or ``unix://`` URL names.

    Raises ``ValueError`` for a URL of another kind and ``StateUnavailable`` when the server does not
    answer.
    """
    _check_redis_url(url)
    from llmgate.state.redis import RedisCounters

    return await RedisCounters.connect(url, prefix=prefix)


def _check_redis_url(url: str) -> None:
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"unsupported Redis URL {_scheme(url)!r}: expected {REDIS_URLS}")


def shared_state(url: str, *, prefix: str = "llmgate:") -> tuple[Counters, BreakerBoard]:
    """Counters and a breaker board on one Redis client, each falling back to local state while Redis
    is unreachable (no I/O yet: the first call connects, so a gateway starts even with Redis down)."""
    _check_redis_url(url)
    from llmgate.state.memory import MemoryBreakerBoard, MemoryCounters
    from llmgate.state.redis import RedisBreakerBoard, RedisCounters, redis_client
    from llmgate.state.resilient import FallbackBoard, FallbackCounters

    client = redis_client(url)
    return (
        FallbackCounters(RedisCounters(client, prefix=prefix), MemoryCounters()),
        FallbackBoard(RedisBreakerBoard(client, prefix=prefix), MemoryBreakerBoard()),
    )
