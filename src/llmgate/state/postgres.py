"""PostgreSQL backend (asyncpg): keys, usage and counters shared by every replica.

Tables live in one schema (``llmgate`` unless told otherwise), created on connect if missing. ``take`` is
one conditional upsert; ``take_many`` locks its rows in one sorted order inside one transaction, so
concurrent callers naming the same buckets in any order cannot deadlock.
"""

from __future__ import annotations

import asyncio
import builtins
import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import asyncpg

from llmgate.state.buckets import Bucket, Take, live, plan_take_many
from llmgate.state.ports import GroupBy, KeyExists, StateUnavailable, Taken, UsageRecord, UsageRow, VirtualKey
from llmgate.state.rows import (
    KEY_COLUMNS,
    USAGE_COLUMNS,
    between,
    key_from_row,
    key_row,
    usage_from_row,
    usage_row,
)
from llmgate.state.summary import group_sql, rows_of, series_of, totals_sql

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
PURGE_INTERVAL_S = 60.0
# Errors meaning the server cannot be reached or cannot serve right now (not a bad query). TimeoutError
# (connect or command timeout) is an OSError.
UNREACHABLE = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)

TABLES = """
CREATE TABLE IF NOT EXISTS virtual_keys (
    id text PRIMARY KEY,
    name text NOT NULL,
    key_hash text NOT NULL UNIQUE,
    key_prefix text NOT NULL,
    models jsonb NOT NULL,
    rpm bigint,
    tpm bigint,
    max_parallel bigint,
    budget_usd double precision,
    budget_period text NOT NULL,
    expires_at double precision,
    metadata jsonb NOT NULL,
    created_at double precision NOT NULL,
    revoked boolean NOT NULL
);
CREATE TABLE IF NOT EXISTS usage_records (
    id bigserial PRIMARY KEY,
    time double precision NOT NULL,
    request_id text NOT NULL,
    key_id text,
    model_group text NOT NULL,
    provider text,
    deployment text,
    upstream_model text,
    prompt_tokens bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    cached_tokens bigint NOT NULL,
    reasoning_tokens bigint NOT NULL,
    cost_usd double precision,
    latency_ms double precision NOT NULL,
    ttft_ms double precision,
    status integer NOT NULL,
    error_type text,
    cache text,
    attempts integer NOT NULL,
    stream boolean NOT NULL,
    tried text,
    saved_usd double precision,
    upstream_ms double precision,
    fallback_group text
);
ALTER TABLE usage_records ADD COLUMN IF NOT EXISTS tried text;
ALTER TABLE usage_records ADD COLUMN IF NOT EXISTS saved_usd double precision;
ALTER TABLE usage_records ADD COLUMN IF NOT EXISTS upstream_ms double precision;
ALTER TABLE usage_records ADD COLUMN IF NOT EXISTS fallback_group text;
ALTER TABLE usage_records ADD COLUMN IF NOT EXISTS batch_id text;
CREATE INDEX IF NOT EXISTS usage_records_time ON usage_records (time);
CREATE INDEX IF NOT EXISTS usage_records_key_time ON usage_records (key_id, time);
CREATE TABLE IF NOT EXISTS counters (
    bucket text PRIMARY KEY,
    value double precision NOT NULL,
    expires_at double precision
);
CREATE INDEX IF NOT EXISTS counters_expires_at ON counters (expires_at);
CREATE TABLE IF NOT EXISTS turns (name text PRIMARY KEY, value bigint NOT NULL);
"""


def _marks(count: int, start: int = 1) -> str:
    return ", ".join(f"${number}" for number in range(start, start + count))


SELECT_KEYS = f"SELECT {', '.join(KEY_COLUMNS)} FROM virtual_keys"
INSERT_KEY = f"INSERT INTO virtual_keys ({', '.join(KEY_COLUMNS)}) VALUES ({_marks(len(KEY_COLUMNS))})"
UPDATE_KEY = (
    f"UPDATE virtual_keys SET ({', '.join(KEY_COLUMNS[1:])}) = ({_marks(len(KEY_COLUMNS) - 1, start=2)}) "
    "WHERE id = $1"
)
INSERT_USAGE = f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) VALUES ({_marks(len(USAGE_COLUMNS))})"
SELECT_USAGE = f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage_records"

