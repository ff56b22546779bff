"""Everything that watches one gateway's calls, put together: the Prometheus metrics, the request log
lines and the interaction log. They hang off the usage recorder (records in batches) and the calls
(whole exchanges); the gateway attaches them when it starts and closes them with it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from llmgate.core.errors import GatewayError, NotFound
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatResponse
from llmgate.core.results import CallInfo
from llmgate.observe.interactions import InteractionLog
from llmgate.observe.logs import RequestLog
from llmgate.observe.metrics import GatewayMetrics, LiveCollector, exposition
from llmgate.policies.guard import Guard
from llmgate.policies.usage import UsageRecorder
from llmgate.routing.health import HealthBoard
from llmgate.routing.plan import Option
from llmgate.routing.router import Router

if TYPE_CHECKING:
    from llmgate.observe.tracing import Tracing


class Observers:
    """The metrics and logs of one gateway."""

    def __init__(
        self,
        router: Router,
        board: HealthBoard,
        *,
        request_lines: bool,
        interactions: tuple[str, int, int] | None,
        metrics_dir: str | None,
        tracing: Tracing | None = None,
        metrics: bool = True,
    ) -> None:
        self.metrics = GatewayMetrics(router, CollectorRegistry())
        self._guard: Guard | None = None
        self._recorder: UsageRecorder | None = None
        self._live = LiveCollector(router, board, in_flight=self._in_flight, pending=self._pending)
        self.metrics.registry.register(self._live)
        self._request_lines = request_lines
        self._interaction_file = interactions
        self._metrics_dir = metrics_dir
        self.metrics_on = metrics
        self.interactions: InteractionLog | None = None
        self.tracing = tracing
        """Spans per call and per attempt, when an OTLP endpoint is configured."""

    def attempt_span(self, option: Option) -> AbstractContextManager[object]:
        """The span around one upstream attempt (only called with tracing on)."""
        assert self.tracing is not None
        deployment = option.deployment
        account = deployment.account
        return self.tracing.attempt(account.name, account.type, deployment.name, deployment.model)

    def attach(self, guard: Guard, recorder: UsageRecorder) -> Callable[..., None] | None:
        """Start watching: the recorder's batches feed metrics and request lines. Returns the exchange
        hook for the calls when an interaction log is configured."""
        self._guard, self._recorder = guard, recorder
        if self.metrics_on:
            recorder.listeners.append(self.metrics.observe)
        if self._request_lines:
            recorder.listeners.append(RequestLog())
        if self._interaction_file is not None and self.interactions is None:
            path, max_bytes, backups = self._interaction_file
            self.interactions = InteractionLog(path, max_bytes=max_bytes, backups=backups)
            return self.exchange
        return None

    def exchange(
        self,
        request: ChatRequest,
        response: ChatResponse | None,
        info: CallInfo,
        key_id: str | None,
        error: GatewayError | None,
    ) -> None:
        """One whole exchange, for the interaction log."""
        if self.interactions is not None:
            self.interactions.write(request, response, info, key_id=key_id, error=error)

    def exposition(self) -> bytes:
        """The Prometheus text (every worker's counts under ``--workers N``)."""
        if not self.metrics_on:
            raise NotFound("metrics are off (server.metrics: false)")
        return exposition(self.metrics, self._live, multiprocess_dir=self._metrics_dir)

    async def close(self) -> None:
        """Write what the interaction log holds, and stop it."""
        if self.interactions is not None:
            await asyncio.to_thread(self.interactions.close)
            self.interactions = None
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.close)
            self.tracing = None

    def _in_flight(self) -> int:
        return self._guard.active if self._guard is not None else 0

    def _pending(self) -> int:
        return self._recorder.pending if self._recorder is not None else 0
