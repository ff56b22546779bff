"""The stateful half of the composition root: storage settings -> backends, policies and their tasks.

``gateway.py`` builds the stateless parts (adapters, router, failover) when a ``Gateway`` is created;
this module opens what needs I/O (the database, Redis) when the gateway starts, and keeps the
background work (usage writes, sharing breaker trips between replicas) running until it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from llmgate.config.settings import Settings
from llmgate.policies.budgets import Budgets, SpendSince
from llmgate.policies.cache import AnswerStore, CacheRules, SemanticCache
from llmgate.policies.guard import Guard
from llmgate.policies.keys import KeyService
from llmgate.policies.limits import CallerLimits, Rate
from llmgate.policies.settlements import Settlements
from llmgate.policies.usage import UsageRecorder
from llmgate.routing.health import HealthBoard
from llmgate.state import open_database, shared_state
from llmgate.state.jobs import open_jobs
from llmgate.state.jobs.ports import JobStore
from llmgate.state.memory import MemoryCounters
from llmgate.state.ports import (
    BreakerBoard,
    Counters,
    Database,
    Degradable,
    ResponseCache,
    StateUnavailable,
    VectorIndex,
)

log = logging.getLogger("llmgate")
BOARD_SYNC_INTERVAL = 1.0
SETTLE_EVERY = 0.0  # give-backs to a shared Redis: written together at the next turn of the event loop


@dataclass
class State:
    """Everything stateful a started gateway holds."""

    database: Database
    counters: Counters
    board: BreakerBoard | None
    keys: KeyService
    guard: Guard
    recorder: UsageRecorder
    shared: bool
    cache: AnswerStore | None = None
    semantic: SemanticCache | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Why the state is degraded (empty when all is well)."""
        problems = []
        for name, part in (("redis", self.counters), ("redis breaker board", self.board)):
            if isinstance(part, Degradable) and part.degraded:
                problems.append(f"{name} unreachable, using local state: {part.last_error}")
        problem = self.cache.problem() if self.cache is not None else None
        if problem is not None:
            problems.append(problem)
        if self.recorder.degraded:
            problems.append(
                f"database unreachable, {self.recorder.pending} usage records waiting: "
                f"{self.recorder.last_error}"
            )
        return problems

    async def close(self) -> None:
        """Stop background work, write the last usage records, close connections."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.guard.close()
            await self.recorder.close()
        finally:
            if self.semantic is not None:
                await self.semantic.vectors.close()
            if self.cache is not None:
                await self.cache.backend.close()
            await self.counters.close()
            if self.board is not None:
                await self.board.close()
            await self.database.close()


async def open_state(settings: Settings, health: HealthBoard, rules: CacheRules | None = None) -> State:
    """Open the database, Redis and the response cache (when configured), and build the policies."""
    storage, limits = settings.storage, settings.limits
    database = await open_database(storage.database)
    log.info("keys and usage records: %s", _without_password(storage.database))
    counters: Counters = MemoryCounters()
    board: BreakerBoard | None = None
    if storage.redis:
        counters, board = shared_state(storage.redis, prefix=storage.redis_prefix)
    shared = board is not None
    budgets_closed = limits.budget_on_outage == "closed"
    recorder = UsageRecorder(database, flush_interval=storage.flush_interval)
    settlements = Settlements(counters, every=SETTLE_EVERY if shared else None)
    guard = Guard(
        limits=CallerLimits(
            counters,
            global_rate=Rate(limits.global_.rpm, limits.global_.tpm),
            default_key=Rate(limits.default_key.rpm, limits.default_key.tpm),
            settlements=settlements,
        ),
        # A process-local counter starts from the ledger; a shared one outlives any one process.
        budgets=Budgets(counters, spend_since=None if shared else _spend(database), settlements=settlements),
        recorder=recorder,
        budgets_closed=lambda: budgets_closed and _degraded(counters),
    )
    cache = await _open_cache(settings) if rules is not None and rules.any_enabled else None
    semantic = None
    if cache is not None and rules is not None and rules.any_semantic:
        semantic = SemanticCache(await _open_vectors(settings), cache, threshold=rules.threshold)
    state = State(database, counters, board, KeyService(database), guard, recorder, shared, cache, semantic)
    if board is not None:
        state.tasks.append(asyncio.get_running_loop().create_task(_share_trips(board, health)))
    return state


async def open_job_store(settings: Settings) -> JobStore:
    """The batch jobs' store, in the same database as keys and usage records."""
    return await open_jobs(settings.storage.database)