# Counter statements: $1 bucket, $2 amount, $3 now, $4 new expiry (NULL = keep), $5 limit.
LIVE_VALUE = "CASE WHEN c.expires_at <= $3 THEN 0 ELSE c.value END"
ADD_ON_CONFLICT = f"""ON CONFLICT (bucket) DO UPDATE SET
    value = GREATEST({LIVE_VALUE} + $2, 0),
    expires_at = CASE WHEN $4::float8 IS NOT NULL THEN $4::float8
                      WHEN c.expires_at <= $3 THEN NULL ELSE c.expires_at END"""
TAKE = f"""INSERT INTO counters AS c (bucket, value, expires_at)
SELECT $1::text, GREATEST($2::float8, 0), $4::float8 WHERE $2::float8 <= $5::float8
{ADD_ON_CONFLICT}
WHERE {LIVE_VALUE} + $2 <= $5
RETURNING value"""
ADJUST = f"""INSERT INTO counters AS c (bucket, value, expires_at)
VALUES ($1::text, GREATEST($2::float8, 0), $4::float8)
{ADD_ON_CONFLICT}
RETURNING value"""
VALUE = "SELECT CASE WHEN expires_at <= $2 THEN 0 ELSE value END FROM counters WHERE bucket = $1"
# take_many: make sure every row exists (placeholders already expired, so harmless if left), then lock
# them in code-point order, the order the names are sorted in by Python.
ENSURE_BUCKETS = (
    "INSERT INTO counters (bucket, value, expires_at) SELECT name, 0, $2 FROM unnest($1::text[]) AS name "
    "ON CONFLICT DO NOTHING"
)
LOCK_BUCKETS = (
    "SELECT bucket, value, expires_at FROM counters WHERE bucket = ANY($1::text[]) "
    'ORDER BY bucket COLLATE "C" FOR UPDATE'
)
WRITE_BUCKET = "UPDATE counters SET value = $2, expires_at = $3 WHERE bucket = $1"
NEXT_TURN = (
    "INSERT INTO turns AS t (name, value) VALUES ($1, 0) "
    "ON CONFLICT (name) DO UPDATE SET value = t.value + 1 RETURNING value"
)


