"""The Files and Batches API behind ``/v1/files`` and ``/v1/batches``: files and jobs in the database,
each belonging to the key that made it (another key gets 404; the master key sees all). The jobs are
run by ``batch.worker``; this module only takes and answers requests."""

from __future__ import annotations

import asyncio
import builtins
import functools
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar

from llmgate.batch.lines import ENDPOINTS
from llmgate.config.batch import BatchSettings
from llmgate.core.caller import Caller
from llmgate.core.errors import Conflict, InvalidRequest, NotFound, Overloaded
from llmgate.state.jobs.ports import BatchJob, JobStore, StoredFile
from llmgate.state.ports import StateUnavailable

P = ParamSpec("P")
T = TypeVar("T")

COMPLETION_WINDOW = "24h"
WINDOW_SECONDS = 24 * 3600.0
MAX_METADATA = 16
MAX_FILENAME = 255
MAX_PAGE = 100
MAX_FILES = 10_000
"""The longest page of ``GET /v1/files`` (OpenAI's limit and default)."""


def _reachable(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """A database that cannot be reached answers 503 with a Retry-After, like the key store's."""

    @functools.wraps(method)
    async def reached(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except StateUnavailable:
            raise Overloaded("The batch database is unreachable; try again shortly.", retry_after=5) from None

    return reached


class Upload(Protocol):
    """A file being uploaded: its form fields so far, its name, its body as it arrives."""

    @property
    def fields(self) -> Mapping[str, str]:
        """The form fields read so far."""
        ...

    @property
    def filename(self) -> str | None:
        """The file part's name, once its headers are read."""
        ...

    async def start(self) -> None:
        """Read up to the file's body: the fields before it and its name are known then."""
        ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The file's body, in pieces, as it streams in (size limits enforced by the reader)."""
        ...


class BatchJobs:
    """Files and jobs of one gateway."""

    def __init__(
        self,
        open_store: Callable[[], Awaitable[JobStore]],
        settings: BatchSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._open_store = open_store
        self._store: JobStore | None = None
        self._opening = asyncio.Lock()
        self._clock = clock
        self._ids = random.Random(os.urandom(16))
        self.created = asyncio.Event()
        """Set when a job is created: a worker of this process looks at once, not at its next poll."""

    async def store(self) -> JobStore:
        """The job store, opened on first use."""
        if self._store is None:
            async with self._opening:
                if self._store is None:
                    self._store = await self._open_store()
        return self._store

    async def close(self) -> None:
        """Close the store."""
        if self._store is not None:
            await self._store.close()
            self._store = None

    def new_id(self, prefix: str) -> str:
        """``file-…`` or ``batch_…``: random, as OpenAI's are."""
        return f"{prefix}{self._ids.getrandbits(96):024x}"

    # Files

    @_reachable
    async def upload(self, caller: Caller, upload: Upload) -> StoredFile:
        """Store an uploaded batch input (``purpose`` must be ``batch``)."""
        await upload.start()
        _check_purpose(upload.fields.get("purpose", "batch"))
        if upload.filename is None:
            raise InvalidRequest("The upload has no 'file' part.", param="file")
        store = await self.store()
        file = StoredFile(
            id=self.new_id("file-"),
            owner=caller.key_id,
            purpose="batch",
            filename=upload.filename[:MAX_FILENAME] or "upload.jsonl",
            bytes=0,
            created_at=self._clock(),
        )
        stored = await store.add_file(file, upload.chunks())
        purpose = upload.fields.get("purpose")
        if purpose != "batch":  # the field came after the file, or never
            await store.delete_file(file.id)
            _check_purpose(purpose)
        return stored

    @_reachable
    async def file(self, caller: Caller, file_id: str) -> StoredFile:
        """A file the caller may see (404 otherwise)."""
        file = await (await self.store()).file(file_id[:128])
        if file is None or not _visible(caller, file.owner):
            raise NotFound(f"No such file: '{file_id[:128]}'.", param="file_id")
        return file

    @_reachable
    async def content(self, caller: Caller, file_id: str) -> tuple[StoredFile, AsyncIterator[bytes]]:
        """A file and its body, chunk by chunk."""
        file = await self.file(caller, file_id)
        return file, (await self.store()).read(file.id)

    @_reachable
    async def files(
        self, caller: Caller, *, purpose: str | None = None, after: str | None = None, limit: int = MAX_FILES
    ) -> tuple[builtins.list[StoredFile], bool]:
        """A page of the caller's files, newest first, and whether there are more."""
        if not 1 <= limit <= MAX_FILES:
            raise InvalidRequest(f"limit must be between 1 and {MAX_FILES}.", param="limit")
        found = await (await self.store()).files(
            owner=caller.key_id,
            everyone=caller.admin,
            purpose=purpose[:64] if purpose else None,
            after=after[:128] if after else None,
            limit=limit + 1,
        )
        return found[:limit], len(found) > limit

    @_reachable
    async def delete_file(self, caller: Caller, file_id: str) -> str:
        """Delete a file the caller may see (409 while a running batch reads it); its id."""
        file = await self.file(caller, file_id)
        store = await self.store()
        if await store.in_use(file.id):
            raise Conflict(f"File {file.id} is the input of a batch that is still running; cancel it first.")
        await store.delete_file(file.id)
        return file.id

    # Batches

    @_reachable
    async def create(self, caller: Caller, body: Any) -> BatchJob:
        """A new job on an uploaded input (``validating`` until a worker checks it)."""
        if not isinstance(body, dict):
            raise InvalidRequest("The body must be a JSON object.")
        file_id, endpoint = body.get("input_file_id"), body.get("endpoint")
        if not isinstance(file_id, str) or not file_id:
            raise InvalidRequest("input_file_id is required.", param="input_file_id")
        if endpoint not in ENDPOINTS:
            raise InvalidRequest(
                f"endpoint {str(endpoint)[:100]!r} is not supported for batches; "
                f"use {' or '.join(ENDPOINTS)}.",
                param="endpoint",
            )
        if body.get("completion_window") != COMPLETION_WINDOW:
            raise InvalidRequest("completion_window must be '24h'.", param="completion_window")
        metadata = _metadata(body.get("metadata"))
        file = await self.file(caller, file_id)
        if file.purpose != "batch":
            raise InvalidRequest(
                f"File {file.id} has purpose '{file.purpose}', not 'batch'.", param="input_file_id"
            )
        now = self._clock()
        job = BatchJob(
            id=self.new_id("batch_"),
            owner=caller.key_id,
            endpoint=str(endpoint),
            input_file_id=file.id,
            completion_window=COMPLETION_WINDOW,
            status="validating",
            created_at=now,
            expires_at=now + WINDOW_SECONDS,
            metadata=metadata,
        )
        await (await self.store()).add_job(job)
        self.created.set()
        return job

    @_reachable
    async def job(self, caller: Caller, job_id: str) -> BatchJob:
        """A job the caller may see (404 otherwise)."""
        job = await (await self.store()).job(job_id[:128])
        if job is None or not _visible(caller, job.owner):
            raise NotFound(f"No such batch: '{job_id[:128]}'.", param="batch_id")
        return job

    @_reachable
    async def jobs(
        self, caller: Caller, *, after: str | None, limit: int
    ) -> tuple[builtins.list[BatchJob], bool]:
        """A page of the caller's jobs, newest first, and whether there are more."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE}.", param="limit")
        found = await (await self.store()).jobs(
            owner=caller.key_id, everyone=caller.admin, after=after[:128] if after else None, limit=limit + 1
        )
        return found[:limit], len(found) > limit

    @_reachable
    async def cancel(self, caller: Caller, job_id: str) -> BatchJob:
        """Ask a job to stop (``cancelling``; the worker finishes what is in flight, then ``cancelled``)."""
        job = await self.job(caller, job_id)
        if job.status in ("cancelling", "cancelled"):
            return job
        cancelled = await (await self.store()).cancel(job.id, now=self._clock())
        if cancelled is None or cancelled.status != "cancelling":
            raise Conflict(f"Cannot cancel a batch with status '{job.status}'.")
        return cancelled


def _visible(caller: Caller, owner: str | None) -> bool:
    return caller.admin or caller.key_id == owner


def _check_purpose(purpose: str | None) -> None:
    if purpose != "batch":
        shown = "none" if purpose is None else repr(purpose[:64])
        raise InvalidRequest(
            f"purpose must be 'batch' (got {shown}): the gateway stores batch inputs only.", param="purpose"
        )


def _metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_METADATA:
        raise InvalidRequest(f"metadata must be an object of at most {MAX_METADATA} pairs.", param="metadata")
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > 64 or len(item) > 512:
            raise InvalidRequest(
                "metadata keys are up to 64 characters and values strings of up to 512.", param="metadata"
            )
    return dict(value)