async def _open_cache(settings: Settings) -> AnswerStore:
    """The response cache's backend, behind the store that bounds and bypasses it. Each backend is
    imported when chosen: Redis and NumPy load only where they are used."""
    cache, storage = settings.cache, settings.storage
    backend: ResponseCache
    if cache.backend == "redis" and storage.redis:
        from llmgate.state.cache.redis import RedisCache
        from llmgate.state.redis import redis_client

        # No ping: a Redis that is down at start is bypassed like one that goes down later.
        backend = RedisCache(redis_client(storage.redis), prefix=storage.redis_prefix)
    elif cache.backend == "sqlite":
        from llmgate.state.cache.sqlite import SqliteCache

        backend = await SqliteCache.connect(
            cache.path, max_entries=cache.max_entries, max_bytes=cache.max_bytes
        )
    else:
        from llmgate.state.cache.memory import MemoryCache

        backend = MemoryCache(max_entries=cache.max_entries, max_bytes=cache.max_bytes)
    log.info("response cache: %s", backend.name)
    return AnswerStore(backend, timeout=cache.timeout, max_entry_bytes=cache.max_entry_bytes)


async def _open_vectors(settings: Settings) -> VectorIndex:
    """The semantic cache's vector index, on the same kind of backend as the answers."""
    cache, storage = settings.cache, settings.storage
    if cache.backend == "redis" and storage.redis:
        from llmgate.state.cache.redis import RedisVectors
        from llmgate.state.redis import redis_client

        return RedisVectors(
            redis_client(storage.redis), max_entries=cache.max_entries, prefix=storage.redis_prefix
        )
    if cache.backend == "sqlite":
        from llmgate.state.cache.sqlite import SqliteVectors

        return await SqliteVectors.connect(cache.path, max_entries=cache.max_entries)
    from llmgate.state.cache.vectors import MemoryVectors

    return MemoryVectors(max_entries=cache.max_entries)


def _without_password(url: str) -> str:
    """A database URL fit for a log line (``postgresql://user:secret@host`` loses the secret)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _degraded(counters: Counters) -> bool:
    return isinstance(counters, Degradable) and counters.degraded


def _spend(database: Database) -> SpendSince:
    async def spend_since(key_id: str, since: float) -> float:
        return await database.spend(key_id=key_id, since=since)

    return spend_since


async def _share_trips(board: BreakerBoard, health: HealthBoard) -> None:
    """Publish this process's breaker trips and apply the other replicas' ones, every second."""
    published: dict[str, float] = {}
    while True:
        await asyncio.sleep(BOARD_SYNC_INTERVAL)
        try:
            await _sync_once(board, health, published)
        except StateUnavailable:
            continue
        except Exception:
            log.exception("sharing breaker state failed")


async def _sync_once(board: BreakerBoard, health: HealthBoard, published: dict[str, float]) -> None:
    wall, mono = time.time(), health.clock()
    for name, record in health.known():
        until = record.breaker.opened_until
        if until is not None and until > mono and published.get(name) != until:
            await board.trip(name, wall + (until - mono))
            published[name] = until
    for name, until_wall in (await board.tripped(wall)).items():
        until = mono + (until_wall - wall)
        breaker = health.of(name).breaker
        current = breaker.opened_until
        if current is None or until > current + 0.5:
            breaker.trip(until)
            published[name] = breaker.opened_until or until
