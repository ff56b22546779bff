"""The response cache as callers see it over HTTP: headers, cost, records, controls, tenants, admin."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from starlette.testclient import TestClient

from llmgate.config import Settings
from llmgate.gateway import Gateway
from llmgate.server.app import create_app
from llmgate.state.ports import UsageRecord

MASTER = "sk-test-master-key"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PRICE = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}  # $0.001 per token: costs show


def _settings(**cache: Any) -> Settings:
    return Settings.model_validate(
        {
            "server": {"master_key": MASTER},
            "storage": {"database": "memory", "flush_interval": 60},
            "providers": {"m": {"type": "mock"}},
            "models": [
                {"name": "cached", "deployments": [{"provider": "m", "model": "echo"}]},
                {
                    "name": "fresh",
                    "deployments": [{"provider": "m", "model": "echo"}],
                    "cache": {"enabled": False},
                },
            ],
            "model_prices": {"echo": PRICE},
            "cache": {"mode": "exact", **cache},
        }
    )


@pytest.fixture
def gateway() -> Gateway:
    return Gateway(_settings())


@pytest.fixture
def client(gateway: Gateway) -> Iterator[TestClient]:
    with TestClient(create_app(gateway), raise_server_exceptions=False) as test_client:
        yield test_client


def _key(client: TestClient, **fields: Any) -> dict[str, str]:
    response = client.post("/admin/keys", json={"name": "k", **fields}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


def _ask(client: TestClient, headers: dict[str, str], text: str = "hello there", **extra: Any) -> Any:
    body = {"model": extra.pop("model", "cached"), "messages": [{"role": "user", "content": text}], **extra}
    return client.post("/v1/chat/completions", json=body, headers=headers)


async def _records(gateway: Gateway) -> list[UsageRecord]:
    state = gateway.state
    assert state is not None
    await state.recorder.flush()
    return await state.database.records()


async def test_a_repeat_is_a_free_hit_with_the_original_body(client: TestClient, gateway: Gateway) -> None:
    key = _key(client)
    first = _ask(client, key)
    assert first.headers["x-llmgate-cache"] == "miss"
    assert float(first.headers["x-llmgate-cost-usd"]) > 0
    second = _ask(client, key)
    assert second.status_code == 200
    assert second.headers["x-llmgate-cache"] == "hit" and second.headers["x-llmgate-cost-usd"] == "0"
    assert second.json() == first.json()  # usage included, as the call reported it
    assert second.headers["x-llmgate-attempts"] == "0"
    assert _ask(client, key, model="fresh").headers["x-llmgate-cache"] == "skip"
    miss, hit, skip = await _records(gateway)
    assert (miss.cache, hit.cache, skip.cache) == ("miss", "hit", "skip")
    assert hit.cost_usd == 0 and hit.saved_usd == pytest.approx(miss.cost_usd)
    assert hit.prompt_tokens == 0 and hit.attempts == 0


def test_a_stream_after_a_whole_reply_is_the_same_text_replayed_as_a_stream(client: TestClient) -> None:
    key = _key(client)
    whole = _ask(client, key, text="one two three four five six seven").json()
    streamed = _ask(
        client,
        key,
        text="one two three four five six seven",
        stream=True,
        stream_options={"include_usage": True},
    )
    assert streamed.headers["x-llmgate-cache"] == "hit"
    frames = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert len(chunks) > 3  # role, several content chunks, finish, usage


def test_a_whole_reply_after_a_stream_is_served_from_it(client: TestClient) -> None:
    key = _key(client)
    streamed = _ask(client, key, text="streamed first", stream=True)
    assert streamed.headers["x-llmgate-cache"] == "miss"
    whole = _ask(client, key, text="streamed first")
    assert whole.headers["x-llmgate-cache"] == "hit"
    assert whole.json()["choices"][0]["message"]["content"] == "streamed first"


def test_two_keys_never_read_each_others_entries(client: TestClient) -> None:
    first, second = _key(client), _key(client)
    assert _ask(client, first).headers["x-llmgate-cache"] == "miss"
    assert _ask(client, second).headers["x-llmgate-cache"] == "miss"
    assert _ask(client, first).headers["x-llmgate-cache"] == "hit"


def test_cache_control_and_the_ttl_header(client: TestClient) -> None:
    key = _key(client)
    assert _ask(client, key, text="a").headers["x-llmgate-cache"] == "miss"
    assert _ask(client, {**key, "Cache-Control": "no-cache"}, text="a").headers["x-llmgate-cache"] == "skip"
    assert _ask(client, {**key, "Cache-Control": "no-store"}, text="b").headers["x-llmgate-cache"] == "miss"
    assert _ask(client, key, text="b").headers["x-llmgate-cache"] == "miss"  # b was not stored
    assert _ask(client, {**key, "x-llmgate-cache-ttl": "30"}, text="c").status_code == 200
    for bad in ("0", "-1", "abc", "1e12"):
        refused = _ask(client, {**key, "x-llmgate-cache-ttl": bad}, text="c")
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "x-llmgate-cache-ttl"


def test_a_hit_counts_against_the_request_rate_but_not_tokens_or_budget(client: TestClient) -> None:
    key = _key(client, rpm=3, tpm=40, budget_usd=0.02)
    assert _ask(client, key, max_tokens=5).status_code == 200  # 10 prompt tokens + 5 reserved, ~$0.013
    assert _ask(client, key, max_tokens=5).headers["x-llmgate-cache"] == "hit"
    third = _ask(client, key, max_tokens=5)
    assert third.status_code == 200 and third.headers["X-RateLimit-Remaining"] == "0"
    assert _ask(client, key, max_tokens=5).status_code == 429  # the fourth request in the minute
    status = client.get("/api/rate-limits", headers=key).json()
    assert status["budget"]["spent_usd"] == pytest.approx(0.013)


def test_a_hit_still_needs_the_model_allowed(client: TestClient) -> None:
    _ask(client, ADMIN)  # the master key's answer, in its own namespace
    narrow = _key(client, models=["fresh"])
    assert _ask(client, narrow).status_code == 403


def test_the_sdk_sees_a_hit_like_any_reply(client: TestClient) -> None:
    secret = client.post("/admin/keys", json={"name": "sdk"}, headers=ADMIN).json()["key"]
    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key=secret, http_client=client, max_retries=0)
    first = sdk.chat.completions.create(model="cached", messages=[{"role": "user", "content": "sdk"}])
    again = sdk.chat.completions.with_raw_response.create(
        model="cached", messages=[{"role": "user", "content": "sdk"}]
    )
    assert again.headers["x-llmgate-cache"] == "hit"
    assert again.parse().choices[0].message.content == first.choices[0].message.content
    chunks = list(
        sdk.chat.completions.create(
            model="cached", messages=[{"role": "user", "content": "sdk"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "sdk"


def test_health_cache_and_admin_clear(client: TestClient) -> None:
    key = _key(client)
    _ask(client, key)
    _ask(client, key)
    assert client.get("/health/cache").status_code == 401
    stats = client.get("/health/cache", headers=key).json()
    assert stats["backend"] == "memory" and stats["entries"] == 1 and stats["hits"] == 1
    assert stats["hit_rate"] == 0.5 and stats["saved_usd"] > 0
    assert client.delete("/admin/cache", headers=key).status_code == 403
    cleared = client.delete("/admin/cache?model=cached", headers=ADMIN)
    assert cleared.json() == {"deleted": 1}
    assert _ask(client, key).headers["x-llmgate-cache"] == "miss"


def test_with_the_cache_off_every_reply_says_skip() -> None:
    settings = Settings.model_validate(
        {"storage": {"database": "memory"}, "providers": {"m": {"type": "mock"}}}
    )
    with TestClient(create_app(Gateway(settings))) as client:
        for _ in range(2):
            reply = client.post(
                "/v1/chat/completions",
                json={"model": "m:echo", "messages": [{"role": "user", "content": "x"}]},
            )
            assert reply.headers["x-llmgate-cache"] == "skip"
        assert client.get("/health/cache").json() == {"enabled": False}
