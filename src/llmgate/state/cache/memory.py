"""The in-process response cache: least recently used first out, bounded by entries and bytes, with TTL.

Nothing here awaits between reading and writing, so every call is atomic under asyncio.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from itertools import islice

import msgspec

from llmgate.state.ports import CacheKey, CacheStats

SWEEP = 4  # entries at the old end checked for expiry on each put
ENTRY_OVERHEAD = 200  # bytes an entry costs beyond its value (key, tuple, dict slot): counted in max_bytes


class _Entry(msgspec.Struct, gc=False):
    """Untracked by the garbage collector (bytes and numbers only), like ``CacheKey``: a full cache's
    hundred thousand entries would otherwise add ~20 ms to every full collection."""

    value: bytes
    expires: float
    size: int


class MemoryCache:
    """``ResponseCache`` in a dict; ``clock`` (seconds) drives expiry and is injectable for tests."""

    name = "memory"
    in_process = True

    def __init__(
        self, *, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._bytes = 0

    async def get(self, key: CacheKey) -> bytes | None:
        """The value, refreshed as the most recently used; ``None`` when missing or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry.value

    async def put(self, key: CacheKey, value: bytes, *, ttl: float) -> None:
        """Store, then evict the least recently used entries (expired ones first) until within bounds."""
        size = len(value) + len(key.digest) + len(key.namespace) + len(key.group) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return  # larger than the whole cache: not worth evicting everything for
        if key in self._entries:
            self._drop(key)
        now = self._clock()
        self._entries[key] = _Entry(value, now + ttl, size)
        self._bytes += size
        self._evict(now)

    async def clear(self, *, namespace: str | None = None, group: str | None = None) -> int:
        """Remove the entries of a namespace and/or group (all when neither is given)."""
        doomed = [
            key
            for key in self._entries
            if (namespace is None or key.namespace == namespace) and (group is None or key.group == group)
        ]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    async def stats(self) -> CacheStats:
        """Entries and bytes held (expired entries not yet swept included)."""
        return CacheStats(len(self._entries), self._bytes)

    async def close(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._bytes = 0

    def _evict(self, now: float) -> None:
        entries = self._entries
        for key in [key for key, entry in islice(entries.items(), SWEEP) if entry.expires <= now]:
            self._drop(key)  # a few expired ones at the old end go first (amortised sweep)
        while len(entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(entries)))

    def _drop(self, key: CacheKey) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size
