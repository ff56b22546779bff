"""A Redis outage does not take the gateway down: requests keep flowing on local state, /health says
degraded, and ``limits.budget_on_outage`` decides whether budgeted keys are served meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from llmgate.config import Settings
from llmgate.gateway import Gateway
from llmgate.server.app import create_app

MASTER = "sk-test-master-key"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused at once
CHAT = {"model": "a", "messages": [{"role": "user", "content": "hello there"}]}


def client_for(budget_on_outage: str) -> Iterator[TestClient]:
    config = Settings.model_validate(
        {
            "server": {"master_key": MASTER},
            "storage": {"database": "memory", "redis": DEAD_REDIS},
            "providers": {"m": {"type": "mock"}},
            "models": [{"name": "a", "deployments": [{"provider": "m", "model": "echo"}]}],
            "model_prices": {"echo": {"input_per_mtok": 1.0, "output_per_mtok": 1.0}},
            "limits": {"global": {"rpm": 3}, "budget_on_outage": budget_on_outage},
        }
    )
    with TestClient(create_app(Gateway(config)), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def open_client() -> Iterator[TestClient]:
    yield from client_for("open")


@pytest.fixture
def closed_client() -> Iterator[TestClient]:
    yield from client_for("closed")


def new_key(client: TestClient, **fields: Any) -> str:
    response = client.post("/admin/keys", json={"name": "k", **fields}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return str(response.json()["key"])


def test_requests_keep_flowing_on_local_limits_and_health_says_why(open_client: TestClient) -> None:
    statuses = [
        open_client.post("/v1/chat/completions", json=CHAT, headers=ADMIN).status_code for _ in range(4)
    ]

    assert statuses == [200, 200, 200, 429]  # the global limit still holds, counted locally
    assert open_client.get("/health").json() == {"status": "degraded"}  # no key: the status only
    health = open_client.get("/health", headers=ADMIN).json()
    assert health["status"] == "degraded"
    assert any("redis unreachable" in problem for problem in health["problems"])


def test_budget_on_outage_open_serves_budgeted_keys(open_client: TestClient) -> None:
    key = new_key(open_client, budget_usd=1.0)
    reply = open_client.post("/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"})
    assert reply.status_code == 200, reply.text


def test_budget_on_outage_closed_refuses_budgeted_keys_only(closed_client: TestClient) -> None:
    budgeted = new_key(closed_client, budget_usd=1.0)
    plain = new_key(closed_client)
    closed_client.post("/v1/chat/completions", json=CHAT, headers=ADMIN)  # notices the outage

    refused = closed_client.post(
        "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {budgeted}"}
    )
    served = closed_client.post(
        "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {plain}"}
    )

    assert refused.status_code == 503
    assert "budget_on_outage" in refused.json()["error"]["message"]
    assert "Retry-After" in refused.headers
    assert served.status_code == 200, served.text
