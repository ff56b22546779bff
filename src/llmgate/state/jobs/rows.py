"""Rows of the SQL job stores (SQLite, PostgreSQL): column lists and row <-> record conversions.

Metadata and errors travel as JSON text; both drivers hand rows back as sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from llmgate.state.jobs.ports import ADVANCED_FIELDS, BatchJob, JobError, StoredFile

FILE_COLUMNS: tuple[str, ...] = StoredFile.__struct_fields__
JOB_COLUMNS: tuple[str, ...] = BatchJob.__struct_fields__
ORPHAN_SECONDS = 3600.0
"""Chunks of an upload that never finished (its process died) are removed after this long."""


def purge_orphans(mark: str) -> str:
    """The statement removing chunks older than the time at placeholder ``mark`` that no file names."""
    return f"DELETE FROM batch_chunks WHERE stored_at < {mark} AND body NOT IN (SELECT body FROM batch_files)"


_errors = msgspec.json.Decoder(tuple[JobError, ...])
_metadata = msgspec.json.Decoder(dict[str, str])


def file_row(file: StoredFile) -> tuple[object, ...]:
    """A file's metadata as column values, in ``FILE_COLUMNS`` order."""
    return tuple(getattr(file, name) for name in FILE_COLUMNS)


def file_from_row(row: Iterable[Any]) -> StoredFile:
    """The file stored in a row read with ``FILE_COLUMNS``."""
    return StoredFile(**dict(zip(FILE_COLUMNS, row, strict=True)))


def _column(job: BatchJob, name: str) -> object:
    value = getattr(job, name)
    if name == "errors":
        return msgspec.json.encode(value).decode()
    if name == "metadata":
        return msgspec.json.encode(dict(value)).decode()
    return value


def job_row(job: BatchJob) -> tuple[object, ...]:
    """A job as column values, in ``JOB_COLUMNS`` order."""
    return tuple(_column(job, name) for name in JOB_COLUMNS)


def advanced_row(job: BatchJob) -> tuple[object, ...]:
    """What ``advance`` writes, in ``ADVANCED_FIELDS`` order."""
    return tuple(_column(job, name) for name in ADVANCED_FIELDS)


def job_from_row(row: Iterable[Any]) -> BatchJob:
    """The job stored in a row read with ``JOB_COLUMNS``."""
    values = dict(zip(JOB_COLUMNS, row, strict=True))
    values["metadata"] = _metadata.decode(values["metadata"])
    values["errors"] = _errors.decode(values["errors"])
    return BatchJob(**values)


def page_query(
    select: str,
    table: str,
    *,
    owner: str | None,
    everyone: bool,
    after: str | None,
    limit: int,
    mark: Callable[[int], str],
    purpose: str | None = None,
) -> tuple[str, tuple[object, ...]]:
    """A page of one owner's rows (everyone's with ``everyone``), newest first, older than the row
    ``after`` names; ``mark(n)``: the driver's n-th placeholder."""
    clauses: list[str] = []
    params: list[object] = []

    def bind(value: object) -> str:
        params.append(value)
        return mark(len(params))

    if not everyone:
        clauses.append("owner IS NULL" if owner is None else f"owner = {bind(owner)}")
    if purpose is not None:
        clauses.append(f"purpose = {bind(purpose)}")
    if after is not None:
        clauses.append(f"(created_at, id) < (SELECT created_at, id FROM {table} WHERE id = {bind(after)})")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return f"{select} {where} ORDER BY created_at DESC, id DESC LIMIT {bind(limit)}", tuple(params)
