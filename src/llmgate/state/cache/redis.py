"""The shared response cache: entries in Redis with its native expiry, seen by every replica and worker.

Keys are ``{prefix}cache:{namespace hash}:{group hash}:{digest}``, so a namespace or a group can be
cleared by pattern (the hashes keep caller-chosen text out of patterns). Redis bounds its own memory
(``maxmemory`` with an eviction policy); ``max_entry_bytes`` is enforced by the caller.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import redis.asyncio

from llmgate.state.cache.vectors import VectorTable, as_unit, search
from llmgate.state.ports import CacheKey, CacheStats
from llmgate.state.redis import DEFAULT_PREFIX, answers, reachable, redis_client

SCAN_BATCH = 1000
STATS_SAMPLE = 10_000  # keys counted at most for a health report (beyond that the figures are estimates)


def _tag(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RedisCache:
    """``ResponseCache`` in Redis. Open with ``connect``, or wrap a client shared with the counters."""

    name = "redis"
    in_process = False

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._root = f"{prefix}cache:"
        self._tags: dict[str, str] = {}

    @classmethod
    async def connect(cls, url: str, *, prefix: str = DEFAULT_PREFIX, time_limit: float = 2.0) -> RedisCache:
        """A cache on the server at ``url``, which must answer now (else ``StateUnavailable``)."""
        cache = cls(redis_client(url, time_limit=time_limit), prefix=prefix)
        await answers(cache._client)
        return cache

    async def get(self, key: CacheKey) -> bytes | None:
        """The value, or ``None`` when missing or expired."""
        with reachable():
            value = await self._client.get(self._key(key))
        return value if isinstance(value, bytes) else None

    async def put(self, key: CacheKey, value: bytes, *, ttl: float) -> None:
        """Store with Redis's own expiry."""
        with reachable():
            await self._client.set(self._key(key), value, px=max(1, int(ttl * 1000)))

    async def clear(self, *, namespace: str | None = None, group: str | None = None) -> int:
        """Remove the entries of a namespace and/or group (all when neither is given), by pattern."""
        pattern = f"{self._root}{_tag(namespace) if namespace is not None else '*'}:"
        pattern += f"{_tag(group) if group is not None else '*'}:*"
        removed = 0
        with reachable():
            batch: list[bytes] = []
            async for name in self._client.scan_iter(match=pattern, count=SCAN_BATCH):
                batch.append(name)
                if len(batch) >= SCAN_BATCH:
                    removed += await self._client.unlink(*batch)
                    batch = []
            if batch:
                removed += await self._client.unlink(*batch)
        return removed

    async def stats(self) -> CacheStats:
        """Entries (every key counted) and bytes (measured on up to ``STATS_SAMPLE`` keys, extrapolated
        beyond: then not exact). Costs a scan: for health reports, not the request path."""
        count, sampled, size = 0, 0, 0
        with reachable():
            names: list[bytes] = []
            async for name in self._client.scan_iter(match=f"{self._root}*", count=SCAN_BATCH):
                count += 1
                if count <= STATS_SAMPLE:
                    names.append(name)
            for start in range(0, len(names), SCAN_BATCH):
                pipe = self._client.pipeline(transaction=False)
                for name in names[start : start + SCAN_BATCH]:
                    pipe.strlen(name)
                lengths = await pipe.execute()
                sampled += len(lengths)
                size += sum(int(length) for length in lengths)
        if count > sampled and sampled:
            return CacheStats(count, size * count // sampled, exact=False)
        return CacheStats(count, size)

    async def close(self) -> None:
        """Close the client."""
        await self._client.aclose()

    def _key(self, key: CacheKey) -> str:
        return f"{self._root}{self._cached_tag(key.namespace)}:{self._cached_tag(key.group)}:{key.digest}"

    def _cached_tag(self, text: str) -> str:
        tag = self._tags.get(text)
        if tag is None:
            if len(self._tags) > 100_000:  # namespaces are keys and groups are configured: bounded anyway
                self._tags.clear()
            tag = self._tags[text] = _tag(text)
        return tag


SYNC_INTERVAL = 1.0  # seconds between reads of the vector log (what other replicas added or removed)


class RedisVectors:
    """``VectorIndex`` shared by replicas: every change goes to a Redis stream (the log), and each replica
    keeps a local index (numpy) of it, read at start and then brought up to date at most once a second,
    before a search. The log is trimmed to about twice ``max_entries`` changes."""

    name = "redis"

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        max_entries: int,
        prefix: str = DEFAULT_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._log = f"{prefix}cache:vectors"
        self._trim = max(1000, 2 * max_entries)
        self.table = VectorTable(max_entries=max_entries, clock=clock)
        self._last = "0-0"
        self._synced = -SYNC_INTERVAL

    async def add(self, bucket: CacheKey, digest: str, vector: Sequence[float], *, ttl: float) -> None:
        """Index a vector here and tell the other replicas."""
        unit = as_unit(vector)
        expires = self.table.clock() + ttl
        self.table.add(bucket, digest, unit, expires)
        fields = {**_bucket_fields(bucket), "op": "add", "d": digest, "v": unit.tobytes(), "e": repr(expires)}
        await self._append(fields)

    async def nearest(self, bucket: CacheKey, vector: Sequence[float]) -> tuple[str, float] | None:
        """The most similar live entry, after reading the changes of the last second."""
        now = self.table.clock()
        if now - self._synced >= SYNC_INTERVAL:
            self._synced = now
            await self._pull()
        return await search(self.table, bucket, vector)

    async def remove(self, bucket: CacheKey, digest: str) -> None:
        """Forget one entry, here and on the other replicas."""
        self.table.remove(bucket, digest)
        await self._append({**_bucket_fields(bucket), "op": "remove", "d": digest})

    async def clear(self, *, namespace: str | None = None, group: str | None = None) -> int:
        """Forget the entries of a namespace and/or group, everywhere."""
        removed = self.table.clear(namespace=namespace, group=group)
        fields: dict[str, str | bytes] = {"op": "clear"}
        if namespace is not None:
            fields["ns"] = namespace
        if group is not None:
            fields["g"] = group
        await self._append(fields)
        return removed

    async def count(self) -> int:
        """Entries in this replica's index."""
        return len(self.table)

    async def close(self) -> None:
        """Close the client."""
        await self._client.aclose()

    async def _append(self, fields: dict[str, str | bytes]) -> None:
        with reachable():
            await self._client.xadd(self._log, fields, maxlen=self._trim, approximate=True)  # type: ignore[arg-type]

    async def _pull(self) -> None:
        with reachable():
            while True:
                entries: list[tuple[Any, Any]] = (
                    await self._client.xrange(self._log, min=f"({self._last}", count=SCAN_BATCH) or []
                )
                for entry_id, fields in entries:
                    self._apply({_text(key): value for key, value in (fields or {}).items()})
                    self._last = _text(entry_id)
                if len(entries) < SCAN_BATCH:
                    return

    def _apply(self, fields: dict[str, Any]) -> None:
        op = _text(fields.get("op", b""))
        if op == "clear":
            namespace, group = fields.get("ns"), fields.get("g")
            self.table.clear(
                namespace=_text(namespace) if namespace is not None else None,
                group=_text(group) if group is not None else None,
            )
            return
        bucket = CacheKey(_text(fields["ns"]), _text(fields["g"]), _text(fields["p"]))
        digest = _text(fields["d"])
        if op == "add":
            self.table.add(bucket, digest, np.frombuffer(fields["v"], np.float32), float(_text(fields["e"])))
        elif op == "remove":
            self.table.remove(bucket, digest)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bucket_fields(bucket: CacheKey) -> dict[str, str | bytes]:
    return {"ns": bucket.namespace, "g": bucket.group, "p": bucket.digest}
