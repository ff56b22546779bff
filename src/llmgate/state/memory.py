"""In-process backends: the embedded default, and the local fallback when a shared backend is down.

Nothing here awaits between reading and writing a value, so each call is atomic under asyncio.
"""

from __future__ import annotations

import builtins
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from llmgate.state.buckets import Bucket, Take, added, expired, live, plan_take, plan_take_many
from llmgate.state.ports import GroupBy, KeyExists, Taken, UsageRecord, UsageRow, VirtualKey
from llmgate.state.summary import Totals, group_of

SWEEP_STEP = 4
"""Buckets examined for expiry per write, on top of those the write touches (bounded, amortised purge)."""

MAX_RECORDS = 100_000


class MemoryCounters:
    """Counters in a dict; ``clock`` (seconds) drives expiry and is injectable for tests."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()
        self._turns: dict[str, int] = {}

    def __len__(self) -> int:
        """Buckets held, including expired ones the sweep has not reached yet."""
        return len(self._buckets)

    async def take(self, bucket: str, amount: float, *, limit: float, ttl: float | None) -> Taken:
        """Add ``amount`` only if value + amount <= limit."""
        now = self._clock()
        current = live(self._buckets.get(bucket), now)
        after = plan_take(current, amount, limit, ttl, now)
        if after is None:
            return Taken(False, current.value)
        self._store({bucket: after}, now)
        return Taken(True, after.value)

    async def adjust(self, bucket: str, delta: float, *, ttl: float | None) -> float:
        """Add delta unconditionally, flooring at 0."""
        now = self._clock()
        after = added(live(self._buckets.get(bucket), now), delta, ttl, now)
        self._store({bucket: after}, now)
        return after.value

    async def value(self, bucket: str) -> float:
        """The current value (0 when missing or expired)."""
        return live(self._buckets.get(bucket), self._clock()).value

    async def take_many(self, takes: Sequence[Take]) -> Taken:
        """All-or-nothing take over several buckets."""
        now = self._clock()
        stored = {name: live(self._buckets.get(name), now) for name, _, _, _ in takes}
        taken, writes = plan_take_many(takes, stored, now)
        if writes:
            self._store(writes, now)
        return taken

    async def next_turn(self, name: str) -> int:
        """0, 1, 2, ... per name."""
        turn = self._turns.get(name, -1) + 1
        self._turns[name] = turn
        return turn

    async def close(self) -> None:
        """Nothing to release."""

    def _store(self, writes: dict[str, Bucket], now: float) -> None:
        self._buckets.update(writes)
        # Sweep from the oldest end: drop expired buckets, move live ones to the back.
        for _ in range(min(len(self._buckets), SWEEP_STEP + len(writes))):
            name, bucket = self._buckets.popitem(last=False)
            if not expired(bucket, now):
                self._buckets[name] = bucket


class MemoryKeyStore:
    """Virtual keys in a dict, indexed by id and by hash."""

    def __init__(self) -> None:
        self._keys: dict[str, VirtualKey] = {}
        self._ids_by_hash: dict[str, str] = {}

    async def create(self, key: VirtualKey) -> None:
        """Store a new key; ``KeyExists`` when its id or hash is taken."""
        if key.id in self._keys or key.key_hash in self._ids_by_hash:
            raise KeyExists(f"a key with id {key.id!r} or the same hash already exists")
        self._put(key)

    async def get(self, key_id: str) -> VirtualKey | None:
        """The key with this id, or ``None``."""
        return self._keys.get(key_id)

    async def find(self, key_hash: str) -> VirtualKey | None:
        """The key with this hash, or ``None``."""
        key_id = self._ids_by_hash.get(key_hash)
        return None if key_id is None else self._keys[key_id]

    async def list(self) -> builtins.list[VirtualKey]:
        """Every key, oldest first."""
        return sorted(self._keys.values(), key=lambda key: key.created_at)

    async def replace(self, key: VirtualKey) -> bool:
        """Overwrite the key with the same id; ``False`` if unknown."""
        old = self._keys.get(key.id)
        if old is None:
            return False
        if key.key_hash != old.key_hash and key.key_hash in self._ids_by_hash:
            raise KeyExists(f"another key has the same hash as {key.id!r}")
        del self._ids_by_hash[old.key_hash]
        self._put(key)
        return True

    async def close(self) -> None:
        """Nothing to release."""

    def _put(self, key: VirtualKey) -> None:
        # A JSON round trip, as the SQL backends do: rejects what they would reject, and detaches the
        # stored metadata from the caller's dict.
        metadata = json.loads(json.dumps(dict(key.metadata)))
        self._keys[key.id] = replace(key, models=tuple(key.models), metadata=metadata)
        self._ids_by_hash[key.key_hash] = key.id


class MemoryLedger:
    """The newest ``max_records`` usage records in memory (older ones are dropped)."""

    def __init__(self, *, max_records: int = MAX_RECORDS) -> None:
        self._usage: deque[UsageRecord] = deque(maxlen=max_records)

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Append one batch."""
        self._usage.extend(records)

    async def records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        errors_only: bool = False,
        newest_first: bool = False,
    ) -> list[UsageRecord]:
        """Records with since <= time < until (failed ones only, when asked), oldest or newest first."""
        picked = (r for r in self._between(since, until) if not errors_only or r.status >= 400)
        chosen = sorted(picked, key=lambda record: record.time, reverse=newest_first)
        return chosen if limit is None else chosen[:limit]

    async def count(self) -> int:
        """How many records are held."""
        return len(self._usage)

    async def summary(
        self, *, since: float | None, until: float | None, group_by: GroupBy, key_id: str | None = None
    ) -> list[UsageRow]:
        """Totals per group (of one key's records, when given), ordered by group."""
        totals: dict[str, Totals] = {}
        for record in self._between(since, until):
            if key_id is None or record.key_id == key_id:
                totals.setdefault(group_of(record, group_by), Totals()).add(record)
        return [totals[group].row(group) for group in sorted(totals)]

    async def series(
        self,
        *,
        since: float,
        until: float | None,
        step: float,
        group_by: GroupBy,
        key_id: str | None = None,
    ) -> list[tuple[float, UsageRow]]:
        """Totals per ``step``-second slot and group."""
        totals: dict[tuple[int, str], Totals] = {}
        for record in self._between(since, until):
            if key_id is None or record.key_id == key_id:
                slot = (int(record.time // step), group_of(record, group_by))
                totals.setdefault(slot, Totals()).add(record)
        return [(slot * step, totals[(slot, group)].row(group)) for slot, group in sorted(totals)]

    async def spend(self, *, key_id: str, since: float) -> float:
        """Sum of the known costs of a key's records since a time."""
        return sum(
            record.cost_usd
            for record in self._usage
            if record.key_id == key_id and record.time >= since and record.cost_usd is not None
        )

    async def close(self) -> None:
        """Nothing to release."""

    def _between(self, since: float | None, until: float | None) -> Iterable[UsageRecord]:
        return (
            record
            for record in self._usage
            if (since is None or record.time >= since) and (until is None or record.time < until)
        )


class MemoryBreakerBoard:
    """Breaker trips in a dict."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    async def trip(self, deployment: str, until: float) -> None:
        """Open a deployment until a time, keeping the later end."""
        self._until[deployment] = max(until, self._until.get(deployment, until))

    async def tripped(self, now: float) -> dict[str, float]:
        """Deployments still open at ``now``; ended trips are forgotten."""
        self._until = {name: until for name, until in self._until.items() if until > now}
        return dict(self._until)

    async def close(self) -> None:
        """Nothing to release."""


class MemoryStore(MemoryKeyStore, MemoryLedger, MemoryCounters):
    """Keys, usage and counters in one in-process object (``open_database("memory")``)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_records: int = MAX_RECORDS
    ) -> None:
        MemoryKeyStore.__init__(self)
        MemoryLedger.__init__(self, max_records=max_records)
        MemoryCounters.__init__(self, clock=clock)