class PostgresStore:
    """``KeyStore``, ``UsageLedger`` and ``Counters`` in PostgreSQL. Open with ``connect``."""

    def __init__(
        self, pool: asyncpg.Pool[asyncpg.Record], *, clock: Callable[[], float], time_limit: float
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._time_limit = time_limit
        self._purged_at = clock()

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        schema: str = "llmgate",
        clock: Callable[[], float] = time.time,
        max_connections: int = 10,
        time_limit: float = 5.0,
    ) -> PostgresStore:
        """Connect a pool to ``dsn`` and create the schema and tables if missing.

        ``schema`` isolates the tables (lower-case letters, digits, underscores); ``clock`` (unix seconds)
        drives counter expiry; ``time_limit`` (seconds) bounds connecting and each statement.
        """
        pool = await open_pool(dsn, schema=schema, max_connections=max_connections, time_limit=time_limit)
        store = cls(pool, clock=clock, time_limit=time_limit)
        try:
            await store._create_tables(schema)
        except BaseException:
            pool.terminate()
            raise
        return store

    async def _create_tables(self, schema: str) -> None:
        await create_tables(self._pool, schema, TABLES)

    async def close(self) -> None:
        """Close the pool (forcibly when the server does not answer in time)."""
        await close_pool(self._pool, self._time_limit)

    # KeyStore

    async def create(self, key: VirtualKey) -> None:
        """Store a new key; ``KeyExists`` when its id or hash is taken."""
        with reachable(), _unique(key):
            await self._pool.execute(INSERT_KEY, *key_row(key))

    async def get(self, key_id: str) -> VirtualKey | None:
        """The key with this id, or ``None``."""
        with reachable():
            row = await self._pool.fetchrow(f"{SELECT_KEYS} WHERE id = $1", key_id)
        return None if row is None else key_from_row(row)

    async def find(self, key_hash: str) -> VirtualKey | None:
        """The key with this hash, or ``None``."""
        with reachable():
            row = await self._pool.fetchrow(f"{SELECT_KEYS} WHERE key_hash = $1", key_hash)
        return None if row is None else key_from_row(row)

    async def list(self) -> builtins.list[VirtualKey]:
        """Every key, oldest first."""
        with reachable():
            rows = await self._pool.fetch(f"{SELECT_KEYS} ORDER BY created_at, id")
        return [key_from_row(row) for row in rows]

    async def replace(self, key: VirtualKey) -> bool:
        """Overwrite the key with the same id; ``False`` if unknown."""
        with reachable(), _unique(key):
            status = await self._pool.execute(UPDATE_KEY, *key_row(key))
        return status == "UPDATE 1"

    # UsageLedger

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Store one batch in one transaction."""
        if not records:
            return
        with reachable():
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.executemany(INSERT_USAGE, [usage_row(record) for record in records])

    async def records(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        errors_only: bool = False,
        newest_first: bool = False,
    ) -> builtins.list[UsageRecord]:
        """Records with since <= time < until (failed ones only, when asked), oldest or newest first."""
        where, params = between(since, until, mark=lambda number: f"${number}", errors_only=errors_only)
        order = "DESC" if newest_first else ""
        sql = f"{SELECT_USAGE} {where} ORDER BY time {order}, id {order} LIMIT ${len(params) + 1}"
        with reachable():
            rows = await self._pool.fetch(sql, *params, limit)
        return [usage_from_row(row) for row in rows]

    async def count(self) -> int:
        """How many records are stored."""
        with reachable():
            return int(await self._pool.fetchval("SELECT COUNT(*) FROM usage_records"))

    async def summary(
        self, *, since: float | None, until: float | None, group_by: GroupBy, key_id: str | None = None
    ) -> builtins.list[UsageRow]:
        """Totals per group (of one key's records, when given), ordered by group."""
        where, params = between(since, until, mark=lambda number: f"${number}", key_id=key_id)
        group = group_sql(group_by, whole=lambda expression: f"floor({expression})::bigint")
        with reachable():
            rows = await self._pool.fetch(
                f"SELECT {group}, {totals_sql()} FROM usage_records {where} GROUP BY 1", *params
            )
        return rows_of(rows, group_by)

    async def series(
        self,
        *,
        since: float,
        until: float | None,
        step: float,
        group_by: GroupBy,
        key_id: str | None = None,
    ) -> builtins.list[tuple[float, UsageRow]]:
        """Totals per ``step``-second slot and group."""
        where, params = between(since, until, mark=lambda number: f"${number}", key_id=key_id)
        group = group_sql(group_by, whole=lambda expression: f"floor({expression})::bigint")
        slot = f"floor(time / {float(step)!r})::bigint"
        sql = f"SELECT {slot}, {group}, {totals_sql()} FROM usage_records {where} GROUP BY 1, 2"
        with reachable():
            rows = await self._pool.fetch(sql, *params)
        return series_of(rows, step, group_by)

    async def spend(self, *, key_id: str, since: float) -> float:
        """Sum of the known costs of a key's records since a time."""
        sql = "SELECT COALESCE(SUM(cost_usd), 0) FROM usage_records WHERE key_id = $1 AND time >= $2"
        with reachable():
            return float(await self._pool.fetchval(sql, key_id, since))

    # Counters

    async def take(self, bucket: str, amount: float, *, limit: float, ttl: float | None) -> Taken:
        """Add ``amount`` only if value + amount <= limit, in one statement."""
        now = self._clock()
        expires_at = None if ttl is None else now + ttl
        with reachable():
            value = await self._pool.fetchval(TAKE, bucket, amount, now, expires_at, limit)
        if value is None:
            return Taken(False, await self.value(bucket))
        await self._purge(now)
        return Taken(True, float(value))

    async def adjust(self, bucket: str, delta: float, *, ttl: float | None) -> float:
        """Add delta unconditionally, flooring at 0."""
        now = self._clock()
        expires_at = None if ttl is None else now + ttl
        with reachable():
            value = await self._pool.fetchval(ADJUST, bucket, delta, now, expires_at)
        await self._purge(now)
        return float(value)

    async def value(self, bucket: str) -> float:
        """The current value (0 when missing or expired)."""
        with reachable():
            value = await self._pool.fetchval(VALUE, bucket, self._clock())
        return 0.0 if value is None else float(value)

    async def take_many(self, takes: Sequence[Take]) -> Taken:
        """All-or-nothing take over several buckets, in one transaction with sorted row locks."""
        if not takes:
            return Taken(True, 0.0)
        now = self._clock()
        names = sorted({name for name, _, _, _ in takes})
        with reachable():
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute(ENSURE_BUCKETS, names, now)
                locked = await connection.fetch(LOCK_BUCKETS, names)
                stored = {name: live(Bucket(value, expires_at), now) for name, value, expires_at in locked}
                taken, writes = plan_take_many(takes, stored, now)
                if writes:
                    changes = [(name, bucket.value, bucket.expires_at) for name, bucket in writes.items()]
                    await connection.executemany(WRITE_BUCKET, changes)
        if taken.allowed:
            await self._purge(now)
        return taken

    async def next_turn(self, name: str) -> int:
        """0, 1, 2, ... per name, shared by every replica."""
        with reachable():
            return int(await self._pool.fetchval(NEXT_TURN, name))

    async def _purge(self, now: float) -> None:
        # Old windows' buckets are never read again: drop them now and then, not on every write.
        if now - self._purged_at < PURGE_INTERVAL_S:
            return
        self._purged_at = now
        with reachable():
            await self._pool.execute("DELETE FROM counters WHERE expires_at <= $1", now)


async def open_pool(
    dsn: str, *, schema: str, max_connections: int, time_limit: float
) -> asyncpg.Pool[asyncpg.Record]:
    """A pool whose connections work in ``schema`` (checked: lower-case letters, digits, underscores);
    ``time_limit`` bounds connecting and each statement."""
    if not SCHEMA_NAME.fullmatch(schema):
        raise ValueError(f"schema {schema!r}: use lower-case letters, digits and underscores")
    with reachable():
        return await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=max_connections,
            timeout=time_limit,
            command_timeout=time_limit,
            server_settings={"search_path": schema},
        )


