"""VectorIndex conformance: the semantic cache's vectors behave the same on every backend."""

from __future__ import annotations

from typing import Any

from llmgate.state.ports import CacheKey

from .conftest import VECTOR_ENTRIES, Backend

BUCKET = CacheKey("ns", "g", "params")


def unit(*hot: int, dims: int = 8) -> list[float]:
    return [1.0 if index in hot else 0.0 for index in range(dims)]


async def test_the_nearest_entry_wins_with_its_cosine(vectors: Backend[Any]) -> None:
    index = await vectors.client()
    assert await index.nearest(BUCKET, unit(0)) is None
    await index.add(BUCKET, "a", unit(0), ttl=60)
    await index.add(BUCKET, "b", unit(0, 1), ttl=60)
    await index.add(BUCKET, "c", unit(5), ttl=60)
    digest, score = await index.nearest(BUCKET, unit(0, 1, 2))
    assert digest == "b" and abs(score - 2 / (2**0.5 * 3**0.5)) < 1e-5
    assert await index.count() == 3


async def test_buckets_keep_namespaces_groups_and_parameters_apart(vectors: Backend[Any]) -> None:
    index = await vectors.client()
    await index.add(BUCKET, "mine", unit(0), ttl=60)
    for other in (CacheKey("other", "g", "params"), CacheKey("ns", "h", "params"), CacheKey("ns", "g", "p2")):
        assert await index.nearest(other, unit(0)) is None


async def test_expired_entries_are_never_found(vectors: Backend[Any]) -> None:
    index = await vectors.client()
    await index.add(BUCKET, "short", unit(0), ttl=5)
    await index.add(BUCKET, "long", unit(0, 1), ttl=60)
    vectors.clock.advance(6)
    assert (await index.nearest(BUCKET, unit(0)))[0] == "long"


async def test_remove_and_clear(vectors: Backend[Any]) -> None:
    index = await vectors.client()
    await index.add(BUCKET, "a", unit(0), ttl=60)
    await index.add(CacheKey("b-ns", "g", "p"), "b", unit(0), ttl=60)
    await index.add(CacheKey("ns", "other", "p"), "c", unit(0), ttl=60)
    await index.remove(BUCKET, "a")
    assert await index.nearest(BUCKET, unit(0)) is None
    assert await index.clear(namespace="b-ns") == 1
    assert await index.clear(group="other") == 1
    assert await index.count() == 0


async def test_another_embedding_size_is_not_compared(vectors: Backend[Any]) -> None:
    index = await vectors.client()
    await index.add(BUCKET, "a", unit(0), ttl=60)
    assert await index.nearest(BUCKET, unit(0, dims=16)) is None


async def test_the_index_is_bounded(vectors: Backend[Any]) -> None:
    index = await vectors.client()
    for number in range(VECTOR_ENTRIES + 10):
        await index.add(BUCKET, f"d{number}", unit(number % 8), ttl=60)
    assert await index.count() <= VECTOR_ENTRIES


async def test_another_replica_sees_what_one_added(vectors: Backend[Any]) -> None:
    if vectors.name == "memory":
        return  # one process: nothing to share
    one = await vectors.client()
    await one.add(BUCKET, "shared", unit(3), ttl=60)
    two = await vectors.client()
    assert (await two.nearest(BUCKET, unit(3)))[0] == "shared"  # read at start
    await one.add(BUCKET, "later", unit(4), ttl=60)
    vectors.clock.advance(1.0)  # within a second
    assert (await two.nearest(BUCKET, unit(4)))[0] == "later"
    await one.clear(namespace="ns")
    vectors.clock.advance(1.0)
    if vectors.name == "redis":  # clears travel through the log
        assert await two.nearest(BUCKET, unit(4)) is None
