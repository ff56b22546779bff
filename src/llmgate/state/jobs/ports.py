"""The batch-job storage port: files (bodies in chunks), jobs with a lease, and each job's item results.

One module per backend implements ``JobStore`` (``memory``, ``sqlite``, ``postgres``); the same suite runs
against each (tests/state/test_jobs.py). Like every port, a backend raises ``StateUnavailable`` when it
cannot be reached.

A job is worked by one replica at a time: ``claim`` gives an unleased (or expired-lease) active job to a
holder until a time; every write the worker makes (``record``, ``advance``) names the holder and is refused
once another holder took the job over, so a replica that lost its lease cannot write over the new one's
work. ``cancel`` is the one write any replica may make (the API's).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Literal, Protocol

import msgspec

JobStatus = Literal[
    "validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled"
]
ACTIVE: tuple[JobStatus, ...] = ("validating", "in_progress", "finalizing", "cancelling")
"""Statuses a worker still has work in (``claim`` takes only these)."""
CHUNK_BYTES = 1 << 20
"""How big the pieces of a file body its writers hand to ``add_file`` are, about (each is one row)."""


class StoredFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file's metadata (its body is stored apart, in chunks)."""

    id: str
    owner: str | None
    """The key id that uploaded (or whose job made) it; ``None``: the master key or the open mode."""
    purpose: str
    """``batch`` (an input), ``batch_output`` (a job's output or error file)."""
    filename: str
    bytes: int
    created_at: float


class JobError(msgspec.Struct, frozen=True, kw_only=True):
    """Why a job failed or stopped (OpenAI's ``errors.data`` entries)."""

    code: str
    message: str
    line: int | None = None
    """1-based line of the input file, for a validation error."""
    param: str | None = None


class BatchJob(msgspec.Struct, frozen=True, kw_only=True):
    """A batch job as stored. Timestamps are unix seconds."""

    id: str
    owner: str | None
    endpoint: str
    input_file_id: str
    completion_window: str
    status: JobStatus
    created_at: float
    expires_at: float
    metadata: Mapping[str, str] = msgspec.field(default_factory=dict)
    total: int = 0
    completed: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: tuple[JobError, ...] = ()
    in_progress_at: float | None = None
    finalizing_at: float | None = None
    completed_at: float | None = None
    failed_at: float | None = None
    expired_at: float | None = None
    cancelling_at: float | None = None
    cancelled_at: float | None = None
    lease_holder: str | None = None
    lease_until: float | None = None


ADVANCED_FIELDS: tuple[str, ...] = (
    "status",
    "total",
    "output_file_id",
    "error_file_id",
    "errors",
    "in_progress_at",
    "finalizing_at",
    "completed_at",
    "failed_at",
    "expired_at",
    "cancelling_at",
    "cancelled_at",
)
"""What ``advance`` writes (never the counts, which ``record`` keeps, nor the lease)."""


class ItemResult(msgspec.Struct, frozen=True):
    """One input line's result: its output line (JSON text, no newline), in the output or error file."""

    line: int
    """0-based index of the input line."""
    ok: bool
    """``True``: the output file; ``False``: the error file."""
    text: str


class JobStore(Protocol):
    """Files, jobs and item results in one database."""

    # Files

    async def add_file(self, file: StoredFile, chunks: AsyncIterator[bytes]) -> StoredFile:
        """Store a file's body chunk by chunk as it arrives (each chunk one row, as given), then its
        metadata: the file is visible only once whole. Returns the file as stored, its ``bytes`` the
        body's size as counted here (``file.bytes`` is ignored). A failure midway leaves nothing."""
        ...

    async def file(self, file_id: str) -> StoredFile | None:
        """A file's metadata, or ``None``."""
        ...

    def read(self, file_id: str) -> AsyncIterator[bytes]:
        """A stored file's body, chunk by chunk in order (nothing for an unknown file)."""
        ...

    async def files(
        self,
        *,
        owner: str | None,
        everyone: bool = False,
        purpose: str | None = None,
        after: str | None = None,
        limit: int = 10_000,
    ) -> builtins.list[StoredFile]:
        """The files an owner holds (every file with ``everyone``; of one ``purpose`` when given),
        newest first; ``after``: only those older than that file; at most ``limit``."""
        ...

    async def in_use(self, file_id: str) -> bool:
        """Whether an active job reads this file as its input."""
        ...

    async def delete_file(self, file_id: str) -> bool:
        """Remove a file and its body; ``False`` if unknown."""
        ...

    # Jobs

    async def add_job(self, job: BatchJob) -> None:
        """Store a new job."""
        ...

    async def job(self, job_id: str) -> BatchJob | None:
        """A job, or ``None``."""
        ...

    async def jobs(
        self, *, owner: str | None, everyone: bool = False, after: str | None = None, limit: int = 20
    ) -> builtins.list[BatchJob]:
        """An owner's jobs (everyone's with ``everyone``), newest first; ``after``: only those older than
        that job (OpenAI's pagination cursor); at most ``limit``."""
        ...

    async def claim(self, holder: str, *, now: float, until: float) -> BatchJob | None:
        """Give one active job whose lease is free or expired at ``now`` to ``holder`` until ``until``
        (the oldest such job first), atomically: two holders never get the same job at once."""
        ...

    async def release(self, job_id: str, holder: str) -> None:
        """End ``holder``'s lease now, so another replica can take the job at once (a clean shutdown)."""
        ...

    async def advance(self, job: BatchJob, holder: str, *, expect: JobStatus) -> bool:
        """Write ``job``'s status, timestamps, ``total``, file ids and ``errors`` (never its counts, which
        ``record`` keeps, nor its lease) if ``holder`` still holds it and its stored status is still
        ``expect``; ``False`` otherwise (the lease was lost, or the job was cancelled meanwhile)."""
        ...

    async def cancel(self, job_id: str, *, now: float) -> BatchJob | None:
        """Ask a job to stop: ``validating`` or ``in_progress`` become ``cancelling`` (at ``now``). Returns
        the job as it is afterwards (``None`` if unknown)."""
        ...

    # Item results

    async def record(
        self, job_id: str, holder: str, items: Sequence[ItemResult], *, until: float
    ) -> BatchJob | None:
        """Store results (a line already stored keeps its first result), count them in the job's
        ``completed`` / ``failed``, and extend the lease to ``until``, in one transaction, if ``holder``
        still holds the job and it is still active. Returns the job afterwards (the worker sees a
        cancel), ``None`` when the lease is lost or the job is over (nothing is written)."""
        ...

    async def done_lines(self, job_id: str, *, after: int, limit: int) -> builtins.list[int]:
        """Lines with a stored result, ascending, greater than ``after``, at most ``limit``."""
        ...

    async def items(self, job_id: str, *, ok: bool, after: int, limit: int) -> builtins.list[ItemResult]:
        """Stored results of one kind (output or error), by line, greater than ``after``."""
        ...

    async def drop_items(self, job_id: str) -> None:
        """Remove a finished job's item results (its files hold them now)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...
