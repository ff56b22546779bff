"""The end of a job: lines that never ran get an error line each (so every input line is answered in
one of the two files), then the output and error files are written and the job takes its final status.

Every step can be redone: a replica that takes over a job in ``finalizing`` writes the same files again
(their ids come from the job's), so a crash while finishing loses nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from msgspec.structs import replace

from llmgate.batch.lines import BatchLine, parse_line, split_lines
from llmgate.batch.results import unrun_line
from llmgate.state.jobs.ports import (
    CHUNK_BYTES,
    BatchJob,
    ItemResult,
    JobError,
    JobStatus,
    JobStore,
    StoredFile,
)

PAGE = 2_000


@dataclass(frozen=True, slots=True)
class Stop:
    """Why a job ends before all its lines ran: the code its unrun lines get, and its final status."""

    code: str
    message: str
    status: JobStatus


CANCELLED = Stop("batch_cancelled", "The batch was cancelled before this request ran.", "cancelled")


def stop_of(job: BatchJob) -> Stop | None:
    """The stop a stored job was finishing with (a cancel, or the error written when it began to finish)."""
    if job.cancelling_at is not None:
        return CANCELLED
    if job.errors:
        first = job.errors[0]
        return Stop(first.code, first.message, "expired" if first.code == "batch_expired" else "failed")
    return None


class LeaseLost(Exception):
    """Another replica holds the job now: this one stops without writing."""


@dataclass(frozen=True, slots=True)
class Holder:
    """Who works a job, with which clock, renewing its lease by how much."""

    name: str
    clock: Callable[[], float]
    lease: float

    def until(self) -> float:
        """The end of a lease renewed now."""
        return self.clock() + self.lease


async def finalize(store: JobStore, job: BatchJob, holder: Holder, stop: Stop | None) -> None:
    """Take a job from any active status to its final one, with its files."""
    if job.status in ("validating", "in_progress", "cancelling"):
        if stop is not None and job.in_progress_at is not None:
            job = await _answer_unrun(store, job, holder, stop)
        errors = job.errors
        if stop is not None and stop.status != "cancelled" and not errors:
            errors = (JobError(code=stop.code, message=stop.message),)
        finishing = replace(job, status="finalizing", finalizing_at=holder.clock(), errors=errors)
        if not await store.advance(finishing, holder.name, expect=job.status):
            current = await store.job(job.id)
            if current is None or current.lease_holder != holder.name or current.status != "cancelling":
                raise LeaseLost(job.id)
            await finalize(store, current, holder, stop or CANCELLED)  # cancelled meanwhile
            return
        job = finishing
    if job.status != "finalizing":
        return
    output = await _write_file(store, job, holder, ok=True)
    failures = await _write_file(store, job, holder, ok=False)
    counted = await store.job(job.id) or job
    status: JobStatus = stop.status if stop is not None else "completed"
    now = holder.clock()
    final = replace(
        counted,
        status=status,
        output_file_id=output,
        error_file_id=failures,
        completed_at=now if status == "completed" else None,
        cancelled_at=now if status == "cancelled" else None,
        expired_at=now if status == "expired" else None,
        failed_at=now if status == "failed" else None,
    )
    if not await store.advance(final, holder.name, expect="finalizing"):
        raise LeaseLost(job.id)
    await store.drop_items(job.id)


async def _answer_unrun(store: JobStore, job: BatchJob, holder: Holder, stop: Stop) -> BatchJob:
    """An error line (``stop.code``) for every input line without a result."""
    batch: list[ItemResult] = []
    async for line in unanswered(store, job):
        text = unrun_line(line.custom_id, stop.code, stop.message, job.id).decode()
        batch.append(ItemResult(line.index, False, text))
        if len(batch) >= PAGE:
            job = await record(store, job, holder, batch)
            batch = []
    return await record(store, job, holder, batch)


async def record(store: JobStore, job: BatchJob, holder: Holder, items: list[ItemResult]) -> BatchJob:
    """Store results and renew the lease: the job afterwards (``LeaseLost`` if it is not ours now)."""
    recorded = await store.record(job.id, holder.name, items, until=holder.until())
    if recorded is None:
        raise LeaseLost(job.id)
    return recorded


async def unanswered(store: JobStore, job: BatchJob) -> AsyncIterator[BatchLine]:
    """The input's lines that have no stored result, in order (answered lines read a page at a time)."""
    done = _done_lines(store, job.id)
    next_done = await anext(done, None)
    index = -1
    async for raw in split_lines(store.read(job.input_file_id)):
        index += 1
        while next_done is not None and next_done < index:
            next_done = await anext(done, None)
        if next_done == index:
            continue
        line = parse_line(raw, index)
        if isinstance(line, BatchLine):
            yield line


async def _done_lines(store: JobStore, job_id: str) -> AsyncIterator[int]:
    after = -1
    while True:
        page = await store.done_lines(job_id, after=after, limit=PAGE)
        for line in page:
            yield line
        if len(page) < PAGE:
            return
        after = page[-1]


async def _write_file(store: JobStore, job: BatchJob, holder: Holder, *, ok: bool) -> str | None:
    """The output (``ok``) or error file of a job, from its stored results; ``None`` when it has none.
    The lease is renewed (and checked) before each page, so a holder that lost it stops writing."""
    file_id = f"file-{job.id}-{'output' if ok else 'errors'}"
    job = await record(store, job, holder, [])
    first = await store.items(job.id, ok=ok, after=-1, limit=PAGE)
    if not first:
        await store.delete_file(file_id)  # left by an earlier attempt, if any
        return None
    name = f"{job.id}_{'output' if ok else 'errors'}.jsonl"
    file = StoredFile(
        id=file_id, owner=job.owner, purpose="batch_output", filename=name, bytes=0, created_at=job.created_at
    )
    # Publishing replaces a file an earlier attempt wrote under the same id, in one transaction.
    await store.add_file(file, _file_chunks(store, job, holder, ok, first))
    return file_id


async def _file_chunks(
    store: JobStore, job: BatchJob, holder: Holder, ok: bool, page: list[ItemResult]
) -> AsyncIterator[bytes]:
    buffer: list[bytes] = []
    size = 0
    while page:
        for item in page:
            line = item.text.encode() + b"\n"
            if size + len(line) > CHUNK_BYTES and buffer:
                yield b"".join(buffer)
                buffer, size = [], 0
            buffer.append(line)
            size += len(line)
        if len(page) < PAGE:
            break
        job = await record(store, job, holder, [])
        page = await store.items(job.id, ok=ok, after=page[-1].line, limit=PAGE)
    if buffer:
        yield b"".join(buffer)
