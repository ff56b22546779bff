"""The admin API (/admin/keys), virtual keys on the OpenAI routes, rate-limit headers and /api/rate-limits."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx
import openai
import pytest
from starlette.testclient import TestClient

from llmgate.config import Settings
from llmgate.core.codec import parse_chat_request
from llmgate.gateway import Gateway
from llmgate.server.app import create_app

MASTER = "sk-test-master-key"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
# $0.001 per token in and out: "hello there" is 10 prompt + 3 completion tokens = $0.013.
PRICE = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}


def settings(*, master_key: str | None = MASTER, database: str = "memory", **extra: Any) -> Settings:
    return Settings.model_validate(
        {
            "server": {"master_key": master_key},
            "storage": {"database": database},
            "providers": {"m": {"type": "mock", "rpm": 100}},
            "models": [
                {"name": "a", "deployments": [{"provider": "m", "model": "echo"}]},
                {"name": "b", "deployments": [{"provider": "m", "model": "echo"}]},
            ],
            "model_prices": {"echo": PRICE},
            **extra,
        }
    )


def serve(config: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(Gateway(config)), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def client() -> Iterator[TestClient]:
    yield from serve(settings())


class Reply(Protocol):
    """A response of the test client (starlette's TestClient may be built on httpx or httpx2)."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    def json(self) -> Any: ...


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def create(client: TestClient, **fields: Any) -> tuple[dict[str, Any], str]:
    response = client.post("/admin/keys", json={"name": "team", **fields}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body = response.json()
    return body, body["key"]


def chat(client: TestClient, secret: str | None, model: str = "a", **fields: Any) -> Reply:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 5,
        **fields,
    }
    return client.post("/v1/chat/completions", json=body, headers=bearer(secret) if secret else {})


def error_of(response: Reply) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


# --- the admin API --------------------------------------------------------------------------------------


def test_create_shows_the_key_once(client: TestClient) -> None:
    body, secret = create(
        client,
        models=["a"],
        rpm=10,
        tpm=5000,
        max_parallel=3,
        budget_usd=2.5,
        budget_period="month",
        metadata={"team": "search"},
    )
    assert secret.startswith("sk-llmgate-")
    assert body["id"].startswith("key_")
    assert body["key_prefix"] == secret[:15]
    expected = {"name": "team", "models": ["a"], "rpm": 10, "tpm": 5000, "max_parallel": 3}
    assert {name: body[name] for name in expected} == expected
    assert (body["budget_usd"], body["budget_period"], body["metadata"]) == (2.5, "month", {"team": "search"})
    assert body["revoked"] is False and body["expires_at"] is None
    assert "key_hash" not in body
    assert hashlib.sha256(secret.encode()).hexdigest() not in str(body)


def test_list_and_get_never_show_the_key_or_its_hash(client: TestClient) -> None:
    first, secret = create(client, rpm=10)
    create(client, name="other")
    digest = hashlib.sha256(secret.encode()).hexdigest()
    listed = client.get("/admin/keys", headers=ADMIN)
    assert listed.status_code == 200
    assert listed.json()["count"] == 2
    assert [key["name"] for key in listed.json()["keys"]] == ["team", "other"]
    one = client.get(f"/admin/keys/{first['id']}", headers=ADMIN)
    assert one.status_code == 200
    assert one.json() == {name: value for name, value in first.items() if name != "key"}
    for response in (listed, one):
        assert secret not in response.text and digest not in response.text
        assert '"key"' not in response.text and "key_hash" not in response.text


def test_patch_changes_only_the_given_fields(client: TestClient) -> None:
    key, secret = create(client, rpm=1, models=["a"], metadata={"x": 1})
    assert chat(client, secret).status_code == 200
    assert chat(client, secret).status_code == 429
    changed = client.patch(f"/admin/keys/{key['id']}", json={"rpm": 10, "name": "renamed"}, headers=ADMIN)
    assert changed.status_code == 200
    body = changed.json()
    assert (body["rpm"], body["name"], body["models"], body["metadata"]) == (10, "renamed", ["a"], {"x": 1})
    assert "key" not in body
    assert chat(client, secret).status_code == 200  # the new limit applies at once
    cleared = client.patch(f"/admin/keys/{key['id']}", json={"models": None}, headers=ADMIN).json()
    assert cleared["models"] == []
    assert chat(client, secret, model="b").status_code == 200


def test_delete_revokes_and_the_key_then_gets_401(client: TestClient) -> None:
    key, secret = create(client)
    assert chat(client, secret).status_code == 200
    revoked = client.delete(f"/admin/keys/{key['id']}", headers=ADMIN)
    assert revoked.status_code == 200
    assert revoked.json()["revoked"] is True
    response = chat(client, secret)
    assert response.status_code == 401
    error = error_of(response)
    assert error["type"] == "authentication_error" and "revoked" in error["message"]
    assert client.get(f"/admin/keys/{key['id']}", headers=ADMIN).json()["revoked"] is True


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b'{"name": "x",', None),
        (b"[1, 2]", None),
        (b'"just a string"', None),
        (b'{"name": "x", "rpm": "ten"}', "rpm"),
        (b'{"name": "x", "rpm": -1}', "rpm"),
        (b'{"name": "x", "max_parallel": 0}', "max_parallel"),
        (b'{"name": "x", "budget_usd": -5}', "budget_usd"),
        (b'{"name": "x", "budget_period": "fortnight"}', "budget_period"),
        (b'{"name": "x", "models": "a"}', "models"),
        (b'{"name": "x", "expires_at": "soon"}', "expires_at"),
        (b'{"name": ""}', "name"),
        (b'{"name": "x", "metadata": {"blob": "' + b"x" * 9000 + b'"}}', "metadata"),
    ],
)
def test_bad_create_bodies_are_400(client: TestClient, body: bytes, param: str | None) -> None:
    response = client.post("/admin/keys", content=body, headers={**ADMIN, "content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert client.get("/admin/keys", headers=ADMIN).json()["count"] == 0


def test_unknown_fields_are_refused(client: TestClient) -> None:
    response = client.post("/admin/keys", json={"name": "x", "colour": "red"}, headers=ADMIN)
    assert response.status_code == 400
    assert "colour" in error_of(response)["message"]
    key, _ = create(client)
    patched = client.patch(f"/admin/keys/{key['id']}", json={"key_hash": "0" * 64}, headers=ADMIN)
    assert patched.status_code == 400
    assert "key_hash" in error_of(patched)["message"]


def test_bad_patch_bodies_are_400(client: TestClient) -> None:
    key, _ = create(client, rpm=5)
    for body, param in (({"rpm": -1}, "rpm"), ({"rpm": 1.5}, "rpm"), ({"name": None}, "name")):
        response = client.patch(f"/admin/keys/{key['id']}", json=body, headers=ADMIN)
        assert response.status_code == 400, body
        assert error_of(response)["param"] == param
    not_object = client.patch(f"/admin/keys/{key['id']}", json=[], headers=ADMIN)
    assert not_object.status_code == 400
    assert client.get(f"/admin/keys/{key['id']}", headers=ADMIN).json()["rpm"] == 5


def test_an_oversized_admin_body_is_413(client: TestClient) -> None:
    body = b'{"name": "x", "metadata": {"blob": "' + b"x" * (70 * 1024) + b'"}}'
    response = client.post("/admin/keys", content=body, headers=ADMIN)
    assert response.status_code == 413


def test_unknown_ids_are_404(client: TestClient) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        response = client.request(method, "/admin/keys/key_nope", json={"rpm": 1}, headers=ADMIN)
        assert response.status_code == 404, method
        assert error_of(response)["type"] == "not_found_error"
    long_id = client.get("/admin/keys/" + "k" * 300, headers=ADMIN)
    assert long_id.status_code == 404 and len(long_id.text) < 500


def test_an_expired_key_is_401(client: TestClient) -> None:
    _, expired = create(client, expires_at=time.time() - 1)
    _, valid = create(client, expires_at=time.time() + 3600)
    response = chat(client, expired)
    assert response.status_code == 401
    assert "expired" in error_of(response)["message"]
    assert chat(client, valid).status_code == 200


def test_only_the_master_key_may_manage_keys(client: TestClient) -> None:
    _, secret = create(client)
    for method, path in (("POST", "/admin/keys"), ("GET", "/admin/keys"), ("DELETE", "/admin/keys/key_x")):
        with_virtual_key = client.request(method, path, json={"name": "y"}, headers=bearer(secret))
        assert with_virtual_key.status_code == 403, path
        assert error_of(with_virtual_key)["type"] == "permission_error"
        without_key = client.request(method, path, json={"name": "y"})
        assert without_key.status_code == 401, path
        assert error_of(without_key)["code"] == "missing_api_key"
        wrong = client.request(method, path, json={"name": "y"}, headers=bearer("sk-wrong"))
        assert wrong.status_code == 401, path
    assert client.get("/admin/keys", headers=ADMIN).json()["count"] == 1


def test_the_openai_routes_need_a_valid_key(client: TestClient) -> None:
    assert chat(client, None).status_code == 401
    assert chat(client, "sk-llmgate-made-up").status_code == 401
    assert client.get("/v1/models", headers={"x-api-key": "sk-llmgate-made-up"}).status_code == 401
    assert chat(client, MASTER).status_code == 200
    _, secret = create(client)
    assert client.get("/v1/models", headers={"x-api-key": secret}).status_code == 200


def test_a_key_limited_to_some_models_gets_403_for_others(client: TestClient) -> None:
    _, secret = create(client, models=["a"])
    assert chat(client, secret, model="a").status_code == 200
    response = chat(client, secret, model="b")
    assert response.status_code == 403
    error = error_of(response)
    assert (error["type"], error["param"]) == ("permission_error", "model")
    streamed = chat(client, secret, model="b", stream=True)
    assert streamed.status_code == 403
    direct = chat(client, secret, model="m:echo")
    assert direct.status_code == 403


# --- rate limits --------------------------------------------------------------------------------------


def test_key_rpm_429_with_retry_after_and_rate_limit_headers(client: TestClient) -> None:
    _, secret = create(client, rpm=2)
    first, second = chat(client, secret), chat(client, secret)
    assert first.status_code == second.status_code == 200
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == ("2", "1")
    assert (second.headers["X-RateLimit-Limit"], second.headers["X-RateLimit-Remaining"]) == ("2", "0")
    for response in (first, second):
        assert 1 <= int(response.headers["X-RateLimit-Reset"]) <= 60
    third = chat(client, secret)
    assert third.status_code == 429
    error = error_of(third)
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "this key's limit of 2 requests per minute" in error["message"]
    assert 1 <= int(third.headers["Retry-After"]) <= 60
    assert (third.headers["X-RateLimit-Limit"], third.headers["X-RateLimit-Remaining"]) == ("2", "0")
    assert 1 <= int(third.headers["X-RateLimit-Reset"]) <= 60
    assert abs(int(third.headers["Retry-After"]) - int(third.headers["X-RateLimit-Reset"])) <= 1
    streamed = chat(client, secret, stream=True)
    assert streamed.status_code == 429 and "Retry-After" in streamed.headers


def test_rate_limit_headers_on_streams_and_model_listing(client: TestClient) -> None:
    _, secret = create(client, rpm=5)
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "a", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers=bearer(secret),
    ) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
        assert (response.headers["X-RateLimit-Limit"], response.headers["X-RateLimit-Remaining"]) == (
            "5",
            "4",
        )
    assert lines[-1] == "data: [DONE]"
    models = client.get("/v1/models", headers=bearer(secret))
    assert (models.headers["X-RateLimit-Limit"], models.headers["X-RateLimit-Remaining"]) == ("5", "4")


def test_default_key_and_global_limits() -> None:
    config = settings(limits={"global": {"rpm": 3}, "default_key": {"rpm": 2}})
    for client in serve(config):
        _, secret = create(client)
        assert chat(client, secret).headers["X-RateLimit-Limit"] == "2"  # the key's (default) limit
        master = chat(client, MASTER)
        assert (master.headers["X-RateLimit-Limit"], master.headers["X-RateLimit-Remaining"]) == ("3", "1")
        assert chat(client, secret).status_code == 200
        refused = chat(client, MASTER)
        assert refused.status_code == 429
        assert "global limit of 3 requests" in error_of(refused)["message"]


async def test_max_parallel_is_enforced_and_freed() -> None:
    config = settings(providers={"m": {"type": "mock", "mock": {"latency_ms": 200}}})
    gateway = Gateway(config)
    transport = httpx.ASGITransport(app=create_app(gateway))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            made = await client.post("/admin/keys", json={"name": "x", "max_parallel": 2}, headers=ADMIN)
            secret = made.json()["key"]
            body = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
            responses = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=body, headers=bearer(secret)) for _ in range(3))
            )
            statuses = sorted(response.status_code for response in responses)
            assert statuses == [200, 200, 429]
            [refused] = [response for response in responses if response.status_code == 429]
            assert "too many parallel requests" in refused.json()["error"]["message"]
            assert refused.headers["Retry-After"] == "1"
            # Every slot is free again once the calls are over.
            again = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=body, headers=bearer(secret)) for _ in range(2))
            )
            assert [response.status_code for response in again] == [200, 200]
    finally:
        await gateway.close()