async def create_tables(pool: asyncpg.Pool[asyncpg.Record], schema: str, tables: str) -> None:
    """Create the schema if missing and run ``tables`` (``CREATE ... IF NOT EXISTS`` statements) in it."""
    with reachable():
        async with pool.acquire() as connection, connection.transaction():
            # Replicas starting together would race on CREATE ... IF NOT EXISTS: take turns.
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"llmgate:{schema}")
            if not await connection.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
                await connection.execute(f'CREATE SCHEMA "{schema}"')
            await connection.execute(tables)


async def close_pool(pool: asyncpg.Pool[asyncpg.Record], time_limit: float) -> None:
    """Close a pool, forcibly when the server does not answer within ``time_limit`` seconds."""
    try:
        await asyncio.wait_for(pool.close(), time_limit)
    except TimeoutError:
        pool.terminate()


@contextmanager
def reachable() -> Iterator[None]:
    """Turn the driver's connectivity errors into ``StateUnavailable``."""
    try:
        yield
    except UNREACHABLE as error:
        raise StateUnavailable(f"PostgreSQL: {type(error).__name__}: {error}") from error


@contextmanager
def _unique(key: VirtualKey) -> Iterator[None]:
    try:
        yield
    except asyncpg.UniqueViolationError as error:
        raise KeyExists(f"a key with id {key.id!r} or the same hash already exists") from error
