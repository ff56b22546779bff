"""Usage reports and service stats, read from the usage ledger (SQLite or PostgreSQL): the same figures
for ``/api/usage``, ``/api/stats``, ``gw.usage()``, ``gw.stats()`` and ``llmgate usage``.

The records still queued in memory are written first, so a report includes the calls just made.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

import msgspec

from llmgate.core.errors import InvalidRequest
from llmgate.state.ports import GroupBy, UsageLedger, UsageRow
from llmgate.state.summary import GROUPINGS

FORMATS = ("json", "csv", "jsonl")
MIN_STEP, MAX_STEP, MAX_SLOTS = 10.0, 86_400.0, 2000
MAX_RECENT = 500
COLUMNS = tuple(field.name for field in dataclasses.fields(UsageRow))


class Reports:
    """Reports over one gateway's ledger; ``ready`` writes the queued records and gives the ledger."""

    def __init__(
        self,
        ready: Callable[[], Awaitable[UsageLedger]],
        *,
        clock: Callable[[], float] = time.time,
        started_at: float | None = None,
    ) -> None:
        self._ready = ready
        self._clock = clock
        self.started_at = started_at if started_at is not None else clock()
        """When "since start" begins: this process's start, or the server's (all its workers share it)."""

    async def usage(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        group_by: str = "group",
        key_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Totals per group over since <= time < until (one key's, when given), as plain dicts."""
        if group_by not in GROUPINGS:
            raise InvalidRequest(
                f"group_by must be one of {', '.join(GROUPINGS)}, not '{group_by[:40]}'", param="group_by"
            )
        ledger = await self._ready()
        rows = await ledger.summary(since=since, until=until, group_by=_grouping(group_by), key_id=key_id)
        return [_row(row) for row in rows]

    async def series(
        self, *, since: float, step: float, group_by: str = "provider", key_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Totals per ``step``-second slot and group since ``since`` (for charts): each row is a summary
        line with its slot's start (``at``, unix seconds)."""
        if not MIN_STEP <= step <= MAX_STEP:
            raise InvalidRequest(f"step must be seconds in [{MIN_STEP:g}, {MAX_STEP:g}]", param="step")
        if (self._clock() - since) / step > MAX_SLOTS:
            raise InvalidRequest(f"at most {MAX_SLOTS} slots: a later since or a larger step", param="step")
        ledger = await self._ready()
        rows = await ledger.series(
            since=since, until=None, step=step, group_by=_grouping(group_by), key_id=key_id
        )
        return [{"at": at, **_row(row)} for at, row in rows]

    async def recent_errors(self, *, limit: int = 50) -> list[dict[str, Any]]:
        """The latest failed calls, newest first (no secrets: records hold none)."""
        if not 1 <= limit <= MAX_RECENT:
            raise InvalidRequest(f"limit must be in [1, {MAX_RECENT}]", param="limit")
        ledger = await self._ready()
        records = await ledger.records(errors_only=True, newest_first=True, limit=limit)
        return [msgspec.structs.asdict(record) for record in records]

    async def stats(self, *, window: float | None = None, key_id: str | None = None) -> dict[str, Any]:
        """The service's figures since this process started, or over the last ``window`` seconds: total
        requests, errors, cache hits, tokens, cost, uptime, and per provider request_count, avg_latency
        (seconds), error_rate."""
        now = self._clock()
        since = self.started_at if window is None else now - window
        providers = await self.usage(since=since, group_by="provider", key_id=key_id)
        total = {name: sum(row[name] for row in providers) for name in _SUMMED}
        requests = total["requests"]
        return {
            "since": since,
            "window_s": window,
            "uptime_s": round(now - self.started_at, 3),
            "total_requests": requests,
            "total_errors": total["errors"],
            "error_rate": round(total["errors"] / requests, 4) if requests else 0.0,
            "cache_hits": total["cache_hits"],
            "cache_hit_rate": round(total["cache_hits"] / requests, 4) if requests else 0.0,
            "prompt_tokens": total["prompt_tokens"],
            "completion_tokens": total["completion_tokens"],
            "total_tokens": total["prompt_tokens"] + total["completion_tokens"],
            "total_cost": round(total["cost_usd"], 8),
            "cost_unknown": total["cost_unknown"],
            "saved_usd": round(total["saved_usd"], 8),
            "providers": {
                row["group"]: {
                    "request_count": row["requests"],
                    "avg_latency": round(row["avg_latency_ms"] / 1000, 6),
                    "error_rate": round(row["errors"] / row["requests"], 4) if row["requests"] else 0.0,
                    "p50_latency_ms": row["p50_latency_ms"],
                    "p95_latency_ms": row["p95_latency_ms"],
                    "tokens": row["prompt_tokens"] + row["completion_tokens"],
                    "cost": round(row["cost_usd"], 8),
                }
                for row in providers
            },
        }


_SUMMED = (
    "requests",
    "errors",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "cost_unknown",
    "saved_usd",
)


def render(rows: list[dict[str, Any]], fmt: str) -> tuple[bytes, str]:
    """A report's body and content type: ``json`` (``{"rows": [...], "count": N}``), ``csv`` or ``jsonl``."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue().encode(), "text/csv; charset=utf-8"
    if fmt == "jsonl":
        return b"".join(msgspec.json.encode(row) + b"\n" for row in rows), "application/x-ndjson"
    if fmt == "json":
        return msgspec.json.encode({"rows": rows, "count": len(rows)}), "application/json"
    raise InvalidRequest(f"format must be one of {', '.join(FORMATS)}, not '{fmt[:40]}'", param="format")


def parse_time(value: str | None, param: str) -> float | None:
    """``since`` / ``until``: unix seconds, or an ISO 8601 date or time (UTC when no zone is given)."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"'{param}' must be unix seconds or an ISO 8601 date/time, not '{value[:40]}'", param=param
        ) from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp()


def _grouping(name: str) -> GroupBy:
    if name not in GROUPINGS:
        raise InvalidRequest(f"group_by must be one of {', '.join(GROUPINGS)}", param="group_by")
    return cast(GroupBy, name)


def _row(row: UsageRow) -> dict[str, Any]:
    values = dataclasses.asdict(row)
    values["cost_usd"] = round(values["cost_usd"], 8)
    values["saved_usd"] = round(values["saved_usd"], 8)
    values["avg_latency_ms"] = round(values["avg_latency_ms"], 3)
    return values
