"""Prometheus metrics, fed by the usage records (in batches, off the request path) and, at scrape time,
by the live state (breakers, key headroom, calls in flight, the usage writer's queue).

Every label comes from a bounded set: configured groups, providers and deployments, status classes,
the gateway's own error codes. A name a caller made up (``provider:anything``) is counted under
``<provider>:*``; an unknown one under ``unknown``. With ``--workers N`` the counts live in
prometheus-client's multiprocess files, so any worker's ``/metrics`` has them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from llmgate.routing.breaker import BreakerState
from llmgate.routing.health import HealthBoard
from llmgate.routing.router import Router
from llmgate.state.ports import UsageRecord

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
KNOWN_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_json",
        "invalid_type",
        "invalid_value",
        "missing_required",
        "unsupported_parameter",
        "context_length_exceeded",
        "payload_too_large",
        "invalid_api_key",
        "missing_api_key",
        "permission_denied",
        "model_not_found",
        "not_found",
        "client_closed",
        "rate_limit_exceeded",
        "insufficient_quota",
        "upstream_error",
        "upstream_authentication_error",
        "upstream_overloaded",
        "upstream_timeout",
        "upstream_connection_error",
        "stream_interrupted",
        "upstream_unexpected_response",
        "request_timeout",
    }
)
BREAKER_VALUES = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 1.0, BreakerState.OPEN: 2.0}


class Labels:
    """Bounded label values for what a record names."""

    def __init__(self, router: Router) -> None:
        self._groups = frozenset(router.groups)
        self._providers = frozenset(router.accounts)

    def group(self, name: str) -> str:
        """A configured group, ``<provider>:*`` for a directly addressed model, else ``unknown``."""
        if name in self._groups:
            return name
        for separator in (":", "/"):
            prefix, found, _ = name.partition(separator)
            if found and prefix in self._providers:
                return f"{prefix}:*"
        return "unknown"

    def provider(self, name: str | None) -> str:
        """A configured provider, or ``none`` (the call reached none)."""
        return name if name is not None and name in self._providers else "none"

    @staticmethod
    def error(code: str | None) -> str:
        """One of the gateway's own error codes, or ``other``."""
        return code if code in KNOWN_ERRORS else "other"