# --- budgets --------------------------------------------------------------------------------------------


def test_budget_exceeded_is_429_insufficient_quota(client: TestClient) -> None:
    # Each call reserves 13 prompt + 5 output tokens ($0.018) and costs 10 + 3 ($0.013):
    # after three calls $0.039 is spent and a fourth reservation would pass $0.05.
    key, secret = create(client, budget_usd=0.05)
    costs = []
    for _ in range(3):
        response = chat(client, secret)
        assert response.status_code == 200, response.text
        costs.append(float(response.headers["x-llmgate-cost-usd"]))
    assert costs == [0.013, 0.013, 0.013]
    refused = chat(client, secret)
    assert refused.status_code == 429
    error = error_of(refused)
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert "budget of $0.05" in error["message"]
    assert "Retry-After" in refused.headers

    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key=secret, http_client=client, max_retries=0)
    with pytest.raises(openai.RateLimitError) as raised:
        sdk.chat.completions.create(
            model="a", messages=[{"role": "user", "content": "hello there"}], max_tokens=5
        )
    assert raised.value.status_code == 429
    assert raised.value.code == "insufficient_quota"

    status = client.get("/api/rate-limits", headers=bearer(secret)).json()
    assert status["budget"]["budget_usd"] == 0.05 and status["budget"]["period"] == "total"
    assert status["budget"]["spent_usd"] == pytest.approx(0.039)
    # Raising the budget lets the key continue at once.
    client.patch(f"/admin/keys/{key['id']}", json={"budget_usd": 0.1}, headers=ADMIN)
    assert chat(client, secret).status_code == 200


