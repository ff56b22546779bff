"""OpenTelemetry: a span per call and per upstream attempt, with GenAI attributes, whole and streamed."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from llmgate.config import Settings
from llmgate.core.errors import GatewayError
from llmgate.gateway import Gateway
from llmgate.observe.tracing import Tracing

HELLO = [{"role": "user", "content": "hello there"}]


def _settings() -> Settings:
    return Settings.model_validate(
        {
            "storage": {"database": "memory"},
            "providers": {
                "m": {"type": "mock"},
                "down": {"type": "mock", "mock": {"failure_rate": 1.0, "failure": {"status": 500}}},
            },
            "models": [
                {
                    "name": "g",
                    "strategy": "priority",
                    "deployments": [
                        {"provider": "down", "model": "echo", "priority": 0},
                        {"provider": "m", "model": "echo", "priority": 1},
                    ],
                }
            ],
            "routing": {"retries": 0},
        }
    )


async def test_a_call_span_with_its_attempts_as_children() -> None:
    exporter = InMemorySpanExporter()
    async with Gateway(_settings()) as gateway:
        gateway.trace_with(Tracing(exporter))
        await gateway.chat("g", HELLO, max_tokens=20, temperature=0)
        stream = gateway.stream("g", HELLO)
        assert [c async for c in stream]
    spans = exporter.get_finished_spans()
    calls = [s for s in spans if s.kind.name == "SERVER"]
    attempts = [s for s in spans if s.kind.name == "CLIENT"]
    assert len(calls) == 2 and len(attempts) == 4  # each call: the failing deployment, then the good one
    whole = calls[0]
    assert whole.name == "chat g"
    assert whole.attributes["gen_ai.request.model"] == "g"
    assert whole.attributes["gen_ai.request.max_tokens"] == 20
    assert whole.attributes["gen_ai.usage.input_tokens"] > 0
    assert whole.attributes["llmgate.attempts"] == 2 and whole.attributes["llmgate.provider"] == "m"
    for attempt in attempts:
        assert attempt.parent is not None and attempt.parent.span_id in {c.context.span_id for c in calls}
        assert attempt.attributes["gen_ai.system"] == "mock"
    failed = [a for a in attempts if a.attributes["llmgate.provider"] == "down"]
    assert len(failed) == 2 and all(a.status.status_code is StatusCode.ERROR for a in failed)
    assert calls[1].attributes["llmgate.stream"] is True


async def test_a_failed_call_span_carries_the_error() -> None:
    exporter = InMemorySpanExporter()
    async with Gateway(_settings()) as gateway:
        gateway.trace_with(Tracing(exporter))
        with pytest.raises(GatewayError):
            await gateway.chat("nope", HELLO)
    [span] = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR and span.attributes["error.type"] == "model_not_found"


async def test_an_endpoint_configures_the_otlp_exporter() -> None:
    settings = Settings.model_validate(
        {**_settings().model_dump(mode="json"), "tracing": {"endpoint": "http://127.0.0.1:1/v1/traces"}}
    )
    gateway = Gateway(settings)
    assert gateway.observers.tracing is not None and gateway.calls.tracer is gateway.observers.tracing
    await gateway.close()
    with pytest.raises(ValueError, match="http"):
        Settings.model_validate({"tracing": {"endpoint": "not-a-url"}})
