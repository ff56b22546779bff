"""The cache's view of its backend: answers in and out, bounded in time, bypassed while it is unwell.

A backend that fails or is slower than ``timeout`` never fails or stalls a request: the call goes on
without the cache (``x-llmgate-cache: skip``), the trouble is reported by ``problem`` (``/health``), and
the backend is tried again after ``RETRY_AFTER`` seconds, so it comes back by itself. An entry that
cannot be read (corrupt, or from another version) is a miss, never an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from llmgate.core.response import ChatResponse
from llmgate.state.ports import CacheKey, ResponseCache

log = logging.getLogger("llmgate.cache")
T = TypeVar("T")
RETRY_AFTER = 5.0  # seconds the cache is bypassed after a backend failure


class CachedAnswer(msgspec.Struct, gc=False, kw_only=True):
    """A stored answer: the response as it was, and what it cost and who served it then."""

    response: ChatResponse
    cost_usd: float | None
    provider: str
    deployment: str
    upstream_model: str
    stored_at: float


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CachedAnswer)


@dataclass(slots=True)
class CacheCounts:
    """What the cache has done since start."""

    hits: int = 0
    semantic_hits: int = 0
    misses: int = 0
    skips: int = 0
    coalesced: int = 0
    stored: int = 0
    too_large: int = 0
    unreadable: int = 0
    saved_usd: float = 0.0


class AnswerStore:
    """Answers in a ``ResponseCache`` backend, with a time bound and a bypass while it is unwell."""

    def __init__(
        self,
        backend: ResponseCache,
        *,
        timeout: float,
        max_entry_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.timeout = timeout
        self.max_entry_bytes = max_entry_bytes
        self.counts = CacheCounts()
        self.last_error: str | None = None
        self._clock = clock
        self._bypass_until = 0.0

    @property
    def available(self) -> bool:
        """Whether the backend is used now (not in a bypass after a failure)."""
        return self._clock() >= self._bypass_until

    def problem(self) -> str | None:
        """Why the cache is bypassed, while it is."""
        if self.last_error is None or self.available:
            return None
        return f"response cache ({self.backend.name}) bypassed: {self.last_error}"

    async def get(self, key: CacheKey) -> CachedAnswer | None:
        """The stored answer, or ``None`` (missing, unreadable, or the backend unwell)."""
        raw = await self._call(lambda: self.backend.get(key), bounded=not self.backend.in_process)
        if raw is None:
            return None
        try:
            return _decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            self.counts.unreadable += 1
            return None

    async def put(self, key: CacheKey, answer: CachedAnswer, *, ttl: float) -> bool:
        """Store an answer (not when larger than ``max_entry_bytes``); whether it was stored."""
        raw = _encoder.encode(answer)
        if len(raw) > self.max_entry_bytes:
            self.counts.too_large += 1
            return False
        put = lambda: _true(self.backend.put(key, raw, ttl=ttl))  # noqa: E731
        done = await self._call(put, bounded=not self.backend.in_process)
        if done:
            self.counts.stored += 1
        return bool(done)

    async def guarded(self, work: Callable[[], Awaitable[T]]) -> T | None:
        """Any backend call (the vector index's too) under the same time bound and bypass."""
        return await self._call(work)

    async def _call(self, work: Callable[[], Awaitable[T]], *, bounded: bool = True) -> T | None:
        """``work`` unless bypassed, within the time bound (an in-process backend's calls need none: its
        timer would cost more than the call)."""
        if not self.available:
            return None
        try:
            if not bounded:
                return await work()
            async with asyncio.timeout(self.timeout):  # not wait_for: that starts a task per call
                return await work()
        except Exception as error:  # unreachable, slow or broken: the request goes on without the cache
            self.last_error = f"{type(error).__name__}: {error}"[:300] if str(error) else type(error).__name__
            self._bypass_until = self._clock() + RETRY_AFTER
            log.warning("response cache bypassed for %.0f s: %s", RETRY_AFTER, self.last_error)
            return None


async def _true(work: Awaitable[None]) -> bool:
    await work
    return True
