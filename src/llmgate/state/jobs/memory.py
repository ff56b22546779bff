"""In-process job store (``storage.database: memory``): files, jobs and results lost on restart."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Protocol, TypeVar

import msgspec

from llmgate.state.jobs.ports import ACTIVE, ADVANCED_FIELDS, BatchJob, ItemResult, JobStatus, StoredFile

_CANCELLABLE = ("validating", "in_progress")


class MemoryJobs:
    """``JobStore`` in dictionaries. Every method is one step of the event loop, so each is atomic."""

    def __init__(self) -> None:
        self._files: dict[str, StoredFile] = {}
        self._bodies: dict[str, list[bytes]] = {}
        self._jobs: dict[str, BatchJob] = {}
        self._items: dict[str, dict[int, ItemResult]] = {}

    # Files

    async def add_file(self, file: StoredFile, chunks: AsyncIterator[bytes]) -> StoredFile:
        """Collect the body, then publish the file (nothing is kept when reading the body fails)."""
        body = [bytes(chunk) async for chunk in chunks if chunk]
        stored = msgspec.structs.replace(file, bytes=sum(len(chunk) for chunk in body))
        self._bodies[file.id] = body
        self._files[file.id] = stored
        return stored

    async def file(self, file_id: str) -> StoredFile | None:
        """A file's metadata, or ``None``."""
        return self._files.get(file_id)

    async def read(self, file_id: str) -> AsyncIterator[bytes]:
        """The body's chunks in order."""
        for chunk in list(self._bodies.get(file_id, ()) if file_id in self._files else ()):
            yield chunk

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
        chosen = [
            file
            for file in self._files.values()
            if (everyone or file.owner == owner) and (purpose is None or file.purpose == purpose)
        ]
        return _page(chosen, self._files.get(after) if after is not None else None, after, limit)

    async def in_use(self, file_id: str) -> bool:
        """Whether an active job reads this file."""
        return any(job.input_file_id == file_id and job.status in ACTIVE for job in self._jobs.values())

    async def delete_file(self, file_id: str) -> bool:
        """Remove a file and its body."""
        self._bodies.pop(file_id, None)
        return self._files.pop(file_id, None) is not None

    # Jobs

    async def add_job(self, job: BatchJob) -> None:
        """Store a new job."""
        self._jobs[job.id] = job
        self._items[job.id] = {}

    async def job(self, job_id: str) -> BatchJob | None:
        """A job, or ``None``."""
        return self._jobs.get(job_id)

    async def jobs(
        self, *, owner: str | None, everyone: bool = False, after: str | None = None, limit: int = 20
    ) -> builtins.list[BatchJob]:
        """An owner's jobs (or all), newest first, older than ``after``."""
        chosen = [job for job in self._jobs.values() if everyone or job.owner == owner]
        return _page(chosen, self._jobs.get(after) if after is not None else None, after, limit)

    async def claim(self, holder: str, *, now: float, until: float) -> BatchJob | None:
        """The oldest active job with a free or expired lease, leased to ``holder``."""
        free = [
            job
            for job in self._jobs.values()
            if job.status in ACTIVE and (job.lease_holder is None or (job.lease_until or 0.0) <= now)
        ]
        if not free:
            return None
        oldest = min(free, key=lambda job: (job.created_at, job.id))
        claimed = msgspec.structs.replace(oldest, lease_holder=holder, lease_until=until)
        self._jobs[oldest.id] = claimed
        return claimed

    async def release(self, job_id: str, holder: str) -> None:
        """End the holder's lease."""
        job = self._jobs.get(job_id)
        if job is not None and job.lease_holder == holder:
            self._jobs[job_id] = msgspec.structs.replace(job, lease_holder=None, lease_until=None)

    async def advance(self, job: BatchJob, holder: str, *, expect: JobStatus) -> bool:
        """Write the job's progress if the holder holds it and its status is still ``expect``."""
        stored = self._jobs.get(job.id)
        if stored is None or stored.lease_holder != holder or stored.status != expect:
            return False
        changes = {name: getattr(job, name) for name in ADVANCED_FIELDS}
        self._jobs[job.id] = msgspec.structs.replace(stored, **changes)
        return True

    async def cancel(self, job_id: str, *, now: float) -> BatchJob | None:
        """``validating`` / ``in_progress`` -> ``cancelling``."""
        job = self._jobs.get(job_id)
        if job is not None and job.status in _CANCELLABLE:
            job = msgspec.structs.replace(job, status="cancelling", cancelling_at=now)
            self._jobs[job_id] = job
        return job

    # Item results

    async def record(
        self, job_id: str, holder: str, items: Sequence[ItemResult], *, until: float
    ) -> BatchJob | None:
        """Store new results, count them and renew the lease, if the holder holds the job."""
        job = self._jobs.get(job_id)
        if job is None or job.lease_holder != holder or job.status not in ACTIVE:
            return None
        stored = self._items.setdefault(job_id, {})
        ok = failed = 0
        for item in items:
            if item.line in stored:
                continue
            stored[item.line] = item
            ok, failed = (ok + 1, failed) if item.ok else (ok, failed + 1)
        job = msgspec.structs.replace(
            job, completed=job.completed + ok, failed=job.failed + failed, lease_until=until
        )
        self._jobs[job_id] = job
        return job

    async def done_lines(self, job_id: str, *, after: int, limit: int) -> builtins.list[int]:
        """Answered lines after ``after``, ascending."""
        return sorted(line for line in self._items.get(job_id, {}) if line > after)[:limit]

    async def items(self, job_id: str, *, ok: bool, after: int, limit: int) -> builtins.list[ItemResult]:
        """Results of one kind after ``after``, by line."""
        stored = self._items.get(job_id, {})
        lines = sorted(line for line, item in stored.items() if item.ok is ok and line > after)
        return [stored[line] for line in lines[:limit]]

    async def drop_items(self, job_id: str) -> None:
        """Forget a finished job's results."""
        self._items.pop(job_id, None)

    async def close(self) -> None:
        """Nothing to release."""


class _Dated(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def created_at(self) -> float: ...


D = TypeVar("D", bound=_Dated)


def _page(rows: Iterable[D], cursor: D | None, after: str | None, limit: int) -> builtins.list[D]:
    """Newest first, older than the ``cursor`` row (none if ``after`` names no row), at most ``limit``."""
    if after is not None and cursor is None:
        return []
    ordered = sorted(rows, key=lambda row: (row.created_at, row.id), reverse=True)
    if cursor is not None:
        ordered = [row for row in ordered if (row.created_at, row.id) < (cursor.created_at, cursor.id)]
    return ordered[:limit]
