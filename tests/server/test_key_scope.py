"""A virtual key's ``models`` bound every group a call may reach: the one it names, header fallbacks,
configured ``fallbacks`` and ``context_fallbacks``; and a fallback never escapes the key's budget."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from llmgate.catalogue import Catalogue, ModelInfo
from llmgate.config import Settings
from llmgate.gateway import Gateway
from llmgate.server.app import create_app

MASTER = "sk-test-master-key"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
HELLO = [{"role": "user", "content": "hello there"}]
LONG = [{"role": "user", "content": "word " * 400}]  # about 500 prompt tokens


def _settings(**extra: Any) -> Settings:
    return Settings.model_validate(
        {
            "server": {"master_key": MASTER},
            "storage": {"database": "memory"},
            "providers": {
                "down": {"type": "mock", "mock": {"failure_rate": 1.0, "failure": {"status": 500}}},
                "up": {"type": "mock"},
            },
            "models": [
                {"name": "gA", "deployments": [{"provider": "down", "model": "echo"}], "fallbacks": ["gB"]},
                {"name": "gB", "deployments": [{"provider": "up", "model": "echo"}]},
                {"name": "gC", "deployments": [{"provider": "up", "model": "echo"}]},
            ],
            **extra,
        }
    )


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Gateway(_settings())), raise_server_exceptions=False) as test_client:
        yield test_client


def _key(client: TestClient, **fields: Any) -> dict[str, str]:
    response = client.post("/admin/keys", json={"name": "scoped", **fields}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


def _chat(client: TestClient, key: dict[str, str], model: str, **extra: Any) -> Any:
    headers = {**key, **extra.pop("headers", {})}
    body = {"model": model, "messages": HELLO, "max_tokens": 5, **extra}
    return client.post("/v1/chat/completions", json=body, headers=headers)


@pytest.mark.parametrize("stream", [False, True])
def test_a_header_fallback_outside_the_keys_models_is_refused(client: TestClient, stream: bool) -> None:
    key = _key(client, models=["gA"])
    response = _chat(client, key, "gA", stream=stream, headers={"x-llmgate-fallbacks": "gC"})
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("permission_error", "x-llmgate-fallbacks")
    assert "gC" in error["message"]
    # The same header from a key that may use gC is served by it.
    wider = _key(client, models=["gA", "gC"])
    served = _chat(client, wider, "gA", stream=stream, headers={"x-llmgate-fallbacks": "gC"})
    assert served.status_code == 200, served.text
    assert served.headers["x-llmgate-provider"] == "up"


@pytest.mark.parametrize("stream", [False, True])
def test_a_configured_fallback_outside_the_keys_models_is_skipped(client: TestClient, stream: bool) -> None:
    key = _key(client, models=["gA"])
    response = _chat(client, key, "gA", stream=stream)
    assert response.status_code == 502, response.text  # gA's only deployment fails; gB is not the key's
    assert "gB" not in response.text and response.headers.get("x-llmgate-provider") != "up"
    allowed = _key(client, models=["gA", "gB"])
    served = _chat(client, allowed, "gA", stream=stream)
    assert served.status_code == 200, served.text
    assert served.headers["x-llmgate-provider"] == "up"


def _context_gateway(*, budget_key_models: list[str] | None = None) -> TestClient:
    def info(model_id: str, context: int, price: float) -> ModelInfo:
        return ModelInfo(model_id, "mock", model_id, "chat", context, 1000, price, price)

    catalogue = Catalogue([info("tiny", 100, 1.0), info("wide", 100_000, 1000.0)])
    settings = Settings.model_validate(
        {
            "server": {"master_key": MASTER},
            "storage": {"database": "memory"},
            "providers": {"m": {"type": "mock"}},
            "models": [
                {
                    "name": "small",
                    "deployments": [{"provider": "m", "model": "tiny"}],
                    "context_fallbacks": ["big"],
                },
                {"name": "big", "deployments": [{"provider": "m", "model": "wide"}]},
            ],
        }
    )
    return TestClient(create_app(Gateway(settings, catalogue=catalogue)), raise_server_exceptions=False)


def test_a_context_fallback_outside_the_keys_models_is_not_used() -> None:
    with _context_gateway() as client:
        key = _key(client, models=["small"])
        response = client.post(
            "/v1/chat/completions", json={"model": "small", "messages": LONG, "max_tokens": 5}, headers=key
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "context_length_exceeded"
        both = _key(client, models=["small", "big"])
        served = client.post(
            "/v1/chat/completions", json={"model": "small", "messages": LONG, "max_tokens": 5}, headers=both
        )
        assert served.status_code == 200, served.text
        assert served.headers["x-llmgate-deployment"].endswith("wide")


def test_the_budget_reservation_covers_the_context_fallback_a_call_may_reach() -> None:
    # ~500 prompt tokens at "wide"'s $1000 per 1M cost ~$0.5: a $0.1 budget must refuse before the call,
    # although the requested group's own model ("tiny", $1 per 1M) would fit it many times over.
    with _context_gateway() as client:
        key = _key(client, budget_usd=0.1)
        response = client.post(
            "/v1/chat/completions", json={"model": "small", "messages": LONG, "max_tokens": 5}, headers=key
        )
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "insufficient_quota"
        spent = client.get("/api/rate-limits", headers=key).json()["budget"]["spent_usd"]
        assert spent == 0


def test_a_key_naming_a_model_nobody_serves_is_refused(client: TestClient) -> None:
    response = client.post("/admin/keys", json={"name": "k", "models": ["gA", "smart"]}, headers=ADMIN)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "models" and "'smart'" in error["message"] and "gA, gB, gC" in error["message"]
    key_id = client.post("/admin/keys", json={"name": "k"}, headers=ADMIN).json()["id"]
    patched = client.patch(f"/admin/keys/{key_id}", json={"models": ["nope"]}, headers=ADMIN)
    assert patched.status_code == 400 and patched.json()["error"]["param"] == "models"
    assert (
        client.post("/admin/keys", json={"name": "k", "models": ["up:echo"]}, headers=ADMIN).status_code
        == 201
    )


def test_the_toolkit_endpoints_keep_to_the_keys_models(client: TestClient) -> None:
    key = _key(client, models=["gB"])
    counted = client.post("/api/tokens", json={"model": "gB", "text": "hello"}, headers=key)
    assert counted.status_code == 200
    refused = client.post("/api/tokens", json={"model": "gA", "text": "hello"}, headers=key)
    assert (refused.status_code, refused.json()["error"]["param"]) == (403, "model")
    body = {"messages": HELLO, "max_tokens": 1000}
    assert client.post("/api/condense", json={**body, "model": "gA"}, headers=key).status_code == 403
    assert client.post("/api/condense", json={**body, "model": "gB"}, headers=key).status_code == 200
    too_many = {"messages": HELLO * 10_001, "max_tokens": 10, "model": "gB"}
    many = client.post("/api/condense", json=too_many, headers=key)
    assert (many.status_code, many.json()["error"]["param"]) == (400, "messages")
