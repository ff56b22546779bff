"""The response cache end to end: real ``llmgate serve`` processes before the counting upstream process,
and for the shared backend a real Redis (the machine's, under a key prefix of this run; and one this
module starts itself on a free port, to take it down in the middle of traffic)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from .conftest import GatewayProcess, Upstream, free_port, gateway_config, stop_process, wait_until

MASTER = "sk-e2e-cache-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
SHARED_REDIS = "redis://127.0.0.1:6379/0"


def cached_config(upstream: Upstream, **cache: Any) -> dict[str, Any]:
    config = gateway_config(upstream, master_key=MASTER)
    config["models"].append({"name": "slow", "deployments": [{"provider": "up", "model": "slow-300"}]})
    config["storage"] = {"database": "memory"}
    config["cache"] = {"mode": "exact", **cache}
    return config


def chat(
    gateway: GatewayProcess, text: str, headers: dict[str, str] | None = None, **body: Any
) -> httpx.Response:
    payload = {
        "model": body.pop("model", "gpt-test"),
        "messages": [{"role": "user", "content": text}],
        **body,
    }
    return httpx.post(
        f"{gateway.base_url}/chat/completions", json=payload, headers=headers or ADMIN, timeout=15
    )


@pytest.fixture(scope="module")
def cached(
    upstream: Upstream, config_gateway_factory: Callable[[dict[str, Any]], GatewayProcess]
) -> GatewayProcess:
    return config_gateway_factory(cached_config(upstream))


def test_identical_requests_reach_the_upstream_once(
    cached: GatewayProcess, upstream: Upstream, marker: str
) -> None:
    first = chat(cached, f"tell me {marker}")
    second = chat(cached, f"tell me {marker}")
    assert (first.headers["x-llmgate-cache"], second.headers["x-llmgate-cache"]) == ("miss", "hit")
    assert second.json()["choices"] == first.json()["choices"]
    assert len(upstream.requests_with(marker)) == 1
    fresh = chat(cached, f"tell me {marker}", headers={**ADMIN, "Cache-Control": "no-cache"})
    assert fresh.headers["x-llmgate-cache"] == "skip"
    assert len(upstream.requests_with(marker)) == 2


def test_a_stream_after_a_whole_reply_replays_it(
    cached: GatewayProcess, upstream: Upstream, marker: str
) -> None:
    whole = chat(cached, f"stream me {marker} please").json()["choices"][0]["message"]["content"]
    with cached.client(api_key=MASTER) as sdk:
        chunks = list(
            sdk.chat.completions.create(
                model="gpt-test",
                stream=True,
                messages=[{"role": "user", "content": f"stream me {marker} please"}],
            )
        )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert len(upstream.requests_with(marker)) == 1


def test_two_virtual_keys_do_not_share_entries(
    cached: GatewayProcess, upstream: Upstream, marker: str
) -> None:
    keys = []
    for name in ("tenant-a", "tenant-b"):
        created = httpx.post(f"{cached.url}/admin/keys", json={"name": name}, headers=ADMIN, timeout=10)
        keys.append({"Authorization": f"Bearer {created.json()['key']}"})
    for key in keys:
        assert chat(cached, f"secret of {marker}", headers=key).headers["x-llmgate-cache"] == "miss"
    assert chat(cached, f"secret of {marker}", headers=keys[0]).headers["x-llmgate-cache"] == "hit"
    assert len(upstream.requests_with(marker)) == 2


async def test_twenty_identical_concurrent_requests_make_one_upstream_call(
    cached: GatewayProcess, upstream: Upstream, marker: str
) -> None:
    body = {"model": "slow", "messages": [{"role": "user", "content": f"all at once {marker}"}]}
    async with httpx.AsyncClient(timeout=15) as client:
        replies = await asyncio.gather(
            *(client.post(f"{cached.base_url}/chat/completions", json=body, headers=ADMIN) for _ in range(20))
        )
    assert {reply.status_code for reply in replies} == {200}
    assert sorted(reply.headers["x-llmgate-cache"] for reply in replies) == ["hit"] * 19 + ["miss"]
    assert len({reply.json()["choices"][0]["message"]["content"] for reply in replies}) == 1
    assert len(upstream.requests_with(marker)) == 1


@pytest.fixture(scope="module")
def redis_prefix() -> Iterator[str]:
    client = redis.Redis.from_url(SHARED_REDIS, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, OSError) as error:
        pytest.skip(f"Redis not reachable at {SHARED_REDIS}: {error}")
    prefix = f"llmgate-e2e:{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        names = list(client.scan_iter(match=f"{prefix}*"))
        if names:
            client.delete(*names)
        client.close()


def test_two_replicas_on_one_redis_share_hits(
    upstream: Upstream,
    config_gateway_factory: Callable[[dict[str, Any]], GatewayProcess],
    redis_prefix: str,
    marker: str,
) -> None:
    config = cached_config(upstream, backend="redis")
    config["storage"] = {"database": "memory", "redis": SHARED_REDIS, "redis_prefix": redis_prefix}
    one, two = config_gateway_factory(config), config_gateway_factory(config)
    assert chat(one, f"shared {marker}").headers["x-llmgate-cache"] == "miss"
    assert chat(two, f"shared {marker}").headers["x-llmgate-cache"] == "hit"
    assert len(upstream.requests_with(marker)) == 1
    stats = httpx.get(f"{two.url}/health/cache", headers=ADMIN, timeout=5).json()
    assert stats["backend"] == "redis" and stats["entries"] >= 1


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_connect_timeout=1)
    try:
        wait_until(lambda: _pings(client), timeout=10)
    finally:
        client.close()
    return proc


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except (redis.exceptions.ConnectionError, OSError):
        return False


def test_a_redis_outage_during_traffic_fails_no_request(
    upstream: Upstream, config_gateway_factory: Callable[[dict[str, Any]], GatewayProcess], marker: str
) -> None:
    port = free_port()
    own_redis = _start_redis(port)
    try:
        config = cached_config(upstream, backend="redis", timeout=0.2)
        config["storage"] = {"database": "memory", "redis": f"redis://127.0.0.1:{port}/0"}
        gateway = config_gateway_factory(config)
        assert chat(gateway, f"before {marker}").headers["x-llmgate-cache"] == "miss"
        assert chat(gateway, f"before {marker}").headers["x-llmgate-cache"] == "hit"
        stop_process(own_redis)
        during = [chat(gateway, f"during {marker} {n % 3}") for n in range(12)]
        assert [reply.status_code for reply in during] == [200] * 12
        assert {reply.headers["x-llmgate-cache"] for reply in during} == {"skip"}
        health = httpx.get(f"{gateway.url}/health", headers=ADMIN, timeout=5).json()
        assert health["status"] == "degraded"
        assert any("response cache (redis) bypassed" in problem for problem in health["problems"])
        own_redis = _start_redis(port)
        deadline = time.monotonic() + 15
        states: list[str] = []
        while time.monotonic() < deadline:
            reply = chat(gateway, f"after {marker}")
            assert reply.status_code == 200
            states.append(reply.headers["x-llmgate-cache"])
            if states[-2:] == ["miss", "hit"]:
                break
            time.sleep(0.5)
        assert states[-2:] == ["miss", "hit"], states  # the cache came back by itself
    finally:
        stop_process(own_redis)
