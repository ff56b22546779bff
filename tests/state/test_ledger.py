"""``UsageLedger`` conformance: memory, SQLite and PostgreSQL behave the same."""

from __future__ import annotations

import random
from dataclasses import astuple
from datetime import UTC, datetime
from typing import Any

import pytest
from msgspec.structs import replace

from llmgate.state import UsageRecord, UsageRow
from llmgate.state.memory import MemoryLedger
from llmgate.state.summary import GROUPINGS

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


# (group, requests, errors, prompt, completion, cost, cost unknown, average latency)
EXPECTED = {
    "provider": [
        ("-", 1, 1, 0, 0, 0.0, 1, 5.0),
        ("anthropic", 1, 0, 100, 20, 0.0, 1, 300.0),
        ("openai", 3, 1, 1200, 340, 2.0, 0, 700.0 / 3),
    ],
    "group": [
        ("claude", 1, 0, 100, 20, 0.0, 1, 300.0),
        ("gpt", 4, 2, 1200, 340, 2.0, 1, 705.0 / 4),
    ],
    "model": [
        ("-", 1, 1, 0, 0, 0.0, 1, 5.0),
        ("gpt-4o-2024-08-06", 4, 1, 1300, 360, 2.0, 1, 1000.0 / 4),
    ],
    "key": [
        ("-", 1, 1, 0, 0, 0.0, 1, 5.0),
        ("key_a", 3, 0, 1200, 340, 1.75, 1, 800.0 / 3),
        ("key_b", 1, 1, 100, 20, 0.25, 0, 200.0),
    ],
    "day": [
        ("2024-05-01", 2, 0, 200, 40, 0.5, 1, 200.0),
        ("2024-05-02", 3, 2, 1100, 320, 1.5, 1, 605.0 / 3),
    ],
    "hour": [
        ("2024-05-01T01:00Z", 1, 0, 100, 20, 0.5, 0, 100.0),
        ("2024-05-01T02:00Z", 1, 0, 100, 20, 0.0, 1, 300.0),
        ("2024-05-02T00:00Z", 3, 2, 1100, 320, 1.5, 1, 605.0 / 3),
    ],
}


def _main(row: UsageRow) -> tuple[Any, ...]:
    return (row.group, row.requests, row.errors, row.prompt_tokens, row.completion_tokens, row.cost_usd,
            row.cost_unknown, row.avg_latency_ms)  # fmt: skip


@pytest.mark.parametrize("group_by", sorted(EXPECTED))
async def test_summary_by_each_grouping(ledger: Backend[Any], group_by: str) -> None:
    store = await _filled(ledger)
    rows = await store.summary(since=None, until=None, group_by=group_by)
    assert [_main(row) for row in rows] == [
        (*row[:5], pytest.approx(row[5]), row[6], pytest.approx(row[7])) for row in EXPECTED[group_by]
    ]


async def test_summary_totals_cached_reasoning_cache_hits_and_savings(ledger: Backend[Any]) -> None:
    store = await ledger.client()
    hits = [
        replace(BASE, request_id=f"hit-{n}", cache="hit", cost_usd=0.0, saved_usd=0.5, reasoning_tokens=3)
        for n in range(3)
    ]
    await store.write([BASE, *hits])
    [row] = await store.summary(since=None, until=None, group_by="group")
    assert (row.requests, row.cached_tokens, row.reasoning_tokens, row.cache_hits) == (4, 40, 9, 3)
    assert row.saved_usd == pytest.approx(1.5)


async def test_summary_of_one_key_only(ledger: Backend[Any]) -> None:
    store = await _filled(ledger)
    rows = await store.summary(since=None, until=None, group_by="group", key_id="key_b")
    assert [(row.group, row.requests) for row in rows] == [("gpt", 1)]


