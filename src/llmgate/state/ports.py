"""The storage ports: what routing and policies may ask of shared state, whatever the backend.

One module per backend implements them (``memory``, ``sqlite``, ``postgres``, ``redis``); the same test suite
runs against every one (tests/state). Every backend method raises ``StateUnavailable`` when the backend
cannot be reached, never a driver's own error, so callers can fall back (``resilient``).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import msgspec

from llmgate.core.caller import BudgetPeriod

GroupBy = Literal["provider", "model", "key", "group", "day", "hour", "all"]
"""How ``UsageLedger.summary`` groups: provider, upstream model, virtual key (``-`` when none), model group,
UTC day or hour, or everything in one line (``all``)."""


class StateUnavailable(Exception):
    """The backend could not be reached (connection refused, timeout...).

    Raised by every backend method on a connectivity failure, wrapping the driver error.
    """


class KeyExists(Exception):
    """A virtual key with the same id or the same hash is already stored."""


@dataclass(frozen=True, slots=True)
class Taken:
    """The outcome of a take: whether it was allowed, and the counter's value after the call."""

    allowed: bool
    value: float


class Counters(Protocol):
    """Atomic counters in named buckets.

    The caller encodes the window in the bucket name (e.g. ``f"rpm:key_1:{int(now // 60)}"``) and passes a
    ttl so old buckets expire. A ttl (seconds) sets the bucket's expiry on every write that changes it;
    ``None`` keeps the bucket's current expiry (a new bucket then never expires). Values never go below 0.
    """

    async def take(self, bucket: str, amount: float, *, limit: float, ttl: float | None) -> Taken:
        """Add ``amount`` only if value + amount <= limit (atomically); else leave it, allowed=False."""
        ...

    async def adjust(self, bucket: str, delta: float, *, ttl: float | None) -> float:
        """Unconditionally add delta (negative = refund), flooring at 0. Returns the new value."""
        ...

    async def value(self, bucket: str) -> float:
        """The current value (0 for a missing or expired bucket)."""
        ...

    async def take_many(self, takes: Sequence[tuple[str, float, float, float | None]]) -> Taken:
        """All-or-nothing take over several ``(bucket, amount, limit, ttl)``: every bucket or none.

        ``value`` is the value of the first bucket (in the given order) that refused, or of the first
        bucket when all allowed. A bucket named twice is checked against its running total.
        """
        ...

    async def next_turn(self, name: str) -> int:
        """An ever-increasing integer per name (0, 1, 2, ...) shared by every client of this backend."""
        ...

    async def close(self) -> None:
        """Release connections; the object is unusable afterwards."""
        ...


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """A virtual key as stored: only the hash of the secret, and its first characters for display."""

    id: str
    name: str
    key_hash: str
    key_prefix: str
    models: tuple[str, ...] = ()
    """Model groups the key may use; empty means all."""
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_usd: float | None = None
    budget_period: BudgetPeriod = "total"
    expires_at: float | None = None
    """Unix seconds."""
    metadata: Mapping[str, object] = field(default_factory=dict, hash=False)
    """Free-form, JSON-serialisable."""
    created_at: float = 0.0
    revoked: bool = False


class KeyStore(Protocol):
    """Virtual keys, looked up by id (admin) or by the hash of the presented secret (auth)."""

    async def create(self, key: VirtualKey) -> None:
        """Store a new key; raises ``KeyExists`` when its id or hash is taken."""
        ...

    async def get(self, key_id: str) -> VirtualKey | None:
        """The key with this id, or ``None``."""
        ...

    async def find(self, key_hash: str) -> VirtualKey | None:
        """The key with this hash, or ``None``."""
        ...

    async def list(self) -> builtins.list[VirtualKey]:
        """Every key, oldest ``created_at`` first."""
        ...

    async def replace(self, key: VirtualKey) -> bool:
        """Overwrite the key with the same id; ``False`` if the id is unknown.

        Raises ``KeyExists`` when the new hash belongs to another key.
        """
        ...

    async def close(self) -> None:
        """Release connections; the object is unusable afterwards."""
        ...


class UsageRecord(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One request as the ledger keeps it (SPEC section 7)."""

    time: float
    request_id: str
    key_id: str | None
    model_group: str
    provider: str | None
    deployment: str | None
    upstream_model: str | None
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    """``None`` when the price is unknown (reported as cost_unknown, never as $0)."""
    latency_ms: float
    ttft_ms: float | None
    status: int
    error_type: str | None
    cache: str | None
    attempts: int
    stream: bool
    tried: str | None = None
    """Deployments called without success, comma-separated in order (``None``: none failed)."""
    saved_usd: float | None = None
    """An answer from the cache: what the call cost when it was made (``cost_usd`` is 0)."""
    upstream_ms: float | None = None
    """The serving upstream call's own time (whole replies) or time to its first token (streams): the
    rest of ``latency_ms`` is the gateway's (and failed attempts')."""
    fallback_group: str | None = None
    """The group that served the call, when it was not the one asked for (a fallback)."""
    batch_id: str | None = None
    """The batch job the call was an item of."""


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One line of a usage summary (``state.summary`` makes them the same way on every backend)."""

    group: str
    requests: int
    errors: int
    """Records with status >= 400."""
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    cost_usd: float
    """Sum of the known costs."""
    cost_unknown: int
    """Records whose cost is unknown."""
    cache_hits: int
    saved_usd: float
    """What the cache hits saved."""
    avg_latency_ms: float
    p50_latency_ms: float
    p95_latency_ms: float
    """Percentiles from a latency histogram, interpolated within a bucket."""


