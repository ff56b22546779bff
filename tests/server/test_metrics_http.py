"""``/metrics`` agrees exactly with a known mix of calls; labels stay bounded; access is guarded; every
call, refused before routing or not, has its usage record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from llmgate.config import Settings
from llmgate.gateway import Gateway
from llmgate.server.app import create_app
from llmgate.state.ports import UsageRecord

MASTER = "sk-test-master-key"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
TOKEN = "sk-metrics-reader"
HELLO = [{"role": "user", "content": "hello there"}]


def _settings(master_key: str | None = MASTER) -> Settings:
    return Settings.model_validate(
        {
            "server": {"master_key": master_key, "metrics_token": TOKEN},
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


@pytest.fixture
def gateway() -> Gateway:
    return Gateway(_settings())


@pytest.fixture
def client(gateway: Gateway) -> Iterator[TestClient]:
    with TestClient(create_app(gateway), raise_server_exceptions=False) as test_client:
        yield test_client


def _post(client: TestClient, headers: dict[str, str], **body: Any) -> int:
    return client.post("/v1/chat/completions", json={"messages": HELLO, **body}, headers=headers).status_code


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _records(client: TestClient, gateway: Gateway) -> list[UsageRecord]:
    state = gateway.state
    assert state is not None
    client.portal.call(state.recorder.flush)  # type: ignore[union-attr]
    return client.portal.call(state.database.records)  # type: ignore[union-attr, no-any-return]


def test_metrics_agree_with_a_known_mix_of_calls(client: TestClient, gateway: Gateway) -> None:
    key = client.post("/admin/keys", json={"name": "k", "rpm": 1}, headers=ADMIN).json()["key"]
    statuses = [
        _post(client, ADMIN, model="g"),
        _post(client, ADMIN, model="g", stream=True),
        _post(client, ADMIN, model="m:anything-at-all"),
        _post(client, ADMIN, model="no-such-model"),
        _post(client, ADMIN, model="broken"),
        _post(client, {"Authorization": f"Bearer {key}"}, model="g"),
        _post(client, {"Authorization": f"Bearer {key}"}, model="g"),  # over its rpm
        client.post("/v1/chat/completions", content=b"{not json", headers=ADMIN).status_code,
        _post(client, {}, model="g"),  # no key
    ]
    assert statuses == [200, 200, 200, 404, 502, 200, 429, 400, 401]
    records = _records(client, gateway)
    assert len(records) == 9
    assert all(record.request_id for record in records)
    by_status = sorted(record.status for record in records)
    assert by_status == sorted(statuses)
    refused = {record.status: record for record in records if record.status in (400, 401, 404)}
    assert refused[404].model_group == "no-such-model" and refused[404].error_type == "model_not_found"
    assert refused[401].key_id is None and refused[401].error_type == "missing_api_key"

    samples = _samples(client.get("/metrics", headers=ADMIN).text)

    def requests(group: str, provider: str, status: str) -> float:
        return samples.get(
            ("llmgate_requests_total", (("group", group), ("provider", provider), ("status", status))), 0
        )

    assert requests("g", "m", "2xx") == 3
    assert requests("m:*", "m", "2xx") == 1  # a caller's model name never becomes a label
    assert requests("unknown", "none", "4xx") == 3  # the 404, and the 400 and 401 (model not read)
    assert requests("broken", "none", "5xx") == 1
    assert requests("g", "none", "4xx") == 1  # the 429
    total = sum(v for (name, _), v in samples.items() if name == "llmgate_requests_total")
    assert total == 9
    assert samples[("llmgate_rate_limited_total", (("group", "g"), ("type", "rate_limit_exceeded")))] == 1
    assert samples[("llmgate_errors_total", (("group", "broken"), ("type", "upstream_error")))] == 1
    assert samples[("llmgate_request_duration_seconds_count", (("group", "g"),))] == 4
    assert samples[("llmgate_time_to_first_token_seconds_count", (("group", "g"),))] == 1
    prompt = sum(r.prompt_tokens for r in records if r.model_group == "g")
    assert (
        samples[("llmgate_tokens_total", (("direction", "prompt"), ("group", "g"), ("provider", "m")))]
        == prompt
    )
    cost = sum(r.cost_usd or 0 for r in records if r.model_group == "g")
    assert samples[("llmgate_cost_usd_total", (("group", "g"), ("provider", "m")))] == pytest.approx(cost)
    assert samples[("llmgate_breaker_state", (("deployment", "m/echo"), ("provider", "m")))] == 0
    assert ("llmgate_in_flight", ()) in samples
    assert not any("anything-at-all" in str(labels) for _, labels in samples)


def test_metrics_need_the_master_key_or_the_metrics_token_off_loopback(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 401
    key = client.post("/admin/keys", json={"name": "k"}, headers=ADMIN).json()["key"]
    assert client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    reply = client.get("/metrics", headers=ADMIN)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    assert MASTER not in reply.text and TOKEN not in reply.text


def test_metrics_are_open_in_open_mode() -> None:
    with TestClient(create_app(Gateway(_settings(None)))) as client:
        assert client.get("/metrics").status_code == 200


def test_metrics_can_be_turned_off() -> None:
    settings = Settings.model_validate({"server": {"metrics": False}, "storage": {"database": "memory"}})
    with TestClient(create_app(Gateway(settings))) as client:
        assert client.get("/metrics").status_code == 404
