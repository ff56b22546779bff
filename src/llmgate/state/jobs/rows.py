"""Rows of the SQL job stores (SQLite, PostgreSQL): column lists and row <-> record conversions.

Metadata and errors travel as JSON text; both drivers hand rows back as sequences.
"""

from __future__ import annotations

from collections.abc import Iterable
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


def owned(owner: str | None, everyone: bool, *, mark: str) -> tuple[str, tuple[object, ...]]:
    """The ``WHERE`` clause (and its parameter) choosing one owner's rows; ``mark``: the placeholder."""
    if everyone:
        return "", ()
    if owner is None:
        return "WHERE owner IS NULL", ()
    return f"WHERE owner = {mark}", (owner,)
