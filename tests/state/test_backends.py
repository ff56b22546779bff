"""What is particular to one backend: URL handling, SQLite's file, the memory backend's bounds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from msgspec.structs import replace

from clock import FakeClock
from llmgate.state import open_database, open_redis
from llmgate.state.memory import MemoryCounters, MemoryLedger, MemoryStore
from llmgate.state.sqlite import SqliteStore, sqlite_path

from .test_ledger import BASE


async def test_open_database_memory_holds_keys_usage_and_counters() -> None:
    database = await open_database("memory")
    assert isinstance(database, MemoryStore)
    await database.write([BASE])
    assert await database.count() == 1
    assert (await database.take("b", 1, limit=1, ttl=None)).allowed
    assert await database.list() == []
    await database.close()


async def test_open_database_sqlite_url_creates_the_file(tmp_path: Path) -> None:
    path = tmp_path / "usage.db"
    database = await open_database(f"sqlite:///{path}")
    assert isinstance(database, SqliteStore)
    await database.write([BASE])
    await database.close()
    assert path.exists()
    reopened = await SqliteStore.connect(str(path))
    assert await reopened.records() == [BASE]
    await reopened.close()


async def test_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    store = await SqliteStore.connect(str(tmp_path / "wal.db"))
    await store.close()
    with sqlite3.connect(tmp_path / "wal.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_sqlite_in_memory_databases_are_private() -> None:
    first, second = await SqliteStore.connect("sqlite:///:memory:"), await SqliteStore.connect(":memory:")
    await first.adjust("b", 1, ttl=None)
    assert (await first.value("b"), await second.value("b")) == (1, 0)
    await first.close()
    await second.close()
    await first.close()  # closing twice is harmless


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///usage.db", "usage.db"),
        ("sqlite:////var/lib/llmgate/usage.db", "/var/lib/llmgate/usage.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("data/usage.db", "data/usage.db"),
    ],
)
def test_sqlite_path_from_url_or_path(url: str, path: str) -> None:
    assert sqlite_path(url) == path


@pytest.mark.parametrize("url", ["sqlite://usage.db", "sqlite:///", ""])
def test_sqlite_bad_urls_are_value_errors(url: str) -> None:
    with pytest.raises(ValueError, match="SQLite"):
        sqlite_path(url)


async def test_unsupported_urls_are_value_errors_that_hide_passwords() -> None:
    with pytest.raises(ValueError, match="mysql") as raised:
        await open_database("mysql://admin:s3cret@db/llmgate")
    assert "s3cret" not in str(raised.value)
    with pytest.raises(ValueError, match="memory"):
        await open_database("memroy")
    with pytest.raises(ValueError, match="redis://"):
        await open_redis("http://127.0.0.1:6379")


async def test_memory_counters_purge_expired_buckets_as_they_go() -> None:
    clock = FakeClock()
    counters = MemoryCounters(clock=clock)
    for window in range(100):
        await counters.take(f"rpm:{window}", 1, limit=10, ttl=60)
    await counters.take("live", 1, limit=10, ttl=None)
    clock.advance(61)
    for _ in range(25):
        await counters.adjust("live", 1, ttl=None)
    assert len(counters) == 1
    assert await counters.value("live") == 26


async def test_memory_ledger_keeps_the_newest_records_up_to_its_bound() -> None:
    ledger = MemoryLedger(max_records=3)
    await ledger.write([replace(BASE, request_id=str(n), time=BASE.time + n) for n in range(5)])
    assert [record.request_id for record in await ledger.records()] == ["2", "3", "4"]
