"""SQLite backend: keys, usage and counters in one file, the embedded default.

stdlib ``sqlite3`` behind one dedicated thread: every call runs there, so the event loop never blocks on
disk and the connection is only ever used by the thread that opened it. Writes run in ``BEGIN IMMEDIATE``
transactions, which also keeps counters exact when several processes share the file (WAL mode).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from llmgate.state.buckets import Bucket, Take, added, live, plan_take_many
from llmgate.state.ports import (
    GroupBy,
    KeyExists,
    StateUnavailable,
    Taken,
    UsageRecord,
    UsageRow,
    VirtualKey,
)
from llmgate.state.rollup import migrate, roll_up, summarise
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

T = TypeVar("T")

URL_PREFIX = "sqlite:///"
BUSY_TIMEOUT_S = 5.0
ROWS_PER_INSERT = 999 // len(USAGE_COLUMNS)  # parameters per statement: the oldest SQLite takes 999
PURGE_INTERVAL_S = 60.0
# Primary result codes that mean "cannot reach the data" rather than "bad SQL": https://sqlite.org/rescode.html
UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
    }
)

SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS virtual_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    key_prefix TEXT NOT NULL,
    models TEXT NOT NULL,
    rpm INTEGER,
    tpm INTEGER,
    max_parallel INTEGER,
    budget_usd REAL,
    budget_period TEXT NOT NULL,
    expires_at REAL,
    metadata TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS usage_records (
    time REAL NOT NULL,
    request_id TEXT NOT NULL,
    key_id TEXT,
    model_group TEXT NOT NULL,
    provider TEXT,
    deployment TEXT,
    upstream_model TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost_usd REAL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    status INTEGER NOT NULL,
    error_type TEXT,
    cache TEXT,
    attempts INTEGER NOT NULL,
    stream INTEGER NOT NULL,
    tried TEXT,
    saved_usd REAL,
    upstream_ms REAL,
    fallback_group TEXT,
    batch_id TEXT
);
CREATE INDEX IF NOT EXISTS usage_records_time ON usage_records (time);
CREATE INDEX IF NOT EXISTS usage_records_key_time ON usage_records (key_id, time);
CREATE TABLE IF NOT EXISTS counters (bucket TEXT PRIMARY KEY, value REAL NOT NULL, expires_at REAL);
CREATE INDEX IF NOT EXISTS counters_expires_at ON counters (expires_at);
CREATE TABLE IF NOT EXISTS turns (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
COMMIT;
"""

ADDED_USAGE_COLUMNS = (
    ("tried", "TEXT"),
    ("saved_usd", "REAL"),
    ("upstream_ms", "REAL"),
    ("fallback_group", "TEXT"),
    ("batch_id", "TEXT"),
)
"""Usage columns added after the first release: created in old databases when they are opened."""

SELECT_KEYS = f"SELECT {', '.join(KEY_COLUMNS)} FROM virtual_keys"
INSERT_KEY = (
    f"INSERT INTO virtual_keys ({', '.join(KEY_COLUMNS)}) VALUES ({', '.join('?' * len(KEY_COLUMNS))})"
)
UPDATE_KEY = (
    f"UPDATE virtual_keys SET {', '.join(f'{column} = ?' for column in KEY_COLUMNS[1:])} WHERE id = ?"
)
SELECT_USAGE = f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage_records"
UPSERT_BUCKET = (
    "INSERT INTO counters (bucket, value, expires_at) VALUES (?, ?, ?) "
    "ON CONFLICT (bucket) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
)
NEXT_TURN = (
    "INSERT INTO turns (name, value) VALUES (?, 0) "
    "ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value"
)


