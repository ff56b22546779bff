"""``storage.redis_prefix``: gateways (or test runs) sharing one Redis server keep apart."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio
import redis.exceptions

from llmgate.config import Settings
from llmgate.core.errors import RateLimited
from llmgate.gateway import Gateway

REDIS_URL = "redis://127.0.0.1:6379/0"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def prefixes() -> AsyncIterator[list[str]]:
    client = redis.asyncio.Redis.from_url(REDIS_URL, socket_connect_timeout=2.0)
    try:
        await client.ping()
    except (redis.exceptions.ConnectionError, OSError) as error:
        await client.aclose()
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {error}")
    run = uuid.uuid4().hex[:12]
    chosen = [f"llmgate-test:{run}:a:", f"llmgate-test:{run}:b:"]
    try:
        yield chosen
    finally:
        keys = [key async for key in client.scan_iter(match=f"llmgate-test:{run}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def _settings(prefix: str) -> Settings:
    storage: dict[str, Any] = {"database": "memory", "redis": REDIS_URL, "redis_prefix": prefix}
    return Settings.model_validate(
        {"storage": storage, "providers": {"m": {"type": "mock"}}, "limits": {"global": {"rpm": 2}}}
    )


async def _admitted(gateway: Gateway, calls: int) -> int:
    served = 0
    for _ in range(calls):
        try:
            await gateway.chat("m:echo", HELLO)
            served += 1
        except RateLimited:
            pass
    return served


async def test_two_prefixes_on_one_redis_count_apart(prefixes: list[str]) -> None:
    first, second = prefixes
    async with Gateway(_settings(first)) as one, Gateway(_settings(second)) as other:
        assert await _admitted(one, 3) == 2
        assert await _admitted(other, 3) == 2  # its own window: the first gateway's calls do not count
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        for prefix in prefixes:
            assert [key async for key in client.scan_iter(match=f"{prefix}*")]
    finally:
        await client.aclose()


def test_a_prefix_must_be_printable_and_short() -> None:
    for bad in ("", "with space:", "x" * 65, "nul\x00"):
        with pytest.raises(ValueError, match="redis_prefix"):
            _settings(bad)
