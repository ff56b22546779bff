"""OpenTelemetry traces (the ``otel`` extra): a span per call and a child span per upstream attempt, with
the GenAI semantic conventions' attributes, exported over OTLP.

The gateway owns its tracer provider (no global state: two gateways in one process do not mix their
spans). The gateway imports this module only when traces are wanted, so without the extra installed, or
with no endpoint configured, OpenTelemetry is never loaded: the hooks are ``None`` and the request path
pays one ``is None`` check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace  # the optional extra: pip install 'llmgate[otel]'
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from llmgate.core.errors import GatewayError
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatResponse
from llmgate.core.results import CallInfo


class Tracing:
    """Spans of one gateway, sent to ``exporter`` (OTLP over HTTP for an endpoint)."""

    def __init__(self, exporter: SpanExporter, *, service_name: str = "llmgate") -> None:
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("llmgate")

    @classmethod
    def otlp(cls, endpoint: str, *, service_name: str = "llmgate") -> Tracing:
        """Spans exported to an OTLP/HTTP collector (``http://collector:4318/v1/traces``)."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return cls(OTLPSpanExporter(endpoint=endpoint), service_name=service_name)

    def call(self, request: ChatRequest) -> CallSpan:
        """The span of one call, started now (not yet current: see ``CallSpan.current``)."""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": request.model,
            "llmgate.stream": bool(request.stream),
        }
        for name, value in (
            ("gen_ai.request.max_tokens", request.output_limit),
            ("gen_ai.request.temperature", request.temperature),
            ("gen_ai.request.top_p", request.top_p),
        ):
            if value is not None:
                attributes[name] = value
        span = self._tracer.start_span(f"chat {request.model}", kind=SpanKind.SERVER, attributes=attributes)
        return CallSpan(span)

    @contextlib.contextmanager
    def attempt(self, provider: str, system: str, deployment: str, model: str) -> Iterator[Span]:
        """The span of one upstream attempt (a child of the current call span)."""
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": system,
            "gen_ai.request.model": model,
            "llmgate.provider": provider,
            "llmgate.deployment": deployment,
        }
        with self._tracer.start_as_current_span(
            f"chat {model}", kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
        ) as span:
            try:
                yield span
            except GatewayError as error:
                span.set_status(Status(StatusCode.ERROR, error.code))
                span.set_attribute("error.type", error.code)
                raise

    def close(self) -> None:
        """Send what is buffered and stop."""
        self._provider.shutdown()


class CallSpan:
    """One call's span: made current around routing, ended once with what the call came to."""

    def __init__(self, span: Span) -> None:
        self._span = span
        self._ended = False

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """Make the span the parent of the attempt spans started inside."""
        with trace.use_span(self._span, end_on_exit=False):
            yield

    def end(self, response: ChatResponse | None, info: CallInfo, error: GatewayError | None) -> None:
        """Close the span with the call's outcome (once)."""
        if self._ended:
            return
        self._ended = True
        span = self._span
        span.set_attribute("llmgate.request_id", info.request_id)
        span.set_attribute("llmgate.cache", info.cache)
        span.set_attribute("llmgate.attempts", info.attempts)
        if info.provider:
            span.set_attribute("llmgate.provider", info.provider)
            span.set_attribute("llmgate.deployment", info.deployment)
        if response is not None:
            span.set_attribute("gen_ai.response.model", response.model)
            span.set_attribute("gen_ai.response.id", response.id)
            reasons = [choice.finish_reason for choice in response.choices if choice.finish_reason]
            if reasons:
                span.set_attribute("gen_ai.response.finish_reasons", reasons)
            if response.usage is not None:
                span.set_attribute("gen_ai.usage.input_tokens", response.usage.prompt_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", response.usage.completion_tokens)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error.code))
            span.set_attribute("error.type", error.code)
            span.set_attribute("http.response.status_code", error.status)
        span.end()
