"""ResponseCache conformance: every backend (memory, SQLite, real Redis) behaves the same."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
import redis.asyncio

from llmgate.state.cache.memory import MemoryCache
from llmgate.state.ports import CacheKey

from .conftest import CACHE_BYTES, CACHE_ENTRIES, Backend, redis_url


def key(digest: str, namespace: str = "ns", group: str = "g") -> CacheKey:
    return CacheKey(namespace, group, digest)


async def test_a_value_comes_back_until_replaced(cache: Backend[Any]) -> None:
    store = await cache.client()
    assert await store.get(key("a")) is None
    await store.put(key("a"), b"one", ttl=60)
    assert await store.get(key("a")) == b"one"
    await store.put(key("a"), b"two", ttl=60)
    assert await store.get(key("a")) == b"two"
    assert (await store.stats()).entries == 1


async def test_namespaces_and_groups_never_share_an_entry(cache: Backend[Any]) -> None:
    store = await cache.client()
    await store.put(key("d", namespace="tenant-a"), b"a's answer", ttl=60)
    assert await store.get(key("d", namespace="tenant-b")) is None
    assert await store.get(key("d", group="other")) is None
    assert await store.get(key("d", namespace="tenant-a")) == b"a's answer"


async def test_entries_expire(cache: Backend[Any]) -> None:
    store = await cache.client()
    await store.put(key("short"), b"x", ttl=0.3)
    await store.put(key("long"), b"y", ttl=60)
    if cache.real_time:  # Redis expires on its own clock
        await asyncio.sleep(0.4)
    else:
        cache.clock.advance(0.31)
    assert await store.get(key("short")) is None
    assert await store.get(key("long")) == b"y"


async def test_clear_by_namespace_group_both_or_all(cache: Backend[Any]) -> None:
    store = await cache.client()
    for namespace in ("a", "b"):
        for group in ("g1", "g2"):
            await store.put(key("d", namespace, group), b"v", ttl=60)
    assert await store.clear(namespace="a", group="g1") == 1
    assert await store.clear(namespace="a") == 1
    assert await store.get(key("d", "b", "g1")) == b"v"
    assert await store.clear(group="g2") == 1
    assert await store.clear() == 1
    assert (await store.stats()).entries == 0


async def test_odd_bytes_in_names_stay_inside_their_namespace(cache: Backend[Any]) -> None:
    store = await cache.client()
    await store.put(key("d", namespace="*"), b"star", ttl=60)
    await store.put(key("d", namespace="plain"), b"plain", ttl=60)
    assert await store.clear(namespace="*") == 1  # a pattern character is a name, not a wildcard
    assert await store.get(key("d", namespace="plain")) == b"plain"


async def test_stats_count_entries_and_bytes(cache: Backend[Any]) -> None:
    store = await cache.client()
    await store.put(key("a"), b"x" * 100, ttl=60)
    await store.put(key("b"), b"y" * 50, ttl=60)
    stats = await store.stats()
    assert stats.entries == 2 and stats.bytes >= 150 and stats.exact


async def test_the_least_recently_used_entries_go_first(cache: Backend[Any]) -> None:
    if cache.real_time:
        pytest.skip("bounded backends only (Redis bounds itself with maxmemory)")
    store = await cache.client()
    for index in range(CACHE_ENTRIES):
        await store.put(key(f"k{index}"), b"v", ttl=60)
        cache.clock.advance(1)
    assert await store.get(key("k0")) == b"v"  # k0 is now the most recently used
    cache.clock.advance(1)
    await store.put(key("new"), b"v", ttl=60)
    assert await store.get(key("k1")) is None
    assert await store.get(key("k0")) == b"v"
    assert (await store.stats()).entries == CACHE_ENTRIES


async def test_bytes_are_bounded_and_an_oversized_value_is_not_stored(cache: Backend[Any]) -> None:
    if cache.real_time:
        pytest.skip("bounded backends only (Redis bounds itself with maxmemory)")
    store = await cache.client()
    await store.put(key("huge"), b"x" * (CACHE_BYTES + 1), ttl=60)
    assert await store.get(key("huge")) is None
    for index in range(3):
        await store.put(key(f"big{index}"), b"x" * (CACHE_BYTES // 2), ttl=60)
        cache.clock.advance(1)
    stats = await store.stats()
    assert stats.bytes <= CACHE_BYTES and stats.entries < 3
    assert await store.get(key("big2")) is not None


async def test_sqlite_entries_survive_a_reopen(cache: Backend[Any]) -> None:
    if cache.name != "sqlite":
        pytest.skip("the persistent backend")
    first = await cache.client()
    await first.put(key("kept"), b"across restarts", ttl=60)
    await first.close()
    second = await cache.client()
    assert await second.get(key("kept")) == b"across restarts"
    assert (await second.stats()).entries == 1


async def test_redis_sets_its_native_expiry(cache: Backend[Any]) -> None:
    if cache.name != "redis":
        pytest.skip("Redis only")
    store = await cache.client()
    await store.put(key("ttl"), b"v", ttl=30)
    client = redis.asyncio.Redis.from_url(redis_url())
    try:
        names = [name async for name in client.scan_iter(match="llmgate-test:*cache:*")]
        ttls = [await client.pttl(name) for name in names]
    finally:
        await client.aclose()
    assert any(0 < ttl <= 30_000 for ttl in ttls)


async def test_the_memory_cache_keeps_its_entries_out_of_the_garbage_collector() -> None:
    cache = MemoryCache(max_entries=10, max_bytes=1 << 20)
    key = CacheKey("ns", "g", "d")
    await cache.put(key, b"answer", ttl=60)
    entry = cache._entries[key]
    assert not gc.is_tracked(key) and not gc.is_tracked(entry)  # a full cache adds nothing to a collection
    assert await cache.get(key) == b"answer"
