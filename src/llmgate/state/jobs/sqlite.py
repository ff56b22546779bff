"""SQLite job store: files, jobs and results in the usage database's file (the embedded default).

A connection of its own on one dedicated thread, like the other SQLite stores, so the event loop never
waits on disk. A file's body is stored as chunk rows under an upload id; the file row naming that upload
is written last, in one transaction with the removal of any file it replaces, so a file is only ever seen
whole. Claims and records run in ``BEGIN IMMEDIATE`` transactions, which makes them atomic across
processes sharing the file too.
"""

from __future__ import annotations

import builtins
import functools
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

import msgspec

from llmgate.state.jobs.ports import ACTIVE, ADVANCED_FIELDS, BatchJob, ItemResult, JobStatus, StoredFile
from llmgate.state.jobs.rows import (
    FILE_COLUMNS,
    JOB_COLUMNS,
    ORPHAN_SECONDS,
    advanced_row,
    file_from_row,
    file_row,
    job_from_row,
    job_row,
    page_query,
    purge_orphans,
)
from llmgate.state.sqlite import BUSY_TIMEOUT_S, SqliteThread, immediate, sqlite_path

T = TypeVar("T")
SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS batch_files (
    id TEXT PRIMARY KEY,
    owner TEXT,
    purpose TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS batch_files_owner ON batch_files (owner, created_at);
CREATE TABLE IF NOT EXISTS batch_chunks (
    body TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    stored_at REAL NOT NULL,
    PRIMARY KEY (body, seq)
);
CREATE TABLE IF NOT EXISTS batch_jobs (
    id TEXT PRIMARY KEY,
    owner TEXT,
    endpoint TEXT NOT NULL,
    input_file_id TEXT NOT NULL,
    completion_window TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    metadata TEXT NOT NULL,
    total INTEGER NOT NULL,
    completed INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    output_file_id TEXT,
    error_file_id TEXT,
    errors TEXT NOT NULL,
    in_progress_at REAL,
    finalizing_at REAL,
    completed_at REAL,
    failed_at REAL,
    expired_at REAL,
    cancelling_at REAL,
    cancelled_at REAL,
    lease_holder TEXT,
    lease_until REAL
);
CREATE INDEX IF NOT EXISTS batch_jobs_owner ON batch_jobs (owner, created_at);
CREATE INDEX IF NOT EXISTS batch_jobs_status ON batch_jobs (status, created_at);
CREATE INDEX IF NOT EXISTS batch_jobs_input ON batch_jobs (input_file_id);
CREATE TABLE IF NOT EXISTS batch_items (
    job_id TEXT NOT NULL,
    line INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (job_id, line)
) WITHOUT ROWID;
COMMIT;
"""
SELECT_FILES = f"SELECT {', '.join(FILE_COLUMNS)} FROM batch_files"
SELECT_JOBS = f"SELECT {', '.join(JOB_COLUMNS)} FROM batch_jobs"
ACTIVE_SQL = ", ".join(f"'{status}'" for status in ACTIVE)
INSERT_ITEM = "INSERT OR IGNORE INTO batch_items (job_id, line, ok, text) VALUES (?, ?, ?, ?)"


class SqliteJobs:
    """``JobStore`` in a SQLite file. Open with ``connect``."""

    def __init__(self, connection: SqliteThread) -> None:
        self._connection = connection
        self._run = connection.run

    @classmethod
    async def connect(cls, url_or_path: str, *, clock: Callable[[], float] = time.time) -> SqliteJobs:
        """Open (creating the tables if needed) a ``sqlite:///...`` URL or a path; uploads that a dead
        process left unfinished are removed."""
        path = sqlite_path(url_or_path)
        orphaned_before = clock() - ORPHAN_SECONDS
        return cls(await SqliteThread.open(lambda: _open(path, orphaned_before), name="llmgate-jobs"))

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        await self._connection.close()

    # Files

    async def add_file(self, file: StoredFile, chunks: AsyncIterator[bytes]) -> StoredFile:
        """Chunk rows as the body arrives, then the file row (replacing a file of the same id)."""
        body, seq, size = os.urandom(12).hex(), 0, 0
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                row = (body, seq, bytes(chunk), time.time())
                await self._run(functools.partial(_insert_chunk, row=row))
                seq, size = seq + 1, size + len(chunk)
            stored = msgspec.structs.replace(file, bytes=size)
            await self._run(lambda db: _publish(db, stored, body))
        except BaseException:
            await self._run(lambda db: db.execute("DELETE FROM batch_chunks WHERE body = ?", (body,)))
            raise
        return stored

    async def file(self, file_id: str) -> StoredFile | None:
        """A file's metadata, or ``None``."""
        row = await self._run(lambda db: db.execute(f"{SELECT_FILES} WHERE id = ?", (file_id,)).fetchone())
        return None if row is None else file_from_row(row)

    async def read(self, file_id: str) -> AsyncIterator[bytes]:
        """The body, one chunk row per step."""
        found = await self._run(
            lambda db: db.execute("SELECT body FROM batch_files WHERE id = ?", (file_id,)).fetchone()
        )
        if found is None:
            return
        seq = -1
        while True:
            row = await self._run(functools.partial(_next_chunk, body=found[0], seq=seq))
            if row is None:
                return
            seq = row[0]
            yield bytes(row[1])

    async def files(
        self,
        *,
        owner: str | None,
        everyone: bool = False,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = 10_000,
    ) -> builtins.list[StoredFile]:
        """An owner's files (or all; of one purpose), newest first, older than ``after``."""
        sql, params = page_query(
            SELECT_FILES,
            "batch_files",
            owner=owner,
            everyone=everyone,
            purpose=purpose,
            after=after,
            limit=limit,
            mark=_question,
        )
        rows = await self._run(lambda db: db.execute(sql, params).fetchall())
        return [file_from_row(row) for row in rows]

    async def in_use(self, file_id: str) -> bool:
        """Whether an active job reads this file."""
        sql = f"SELECT 1 FROM batch_jobs WHERE input_file_id = ? AND status IN ({ACTIVE_SQL}) LIMIT 1"
        return await self._run(lambda db: db.execute(sql, (file_id,)).fetchone() is not None)

    async def delete_file(self, file_id: str) -> bool:
        """Remove a file and its body in one transaction."""

        def delete(db: sqlite3.Connection) -> bool:
            with immediate(db):
                return _remove_file(db, file_id)

        return await self._run(delete)

    # Jobs

    async def add_job(self, job: BatchJob) -> None:
        """Store a new job."""
        marks = ", ".join("?" * len(JOB_COLUMNS))
        await self._run(lambda db: db.execute(f"INSERT INTO batch_jobs VALUES ({marks})", job_row(job)))

    async def job(self, job_id: str) -> BatchJob | None:
        """A job, or ``None``."""
        return await self._run(lambda db: _one_job(db, job_id))

    async def jobs(
        self, *, owner: str | None, everyone: bool = False, after: str | None = None, limit: int = 20
    ) -> builtins.list[BatchJob]:
        """An owner's jobs (or all), newest first, older than ``after``."""
        sql, params = page_query(
            SELECT_JOBS,
            "batch_jobs",
            owner=owner,
            everyone=everyone,
            after=after,
            limit=limit,
            mark=_question,
        )
        rows = await self._run(lambda db: db.execute(sql, params).fetchall())
        return [job_from_row(row) for row in rows]

    async def claim(self, holder: str, *, now: float, until: float) -> BatchJob | None:
        """The oldest active job with a free or expired lease, leased to ``holder`` in one transaction."""

        def claim(db: sqlite3.Connection) -> BatchJob | None:
            with immediate(db):
                row = db.execute(
                    f"SELECT id FROM batch_jobs WHERE status IN ({ACTIVE_SQL}) "
                    "AND (lease_holder IS NULL OR lease_until <= ?) ORDER BY created_at, id LIMIT 1",
                    (now,),
                ).fetchone()
                if row is None:
                    return None
                db.execute(
                    "UPDATE batch_jobs SET lease_holder = ?, lease_until = ? WHERE id = ?",
                    (holder, until, row[0]),
                )
                return _one_job(db, row[0])

        return await self._run(claim)

    async def release(self, job_id: str, holder: str) -> None:
        """End the holder's lease."""
        await self._run(
            lambda db: db.execute(
                "UPDATE batch_jobs SET lease_holder = NULL, lease_until = NULL "
                "WHERE id = ? AND lease_holder = ?",
                (job_id, holder),
            )
        )

    async def advance(self, job: BatchJob, holder: str, *, expect: JobStatus) -> bool:
        """Write the job's progress if the holder holds it and its status is still ``expect``."""
        sets = ", ".join(f"{name} = ?" for name in ADVANCED_FIELDS)
        sql = f"UPDATE batch_jobs SET {sets} WHERE id = ? AND lease_holder = ? AND status = ?"
        params = (*advanced_row(job), job.id, holder, expect)
        cursor = await self._run(lambda db: db.execute(sql, params))
        return cursor.rowcount == 1

    async def cancel(self, job_id: str, *, now: float) -> BatchJob | None:
        """``validating`` / ``in_progress`` -> ``cancelling``."""

        def cancel(db: sqlite3.Connection) -> BatchJob | None:
            with immediate(db):
                db.execute(
                    "UPDATE batch_jobs SET status = 'cancelling', cancelling_at = ? "
                    "WHERE id = ? AND status IN ('validating', 'in_progress')",
                    (now, job_id),
                )
                return _one_job(db, job_id)

        return await self._run(cancel)

    # Item results

    async def record(
        self, job_id: str, holder: str, items: Sequence[ItemResult], *, until: float
    ) -> BatchJob | None:
        """New results, their counts and the renewed lease in one transaction, if the holder holds it."""

        def record(db: sqlite3.Connection) -> BatchJob | None:
            with immediate(db):
                held = db.execute(
                    "SELECT lease_holder, status FROM batch_jobs WHERE id = ?", (job_id,)
                ).fetchone()
                if held is None or held[0] != holder or held[1] not in ACTIVE:
                    return None
                counts = [0, 0]
                for ok in (True, False):
                    rows = [(job_id, item.line, ok, item.text) for item in items if item.ok is ok]
                    if rows:
                        counts[ok] = db.executemany(INSERT_ITEM, rows).rowcount
                db.execute(
                    "UPDATE batch_jobs SET completed = completed + ?, failed = failed + ?, lease_until = ? "
                    "WHERE id = ?",
                    (counts[True], counts[False], until, job_id),
                )
                return _one_job(db, job_id)

        return await self._run(record)

    async def done_lines(self, job_id: str, *, after: int, limit: int) -> builtins.list[int]:
        """Answered lines after ``after``, ascending."""
        rows = await self._run(
            lambda db: db.execute(
                "SELECT line FROM batch_items WHERE job_id = ? AND line > ? ORDER BY line LIMIT ?",
                (job_id, after, limit),
            ).fetchall()
        )
        return [row[0] for row in rows]

    async def items(self, job_id: str, *, ok: bool, after: int, limit: int) -> builtins.list[ItemResult]:
        """Results of one kind after ``after``, by line."""
        rows = await self._run(
            lambda db: db.execute(
                "SELECT line, text FROM batch_items WHERE job_id = ? AND ok = ? AND line > ? "
                "ORDER BY line LIMIT ?",
                (job_id, ok, after, limit),
            ).fetchall()
        )
        return [ItemResult(line, ok, text) for line, text in rows]

    async def drop_items(self, job_id: str) -> None:
        """Forget a finished job's results."""
        await self._run(lambda db: db.execute("DELETE FROM batch_items WHERE job_id = ?", (job_id,)))


def _open(path: str, orphaned_before: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        db.execute(purge_orphans("?"), (orphaned_before,))
    except BaseException:
        db.close()
        raise
    return db


def _publish(db: sqlite3.Connection, file: StoredFile, body: str) -> None:
    with immediate(db):
        _remove_file(db, file.id)
        marks = ", ".join("?" * (len(FILE_COLUMNS) + 1))
        db.execute(
            f"INSERT INTO batch_files ({', '.join(FILE_COLUMNS)}, body) VALUES ({marks})",
            (*file_row(file), body),
        )


def _remove_file(db: sqlite3.Connection, file_id: str) -> bool:
    row = db.execute("DELETE FROM batch_files WHERE id = ? RETURNING body", (file_id,)).fetchone()
    if row is None:
        return False
    db.execute("DELETE FROM batch_chunks WHERE body = ?", (row[0],))
    return True


def _insert_chunk(db: sqlite3.Connection, *, row: tuple[str, int, bytes, float]) -> None:
    db.execute("INSERT INTO batch_chunks VALUES (?, ?, ?, ?)", row)


def _next_chunk(db: sqlite3.Connection, *, body: str, seq: int) -> tuple[int, bytes] | None:
    row = db.execute(
        "SELECT seq, data FROM batch_chunks WHERE body = ? AND seq > ? ORDER BY seq LIMIT 1", (body, seq)
    ).fetchone()
    return None if row is None else (row[0], row[1])


def _one_job(db: sqlite3.Connection, job_id: str) -> BatchJob | None:
    row = db.execute(f"{SELECT_JOBS} WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else job_from_row(row)


def _question(_: int) -> str:
    return "?"
