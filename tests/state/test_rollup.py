"""SQLite's hourly usage rollup: summaries stay those of the records themselves however the rollup came to
be (an older database, records written without it, a rollup behind its ledger or ahead of it)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from llmgate.state import rollup
from llmgate.state.memory import MemoryLedger
from llmgate.state.ports import UsageRecord
from llmgate.state.rows import USAGE_COLUMNS, usage_row
from llmgate.state.sqlite import SqliteStore

from .test_ledger import same_summaries, varied_records

RECORDS = varied_records(300, seed=11)


async def _reference(records: list[UsageRecord]) -> MemoryLedger:
    reference = MemoryLedger()
    await reference.write(records)
    return reference


def _marks(path: Path) -> tuple[int, int, int]:
    """The rollup's mark, the ledger's newest rowid and how many records the rollup holds."""
    with sqlite3.connect(path) as db:
        mark, top = db.execute(rollup.MARKS).fetchone()
        (held,) = db.execute(
            "SELECT COALESCE(SUM(requests), 0) FROM usage_rollup WHERE dim = 'key'"
        ).fetchone()
    return mark, top, held


def _insert_without_rollup(path: Path, records: list[UsageRecord]) -> None:
    """Write records as a version of llmgate without the rollup would."""
    marks = ", ".join("?" * len(USAGE_COLUMNS))
    with sqlite3.connect(path) as db:
        db.executemany(
            f"INSERT INTO usage_records ({', '.join(USAGE_COLUMNS)}) VALUES ({marks})",
            [usage_row(record) for record in records],
        )


async def test_writes_keep_the_rollup_whole(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = await SqliteStore.connect(str(path))
    for start in range(0, len(RECORDS), 70):
        await store.write(RECORDS[start : start + 70])
    assert _marks(path) == (len(RECORDS), len(RECORDS), len(RECORDS))
    await same_summaries(store, await _reference(RECORDS))
    await store.close()


async def test_a_summary_of_the_whole_ledger_reads_the_rollup_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = await SqliteStore.connect(str(path))
    await store.write(RECORDS)
    await store.close()
    sql, params = rollup.summary_sql(
        len(RECORDS), len(RECORDS), since=None, until=None, group_by="group", key_id=None
    )
    with sqlite3.connect(path) as db:
        plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
    assert plan == ["SEARCH usage_rollup USING PRIMARY KEY (dim=?)", "USE TEMP B-TREE FOR GROUP BY"]


async def test_a_database_from_before_the_rollup_is_rolled_up_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = await SqliteStore.connect(str(path))
    await store.close()
    with sqlite3.connect(path) as db:
        db.executescript("DROP TABLE usage_rollup; DROP TABLE usage_rollup_mark;")
    _insert_without_rollup(path, RECORDS)
    reopened = await SqliteStore.connect(str(path))
    assert _marks(path) == (len(RECORDS), len(RECORDS), len(RECORDS))
    await same_summaries(reopened, await _reference(RECORDS))
    await reopened.close()


async def test_a_rollup_made_for_other_latency_buckets_is_counted_again(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = await SqliteStore.connect(str(path))
    await store.write(RECORDS)
    await store.close()
    with sqlite3.connect(path) as db:
        db.executescript(
            "DROP TABLE usage_rollup; CREATE TABLE usage_rollup (dim TEXT, hour INTEGER, requests INTEGER);"
            "INSERT INTO usage_rollup VALUES ('key', 1, 99);"
        )
    reopened = await SqliteStore.connect(str(path))
    assert _marks(path) == (len(RECORDS), len(RECORDS), len(RECORDS))
    await same_summaries(reopened, await _reference(RECORDS))
    await reopened.close()


async def test_records_written_without_the_rollup_count_and_are_rolled_up_by_the_next_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.db"
    store = await SqliteStore.connect(str(path))
    await store.write(RECORDS[:100])
    _insert_without_rollup(path, RECORDS[100:250])  # an older llmgate sharing the file
    assert _marks(path) == (100, 250, 100)
    await same_summaries(store, await _reference(RECORDS[:250]))
    await store.write(RECORDS[250:])
    assert _marks(path) == (len(RECORDS), len(RECORDS), len(RECORDS))
    await same_summaries(store, await _reference(RECORDS))
    await store.close()


async def test_a_rollup_behind_its_ledger_still_gives_every_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollup, "ROLL_UP_ROWS", 40)  # each write catches up 40 records at most
    path = tmp_path / "ledger.db"
    store = await SqliteStore.connect(str(path))
    await store.write(RECORDS[:100])
    assert _marks(path) == (40, 100, 40)
    await same_summaries(store, await _reference(RECORDS[:100]))
    await store.close()
    reopened = await SqliteStore.connect(str(path))  # opening catches up all the way, 40 at a time
    assert _marks(path) == (100, 100, 100)
    await same_summaries(reopened, await _reference(RECORDS[:100]))
    await reopened.close()


async def test_deleting_the_newest_records_by_hand_has_the_rollup_counted_again(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = await SqliteStore.connect(str(path))
    await store.write(RECORDS)
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM usage_records WHERE rowid > 200")
    await same_summaries(store, await _reference(RECORDS[:200]))  # the rollup is ahead: not used
    await store.write(RECORDS[200:250])
    assert _marks(path) == (250, 250, 250)
    await same_summaries(store, await _reference(RECORDS[:250]))
    await store.close()
