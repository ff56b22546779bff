"""PostgreSQL job store (asyncpg): files, jobs and results shared by every replica.

Tables live in the same schema as keys and usage records, created on connect if missing. A file's body is
chunk rows under an upload id, published by writing the file row last; ``claim`` takes the oldest free job
with ``FOR UPDATE SKIP LOCKED``, so replicas claiming at once never take the same job or wait on each other.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

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
from llmgate.state.postgres import close_pool, create_tables, open_pool, reachable

TABLES = """
CREATE TABLE IF NOT EXISTS batch_files (
    id text PRIMARY KEY,
    owner text,
    purpose text NOT NULL,
    filename text NOT NULL,
    bytes bigint NOT NULL,
    created_at double precision NOT NULL,
    body text NOT NULL
);
CREATE INDEX IF NOT EXISTS batch_files_owner ON batch_files (owner, created_at);
CREATE TABLE IF NOT EXISTS batch_chunks (
    body text NOT NULL,
    seq integer NOT NULL,
    data bytea NOT NULL,
    stored_at double precision NOT NULL,
    PRIMARY KEY (body, seq)
);
CREATE TABLE IF NOT EXISTS batch_jobs (
    id text PRIMARY KEY,
    owner text,
    endpoint text NOT NULL,
    input_file_id text NOT NULL,
    completion_window text NOT NULL,
    status text NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    metadata text NOT NULL,
    total bigint NOT NULL,
    completed bigint NOT NULL,
    failed bigint NOT NULL,
    output_file_id text,
    error_file_id text,
    errors text NOT NULL,
    in_progress_at double precision,
    finalizing_at double precision,
    completed_at double precision,
    failed_at double precision,
    expired_at double precision,
    cancelling_at double precision,
    cancelled_at double precision,
    lease_holder text,
    lease_until double precision
);
CREATE INDEX IF NOT EXISTS batch_jobs_owner ON batch_jobs (owner, created_at);
CREATE INDEX IF NOT EXISTS batch_jobs_status ON batch_jobs (status, created_at);
CREATE INDEX IF NOT EXISTS batch_jobs_input ON batch_jobs (input_file_id);
CREATE TABLE IF NOT EXISTS batch_items (
    job_id text NOT NULL,
    line bigint NOT NULL,
    ok boolean NOT NULL,
    text text NOT NULL,
    PRIMARY KEY (job_id, line)
);
"""


def _marks(count: int, start: int = 1) -> str:
    return ", ".join(f"${number}" for number in range(start, start + count))


SELECT_FILES = f"SELECT {', '.join(FILE_COLUMNS)} FROM batch_files"
SELECT_JOBS = f"SELECT {', '.join(JOB_COLUMNS)} FROM batch_jobs"
INSERT_FILE = (
    f"INSERT INTO batch_files ({', '.join(FILE_COLUMNS)}, body) VALUES ({_marks(len(FILE_COLUMNS) + 1)})"
)
INSERT_JOB = f"INSERT INTO batch_jobs ({', '.join(JOB_COLUMNS)}) VALUES ({_marks(len(JOB_COLUMNS))})"
ADVANCE = (
    f"UPDATE batch_jobs SET ({', '.join(ADVANCED_FIELDS)}) = ({_marks(len(ADVANCED_FIELDS), start=4)}) "
    "WHERE id = $1 AND lease_holder = $2 AND status = $3"
)
CLAIM = f"""UPDATE batch_jobs SET lease_holder = $1, lease_until = $3 WHERE id = (
    SELECT id FROM batch_jobs
    WHERE status = ANY($4::text[]) AND (lease_holder IS NULL OR lease_until <= $2)
    ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
) RETURNING {", ".join(JOB_COLUMNS)}"""
INSERT_ITEMS = """INSERT INTO batch_items (job_id, line, ok, text)
SELECT $1, line, ok, text FROM unnest($2::bigint[], $3::boolean[], $4::text[]) AS item (line, ok, text)
ON CONFLICT DO NOTHING RETURNING ok"""
COUNT_ITEMS = f"""UPDATE batch_jobs SET completed = completed + $2, failed = failed + $3, lease_until = $4
WHERE id = $1 RETURNING {", ".join(JOB_COLUMNS)}"""
REMOVE_FILE = "DELETE FROM batch_files WHERE id = $1 RETURNING body"


class PostgresJobs:
    """``JobStore`` in PostgreSQL. Open with ``connect``."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], *, time_limit: float) -> None:
        self._pool = pool
        self._time_limit = time_limit

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        schema: str = "llmgate",
        clock: Callable[[], float] = time.time,
        max_connections: int = 4,
        time_limit: float = 30.0,
    ) -> PostgresJobs:
        """Connect a small pool of its own and create the tables if missing (uploads a dead process left
        unfinished are removed). ``time_limit`` bounds connecting and each statement."""
        pool = await open_pool(dsn, schema=schema, max_connections=max_connections, time_limit=time_limit)
        try:
            await create_tables(pool, schema, TABLES)
            with reachable():
                await pool.execute(purge_orphans("$1"), clock() - ORPHAN_SECONDS)
        except BaseException:
            pool.terminate()
            raise
        return cls(pool, time_limit=time_limit)

    async def close(self) -> None:
        """Close the pool (forcibly when the server does not answer in time)."""
        await close_pool(self._pool, self._time_limit)

    # Files

    async def add_file(self, file: StoredFile, chunks: AsyncIterator[bytes]) -> StoredFile:
        """Chunk rows as the body arrives, then the file row (replacing a file of the same id)."""
        body, seq, size = os.urandom(12).hex(), 0, 0
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                with reachable():
                    await self._pool.execute(
                        "INSERT INTO batch_chunks VALUES ($1, $2, $3, $4)",
                        body,
                        seq,
                        bytes(chunk),
                        time.time(),
                    )
                seq, size = seq + 1, size + len(chunk)
            stored = msgspec.structs.replace(file, bytes=size)
            with reachable():
                async with self._pool.acquire() as connection, connection.transaction():
                    await _remove_file(connection, file.id)
                    await connection.execute(INSERT_FILE, *file_row(stored), body)
        except BaseException:
            with reachable():
                await asyncio.shield(self._pool.execute("DELETE FROM batch_chunks WHERE body = $1", body))
            raise
        return stored

    async def file(self, file_id: str) -> StoredFile | None:
        """A file's metadata, or ``None``."""
        with reachable():
            row = await self._pool.fetchrow(f"{SELECT_FILES} WHERE id = $1", file_id)
        return None if row is None else file_from_row(row)

    async def read(self, file_id: str) -> AsyncIterator[bytes]:
        """The body, one chunk row per step."""
        with reachable():
            body = await self._pool.fetchval("SELECT body FROM batch_files WHERE id = $1", file_id)
        if body is None:
            return
        seq = -1
        while True:
            with reachable():
                row = await self._pool.fetchrow(
                    "SELECT seq, data FROM batch_chunks WHERE body = $1 AND seq > $2 ORDER BY seq LIMIT 1",
                    body,
                    seq,
                )
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
            mark=_dollar,
        )
        with reachable():
            rows = await self._pool.fetch(sql, *params)
        return [file_from_row(row) for row in rows]

    async def in_use(self, file_id: str) -> bool:
        """Whether an active job reads this file."""
        with reachable():
            found = await self._pool.fetchval(
                "SELECT 1 FROM batch_jobs WHERE input_file_id = $1 AND status = ANY($2::text[]) LIMIT 1",
                file_id,
                list(ACTIVE),
            )
        return found is not None

    async def delete_file(self, file_id: str) -> bool:
        """Remove a file and its body in one transaction."""
        with reachable():
            async with self._pool.acquire() as connection, connection.transaction():
                return await _remove_file(connection, file_id)

    # Jobs

    async def add_job(self, job: BatchJob) -> None:
        """Store a new job."""
        with reachable():
            await self._pool.execute(INSERT_JOB, *job_row(job))

    async def job(self, job_id: str) -> BatchJob | None:
        """A job, or ``None``."""
        with reachable():
            row = await self._pool.fetchrow(f"{SELECT_JOBS} WHERE id = $1", job_id)
        return None if row is None else job_from_row(row)

    async def jobs(
        self, *, owner: str | None, everyone: bool = False, after: str | None = None, limit: int = 20
    ) -> builtins.list[BatchJob]:
        """An owner's jobs (or all), newest first, older than ``after``."""
        sql, params = page_query(
            SELECT_JOBS, "batch_jobs", owner=owner, everyone=everyone, after=after, limit=limit, mark=_dollar
        )
        with reachable():
            rows = await self._pool.fetch(sql, *params)
        return [job_from_row(row) for row in rows]

    async def claim(self, holder: str, *, now: float, until: float) -> BatchJob | None:
        """The oldest active job with a free or expired lease, leased to ``holder``, in one statement."""
        with reachable():
            row = await self._pool.fetchrow(CLAIM, holder, now, until, list(ACTIVE))
        return None if row is None else job_from_row(row)

    async def release(self, job_id: str, holder: str) -> None:
        """End the holder's lease."""
        with reachable():
            await self._pool.execute(
                "UPDATE batch_jobs SET lease_holder = NULL, lease_until = NULL "
                "WHERE id = $1 AND lease_holder = $2",
                job_id,
                holder,
            )

    async def advance(self, job: BatchJob, holder: str, *, expect: JobStatus) -> bool:
        """Write the job's progress if the holder holds it and its status is still ``expect``."""
        with reachable():
            status = await self._pool.execute(ADVANCE, job.id, holder, expect, *advanced_row(job))
        return status == "UPDATE 1"

    async def cancel(self, job_id: str, *, now: float) -> BatchJob | None:
        """``validating`` / ``in_progress`` -> ``cancelling``."""
        with reachable():
            await self._pool.execute(
                "UPDATE batch_jobs SET status = 'cancelling', cancelling_at = $2 "
                "WHERE id = $1 AND status IN ('validating', 'in_progress')",
                job_id,
                now,
            )
        return await self.job(job_id)

    # Item results

    async def record(
        self, job_id: str, holder: str, items: Sequence[ItemResult], *, until: float
    ) -> BatchJob | None:
        """New results, their counts and the renewed lease in one transaction, if the holder holds it."""
        with reachable():
            async with self._pool.acquire() as connection, connection.transaction():
                held = await connection.fetchrow(
                    "SELECT lease_holder, status FROM batch_jobs WHERE id = $1 FOR UPDATE", job_id
                )
                if held is None or held[0] != holder or held[1] not in ACTIVE:
                    return None
                added = await connection.fetch(
                    INSERT_ITEMS,
                    job_id,
                    [item.line for item in items],
                    [item.ok for item in items],
                    [item.text for item in items],
                )
                ok = sum(1 for row in added if row[0])
                row = await connection.fetchrow(COUNT_ITEMS, job_id, ok, len(added) - ok, until)
        return None if row is None else job_from_row(row)

    async def done_lines(self, job_id: str, *, after: int, limit: int) -> builtins.list[int]:
        """Answered lines after ``after``, ascending."""
        with reachable():
            rows = await self._pool.fetch(
                "SELECT line FROM batch_items WHERE job_id = $1 AND line > $2 ORDER BY line LIMIT $3",
                job_id,
                after,
                limit,
            )
        return [row[0] for row in rows]

    async def items(self, job_id: str, *, ok: bool, after: int, limit: int) -> builtins.list[ItemResult]:
        """Results of one kind after ``after``, by line."""
        with reachable():
            rows = await self._pool.fetch(
                "SELECT line, text FROM batch_items WHERE job_id = $1 AND ok = $2 AND line > $3 "
                "ORDER BY line LIMIT $4",
                job_id,
                ok,
                after,
                limit,
            )
        return [ItemResult(row[0], ok, row[1]) for row in rows]

    async def drop_items(self, job_id: str) -> None:
        """Forget a finished job's results."""
        with reachable():
            await self._pool.execute("DELETE FROM batch_items WHERE job_id = $1", job_id)


async def _remove_file(connection: PoolConnectionProxy[asyncpg.Record], file_id: str) -> bool:
    body = await connection.fetchval(REMOVE_FILE, file_id)
    if body is None:
        return False
    await connection.execute("DELETE FROM batch_chunks WHERE body = $1", body)
    return True


def _dollar(number: int) -> str:
    return f"${number}"