class UsageLedger(Protocol):
    """The usage records, written in batches off the request path."""

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Store one batch in one transaction."""
        ...

    async def records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        errors_only: bool = False,
        newest_first: bool = False,
    ) -> list[UsageRecord]:
        """Records with since <= time < until (only failed ones, status >= 400, with ``errors_only``),
        oldest first (or newest first), at most ``limit``."""
        ...

    async def count(self) -> int:
        """How many records are stored."""
        ...

    async def summary(
        self, *, since: float | None, until: float | None, group_by: GroupBy, key_id: str | None = None
    ) -> list[UsageRow]:
        """Totals per group over since <= time < until (of one key's records, when given), by group."""
        ...

    async def series(
        self,
        *,
        since: float,
        until: float | None,
        step: float,
        group_by: GroupBy,
        key_id: str | None = None,
    ) -> list[tuple[float, UsageRow]]:
        """Totals per ``step``-second slot and group (a time series), by slot start then group."""
        ...

    async def spend(self, *, key_id: str, since: float) -> float:
        """Sum of the known costs of a key's records since a time."""
        ...

    async def close(self) -> None:
        """Release connections; the object is unusable afterwards."""
        ...


class BreakerBoard(Protocol):
    """Circuit-breaker trips shared by replicas."""

    async def trip(self, deployment: str, until: float) -> None:
        """Mark a deployment open until a time (unix seconds), keeping the later of existing and new."""
        ...

    async def tripped(self, now: float) -> dict[str, float]:
        """Deployments whose trip lasts past ``now``, with their end time."""
        ...

    async def close(self) -> None:
        """Release connections; the object is unusable afterwards."""
        ...


class CacheKey(msgspec.Struct, frozen=True, gc=False):
    """Where a cached answer lives: the caller's namespace, the model group, and the digest of everything
    else in the request that changes the answer. Backends keep the first two so entries can be cleared
    by namespace or by group."""

    namespace: str
    group: str
    digest: str


@dataclass(frozen=True, slots=True)
class CacheStats:
    """What a response cache holds now."""

    entries: int
    bytes: int
    exact: bool = True
    """Whether the figures are exact (a shared backend may only sample)."""


class ResponseCache(Protocol):
    """Cached answers, as opaque bytes with a time to live. Every method may raise ``StateUnavailable``."""

    name: str
    """The backend's name (``memory``, ``sqlite``, ``redis``), for health reports."""

    in_process: bool
    """Whether every call completes without waiting on anything outside the process (no time bound is
    needed around it)."""

    async def get(self, key: CacheKey) -> bytes | None:
        """The stored value, or ``None`` when missing or expired."""
        ...

    async def put(self, key: CacheKey, value: bytes, *, ttl: float) -> None:
        """Store a value for ``ttl`` seconds (replacing any); the backend may evict others to stay in
        bounds, or decline a value larger than it takes."""
        ...

    async def clear(self, *, namespace: str | None = None, group: str | None = None) -> int:
        """Remove the entries of a namespace, a group, both, or (neither given) all; how many went."""
        ...

    async def stats(self) -> CacheStats:
        """Entries and bytes held."""
        ...

    async def close(self) -> None:
        """Release connections; the object is unusable afterwards."""
        ...


class VectorIndex(Protocol):
    """The semantic cache's vectors: per bucket (a namespace, a group and the digest of the request's
    non-message parameters), each stored answer's digest and its conversation's embedding. Every
    method may raise ``StateUnavailable``."""

    name: str

    async def add(self, bucket: CacheKey, digest: str, vector: Sequence[float], *, ttl: float) -> None:
        """Index (or re-index) an answer's vector for ``ttl`` seconds."""
        ...

    async def nearest(self, bucket: CacheKey, vector: Sequence[float]) -> tuple[str, float] | None:
        """The digest of the most similar live entry of the bucket and its cosine similarity."""
        ...

    async def remove(self, bucket: CacheKey, digest: str) -> None:
        """Forget one entry (its answer is gone)."""
        ...

    async def clear(self, *, namespace: str | None = None, group: str | None = None) -> int:
        """Forget the entries of a namespace and/or group (all when neither is given)."""
        ...

    async def count(self) -> int:
        """Entries held."""
        ...

    async def close(self) -> None:
        """Release connections; the object is unusable afterwards."""
        ...


class Database(KeyStore, UsageLedger, Counters, Protocol):
    """One backend holding keys, usage and counters (what ``open_database`` returns)."""


@runtime_checkable
class Degradable(Protocol):
    """A backend that can fall back to local state: whether it does now, and why."""

    @property
    def degraded(self) -> bool:
        """Whether calls are served by the local fallback."""
        ...

    @property
    def last_error(self) -> str | None:
        """Why the shared backend failed, while degraded."""
        ...