def sqlite_path(url_or_path: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``sqlite:///:memory:`` or a path -> a path."""
    if url_or_path.startswith(URL_PREFIX):
        path = url_or_path.removeprefix(URL_PREFIX)
    elif url_or_path.startswith("sqlite:"):
        raise ValueError(
            "a SQLite URL has three slashes before the path: sqlite:///relative/path.db, "
            "sqlite:////absolute/path.db or sqlite:///:memory:"
        )
    else:
        path = url_or_path
    if not path:
        raise ValueError(
            "the SQLite URL names no file (use sqlite:///:memory: for a private in-memory database)"
        )
    return path


class SqliteStore:
    """``KeyStore``, ``UsageLedger`` and ``Counters`` in one SQLite database. Open with ``connect``."""

    def __init__(
        self, db: sqlite3.Connection, thread: ThreadPoolExecutor, *, clock: Callable[[], float]
    ) -> None:
        self._db = db
        self._thread = thread
        self._clock = clock
        self._purged_at = clock()
        self._closed = False

    @classmethod
    async def connect(cls, url_or_path: str, *, clock: Callable[[], float] = time.time) -> SqliteStore:
        """Open (creating file and schema if needed) a ``sqlite:///...`` URL or a path; ``:memory:`` works.

        ``clock`` (unix seconds) drives counter expiry and is injectable for tests.
        """
        path = sqlite_path(url_or_path)
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmgate-sqlite")
        try:
            db = await in_thread(thread, lambda: _open(path))
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(db, thread, clock=clock)

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        if self._closed:
            return
        self._closed = True
        try:
            await in_thread(self._thread, self._db.close)
        finally:
            self._thread.shutdown(wait=False)

    async def _run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        return await in_thread(self._thread, lambda: job(self._db))

    # KeyStore

    async def create(self, key: VirtualKey) -> None:
        """Store a new key; ``KeyExists`` when its id or hash is taken."""

        def job(db: sqlite3.Connection) -> None:
            with _unique(key), immediate(db):
                db.execute(INSERT_KEY, key_row(key))

        await self._run(job)

    async def get(self, key_id: str) -> VirtualKey | None:
        """The key with this id, or ``None``."""
        return await self._run(lambda db: _one_key(db, "id", key_id))

    async def find(self, key_hash: str) -> VirtualKey | None:
        """The key with this hash, or ``None``."""
        return await self._run(lambda db: _one_key(db, "key_hash", key_hash))

    async def list(self) -> builtins.list[VirtualKey]:
        """Every key, oldest first."""
        rows = await self._run(lambda db: db.execute(f"{SELECT_KEYS} ORDER BY created_at, rowid").fetchall())
        return [key_from_row(row) for row in rows]

    async def replace(self, key: VirtualKey) -> bool:
        """Overwrite the key with the same id; ``False`` if unknown."""

        def job(db: sqlite3.Connection) -> bool:
            with _unique(key), immediate(db):
                row = key_row(key)
                return db.execute(UPDATE_KEY, (*row[1:], row[0])).rowcount == 1

        return await self._run(job)

    # UsageLedger

    async def write(self, records: Sequence[UsageRecord]) -> None:
        """Store one batch in one transaction."""
        batch = list(records)

        def job(db: sqlite3.Connection) -> None:
            with immediate(db):
                _insert_usage(db, batch)
                roll_up(db)  # the hourly totals summaries read, in the records' own transaction

        if batch:
            await self._run(job)

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
        where, params = between(since, until, mark=lambda _: "?", errors_only=errors_only)
        order = "DESC" if newest_first else ""
        sql = f"{SELECT_USAGE} {where} ORDER BY time {order}, rowid {order} LIMIT ?"
        rows = await self._run(
            lambda db: db.execute(sql, (*params, -1 if limit is None else limit)).fetchall()
        )
        return [usage_from_row(row) for row in rows]

    async def count(self) -> int:
        """How many records are stored."""
        row = await self._run(lambda db: db.execute("SELECT COUNT(*) FROM usage_records").fetchone())
        return int(row[0])

    async def summary(
        self, *, since: float | None, until: float | None, group_by: GroupBy, key_id: str | None = None
    ) -> builtins.list[UsageRow]:
        """Totals per group (of one key's records, when given), ordered by group: from the hourly
        rollup, and the records of the window's partial hours (``state.rollup``)."""
        rows = await self._run(
            lambda db: summarise(db, since=since, until=until, group_by=group_by, key_id=key_id)
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
        where, params = between(since, until, mark=lambda _: "?", key_id=key_id)
        group = group_sql(group_by, whole=lambda expression: f"CAST({expression} AS INTEGER)")
        slot = f"CAST(time / {float(step)!r} AS INTEGER)"
        sql = f"SELECT {slot}, {group}, {totals_sql()} FROM usage_records {where} GROUP BY 1, 2"
        return series_of(await self._run(lambda db: db.execute(sql, params).fetchall()), step, group_by)

    async def spend(self, *, key_id: str, since: float) -> float:
        """Sum of the known costs of a key's records since a time."""
        sql = "SELECT COALESCE(SUM(cost_usd), 0) FROM usage_records WHERE key_id = ? AND time >= ?"
        row = await self._run(lambda db: db.execute(sql, (key_id, since)).fetchone())
        return float(row[0])

    # Counters

    async def take(self, bucket: str, amount: float, *, limit: float, ttl: float | None) -> Taken:
        """Add ``amount`` only if value + amount <= limit."""
        return await self.take_many([(bucket, amount, limit, ttl)])

    async def take_many(self, takes: Sequence[Take]) -> Taken:
        """All-or-nothing take over several buckets, in one transaction."""
        if not takes:
            return Taken(True, 0.0)

        def job(db: sqlite3.Connection) -> Taken:
            now = self._clock()
            with immediate(db):
                stored = _read_buckets(db, [name for name, _, _, _ in takes], now)
                taken, writes = plan_take_many(takes, stored, now)
                self._write_buckets(db, writes, now)
            return taken

        return await self._run(job)

    async def adjust(self, bucket: str, delta: float, *, ttl: float | None) -> float:
        """Add delta unconditionally, flooring at 0."""

        def job(db: sqlite3.Connection) -> float:
            now = self._clock()
            with immediate(db):
                after = added(_read_buckets(db, [bucket], now)[bucket], delta, ttl, now)
                self._write_buckets(db, {bucket: after}, now)
            return after.value

        return await self._run(job)

    async def value(self, bucket: str) -> float:
        """The current value (0 when missing or expired)."""
        buckets = await self._run(lambda db: _read_buckets(db, [bucket], self._clock()))
        return buckets[bucket].value

    async def next_turn(self, name: str) -> int:
        """0, 1, 2, ... per name, shared by every process using the file."""

        def job(db: sqlite3.Connection) -> int:
            with immediate(db):
                return int(db.execute(NEXT_TURN, (name,)).fetchone()[0])

        return await self._run(job)

    def _write_buckets(self, db: sqlite3.Connection, writes: dict[str, Bucket], now: float) -> None:
        db.executemany(
            UPSERT_BUCKET, [(name, bucket.value, bucket.expires_at) for name, bucket in writes.items()]
        )
        if writes and now - self._purged_at >= PURGE_INTERVAL_S:
            # Old windows' buckets are never read again: drop them now and then, not on every write.
            self._purged_at = now
            db.execute("DELETE FROM counters WHERE expires_at <= ?", (now,))


class SqliteThread:
    """One SQLite connection on one thread of its own: every statement runs there (the event loop never
    waits on disk, and the connection is only used by the thread that opened it)."""

    def __init__(self, db: sqlite3.Connection, thread: ThreadPoolExecutor) -> None:
        self.db = db
        self._thread = thread
        self._closed = False

    @classmethod
    async def open(cls, opener: Callable[[], sqlite3.Connection], *, name: str) -> SqliteThread:
        """Start a thread and open the connection on it with ``opener``."""
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        try:
            db = await in_thread(thread, opener)
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(db, thread)

    async def run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` with the connection, on its thread."""
        return await in_thread(self._thread, lambda: job(self.db))

    async def close(self) -> None:
        """Close the connection and stop the thread (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            await in_thread(self._thread, self.db.close)
        finally:
            self._thread.shutdown(wait=False)


async def in_thread(thread: ThreadPoolExecutor, job: Callable[[], T]) -> T:
    """Run ``job`` on the store's thread; connectivity failures become ``StateUnavailable``."""
    try:
        return await asyncio.get_running_loop().run_in_executor(thread, job)
    except sqlite3.OperationalError as error:
        if error.sqlite_errorcode & 0xFF in UNAVAILABLE_CODES:
            raise StateUnavailable(f"SQLite: {error}") from error
        raise
    except OSError as error:
        raise StateUnavailable(f"SQLite: {error}") from error


def _open(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        _add_columns(db)
        migrate(db, lambda: immediate(db))
    except BaseException:
        db.close()
        raise
    return db


def _add_columns(db: sqlite3.Connection) -> None:
    """Bring a database made by an earlier version up to date (SQLite has no ADD COLUMN IF NOT EXISTS)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(usage_records)")}
    for name, kind in ADDED_USAGE_COLUMNS:
        if name not in present:
            db.execute(f"ALTER TABLE usage_records ADD COLUMN {name} {kind}")


def _insert_usage(db: sqlite3.Connection, records: Sequence[UsageRecord]) -> None:
    """Insert records with a few multi-row statements rather than one statement per row.

    Every statement step lets go of the GIL and takes it back; on a busy event loop each of those
    hand-overs costs more than the insert itself, so rows go ``ROWS_PER_INSERT`` at a time.
    """
    for start in range(0, len(records), ROWS_PER_INSERT):
        part = records[start : start + ROWS_PER_INSERT]
        db.execute(_insert_rows(len(part)), [value for record in part for value in usage_row(record)])


@functools.cache
def _insert_rows(count: int) -> str:
    row = f"({', '.join('?' * len(USAGE_COLUMNS))})"
    return f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) VALUES {', '.join([row] * count)}"


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taking the write lock up front so read-modify-write cannot interleave."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@contextmanager
def _unique(key: VirtualKey) -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as error:
        raise KeyExists(f"a key with id {key.id!r} or the same hash already exists") from error


def _one_key(db: sqlite3.Connection, column: str, value: str) -> VirtualKey | None:
    row = db.execute(f"{SELECT_KEYS} WHERE {column} = ?", (value,)).fetchone()
    return None if row is None else key_from_row(row)


def _read_buckets(db: sqlite3.Connection, names: Sequence[str], now: float) -> dict[str, Bucket]:
    """The live value of each named bucket (empty when missing or expired)."""
    marks = ", ".join("?" * len(names))
    rows = db.execute(f"SELECT bucket, value, expires_at FROM counters WHERE bucket IN ({marks})", names)
    stored = {name: Bucket(value, expires_at) for name, value, expires_at in rows}
    return {name: live(stored.get(name), now) for name in names}
