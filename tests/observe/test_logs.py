"""Request log lines (from the usage records), the server's queued log writer, and the interaction log."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmgate.config import Settings
from llmgate.core.codec import parse_chat_request
from llmgate.core.errors import GatewayError
from llmgate.gateway import Gateway
from llmgate.observe.logs import REQUESTS, RequestLog, takes_batches
from llmgate.server.logs import JsonFormatter, TextFormatter, configure
from llmgate.state.ports import UsageRecord

HELLO = [{"role": "user", "content": "hello there"}]
SECRET = "sk-thisLooksLikeAKey1234567890"


def _settings(tmp_path: Path, **log: Any) -> Settings:
    return Settings.model_validate(
        {
            "storage": {"database": "memory", "flush_interval": 60},
            "providers": {
                "m": {"type": "mock"},
                "down": {"type": "mock", "mock": {"failure_rate": 1.0, "failure": {"status": 500}}},
            },
            "models": [{"name": "broken", "deployments": [{"provider": "down", "model": "echo"}]}],
            "routing": {"retries": 0},
            "cache": {"mode": "exact"},
            "log": log,
        }
    )


async def _flush(gateway: Gateway) -> None:
    state = gateway.state
    assert state is not None
    await state.recorder.flush()


async def test_one_request_line_per_call_with_its_fields(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llmgate.requests")
    async with Gateway(_settings(tmp_path)) as gateway:
        await gateway.chat("m:echo", HELLO)
        with pytest.raises(GatewayError):
            await gateway.chat("broken", HELLO)
        await _flush(gateway)
    lines = [r for r in caplog.records if r.name == "llmgate.requests"]
    assert len(lines) == 2
    calls = [r.call for r in lines]  # type: ignore[attr-defined]
    assert (calls[0]["status"], calls[0]["provider"], calls[0]["cache"]) == (200, "m", "miss")
    assert (calls[1]["status"], calls[1]["error_type"], calls[1]["attempts"]) == (502, "upstream_error", 1)
    assert all(call["request_id"] for call in calls)


async def test_request_lines_can_be_turned_off(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="llmgate.requests")
    async with Gateway(_settings(tmp_path, requests=False)) as gateway:
        await gateway.chat("m:echo", HELLO)
        await _flush(gateway)
    assert not [r for r in caplog.records if r.name == "llmgate.requests"]


def _record(message: str, **call: Any) -> logging.LogRecord:
    record = logging.LogRecord("llmgate.requests", logging.INFO, __file__, 1, message, (), None)
    record.call = call
    return record


def test_json_lines_carry_the_call_and_never_a_key() -> None:
    line = JsonFormatter().format(_record(f"upstream said {SECRET}", status=200, request_id="req_1"))
    parsed = json.loads(line)
    assert parsed["level"] == "info" and parsed["logger"] == "llmgate.requests"
    assert parsed["status"] == 200 and parsed["request_id"] == "req_1"
    assert SECRET not in line and "<redacted>" in parsed["message"]
    text = TextFormatter().format(_record(f"said {SECRET}", status=200, key_id=None))
    assert "status=200" in text and SECRET not in text and "key_id" not in text


@contextlib.contextmanager
def _server_logging(format: str) -> Iterator[None]:
    """The server's logging setup, with the root logger's handlers (pytest's) put back after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    listener = configure(format=format, level="info")
    try:
        yield
    finally:
        listener.stop()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)


def test_the_writer_thread_formats_and_writes_what_the_loop_only_enqueued(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with _server_logging("json"):
        logging.getLogger("llmgate.test").info("hello %s", "world")
        logging.getLogger("llmgate.test").debug("not at info")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert [line["message"] for line in lines if line["logger"] == "llmgate.test"] == ["hello world"]


def _usage(request_id: str, model_group: str, **fields: Any) -> UsageRecord:
    base: dict[str, Any] = {
        "time": 1_780_000_000.25,
        "request_id": request_id,
        "key_id": "key_0123456789abcdef",
        "model_group": model_group,
        "provider": "m",
        "deployment": "m/echo",
        "upstream_model": "echo",
        "prompt_tokens": 3,
        "completion_tokens": 5,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 0.5,
        "latency_ms": 1.5,
        "ttft_ms": None,
        "status": 200,
        "error_type": None,
        "cache": "miss",
        "attempts": 1,
        "stream": False,
    }
    return UsageRecord(**{**base, **fields})


def test_the_server_queue_takes_a_batch_as_one_record_and_writes_a_line_per_request(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Behind the server's queue the loop hands over one record per batch; the writer expands it."""
    requests = logging.getLogger(REQUESTS)
    assert not takes_batches(requests)  # pytest's handlers: one record per request
    seen: list[logging.LogRecord] = []
    with _server_logging("json"):
        assert takes_batches(requests)
        requests.addFilter(lambda record: bool(seen.append(record)) or True)
        try:
            RequestLog()(
                [_usage("req_a", "g"), _usage("req_b", SECRET, status=502, error_type="upstream_error")]
            )
        finally:
            requests.filters.clear()
    assert len(seen) == 1  # one LogRecord for the batch
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    lines = [line for line in lines if line["logger"] == REQUESTS]
    assert [(line["request_id"], line["status"]) for line in lines] == [("req_a", 200), ("req_b", 502)]
    assert lines[0]["time"] == "2026-05-28T20:26:40.250Z" and lines[0]["message"] == "200 g req_a"
    assert lines[1]["key_id"] == "key_0123456789abcdef"  # an id is not a secret
    assert SECRET not in json.dumps(lines) and lines[1]["model_group"] == "<redacted>"


def test_text_lines_of_a_batch_are_one_per_request(capsys: pytest.CaptureFixture[str]) -> None:
    with _server_logging("text"):
        RequestLog()([_usage("req_a", "g"), _usage("req_b", "g", cache="hit", cost_usd=0.0)])
    lines = [line for line in capsys.readouterr().err.splitlines() if f" {REQUESTS}: " in line]
    assert len(lines) == 2
    assert "INFO llmgate.requests: 200 g req_a " in lines[0] and "cache=miss" in lines[0]
    assert "request_id=req_b" in lines[1] and "cache=hit" in lines[1] and "ttft_ms" not in lines[1]


async def test_the_interaction_log_has_every_exchange_redacted_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "interactions.jsonl"
    settings = _settings(tmp_path, interactions={"path": str(path), "max_bytes": 4000, "backups": 2})
    async with Gateway(settings) as gateway:
        await gateway.chat("m:echo", [{"role": "user", "content": f"my key is {SECRET}"}])
        await gateway.chat("m:echo", [{"role": "user", "content": f"my key is {SECRET}"}])  # a cache hit
        stream = gateway.stream("m:echo", [{"role": "user", "content": "stream this"}])
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "stream this"
        with pytest.raises(GatewayError):
            await gateway.chat("broken", HELLO)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["cache"] for line in lines] == ["miss", "hit", "miss", "skip"]
    assert lines[2]["response"]["choices"][0]["message"]["content"] == "stream this"
    assert lines[3]["error"]["status"] == 502 and lines[3]["response"] is None
    assert SECRET not in path.read_text()
    request = parse_chat_request(lines[0]["request"])
    assert "<redacted>" in request.messages[0].text()
    async with Gateway(settings) as gateway:
        for n in range(40):
            await gateway.chat("m:echo", [{"role": "user", "content": f"fill the file {n} " * 5}])
    assert (tmp_path / "interactions.jsonl.1").exists() and (tmp_path / "interactions.jsonl.2").exists()
    assert not (tmp_path / "interactions.jsonl.3").exists()
