"""``UsageLedger`` conformance: memory, SQLite and PostgreSQL behave the same."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from msgspec.structs import replace

from llmgate.state import UsageRecord, UsageRow

from .conftest import Backend

DAY_1 = datetime(2024, 5, 1, tzinfo=UTC).timestamp()
DAY_2 = datetime(2024, 5, 2, tzinfo=UTC).timestamp()

BASE = UsageRecord(
    time=DAY_1 + 3600,
    request_id="req-1",
    key_id="key_a",
    model_group="gpt",
    provider="openai",
    deployment="openai-main",
    upstream_model="gpt-4o-2024-08-06",
    prompt_tokens=100,
    completion_tokens=20,
    cached_tokens=10,
    reasoning_tokens=0,
    cost_usd=0.5,
    latency_ms=100.0,
    ttft_ms=40.5,
    status=200,
    error_type=None,
    cache="miss",
    attempts=1,
    stream=True,
)
RECORDS = [
    BASE,
    replace(
        BASE,
        time=DAY_1 + 7200,
        request_id="req-2",
        provider="anthropic",
        model_group="claude",
        cost_usd=None,
        latency_ms=300.0,
        ttft_ms=None,
        stream=False,
        cache=None,
    ),
    replace(
        BASE,
        time=DAY_2 + 60,
        request_id="req-3",
        key_id=None,
        provider=None,
        deployment=None,
        upstream_model=None,
        prompt_tokens=0,
        completion_tokens=0,
        cost_usd=None,
        latency_ms=5.0,
        status=400,
        error_type="invalid_request",
        attempts=0,
    ),
    replace(
        BASE,
        time=DAY_2 + 120,
        request_id="req-4",
        key_id="key_b",
        cost_usd=0.25,
        latency_ms=200.0,
        status=429,
        error_type="rate_limited",
        attempts=3,
    ),
    replace(
        BASE,
        time=DAY_2 + 180,
        request_id="req-5",
        cost_usd=1.25,
        prompt_tokens=1000,
        completion_tokens=300,
        latency_ms=400.0,
    ),
]


async def _filled(ledger: Backend[Any]) -> Any:
    store = await ledger.client()
    await store.write(RECORDS[3:])  # batches arrive in any order
    await store.write(RECORDS[:3])
    return store


async def test_write_batches_then_count_and_read_back_in_time_order(ledger: Backend[Any]) -> None:
    store = await _filled(ledger)
    assert await store.count() == 5
    assert await store.records() == RECORDS
    await store.write([])
    assert await store.count() == 5


async def test_records_between_since_and_until_with_limit(ledger: Backend[Any]) -> None:
    store = await _filled(ledger)
    assert await store.records(since=DAY_2) == RECORDS[2:]
    assert await store.records(until=DAY_2) == RECORDS[:2]
    assert await store.records(since=RECORDS[1].time, until=RECORDS[3].time) == RECORDS[1:3]
    assert await store.records(limit=2) == RECORDS[:2]
    assert await store.records(since=DAY_2, limit=1) == RECORDS[2:3]


EXPECTED = {
    "provider": [
        UsageRow("-", 1, 1, 0, 0, 0.0, 1, 5.0),
        UsageRow("anthropic", 1, 0, 100, 20, 0.0, 1, 300.0),
        UsageRow("openai", 3, 1, 1200, 340, 2.0, 0, 700.0 / 3),
    ],
    "model": [
        UsageRow("claude", 1, 0, 100, 20, 0.0, 1, 300.0),
        UsageRow("gpt", 4, 2, 1200, 340, 2.0, 1, 705.0 / 4),
    ],
    "key": [
        UsageRow("-", 1, 1, 0, 0, 0.0, 1, 5.0),
        UsageRow("key_a", 3, 0, 1200, 340, 1.75, 1, 800.0 / 3),
        UsageRow("key_b", 1, 1, 100, 20, 0.25, 0, 200.0),
    ],
    "day": [
        UsageRow("2024-05-01", 2, 0, 200, 40, 0.5, 1, 200.0),
        UsageRow("2024-05-02", 3, 2, 1100, 320, 1.5, 1, 605.0 / 3),
    ],
}


@pytest.mark.parametrize("group_by", sorted(EXPECTED))
async def test_summary_by_each_grouping(ledger: Backend[Any], group_by: str) -> None:
    store = await _filled(ledger)
    rows = await store.summary(since=None, until=None, group_by=group_by)
    assert rows == [
        dataclasses.replace(
            row, cost_usd=pytest.approx(row.cost_usd), avg_latency_ms=pytest.approx(row.avg_latency_ms)
        )
        for row in EXPECTED[group_by]
    ]


async def test_summary_within_a_time_range(ledger: Backend[Any]) -> None:
    store = await _filled(ledger)
    rows = await store.summary(since=DAY_1, until=DAY_2 + 150, group_by="day")
    assert [(row.group, row.requests, row.errors) for row in rows] == [
        ("2024-05-01", 2, 0),
        ("2024-05-02", 2, 2),
    ]
    assert await store.summary(since=DAY_2 + 3600, until=None, group_by="key") == []


async def test_spend_sums_known_costs_of_one_key_since_a_time(ledger: Backend[Any]) -> None:
    store = await _filled(ledger)
    assert await store.spend(key_id="key_a", since=0) == pytest.approx(1.75)
    assert await store.spend(key_id="key_a", since=RECORDS[1].time) == pytest.approx(1.25)
    assert await store.spend(key_id="key_b", since=0) == pytest.approx(0.25)
    assert await store.spend(key_id="nobody", since=0) == 0


async def test_another_client_reads_what_one_wrote(ledger: Backend[Any]) -> None:
    await _filled(ledger)
    reader = await ledger.client()
    assert await reader.count() == 5
