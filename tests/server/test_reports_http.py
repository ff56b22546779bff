"""``/api/usage`` and ``/api/stats`` agree with a known mix of calls, in every format; a key reads only
its own; bad parameters are 400s naming them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from llmgate.config import Settings
from llmgate.gateway import Gateway
from llmgate.server.app import create_app

MASTER = "sk-test-master-key"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings.model_validate(
        {
            "server": {"master_key": MASTER},
            "storage": {"database": "memory", "flush_interval": 60},
            "providers": {
                "m": {"type": "mock"},
                "down": {"type": "mock", "mock": {"failure_rate": 1.0, "failure": {"status": 500}}},
            },
            "models": [
                {"name": "g", "deployments": [{"provider": "m", "model": "echo"}]},
                {"name": "broken", "deployments": [{"provider": "down", "model": "echo"}]},
            ],
            "routing": {"retries": 0},
            "model_prices": {"echo": {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}},
        }
    )
    with TestClient(create_app(Gateway(settings)), raise_server_exceptions=False) as test_client:
        yield test_client


def _key(client: TestClient, name: str) -> tuple[str, dict[str, str]]:
    body = client.post("/admin/keys", json={"name": name}, headers=ADMIN).json()
    return body["id"], {"Authorization": f"Bearer {body['key']}"}


def _mix(client: TestClient) -> tuple[str, dict[str, str]]:
    key_id, key = _key(client, "team")
    for headers, model in ((ADMIN, "g"), (ADMIN, "g"), (ADMIN, "broken"), (key, "g"), (ADMIN, "nope")):
        client.post("/v1/chat/completions", json={"model": model, "messages": HELLO}, headers=headers)
    return key_id, key


def _usage(client: TestClient, headers: dict[str, str], **params: str) -> Any:
    return client.get("/api/usage", params=params, headers=headers)


def test_usage_by_group_and_provider_matches_the_calls(client: TestClient) -> None:
    _mix(client)
    rows = {row["group"]: row for row in _usage(client, ADMIN, group_by="group").json()["rows"]}
    assert set(rows) == {"g", "broken", "nope"}
    assert (rows["g"]["requests"], rows["g"]["errors"]) == (3, 0)
    assert (rows["broken"]["requests"], rows["broken"]["errors"]) == (1, 1)
    assert rows["nope"]["errors"] == 1
    assert rows["g"]["prompt_tokens"] > 0 and rows["g"]["cost_usd"] > 0
    assert rows["g"]["p50_latency_ms"] >= 0 and rows["g"]["p95_latency_ms"] >= rows["g"]["p50_latency_ms"]
    providers = {
        row["group"]: row["requests"] for row in _usage(client, ADMIN, group_by="provider").json()["rows"]
    }
    assert providers == {"m": 3, "-": 2}


def test_a_key_sees_only_its_own_calls_and_the_master_may_pick_one(client: TestClient) -> None:
    key_id, key = _mix(client)
    own = _usage(client, key, group_by="key", key="someone-else").json()["rows"]
    assert [(row["group"], row["requests"]) for row in own] == [(key_id, 1)]
    picked = _usage(client, ADMIN, group_by="group", key=key_id).json()["rows"]
    assert [(row["group"], row["requests"]) for row in picked] == [("g", 1)]
    everyone = _usage(client, ADMIN, group_by="key").json()["rows"]
    assert sum(row["requests"] for row in everyone) == 5


def test_csv_and_jsonl_carry_the_same_rows(client: TestClient) -> None:
    _mix(client)
    rows = _usage(client, ADMIN, group_by="day").json()["rows"]
    as_csv = _usage(client, ADMIN, group_by="day", format="csv")
    assert as_csv.headers["content-type"].startswith("text/csv")
    parsed = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(r["group"], int(r["requests"])) for r in parsed] == [(r["group"], r["requests"]) for r in rows]
    as_jsonl = _usage(client, ADMIN, group_by="day", format="jsonl")
    assert [json.loads(line) for line in as_jsonl.text.splitlines()] == rows


def test_stats_have_the_seeds_fields_and_agree(client: TestClient) -> None:
    _mix(client)
    stats = client.get("/api/stats", headers=ADMIN).json()
    assert (stats["total_requests"], stats["total_errors"]) == (5, 2)
    assert stats["total_tokens"] == stats["prompt_tokens"] + stats["completion_tokens"] > 0
    assert stats["total_cost"] > 0 and stats["uptime_s"] >= 0 and stats["cache_hits"] == 0
    mock = stats["providers"]["m"]
    assert mock["request_count"] == 3 and mock["error_rate"] == 0 and mock["avg_latency"] >= 0
    windowed = client.get("/api/stats", params={"window": "60"}, headers=ADMIN).json()
    assert windowed["total_requests"] == 5 and windowed["window_s"] == 60


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/api/usage", {"group_by": "colour"}, "group_by"),
        ("/api/usage", {"format": "xml"}, "format"),
        ("/api/usage", {"since": "yesterday"}, "since"),
        ("/api/stats", {"window": "-5"}, "window"),
        ("/api/stats", {"window": "1e12"}, "window"),
    ],
)
def test_bad_parameters_are_400s_naming_them(
    client: TestClient, path: str, params: dict[str, str], param: str
) -> None:
    reply = client.get(path, params=params, headers=ADMIN)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == param


def test_iso_dates_bound_the_report(client: TestClient) -> None:
    _mix(client)
    assert _usage(client, ADMIN, since="2000-01-01", until="2000-01-02").json()["rows"] == []
    assert _usage(client, ADMIN, since="2000-01-01T00:00:00Z").json()["count"] == 3
    assert client.get("/api/usage").status_code == 401


async def test_the_library_has_the_same_reports() -> None:
    settings = Settings.model_validate(
        {"storage": {"database": "memory"}, "providers": {"m": {"type": "mock"}}}
    )
    async with Gateway(settings) as gateway:
        await gateway.chat("m:echo", HELLO)
        [row] = await gateway.usage(group_by="provider")
        assert (row["group"], row["requests"]) == ("m", 1)
        assert (await gateway.stats())["total_requests"] == 1


def test_a_series_per_minute_and_the_recent_failures(client: TestClient) -> None:
    _, key = _mix(client)
    series = client.get("/api/usage/series", params={"step": "60", "group_by": "group"}, headers=ADMIN).json()
    assert series["step"] == 60 and sum(row["requests"] for row in series["rows"]) == 5
    assert all(row["at"] % 60 == 0 for row in series["rows"])
    own = client.get("/api/usage/series", params={"group_by": "group"}, headers=key).json()
    assert [(row["group"], row["requests"]) for row in own["rows"]] == [("g", 1)]
    errors = client.get("/api/errors", params={"limit": "10"}, headers=ADMIN).json()["errors"]
    assert [error["status"] for error in errors] == [404, 502]  # newest first
    assert client.get("/api/errors", headers=key).status_code == 403
    for params in ({"step": "1"}, {"step": "60", "since": "0"}, {"step": "x"}):
        assert client.get("/api/usage/series", params=params, headers=ADMIN).status_code == 400