def test_rate_limit_status_shows_the_callers_limit_and_upstream_keys(client: TestClient) -> None:
    _, secret = create(client, rpm=7)
    for _ in range(2):
        assert chat(client, secret).status_code == 200
    status = client.get("/api/rate-limits", headers=bearer(secret))
    assert status.status_code == 200
    body = status.json()
    assert (body["caller"]["limit"], body["caller"]["remaining"]) == (7, 5)
    assert 0 < body["caller"]["reset"] <= 60
    assert body["budget"] is None
    [upstream] = body["upstream"]
    assert (upstream["provider"], upstream["limit"], upstream["remaining"]) == ("m", 100, 98)
    assert upstream["usable"] is True
    assert "sk-" not in upstream["key"]
    master = client.get("/api/rate-limits", headers=ADMIN).json()
    assert master["caller"] is None and master["upstream"][0]["remaining"] == 98
    assert client.get("/api/rate-limits").status_code == 401
    assert client.get("/api/rate-limits?name=nothing", headers=ADMIN).json()["upstream"] == []


# --- open mode -------------------------------------------------------------------------------------------


def test_open_mode_needs_no_key_and_has_no_admin_api() -> None:
    for client in serve(settings(master_key=None)):
        assert chat(client, None).status_code == 200
        assert chat(client, "anything-at-all").status_code == 200
        assert client.get("/api/rate-limits").status_code == 200
        refused = client.post("/admin/keys", json={"name": "x"})
        assert refused.status_code == 403
        assert "master key" in error_of(refused)["message"]


