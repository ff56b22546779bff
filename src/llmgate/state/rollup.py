"""Hourly usage totals in SQLite, kept up as records are written: a usage summary adds up a few thousand
rows rather than scanning (and sorting) a million records.

Summing the ledger itself costs SQLite about 2 µs a record (a sort for GROUP BY, then some forty
aggregates a row): two seconds for a million. ``usage_rollup`` holds, per grouping dimension (provider,
model, group or key), UTC hour, virtual key and group, the totals a summary reports (counts and sums,
the slowest call, the latency histogram's cumulative counts), which add up across hours. A summary
(``summarise``) adds up, in one read transaction:

- the rollup rows of the whole hours inside its window (all of them, without one);
- the records of the partial hours at the window's edges, from the ledger;
- the records the rollup does not hold yet (``rowid`` above its mark: written by a version of llmgate
  without the rollup), from the ledger;

so it counts every record in the window once, whatever the window, and equals a scan of the ledger
(sums of floats up to rounding: they are added in another order). A window holding no whole hour
scans the ledger, as before.

Each write adds its batch to the rollup in the batch's own transaction (``roll_up``). A database made
before the rollup (or with other latency buckets) gets it when first opened, counted from the records
already there, a chunk per transaction (``migrate``). The ledger is append-only (nothing in llmgate
deletes records); if the newest records are deleted by hand the rollup is counted again, and after
deleting others by hand, ``DROP TABLE usage_rollup`` has it counted again on the next open.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from llmgate.state.ports import GroupBy
from llmgate.state.rows import between
from llmgate.state.summary import LATENCY_BOUNDS_MS, group_sql, part_totals, totals_sql

HOUR_S = 3600
HOUR_OF_TIME = f"CAST(time / {HOUR_S} AS INTEGER)"
"""A record's hour, the rollup's; ``hour_of`` is the same in Python (both truncate the same quotient)."""

KEYS = ("dim", "hour", "keyed", "key", "value")
"""What a rollup row totals: a dimension, an hour, whether there is a key (``key`` is '' when not: a
primary key cannot hold NULL), the key, and the dimension's group (as the summary names it)."""
TOTALS = (
    ("requests", "INTEGER"),
    ("errors", "INTEGER"),
    ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"),
    ("cached_tokens", "INTEGER"),
    ("reasoning_tokens", "INTEGER"),
    ("cost_usd", "REAL"),
    ("cost_unknown", "INTEGER"),
    ("cache_hits", "INTEGER"),
    ("saved_usd", "REAL"),
    ("latency_total_ms", "REAL"),
    ("latency_max_ms", "REAL"),
    *((f"latency_le_{bound}", "INTEGER") for bound in LATENCY_BOUNDS_MS),
)
"""The rollup's totals, in ``part_totals`` order."""
NAMES = tuple(name for name, _ in TOTALS)

DIMENSIONS: tuple[GroupBy, ...] = ("provider", "model", "group", "key")
"""The groupings with rollup rows of their own (each naming its key too, for one key's summaries). Day,
hour and all add up the key rows, the fewest."""

ROLL_UP_ROWS = 50_000
"""The most records one transaction adds to the rollup (a fraction of a second's work)."""
BATCH = "temp.usage_rollup_batch"
"""A scratch table (the connection's own) for the totals of the records being added to the rollup."""
MARKS = "SELECT upto, (SELECT COALESCE(MAX(rowid), 0) FROM usage_records) FROM usage_rollup_mark"
"""The rollup holds the records up to ``rowid`` ``upto``; the ledger's newest ``rowid``."""


