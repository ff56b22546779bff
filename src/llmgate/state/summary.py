"""Usage summaries, the same on every backend: what a row totals, how records are grouped, and the
latency percentiles.

Percentiles come from a latency histogram (``LATENCY_BOUNDS_MS``, counted in the same single pass as
the totals, and added up like them: SQLite keeps hourly totals, ``state.rollup``), interpolated within
the bucket they fall in: exact to within a bucket's width, never a sort of the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, get_args

from llmgate.state.ports import GroupBy, UsageRecord, UsageRow

GROUPINGS: tuple[str, ...] = get_args(GroupBy)
LATENCY_BOUNDS_MS = (
    1, 2, 5, 10, 20, 35, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500,
    10_000, 15_000, 20_000, 30_000, 60_000, 120_000, 300_000,
)  # fmt: skip


def totals_sql() -> str:
    """The aggregate columns of a summary row after its group (the order ``row_of`` reads)."""
    return ",\n    ".join(_totals("AVG(latency_ms)"))


def part_totals() -> list[str]:
    """``totals_sql``'s columns with the latency total in place of its average: totals of disjoint sets
    of records that add up (``MAX`` for the slowest), as a rollup stores them."""
    return _totals("SUM(latency_ms)")


def _totals(latency: str) -> list[str]:
    buckets = [f"SUM(CASE WHEN latency_ms <= {bound} THEN 1 ELSE 0 END)" for bound in LATENCY_BOUNDS_MS]
    return [
        "COUNT(*)",
        "SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)",
        "SUM(prompt_tokens)",
        "SUM(completion_tokens)",
        "SUM(cached_tokens)",
        "SUM(reasoning_tokens)",
        "COALESCE(SUM(cost_usd), 0)",
        "SUM(CASE WHEN cost_usd IS NULL THEN 1 ELSE 0 END)",
        "SUM(CASE WHEN cache IN ('hit', 'semantic-hit') THEN 1 ELSE 0 END)",
        "COALESCE(SUM(saved_usd), 0)",
        latency,
        "MAX(latency_ms)",
        *buckets,
    ]


def group_sql(group_by: GroupBy, *, whole: Callable[[str], str]) -> str:
    """The SQL expression a summary groups on. Days and hours are whole numbers of them since the epoch
    (``whole(expression)`` is the dialect's integer part: far cheaper per row than formatting a date),
    named by ``rows_of``."""
    expressions = {
        "provider": "COALESCE(provider, '-')",
        "model": "COALESCE(upstream_model, '-')",
        "key": "COALESCE(key_id, '-')",
        "group": "model_group",
        "all": "'all'",
        "day": whole("time / 86400"),
        "hour": whole("time / 3600"),
    }
    if group_by not in expressions:
        raise ValueError(f"unknown group_by {group_by!r}: expected {', '.join(GROUPINGS)}")
    return expressions[group_by]


def rows_of(rows: Iterable[Any], group_by: GroupBy) -> list[UsageRow]:
    """SQL result rows (group, then ``totals_sql``'s columns) -> summary lines ordered by group (by code
    point, the same on every backend)."""
    lines = []
    for row in rows:
        values = list(row)
        if group_by in ("day", "hour"):
            seconds = int(values[0]) * (86_400 if group_by == "day" else 3600)
            values[0] = _stamp(seconds, group_by)
        lines.append(row_of(values))
    return sorted(lines, key=lambda line: line.group)


def series_of(rows: Iterable[Any], step: float, group_by: GroupBy) -> list[tuple[float, UsageRow]]:
    """SQL result rows (slot, group, then ``totals_sql``'s columns) -> (slot start, line), in order."""
    lines = [(int(row[0]) * step, rows_of([list(row)[1:]], group_by)[0]) for row in rows]
    return sorted(lines, key=lambda item: (item[0], item[1].group))


def _stamp(seconds: float, group_by: GroupBy) -> str:
    stamp = datetime.fromtimestamp(seconds, tz=UTC)
    return stamp.strftime("%Y-%m-%d" if group_by == "day" else "%Y-%m-%dT%H:00Z")


def row_of(row: Sequence[Any]) -> UsageRow:
    """One SQL result row as a summary line."""
    group, requests, errors, prompt, completion, cached, reasoning, cost, unknown, hits, saved = row[:11]
    average, slowest = row[11], row[12]
    cumulative = [int(count) for count in row[13:]]
    count = int(requests)
    return UsageRow(
        group=str(group),
        requests=count,
        errors=int(errors),
        prompt_tokens=int(prompt),
        completion_tokens=int(completion),
        cached_tokens=int(cached),
        reasoning_tokens=int(reasoning),
        cost_usd=float(cost),
        cost_unknown=int(unknown),
        cache_hits=int(hits),
        saved_usd=float(saved),
        avg_latency_ms=float(average),
        p50_latency_ms=percentile(cumulative, count, 0.5, float(slowest)),
        p95_latency_ms=percentile(cumulative, count, 0.95, float(slowest)),
    )


def percentile(cumulative: Sequence[int], count: int, q: float, slowest: float) -> float:
    """The ``q`` quantile from cumulative bucket counts (``cumulative[i]`` records at most
    ``LATENCY_BOUNDS_MS[i]``), interpolated within its bucket; ``slowest`` caps the last one."""
    if count == 0:
        return 0.0
    rank = max(1, math.ceil(q * count))
    below, lower = 0, 0.0
    for bound, upto in zip(LATENCY_BOUNDS_MS, cumulative, strict=True):
        if upto >= rank:
            inside = upto - below
            upper = min(float(bound), slowest)
            return round(lower + (upper - lower) * (rank - below) / inside, 3) if inside else upper
        below, lower = upto, float(bound)
    return round(lower + (slowest - lower) * (rank - below) / max(1, count - below), 3)


def group_of(record: UsageRecord, group_by: GroupBy) -> str:
    """The summary group a record falls in (``-`` for a missing provider, model or key)."""
    if group_by == "provider":
        return record.provider or "-"
    if group_by == "model":
        return record.upstream_model or "-"
    if group_by == "key":
        return record.key_id or "-"
    if group_by == "group":
        return record.model_group
    if group_by == "all":
        return "all"
    if group_by in ("day", "hour"):
        return _stamp(record.time, group_by)
    raise ValueError(f"unknown group_by {group_by!r}: expected {', '.join(GROUPINGS)}")


@dataclass(slots=True)
class Totals:
    """A summary line added up in Python (the memory backend), with the same histogram as SQL's."""

    values: list[Any] = field(default_factory=lambda: [0] * 11 + [0.0, 0.0] + [0] * len(LATENCY_BOUNDS_MS))

    def add(self, record: UsageRecord) -> None:
        """Count one record."""
        v = self.values
        v[1] += 1
        v[2] += record.status >= 400
        v[3] += record.prompt_tokens
        v[4] += record.completion_tokens
        v[5] += record.cached_tokens
        v[6] += record.reasoning_tokens
        if record.cost_usd is None:
            v[8] += 1
        else:
            v[7] += record.cost_usd
        v[9] += record.cache in ("hit", "semantic-hit")
        v[10] += record.saved_usd or 0.0
        v[11] += record.latency_ms
        v[12] = max(v[12], record.latency_ms)
        for index, bound in enumerate(LATENCY_BOUNDS_MS):
            if record.latency_ms <= bound:
                v[13 + index] += 1

    def row(self, group: str) -> UsageRow:
        """The line."""
        values = list(self.values)
        values[0] = group
        values[11] = values[11] / values[1] if values[1] else 0.0
        return row_of(values)