# --- bugs -----------------------------------------------------------------------------------------------


def test_an_out_of_range_limit_is_400_not_500(tmp_path: Path) -> None:
    for client in serve(settings(database=f"sqlite:///{tmp_path / 'keys.db'}")):
        response = client.post("/admin/keys", json={"name": "x", "rpm": 2**63}, headers=ADMIN)
        assert response.status_code == 400, response.text


async def concurrent_chats(config: Settings, bodies: list[dict[str, Any]], **key: Any) -> list[int]:
    """Statuses of ``bodies`` sent at once with a new virtual key, through the ASGI app."""
    gateway = Gateway(config)
    transport = httpx.ASGITransport(app=create_app(gateway))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            made = await client.post("/admin/keys", json={"name": "x", **key}, headers=ADMIN)
            headers = bearer(made.json()["key"])
            responses = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=body, headers=headers) for body in bodies)
            )
            return sorted(response.status_code for response in responses)
    finally:
        await gateway.close()


SLOW_MOCK = {"m": {"type": "mock", "mock": {"latency_ms": 200}}}


async def test_tokens_are_reserved_up_front_against_tpm() -> None:
    # "hi" is 8 prompt tokens: two calls reserving 8 + 600 each do not fit in 1000 at once.
    body = {"model": "a", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 600}
    statuses = await concurrent_chats(settings(providers=SLOW_MOCK), [body, body], tpm=1000)
    assert statuses == [200, 429]


