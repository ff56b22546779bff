"""Rows of the SQL backends (SQLite, PostgreSQL): column lists and row <-> record conversions.

Lists (allowed models) and metadata travel as JSON text; both drivers hand rows back as sequences.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

from llmgate.state.ports import GroupBy, UsageRecord, UsageRow, VirtualKey

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

SUMMARY_TOTALS = """COUNT(*),
    SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END),
    SUM(prompt_tokens),
    SUM(completion_tokens),
    COALESCE(SUM(cost_usd), 0),
    SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END),
    AVG(latency_ms)"""
"""The aggregate columns of a summary row, after the group: see ``summary_row``."""


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


def group_expression(group_by: GroupBy, *, day: str) -> str:
    """The SQL expression a summary groups on; ``day`` is the dialect's UTC-date-of-``time`` expression."""
    if group_by == "provider":
        return "COALESCE(provider, '-')"
    if group_by == "model":
        return "model_group"
    if group_by == "key":
        return "COALESCE(key_id, '-')"
    if group_by == "day":
        return day
    raise ValueError(f"unknown group_by {group_by!r}: expected provider, model, key or day")


def summary_rows(rows: Iterable[Iterable[Any]]) -> list[UsageRow]:
    """Rows of ``SELECT <group>, SUMMARY_TOTALS ... GROUP BY 1`` -> summary lines ordered by group.

    Sorted here, not in SQL, so every backend orders groups the same way (by code point).
    """
    lines = [
        UsageRow(
            group=str(group),
            requests=int(requests),
            errors=int(errors),
            prompt_tokens=int(prompt),
            completion_tokens=int(completion),
            cost_usd=float(cost),
            cost_unknown=int(unknown),
            avg_latency_ms=float(latency),
        )
        for group, requests, errors, prompt, completion, cost, unknown, latency in rows
    ]
    return sorted(lines, key=lambda line: line.group)


def between(
    since: float | None, until: float | None, *, mark: Callable[[int], str]
) -> tuple[str, list[float]]:
    """A WHERE clause for since <= time < until and its parameters; ``mark(n)`` is the n-th placeholder."""
    clauses: list[str] = []
    params: list[float] = []
    for operator, bound in ((">=", since), ("<", until)):
        if bound is not None:
            params.append(bound)
            clauses.append(f"time {operator} {mark(len(params))}")
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params