def migrate(db: sqlite3.Connection, transaction: Callable[[], AbstractContextManager[None]]) -> None:
    """Create the rollup if missing (or made for other latency buckets), then add up the records it
    lacks (the whole ledger, the first time) ``ROLL_UP_ROWS`` per write ``transaction``: another process
    sharing the file waits for one of those at most, never for the whole ledger."""
    with transaction():
        db.execute(
            "CREATE TABLE IF NOT EXISTS usage_rollup_mark "
            "(id INTEGER PRIMARY KEY CHECK (id = 1), upto INTEGER NOT NULL)"
        )
        db.execute("INSERT OR IGNORE INTO usage_rollup_mark (id, upto) VALUES (1, 0)")
        present = tuple(row[1] for row in db.execute("PRAGMA table_info(usage_rollup)"))
        if present != (*KEYS, *NAMES):
            db.execute("DROP TABLE IF EXISTS usage_rollup")
            db.execute(_create_table())
            db.execute("UPDATE usage_rollup_mark SET upto = 0")
        scratch = ("hour", "keyed", "key", *(f"of_{dimension}" for dimension in DIMENSIONS), *NAMES)
        db.execute(f"CREATE TEMP TABLE IF NOT EXISTS {BATCH.removeprefix('temp.')} ({', '.join(scratch)})")
    done = False
    while not done:
        with transaction():
            done = roll_up(db)


def roll_up(db: sqlite3.Connection) -> bool:
    """Add the records above the mark (a batch just written, and any written without the rollup), up to
    ``ROLL_UP_ROWS`` of them, to the rollup and move the mark, in the caller's write transaction. Whether
    the rollup now holds every record."""
    mark, top = _marks(db)
    if top < mark:
        # The newest records were deleted, so rowids were handed out again: count them all afresh.
        db.execute("DELETE FROM usage_rollup")
        mark = 0
    upto = min(top, mark + ROLL_UP_ROWS)
    if upto > mark:
        fill, *adds = _add_up()
        db.execute(fill, (mark, upto))
        for add in adds:
            db.execute(add)
        db.execute(f"DELETE FROM {BATCH}")
        db.execute("UPDATE usage_rollup_mark SET upto = ?", (upto,))
    return upto == top


def summarise(
    db: sqlite3.Connection,
    *,
    since: float | None,
    until: float | None,
    group_by: GroupBy,
    key_id: str | None = None,
) -> list[Any]:
    """A summary's SQL result rows (group, then ``totals_sql``'s columns), as a scan of the ledger's
    records with since <= time < until (of one key, when given) would give them."""
    db.execute("BEGIN")  # the mark, the rollup and the records, all as of one moment
    try:
        mark, top = _marks(db)
        sql, params = summary_sql(mark, top, since=since, until=until, group_by=group_by, key_id=key_id)
        return db.execute(sql, params).fetchall()
    finally:
        if db.in_transaction:
            db.execute("COMMIT")


def summary_sql(
    mark: int,
    top: int,
    *,
    since: float | None,
    until: float | None,
    group_by: GroupBy,
    key_id: str | None,
) -> tuple[str, list[float | str]]:
    """The summary's SQL and parameters, for a rollup holding the records up to ``rowid`` ``mark`` of a
    ledger whose newest is ``top``."""
    # hour_of never decreases with time, so the records of any hour after since's come after since, and
    # those of any hour before until's before until: those hours are whole.
    first = None if since is None else hour_of(since) + 1
    last = None if until is None else hour_of(until) - 1
    if top < mark or (first is not None and last is not None and first > last):
        where, params = between(since, until, mark=lambda _: "?", key_id=key_id)
        group = group_sql(group_by, whole=_whole)
        return f"SELECT {group}, {totals_sql()} FROM usage_records {where} GROUP BY 1", params
    rolled = {"day": "hour / 24", "hour": "hour", "all": "'all'"}.get(group_by, "value")
    parts = [
        _part(
            f"SELECT {rolled} AS grp, {', '.join(NAMES)} FROM usage_rollup",
            [("dim = ?", group_by if group_by in DIMENSIONS else "key")],
            [("hour >= ?", first), ("hour <= ?", last), ("keyed = 1 AND key = ?", key_id)],
        )
    ]
    records = f"SELECT {group_sql(group_by, whole=_whole)}, {', '.join(part_totals())} FROM usage_records"
    # Rowids above the mark are left to the last part; `+` makes it a filter, not the index searched.
    narrow = [("key_id = ?", key_id), ("+rowid <= ?", mark if top > mark else None)]
    if since is not None and first is not None:
        # The rest of since's hour (the time bounds narrow the search; the hour decides).
        edge = [("time >= ?", since), ("time < ?", (first + 1) * HOUR_S), (f"{HOUR_OF_TIME} < ?", first)]
        parts.append(_part(records, edge, narrow, group=True))
    if until is not None and last is not None:
        # The start of until's hour.
        edge = [("time >= ?", (last - 1) * HOUR_S), ("time < ?", until), (f"{HOUR_OF_TIME} > ?", last)]
        parts.append(_part(records, edge, narrow, group=True))
    if top > mark:
        # Records the rollup lacks: few, so searched by rowid (`+` keeps the time and key indexes out).
        window = [("+time >= ?", since), ("+time < ?", until), ("+key_id = ?", key_id)]
        parts.append(_part(records, [("rowid > ?", mark)], window, group=True))
    sql = f"SELECT grp, {', '.join(map(_merged, NAMES))} FROM ({' UNION ALL '.join(p for p, _ in parts)})"
    return f"{sql} GROUP BY grp", [value for _, values in parts for value in values]


