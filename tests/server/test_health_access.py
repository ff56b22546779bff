"""``/health`` gives anyone a bare status, and the detail only with a key; ``degraded`` always says
why; the usage-record writer's lag is shown (what a crash would lose)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from llmgate.config import Settings
from llmgate.gateway import Gateway
from llmgate.server.app import create_app

MASTER = "sk-test-master-key"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
CHAT = {"model": "g", "messages": [{"role": "user", "content": "hi"}]}


def _settings(master_key: str | None = MASTER) -> Settings:
    return Settings.model_validate(
        {
            "server": {"master_key": master_key},
            "storage": {"database": "memory", "flush_interval": 60},
            "providers": {"m": {"type": "mock"}},
            "models": [{"name": "g", "deployments": [{"provider": "m", "model": "echo"}]}],
        }
    )


@pytest.fixture
def gateway() -> Gateway:
    return Gateway(_settings())


@pytest.fixture
def client(gateway: Gateway) -> Iterator[TestClient]:
    with TestClient(create_app(gateway), raise_server_exceptions=False) as test_client:
        yield test_client


def test_health_without_a_key_is_the_status_only(client: TestClient) -> None:
    bare = client.get("/health")
    assert bare.status_code == 200
    assert bare.json() == {"status": "ok"}
    assert client.get("/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    full = client.get("/health", headers=ADMIN).json()
    assert {"status", "problems", "deployments", "providers", "model_groups", "usage_records"} <= set(full)
    virtual = client.post("/admin/keys", json={"name": "k"}, headers=ADMIN).json()["key"]
    assert "deployments" in client.get("/health", headers={"Authorization": f"Bearer {virtual}"}).json()


def test_provider_health_needs_a_key(client: TestClient) -> None:
    refused = client.get("/health/providers")
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "authentication_error"
    allowed = client.get("/health/providers", headers=ADMIN)
    assert allowed.status_code == 200 and allowed.json()["deployments"][0]["deployment"] == "m/echo"


def test_open_mode_shows_everything_without_a_key() -> None:
    with TestClient(create_app(Gateway(_settings(None))), raise_server_exceptions=False) as client:
        assert "deployments" in client.get("/health").json()
        assert client.get("/health/providers").status_code == 200


def test_degraded_names_the_open_circuit_deployment(client: TestClient, gateway: Gateway) -> None:
    health = gateway.board.of("m/echo", "m")
    health.stats.finished(ok=False, latency=None, now=gateway.board.clock(), error="UpstreamError: boom 500")
    health.breaker.trip(gateway.board.clock() + 30)

    assert client.get("/health").json() == {"status": "degraded"}
    report = client.get("/health", headers=ADMIN).json()
    assert report["status"] == "degraded"
    [problem] = report["problems"]
    assert "'m/echo'" in problem and "open-circuit" in problem and "boom 500" in problem


def test_a_deployment_with_recent_errors_is_named_too(client: TestClient, gateway: Gateway) -> None:
    health = gateway.board.of("m/echo", "m")
    now = gateway.board.clock()
    health.stats.finished(ok=True, latency=0.01, now=now)
    health.stats.finished(ok=False, latency=None, now=now, error="UpstreamTimeout: slow")
    [problem] = client.get("/health", headers=ADMIN).json()["problems"]
    assert "'m/echo'" in problem and "50%" in problem and "slow" in problem


def test_health_shows_the_usage_record_writers_lag(client: TestClient) -> None:
    assert client.post("/v1/chat/completions", json=CHAT, headers=ADMIN).status_code == 200
    records = client.get("/health", headers=ADMIN).json()["usage_records"]
    assert records["pending"] == 1 and records["written"] == 0
    assert records["lag_s"] >= 0 and records["flush_interval_s"] == 60
    assert records["last_write_s_ago"] is None
