"""The persistent response cache: a SQLite file of its own (answers survive a restart).

Every call runs on one dedicated thread, as the SQLite store's do, so the event loop never waits on
disk. Entries expire by wall-clock time; the least recently used go first when a bound is passed.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from llmgate.state.cache.vectors import VectorTable, as_unit, search
from llmgate.state.ports import CacheKey, CacheStats
from llmgate.state.sqlite import BUSY_TIMEOUT_S, in_thread, sqlite_path

T = TypeVar("T")
SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_entries (
    namespace TEXT NOT NULL,
    grp TEXT NOT NULL,
    digest TEXT NOT NULL,
    value BLOB NOT NULL,
    size INTEGER NOT NULL,
    expires REAL NOT NULL,
    used REAL NOT NULL,
    PRIMARY KEY (namespace, grp, digest)
);
CREATE INDEX IF NOT EXISTS cache_entries_used ON cache_entries (used);
CREATE INDEX IF NOT EXISTS cache_entries_expires ON cache_entries (expires);
CREATE INDEX IF NOT EXISTS cache_entries_grp ON cache_entries (grp);
"""
WHERE_KEY = "namespace = ? AND grp = ? AND digest = ?"


class SqliteCache:
    """``ResponseCache`` in a SQLite file. Open with ``connect``."""

    name = "sqlite"
    in_process = False  # its calls wait for the writer thread and the disk

    def __init__(
        self,
        db: sqlite3.Connection,
        thread: ThreadPoolExecutor,
        *,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float],
    ) -> None:
        self._db = db
        self._thread = thread
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._closed = False
        self._tally = _Tally(*db.execute("SELECT COUNT(*), TOTAL(size) FROM cache_entries").fetchone())
        """Entries and bytes held, kept by the cache's thread (no table scan per write)."""

    @classmethod
    async def connect(
        cls, url_or_path: str, *, max_entries: int, max_bytes: int, clock: Callable[[], float] = time.time
    ) -> SqliteCache:
        """Open (creating the file and table if needed) a ``sqlite:///...`` URL or a path."""
        path = sqlite_path(url_or_path)
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmgate-cache")
        try:
            db = await in_thread(thread, lambda: _open(path))
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return await in_thread(
            thread, lambda: cls(db, thread, max_entries=max_entries, max_bytes=max_bytes, clock=clock)
        )

    async def get(self, key: CacheKey) -> bytes | None:
        """The value (its use recorded, for LRU), or ``None`` when missing or expired."""
        now = self._clock()

        def job(db: sqlite3.Connection) -> bytes | None:
            row = db.execute(
                f"SELECT value, expires FROM cache_entries WHERE {WHERE_KEY}", _args(key)
            ).fetchone()
            if row is None:
                return None
            if row[1] <= now:
                self._tally.delete(db, key)
                return None
            db.execute(f"UPDATE cache_entries SET used = ? WHERE {WHERE_KEY}", (now, *_args(key)))
            return bytes(row[0])

        return await self._run(job)

    async def put(self, key: CacheKey, value: bytes, *, ttl: float) -> None:
        """Store, then drop expired entries and the least recently used until within bounds."""
        if len(value) > self.max_bytes:
            return
        now = self._clock()

        def job(db: sqlite3.Connection) -> None:
            tally = self._tally
            tally.delete(db, key)
            db.execute(
                "INSERT INTO cache_entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*_args(key), value, len(value), now + ttl, now),
            )
            tally.count += 1
            tally.size += len(value)
            tally.evict(db, now, self.max_entries, self.max_bytes)

        await self._run(job)

    async def clear(self, *, namespace: str | None = None, group: str | None = None) -> int:
        """Remove the entries of a namespace and/or group (all when neither is given)."""
        clauses, args = [], []
        for column, value in (("namespace", namespace), ("grp", group)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""

        def job(db: sqlite3.Connection) -> int:
            removed = db.execute(f"DELETE FROM cache_entries{where}", args).rowcount
            self._tally.recount(db)
            return int(removed)

        return await self._run(job)

    async def stats(self) -> CacheStats:
        """Entries and bytes held."""
        return await self._run(lambda db: CacheStats(self._tally.count, int(self._tally.size)))

    async def close(self) -> None:
        """Close the file and stop the thread (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            await in_thread(self._thread, self._db.close)
        finally:
            self._thread.shutdown(wait=False)

    async def _run(self, job: Callable[[sqlite3.Connection], T]) -> T:
        return await in_thread(self._thread, lambda: job(self._db))


def _args(key: CacheKey) -> tuple[str, str, str]:
    return key.namespace, key.group, key.digest


class _Tally:
    """Entries and bytes in the table; only ever touched on the cache's thread."""

    def __init__(self, count: int, size: float) -> None:
        self.count = int(count)
        self.size = float(size)

    def delete(self, db: sqlite3.Connection, key: CacheKey) -> None:
        row = db.execute(f"DELETE FROM cache_entries WHERE {WHERE_KEY} RETURNING size", _args(key)).fetchone()
        if row is not None:
            self.count -= 1
            self.size -= row[0]

    def recount(self, db: sqlite3.Connection) -> None:
        self.count, self.size = db.execute("SELECT COUNT(*), TOTAL(size) FROM cache_entries").fetchone()

    def evict(self, db: sqlite3.Connection, now: float, max_entries: int, max_bytes: int) -> None:
        """Drop the expired entries, then the least recently used, until both bounds hold."""
        if self.count <= max_entries and self.size <= max_bytes:
            return
        for (size,) in db.execute(
            "DELETE FROM cache_entries WHERE expires <= ? RETURNING size", (now,)
        ).fetchall():
            self.count -= 1
            self.size -= size
        while self.count > max_entries or self.size > max_bytes:
            excess = max(1, self.count - max_entries)
            removed = db.execute(
                "DELETE FROM cache_entries WHERE rowid IN "
                "(SELECT rowid FROM cache_entries ORDER BY used LIMIT ?) RETURNING size",
                (excess,),
            ).fetchall()
            if not removed:
                return
            self.count -= len(removed)
            self.size -= sum(size for (size,) in removed)


def _open(path: str, schema: str = SCHEMA) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
    except BaseException:
        db.close()
        raise
    return db


VECTOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_vectors (
    namespace TEXT NOT NULL,
    grp TEXT NOT NULL,
    params TEXT NOT NULL,
    digest TEXT NOT NULL,
    vector BLOB NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (namespace, grp, params, digest)
);
"""
SYNC_INTERVAL = 1.0  # seconds between looks for vectors other processes added to the file


class SqliteVectors:
    """``VectorIndex`` kept in the cache's SQLite file and searched in memory (numpy); vectors other
    processes add to the file are picked up within ``SYNC_INTERVAL``. Open with ``connect``."""

    name = "sqlite"

    def __init__(self, db: sqlite3.Connection, thread: ThreadPoolExecutor, table: VectorTable) -> None:
        self._db = db
        self._thread = thread
        self.table = table
        self._seen = 0  # the highest rowid read
        self._synced = 0.0
        self._closed = False

    @classmethod
    async def connect(
        cls, url_or_path: str, *, max_entries: int, clock: Callable[[], float] = time.time
    ) -> SqliteVectors:
        """Open the file (creating the table) and load its live vectors."""
        path = sqlite_path(url_or_path)
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmgate-vectors")
        try:
            db = await in_thread(thread, lambda: _open(path, VECTOR_SCHEMA))
        except BaseException:
            thread.shutdown(wait=False)
            raise
        vectors = cls(db, thread, VectorTable(max_entries=max_entries, clock=clock))
        await vectors._pull(clock())
        return vectors

    async def add(self, bucket: CacheKey, digest: str, vector: Sequence[float], *, ttl: float) -> None:
        """Index a vector, in memory and in the file."""
        expires = self.table_clock() + ttl
        self.table.add(bucket, digest, vector, expires)
        blob = as_unit(vector).tobytes()
        args = (bucket.namespace, bucket.group, bucket.digest, digest, blob, expires)
        await in_thread(
            self._thread,
            lambda: self._db.execute("INSERT OR REPLACE INTO cache_vectors VALUES (?, ?, ?, ?, ?, ?)", args),
        )

    async def nearest(self, bucket: CacheKey, vector: Sequence[float]) -> tuple[str, float] | None:
        """The most similar live entry (after picking up what other processes added)."""
        now = self.table_clock()
        if now - self._synced >= SYNC_INTERVAL:
            await self._pull(now)
        return await search(self.table, bucket, vector)

    async def remove(self, bucket: CacheKey, digest: str) -> None:
        """Forget one entry."""
        self.table.remove(bucket, digest)
        args = (bucket.namespace, bucket.group, bucket.digest, digest)
        await in_thread(
            self._thread,
            lambda: self._db.execute(
                "DELETE FROM cache_vectors WHERE namespace = ? AND grp = ? AND params = ? AND digest = ?",
                args,
            ),
        )

    async def clear(self, *, namespace: str | None = None, group: str | None = None) -> int:
        """Forget the entries of a namespace and/or group (all when neither is given)."""
        removed = self.table.clear(namespace=namespace, group=group)
        clauses, args = [], []
        for column, value in (("namespace", namespace), ("grp", group)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        await in_thread(self._thread, lambda: self._db.execute(f"DELETE FROM cache_vectors{where}", args))
        return removed

    async def count(self) -> int:
        """Entries held."""
        return len(self.table)

    async def close(self) -> None:
        """Close the file and stop the thread (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            await in_thread(self._thread, self._db.close)
        finally:
            self._thread.shutdown(wait=False)

    def table_clock(self) -> float:
        """Wall-clock seconds, as the table counts them."""
        return self.table.clock()

    async def _pull(self, now: float) -> None:
        self._synced = now
        seen = self._seen

        def job() -> list[tuple[int, str, str, str, str, bytes, float]]:
            return self._db.execute(
                "SELECT rowid, namespace, grp, params, digest, vector, expires FROM cache_vectors "
                "WHERE rowid > ? AND expires > ? ORDER BY rowid",
                (seen, now),
            ).fetchall()

        for rowid, namespace, group, params, digest, blob, expires in await in_thread(self._thread, job):
            self.table.add(
                CacheKey(namespace, group, params), digest, np.frombuffer(blob, np.float32), expires
            )
            self._seen = max(self._seen, rowid)