class GatewayMetrics:
    """The gateway's metrics in one registry; ``observe`` takes a batch of usage records."""

    def __init__(self, router: Router, registry: CollectorRegistry) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series: noise to a dashboard
        self.registry = registry
        self.labels = Labels(router)
        self.requests = Counter(
            "llmgate_requests",
            "Calls, by group, provider and status class.",
            ["group", "provider", "status"],
            registry=registry,
        )
        self.errors = Counter(
            "llmgate_errors", "Failed calls, by error type.", ["group", "type"], registry=registry
        )
        self.latency = Histogram(
            "llmgate_request_duration_seconds",
            "Whole call duration.",
            ["group"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            "llmgate_time_to_first_token_seconds",
            "Streams: time to the first token.",
            ["group"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.overhead = Histogram(
            "llmgate_gateway_overhead_seconds",
            "Whole replies: call duration less the serving upstream call's.",
            buckets=OVERHEAD_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "llmgate_tokens",
            "Tokens, by direction (prompt, completion, cached, reasoning).",
            ["group", "provider", "direction"],
            registry=registry,
        )
        self.cost = Counter(
            "llmgate_cost_usd", "Spend in USD (known prices).", ["group", "provider"], registry=registry
        )
        self.cost_unknown = Counter(
            "llmgate_cost_unknown", "Served calls whose price is unknown.", ["group"], registry=registry
        )
        self.cache = Counter("llmgate_cache", "Cache outcomes.", ["group", "result"], registry=registry)
        self.saved = Counter("llmgate_cache_saved_usd", "Spend the cache saved.", registry=registry)
        self.limited = Counter(
            "llmgate_rate_limited",
            "Calls refused 429 (limits, budgets, upstream limits).",
            ["group", "type"],
            registry=registry,
        )
        self.retries = Counter(
            "llmgate_retries", "Upstream attempts beyond the first.", ["group"], registry=registry
        )
        self.fallbacks = Counter(
            "llmgate_fallbacks",
            "Calls served by a fallback group.",
            ["group", "served_by"],
            registry=registry,
        )

    def observe(self, records: Sequence[UsageRecord]) -> None:
        """Count a batch of usage records: tallied first, so each labelled series is touched once per
        batch (a histogram once per value), not once per record and metric."""
        tally = _Tally()
        labels = self.labels
        for record in records:
            group = labels.group(record.model_group)
            provider = labels.provider(record.provider)
            tally.add(self.requests, (group, provider, STATUS_CLASSES[min(record.status // 100, 5)]))
            tally.value(self.latency, (group,), record.latency_ms / 1000)
            if record.status >= 400:
                error = labels.error(record.error_type)
                tally.add(self.errors, (group, error))
                if record.status == 429:
                    tally.add(self.limited, (group, error))
            self._served(tally, record, group, provider)
        tally.apply()

    def _served(self, tally: _Tally, record: UsageRecord, group: str, provider: str) -> None:
        served = record.status < 400
        if record.stream and record.ttft_ms is not None and served:
            tally.value(self.ttft, (group,), record.ttft_ms / 1000)
        if not record.stream and record.upstream_ms is not None and served:
            tally.value(self.overhead, (), max(0.0, record.latency_ms - record.upstream_ms) / 1000)
        for direction, count in (
            ("prompt", record.prompt_tokens),
            ("completion", record.completion_tokens),
            ("cached", record.cached_tokens),
            ("reasoning", record.reasoning_tokens),
        ):
            if count:
                tally.add(self.tokens, (group, provider, direction), count)
        if record.cost_usd:
            tally.add(self.cost, (group, provider), record.cost_usd)
        elif record.cost_usd is None and served:
            tally.add(self.cost_unknown, (group,))
        if record.cache is not None:
            tally.add(self.cache, (group, record.cache))
        if record.saved_usd:
            tally.add(self.saved, (), record.saved_usd)
        if record.attempts > 1:
            tally.add(self.retries, (group,), record.attempts - 1)
        if record.fallback_group is not None:
            tally.add(self.fallbacks, (group, self.labels.group(record.fallback_group)))


STATUS_CLASSES = ("0xx", "1xx", "2xx", "3xx", "4xx", "5xx")


class _Tally:
    """One batch's counts per labelled series, and its histogram values per series."""

    def __init__(self) -> None:
        self._counts: dict[tuple[Counter, tuple[str, ...]], float] = {}
        self._values: dict[tuple[Histogram, tuple[str, ...]], list[float]] = {}

    def add(self, metric: Counter, labels: tuple[str, ...], amount: float = 1) -> None:
        key = (metric, labels)
        self._counts[key] = self._counts.get(key, 0) + amount

    def value(self, metric: Histogram, labels: tuple[str, ...], value: float) -> None:
        key = (metric, labels)
        values = self._values.get(key)
        if values is None:
            self._values[key] = [value]
        else:
            values.append(value)

    def apply(self) -> None:
        for (counter, labels), amount in self._counts.items():
            (counter.labels(*labels) if labels else counter).inc(amount)
        for (histogram, labels), values in self._values.items():
            observe = (histogram.labels(*labels) if labels else histogram).observe
            for value in values:
                observe(value)


class LiveCollector(Collector):
    """Read at scrape time: breaker state per deployment, upstream key headroom, calls in flight, the
    usage writer's queue."""

    def __init__(
        self,
        router: Router,
        board: HealthBoard,
        *,
        in_flight: Callable[[], int],
        pending: Callable[[], int],
    ) -> None:
        self._router = router
        self._board = board
        self._in_flight = in_flight
        self._pending = pending

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """The live gauges."""
        board, now = self._board, self._board.clock()
        breakers = GaugeMetricFamily(
            "llmgate_breaker_state", "0 closed, 1 half-open, 2 open.", labels=["deployment", "provider"]
        )
        headroom = GaugeMetricFamily(
            "llmgate_upstream_key_headroom",
            "Share of an upstream key's limit left (from its headers).",
            labels=["deployment", "key"],
        )
        for deployment in _deployments(self._router):
            state = board.of(deployment.name, deployment.account.name).breaker.state(now)
            breakers.add_metric([deployment.name, deployment.account.name], BREAKER_VALUES[state])
            for key in deployment.keys:
                reading = deployment.headroom(key)
                if reading is not None:
                    headroom.add_metric([deployment.name, key.label], reading.fraction_left_at(now))
        yield breakers
        yield headroom
        yield GaugeMetricFamily("llmgate_in_flight", "Calls being served now.", value=self._in_flight())
        yield GaugeMetricFamily(
            "llmgate_usage_records_pending", "Records not yet written.", value=self._pending()
        )


def _deployments(router: Router) -> list[Any]:
    seen: dict[str, Any] = {}
    for group in router.groups.values():
        for deployment in group.deployments:
            seen.setdefault(deployment.name, deployment)
    return list(seen.values())


def exposition(metrics: GatewayMetrics, live: LiveCollector, *, multiprocess_dir: str | None) -> bytes:
    """The Prometheus text: this process's registry, or (under ``--workers N``) every worker's counts
    from the multiprocess directory; the live gauges are this process's view."""
    if multiprocess_dir is None:
        return bytes(generate_latest(metrics.registry))
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]  # untyped upstream
    registry.register(live)
    return bytes(generate_latest(registry))
