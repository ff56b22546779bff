"""A usage record carries the real attempt count and the deployments tried, for failed calls too."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from llmgate.config import Settings
from llmgate.core.codec import parse_chat_request
from llmgate.core.errors import GatewayError
from llmgate.gateway import Gateway
from llmgate.state import open_database
from llmgate.state.ports import UsageRecord
from llmgate.state.sqlite import SCHEMA

HELLO = [{"role": "user", "content": "hello"}]


def _settings(**routing: Any) -> Settings:
    failing = {"type": "mock", "mock": {"failure_rate": 1.0, "failure": {"status": 500}}}
    return Settings.model_validate(
        {
            "storage": {"database": "memory"},
            "providers": {"bad1": failing, "bad2": failing, "good": {"type": "mock"}},
            "models": [
                {
                    "name": "g",
                    "strategy": "priority",
                    "deployments": [
                        {"provider": "bad1", "model": "echo", "priority": 0},
                        {"provider": "bad2", "model": "echo", "priority": 1},
                    ],
                    "fallbacks": ["rescue"],
                },
                {"name": "doomed", "deployments": [{"provider": "bad1", "model": "echo"}]},
                {"name": "rescue", "deployments": [{"provider": "good", "model": "echo"}]},
            ],
            "routing": {"retries": 0, **routing},
        }
    )


async def _records(gateway: Gateway) -> list[UsageRecord]:
    state = gateway.state
    assert state is not None
    await state.recorder.flush()
    return await state.database.records()


@pytest.mark.parametrize("stream", [False, True])
async def test_a_failed_call_records_every_attempt_and_deployment(stream: bool) -> None:
    async with Gateway(_settings(retries=3)) as gateway:
        request = parse_chat_request({"model": "doomed", "messages": HELLO, "stream": stream})
        with pytest.raises(GatewayError) as raised:
            if stream:
                async with gateway.open_stream(request) as opened:
                    await opened.start()
            else:
                await gateway.complete(request)
        assert "all 4 attempts" in raised.value.message
        [record] = await _records(gateway)
        assert (record.status, record.attempts) == (502, 4)
        assert record.tried == "bad1/echo,bad1/echo,bad1/echo,bad1/echo"
        assert record.deployment is None


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_served_after_failover_records_what_failed_before(stream: bool) -> None:
    async with Gateway(_settings()) as gateway:
        request = parse_chat_request({"model": "g", "messages": HELLO, "stream": stream})
        if stream:
            async with gateway.open_stream(request) as opened:
                async for _ in opened:
                    pass
        else:
            result = await gateway.complete(request)
            assert result.info.attempts == 3
        [record] = await _records(gateway)
        assert (record.status, record.attempts, record.deployment) == (200, 3, "good/echo")
        assert record.tried == "bad1/echo,bad2/echo"


async def test_a_first_time_success_records_one_attempt_and_nothing_tried() -> None:
    async with Gateway(_settings()) as gateway:
        await gateway.chat("rescue", HELLO)
        [record] = await _records(gateway)
        assert (record.attempts, record.tried) == (1, None)


async def test_a_database_from_before_the_tried_column_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA.replace(",\n    tried TEXT", ""))  # the schema as the first release made it
    assert "tried" not in {row[1] for row in old.execute("PRAGMA table_info(usage_records)")}
    old.close()
    database = await open_database(f"sqlite:///{path}")
    try:
        record = UsageRecord(
            time=1.0, request_id="r", key_id=None, model_group="g", provider=None, deployment=None,
            upstream_model=None, prompt_tokens=0, completion_tokens=0, cached_tokens=0, reasoning_tokens=0,
            cost_usd=0.0, latency_ms=1.0, ttft_ms=None, status=502, error_type="upstream_error", cache=None,
            attempts=2, stream=False, tried="a,b",
        )  # fmt: skip
        await database.write([record])
        [read] = await database.records()
        assert (read.attempts, read.tried) == (2, "a,b")
    finally:
        await database.close()