def _part(
    select: str,
    clauses: Sequence[tuple[str, float | str]],
    optional: Sequence[tuple[str, float | str | None]],
    *,
    group: bool = False,
) -> tuple[str, list[float | str]]:
    """A part of the summary: ``select`` where every clause holds (the optional ones with a value)."""
    chosen = [*clauses, *((clause, value) for clause, value in optional if value is not None)]
    where = " AND ".join(clause for clause, _ in chosen)
    return f"{select} WHERE {where}{' GROUP BY 1' if group else ''}", [value for _, value in chosen]


def hour_of(time: float) -> int:
    """The hour ``HOUR_OF_TIME`` puts a record of this time in."""
    return int(time / HOUR_S)


def _marks(db: sqlite3.Connection) -> tuple[int, int]:
    mark, top = db.execute(MARKS).fetchone()
    return int(mark), int(top)


def _whole(expression: str) -> str:
    return f"CAST({expression} AS INTEGER)"


def _merged(name: str) -> str:
    """How the totals of parts make the summary's column."""
    return "TOTAL(latency_total_ms) / SUM(requests)" if name == "latency_total_ms" else _added(name)


def _added(name: str) -> str:
    """How the totals of parts make their total."""
    return f"MAX({name})" if name == "latency_max_ms" else f"SUM({name})"


def _create_table() -> str:
    kinds = (("dim", "TEXT"), ("hour", "INTEGER"), ("keyed", "INTEGER"), ("key", "TEXT"), ("value", "TEXT"))
    columns = ",\n    ".join(f"{name} {kind} NOT NULL" for name, kind in (*kinds, *TOTALS))
    return (
        f"CREATE TABLE usage_rollup (\n    {columns},\n    PRIMARY KEY ({', '.join(KEYS)})\n) WITHOUT ROWID"
    )


@functools.cache
def _add_up() -> tuple[str, ...]:
    """The statements adding the records above a rowid to the rollup: their totals per hour, key and
    every dimension's group first, into a scratch table (the one pass over the records, its dearest
    part), then those added up per dimension into the rollup (few rows: a batch spans an hour or two)."""
    keys = f"{HOUR_OF_TIME}, key_id IS NOT NULL, COALESCE(key_id, '')"
    groups = ", ".join(group_sql(dimension, whole=_whole) for dimension in DIMENSIONS)
    by = ", ".join(str(column) for column in range(1, 4 + len(DIMENSIONS)))
    fill = (
        f"INSERT INTO {BATCH} SELECT {keys}, {groups}, {', '.join(part_totals())} "
        f"FROM usage_records WHERE rowid > ? AND rowid <= ? GROUP BY {by}"
    )
    merge = ", ".join(
        f"{name} = MAX({name}, excluded.{name})"
        if name == "latency_max_ms"
        else f"{name} = {name} + excluded.{name}"
        for name in NAMES
    )
    totals = ", ".join(map(_added, NAMES))
    adds = tuple(
        f"INSERT INTO usage_rollup ({', '.join((*KEYS, *NAMES))}) "
        f"SELECT '{dimension}', hour, keyed, key, of_{dimension}, {totals} "
        f"FROM {BATCH} WHERE true GROUP BY 2, 3, 4, 5 "  # WHERE: SQLite's rule for an upsert's SELECT
        f"ON CONFLICT ({', '.join(KEYS)}) DO UPDATE SET {merge}"
        for dimension in DIMENSIONS
    )
    return (fill, *adds)