async def test_reserve_output_tokens_applies_to_calls_without_max_tokens() -> None:
    config = settings(providers=SLOW_MOCK, limits={"reserve_output_tokens": 600})
    body = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
    statuses = await concurrent_chats(config, [body, body], tpm=1000)
    assert statuses == [200, 429]


async def test_an_abandoned_stream_still_charges_what_was_generated() -> None:
    config = settings(providers={"m": {"type": "mock", "mock": {"tokens_per_second": 200}}})
    async with Gateway(config) as gateway:
        _, secret = await gateway.keys.create({"name": "x", "budget_usd": 10.0})
        caller = await gateway.authenticate(secret)
        words = " ".join(f"w{n}" for n in range(40))
        request = parse_chat_request(
            {
                "model": "a",
                "messages": [{"role": "user", "content": words}],
                "max_tokens": 100,
                "stream": True,
            }
        )
        stream = gateway.open_stream(request, caller=caller)
        received = 0
        async for chunk in stream:
            received += len(chunk.choices)
            if received >= 20:
                break
        await stream.aclose()
        state = gateway.state
        assert state is not None
        await state.recorder.flush()
        [record] = await state.database.records()
        assert record.completion_tokens > 0
        spent = await state.guard.budgets.spent(caller)
        assert spent is not None and spent > 0


def test_errors_carry_the_request_id(client: TestClient) -> None:
    _, secret = create(client, rpm=1, models=["a"])
    headers = {**bearer(secret), "x-request-id": "req-from-the-client"}
    body = {"model": "a", "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200

    limited = client.post("/v1/chat/completions", json=body, headers=headers)
    denied = client.post("/v1/chat/completions", json={**body, "model": "b"}, headers=headers)

    assert limited.status_code == 429 and limited.headers["x-request-id"] == "req-from-the-client"
    assert denied.status_code == 403 and denied.headers["x-request-id"] == "req-from-the-client"