async def test_summary_percentiles_fall_within_a_bucket_of_the_true_ones(ledger: Backend[Any]) -> None:
    store = await ledger.client()
    latencies = [float(ms) for ms in range(1, 1001)]  # 1..1000 ms: p50 500, p95 950
    await store.write([replace(BASE, request_id=f"r{ms}", latency_ms=ms) for ms in latencies])
    [row] = await store.summary(since=None, until=None, group_by="group")
    assert 300 <= row.p50_latency_ms <= 750  # the bucket 300-750 ms holds the median
    assert abs(row.p50_latency_ms - 500) < 60
    assert 750 <= row.p95_latency_ms <= 1000 and abs(row.p95_latency_ms - 950) < 30
    assert row.avg_latency_ms == pytest.approx(500.5)


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


async def test_recent_failures_newest_first(ledger: Backend[Any]) -> None:
    store = await _filled(ledger)
    failures = await store.records(errors_only=True, newest_first=True)
    assert [record.request_id for record in failures] == ["req-4", "req-3"]
    assert [r.request_id for r in await store.records(newest_first=True, limit=2)] == ["req-5", "req-4"]


async def test_a_time_series_per_slot_and_group(ledger: Backend[Any]) -> None:
    store = await _filled(ledger)
    series = await store.series(since=DAY_1, until=None, step=3600, group_by="group")
    found = [(start - DAY_1, row.group, row.requests) for start, row in series]
    assert found == [
        (3600, "gpt", 1),
        (7200, "claude", 1),
        (86_400, "gpt", 3),
    ]
    one_key = await store.series(since=DAY_1, until=None, step=86_400, group_by="provider", key_id="key_b")
    assert [(start - DAY_1, row.group, row.requests) for start, row in one_key] == [(86_400, "openai", 1)]


def varied_records(count: int, *, seed: int = 7) -> list[UsageRecord]:
    """Records spread over three days at odd seconds, with every field a summary reads varied."""
    rng = random.Random(seed)
    return [
        replace(
            BASE,
            time=DAY_1 + rng.random() * 3 * 86_400,
            request_id=f"varied-{n}",
            key_id=rng.choice(["key_a", "key_b", None]),
            model_group=rng.choice(["gpt", "claude"]),
            provider=rng.choice(["openai", "anthropic", None]),
            upstream_model=rng.choice(["gpt-4o", "claude-sonnet-4-5", None]),
            prompt_tokens=rng.randrange(1000),
            completion_tokens=rng.randrange(300),
            cached_tokens=rng.randrange(50),
            reasoning_tokens=rng.randrange(20),
            cost_usd=rng.choice([None, rng.random()]),
            latency_ms=rng.lognormvariate(5, 1.5),
            status=rng.choice([200, 200, 200, 429, 502]),
            cache=rng.choice(["hit", "semantic-hit", "miss", None]),
            saved_usd=rng.choice([None, rng.random()]),
        )
        for n in range(count)
    ]


WINDOWS = [
    (None, None),
    (DAY_1 + 1234.5, DAY_1 + 2 * 86_400 + 777.25),  # partial hours at both ends
    (DAY_1 + 3600, DAY_1 + 5 * 3600),  # whole hours only
    (DAY_1 + 5000, None),
    (None, DAY_1 + 86_400 + 1.5),
    (DAY_1 + 3700, DAY_1 + 3 * 3600 + 10),  # one whole hour between two partial ones
    (DAY_1 + 3700, DAY_1 + 2 * 3600 + 10),  # no whole hour
    (DAY_1 + 100, DAY_1 + 200),
]


async def same_summaries(store: Any, reference: Any) -> None:
    """``store``'s summaries equal ``reference``'s for every grouping, window and key filter."""
    for since, until in WINDOWS:
        for group_by in GROUPINGS:
            for key_id in (None, "key_b"):
                options = {"since": since, "until": until, "group_by": group_by, "key_id": key_id}
                got, want = await store.summary(**options), await reference.summary(**options)
                assert [row.group for row in got] == [row.group for row in want], options
                for found, expected in zip(got, want, strict=True):
                    assert astuple(found)[1:] == pytest.approx(astuple(expected)[1:], rel=1e-9), options


async def test_summaries_of_any_window_equal_adding_up_every_record(ledger: Backend[Any]) -> None:
    records = varied_records(600)
    store = await ledger.client()
    for start in range(0, len(records), 100):
        await store.write(records[start : start + 100])
    reference = MemoryLedger()
    await reference.write(records)
    await same_summaries(store, reference)
