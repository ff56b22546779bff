"""Rows of the SQL backends (SQLite, PostgreSQL): column lists and row <-> record conversions.

Lists (allowed models) and metadata travel as JSON text; both drivers hand rows back as sequences.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

from llmgate.state.ports import UsageRecord, VirtualKey

KEY_COLUMNS = (
    "id",
    "name",
    "key_hash",
    "key_prefix",
    "models",
    "rpm",
    "tpm",
    "max_parallel",
    "budget_usd",
    "budget_period",
    "expires_at",
    "metadata",
    "created_at",
    "revoked",
)
USAGE_COLUMNS: tuple[str, ...] = UsageRecord.__struct_fields__


def key_row(key: VirtualKey) -> tuple[object, ...]:
    """A key as column values, in ``KEY_COLUMNS`` order."""
    return (
        key.id,
        key.name,
        key.key_hash,
        key.key_prefix,
        json.dumps(list(key.models)),
        key.rpm,
        key.tpm,
        key.max_parallel,
        key.budget_usd,
        key.budget_period,
        key.expires_at,
        json.dumps(dict(key.metadata)),
        key.created_at,
        key.revoked,
    )


def key_from_row(row: Iterable[Any]) -> VirtualKey:
    """The key stored in a row read with ``KEY_COLUMNS``."""
    values = dict(zip(KEY_COLUMNS, row, strict=True))
    values["models"] = tuple(json.loads(values["models"]))
    values["metadata"] = json.loads(values["metadata"])
    values["revoked"] = bool(values["revoked"])
    return VirtualKey(**values)


_usage_values = attrgetter(*USAGE_COLUMNS)


def usage_row(record: UsageRecord) -> tuple[object, ...]:
    """A usage record as column values, in ``USAGE_COLUMNS`` order."""
    values: tuple[object, ...] = _usage_values(record)
    return values


def usage_from_row(row: Iterable[Any]) -> UsageRecord:
    """The record stored in a row read with ``USAGE_COLUMNS``."""
    values = dict(zip(USAGE_COLUMNS, row, strict=True))
    values["stream"] = bool(values["stream"])
    return UsageRecord(**values)


def between(
    since: float | None,
    until: float | None,
    *,
    mark: Callable[[int], str],
    key_id: str | None = None,
    errors_only: bool = False,
) -> tuple[str, list[float | str]]:
    """A WHERE clause for since <= time < until (and one key's records, and only failures) and its
    parameters; ``mark(n)`` is the n-th placeholder."""
    clauses: list[str] = ["status >= 400"] if errors_only else []
    params: list[float | str] = []
    for column, operator, bound in (("time", ">=", since), ("time", "<", until), ("key_id", "=", key_id)):
        if bound is not None:
            params.append(bound)
            clauses.append(f"{column} {operator} {mark(len(params))}")
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params
