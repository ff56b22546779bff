"""The composition root and the library API: ``Settings`` -> adapters, catalogue, router -> calls.

This is the only module that names concrete classes; everything else depends on ports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, overload

from pydantic import BaseModel

from llmgate.assembly import Assembly
from llmgate.batch import BatchRun, Progress
from llmgate.batch.jobs import BatchJobs
from llmgate.batch.worker import Worker
from llmgate.calls import CallOptions, ChatStream, EmbeddingCalls
from llmgate.catalogue import Catalogue
from llmgate.config import Settings, load_settings
from llmgate.core.caller import ANONYMOUS, Caller, LimitStatus
from llmgate.core.codec import chat_request_of, parse_chat_request, parse_embedding_request
from llmgate.core.controls import DEFAULT_CACHE_CONTROL, CacheControl
from llmgate.core.errors import GatewayError, ModelNotFound
from llmgate.core.request import ChatRequest, EmbeddingRequest
from llmgate.core.response import ModelCard
from llmgate.core.results import ChatResult, EmbeddingResult
from llmgate.observe.health import Health
from llmgate.observe.limits import LimitsView
from llmgate.observe.reports import Reports, parse_time, render
from llmgate.policies.cache import ResponseCaching
from llmgate.policies.guard import Guard
from llmgate.policies.key_admin import KeyAdmin
from llmgate.policies.keys import KeyService
from llmgate.providers.transport import Transport
from llmgate.routing.deployments import ModelGroup
from llmgate.routing.quota import UpstreamQuota
from llmgate.routing.strategies import make_strategy
from llmgate.routing.strategies.base import Strategy
from llmgate.state.ports import UsageLedger
from llmgate.toolkit import Condensed, FitResult, Rendered, TokenCount, Toolkit, build_toolkit
from llmgate.toolkit.service import Content, Conversation
from llmgate.toolkit.typed import Parsed, parsed, response_format_of
from llmgate.wiring import State, open_job_store, open_state

if TYPE_CHECKING:
    from llmgate.observe.tracing import Tracing

log = logging.getLogger("llmgate")


class Gateway:
    """One gateway: providers, routing and accounting. Use as an async context manager."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        catalogue: Catalogue | None = None,
        started_at: float | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings(None)
        self.catalogue = catalogue if catalogue is not None else Catalogue.load()
        self._transport = Transport()
        self._ids = random.Random(os.urandom(16))  # seeded once from the OS; no syscall per request
        self._assembly = Assembly(self.settings, self.catalogue, self._transport)
        self.accounts = self._assembly.accounts
        self.router = self._assembly.build_router()
        self.board = self._assembly.build_board()
        self._strategies: dict[str, Strategy] = {}
        self.failover = self._assembly.build_failover(self.board, self._strategy_of, self.router.group)
        self._state: State | None = None
        self._quota: UpstreamQuota | None = None
        self._starting = asyncio.Lock()
        self.caching = ResponseCaching(self._assembly.cache_rules(), None)
        self._assembly.check_embedding_model(self.caching.rules, self.router)
        self.embedding_calls = EmbeddingCalls(router=self.router, guard=self._guard)
        self.calls = self._assembly.build_calls(
            self.router, self.failover, self.caching, self._guard, self.embedding_calls.embed
        )
        self.toolkit: Toolkit = build_toolkit(self.settings, self.router, self._summary_call)
        self.calls.context, self.calls.structured = self._assembly.build_stages(self.toolkit)
        self.observers = self._assembly.build_observers(self.router, self.board)
        tracing = self._assembly.tracing()
        if tracing is not None:
            self.trace_with(tracing)
        self.reports = Reports(self._ledger, started_at=started_at)  # the server's start, for its workers
        self.keys = KeyAdmin(self._key_service, serves=self._serves, groups=lambda: list(self.router.groups))
        self.limits = LimitsView(self.router, self.board, guard=self._guard, quota=lambda: self._quota)
        self.directory = self._assembly.build_directory(self.router)
        self.batch_jobs = BatchJobs(lambda: open_job_store(self.settings), self.settings.batch)
        """The Files and Batches API (``/v1/files``, ``/v1/batches``)."""
        self.batch_worker = Worker(self.batch_jobs, self, self._caller_for)
        """Runs those jobs in the background once started (``llmgate serve`` starts it)."""
        self.health_report = Health(
            self.router,
            self.board,
            state_problems=lambda: self._state.problems() if self._state is not None else [],
            recorder=lambda: self._state.recorder if self._state is not None else None,
        )

    def trace_with(self, tracing: Tracing) -> None:
        """Send a span per call and per upstream attempt to ``tracing`` (``Tracing(exporter)``: any
        OpenTelemetry span exporter; the config's ``tracing.endpoint`` does this with OTLP)."""
        self.observers.tracing = tracing
        self.calls.tracer = tracing
        self.failover.attempt_span = self.observers.attempt_span

    def new_request_id(self) -> str:
        """A short random id for one request (unique in practice, not a secret)."""
        return f"req_{self._ids.getrandbits(96):024x}"

    @classmethod
    def from_config(cls, path: str | Path | None, *, environ: Mapping[str, str] | None = None) -> Gateway:
        """A gateway configured from a YAML file (``None``: environment only)."""
        return cls(load_settings(path, environ=environ))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> State:
        """Open the database and Redis and start the background work (done on first use if not before)."""
        state = self._state
        if state is not None:
            return state
        async with self._starting:
            if self._state is None:
                self._state = await open_state(self.settings, self.board, self.caching.rules)
                self.calls.exchanges = self.observers.attach(self._state.guard, self._state.recorder)
                self.caching.store = self._state.cache
                self.caching.semantic = self._state.semantic
                self._quota = UpstreamQuota(self._state.counters)
                self.failover.admission = self._quota
                if self._state.shared:
                    self.failover.turn = self._state.counters.next_turn
        return self._state

    @property
    def state(self) -> State | None:
        """The started gateway's state (``None`` before ``start``)."""
        return self._state

    async def close(self) -> None:
        """Write the last usage records and release every connection the gateway holds."""
        await self.batch_worker.close()  # its last results go out before the store closes
        await self.batch_jobs.close()
        if self._state is not None:
            await self._state.close()
            self._state = None
        self.calls.exchanges = None
        await self.observers.close()
        for account in self.accounts.values():
            await account.adapter.close()
        for adapter in self._assembly.extra_adapters:
            await adapter.close()
        await self._transport.close()

    # --- chat -------------------------------------------------------------------------------------------

    @overload
    async def chat(
        self,
        model: str | ChatRequest,
        messages: Sequence[Mapping[str, Any]] | None = None,
        *,
        cache: CacheControl = DEFAULT_CACHE_CONTROL,
        response_model: None = None,
        **params: Any,
    ) -> ChatResult: ...

    @overload
    async def chat(
        self,
        model: str | ChatRequest,
        messages: Sequence[Mapping[str, Any]] | None = None,
        *,
        cache: CacheControl = DEFAULT_CACHE_CONTROL,
        response_model: type[Parsed],
        **params: Any,
    ) -> Parsed: ...

    async def chat(
        self,
        model: str | ChatRequest,
        messages: Sequence[Mapping[str, Any]] | None = None,
        *,
        cache: CacheControl = DEFAULT_CACHE_CONTROL,
        response_model: type[BaseModel] | None = None,
        **params: Any,
    ) -> ChatResult | BaseModel:
        """One complete reply. ``model`` is a group name or ``provider:model``; params as OpenAI's.

        With ``response_model`` (a pydantic model class), the reply is asked for as that model's JSON
        schema, validated (retried per ``structured_output.retries``) and returned parsed.
        """
        if response_model is None:
            request = chat_request_of(model, messages, params, stream=False)
            return await self.complete(request, cache=cache)
        params = {**params, "response_format": response_format_of(response_model)}
        request = chat_request_of(model, messages, params, stream=False)
        options = CallOptions(self.new_request_id(), cache=cache, require_schema=True)
        result = await self.calls.complete(request, options, ANONYMOUS)
        return parsed(response_model, result.text)

    async def complete(
        self,
        request: ChatRequest,
        *,
        request_id: str | None = None,
        time_limit: float | None = None,
        fallbacks: tuple[str, ...] = (),
        caller: Caller = ANONYMOUS,
        cache: CacheControl = DEFAULT_CACHE_CONTROL,
    ) -> ChatResult:
        """Serve a validated request (the server's entry point): from the cache, or with limits, retries
        and failover.

        ``time_limit`` (seconds) bounds all attempts together; ``fallbacks`` are groups to try first
        when the requested group fails (the ``x-llmgate-fallbacks`` header); ``caller`` is whose limits,
        budget, model list and cache namespace apply; ``cache`` is the request's cache control.
        """
        options = CallOptions(request_id or self.new_request_id(), time_limit, fallbacks, cache)
        return await self.calls.complete(request, options, caller)

    def stream(
        self,
        model: str | ChatRequest,
        messages: Sequence[Mapping[str, Any]] | None = None,
        *,
        cache: CacheControl = DEFAULT_CACHE_CONTROL,
        **params: Any,
    ) -> ChatStream:
        """A streamed reply: ``async for chunk in gw.stream(...)``."""
        request = chat_request_of(model, messages, params, stream=True)
        return self.open_stream(request, cache=cache)

    def open_stream(
        self,
        request: ChatRequest,
        *,
        request_id: str | None = None,
        time_limit: float | None = None,
        fallbacks: tuple[str, ...] = (),
        caller: Caller = ANONYMOUS,
        cache: CacheControl = DEFAULT_CACHE_CONTROL,
    ) -> ChatStream:
        """Serve a validated streaming request (the server's entry point); routing runs in ``start()``."""
        options = CallOptions(request_id or self.new_request_id(), time_limit, fallbacks, cache)
        return self.calls.open_stream(request, options, caller)

    async def record_refusal(
        self, error: GatewayError, *, caller: Caller = ANONYMOUS, model: str = "", stream: bool = False
    ) -> None:
        """The usage record of a call refused before routing (its body, model, key or headers); calls
        refused or failed later are recorded where that happens. The error gets a request id."""
        if error.recorded:
            return
        if error.request_id is None:
            error.request_id = self.new_request_id()
        guard = await self._guard()
        guard.note_refusal(caller, model or "-", error, stream=stream)

    async def _key_service(self) -> KeyService:
        return (self._state or await self.start()).keys

    async def _caller_for(self, key_id: str) -> Caller:
        return await (await self._key_service()).caller_for(key_id)

    def _serves(self, name: str) -> bool:
        try:
            self.router.group(name)
        except ModelNotFound:
            return False
        return True

    async def _guard(self) -> Guard:
        return (self._state or await self.start()).guard

    async def metrics_text(self) -> bytes:
        """The Prometheus exposition of this gateway (every worker's, under ``--workers N``)."""
        await self.start()
        return self.observers.exposition()

    async def usage(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        group_by: str = "group",
        key_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Usage totals per provider, model, key, group, day or hour (see ``observe.reports``)."""
        return await self.reports.usage(since=since, until=until, group_by=group_by, key_id=key_id)

    async def usage_series(
        self, *, since: float, step: float, group_by: str = "provider", key_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Usage totals per time slot and group (see ``observe.reports``)."""
        return await self.reports.series(since=since, step=step, group_by=group_by, key_id=key_id)

    async def recent_errors(self, *, limit: int = 50) -> list[dict[str, Any]]:
        """The latest failed calls' usage records, newest first."""
        return await self.reports.recent_errors(limit=limit)

    async def stats(self, *, window: float | None = None, key_id: str | None = None) -> dict[str, Any]:
        """The service's figures since start (or over ``window`` seconds): requests, errors, cache hits,
        tokens, cost, uptime, and per provider request_count, avg_latency, error_rate."""
        return await self.reports.stats(window=window, key_id=key_id)

    parse_time = staticmethod(parse_time)
    render_report = staticmethod(render)

    async def _ledger(self) -> UsageLedger:
        state = await self.start()
        await state.recorder.flush()
        return state.database

    async def cache_stats(self) -> dict[str, Any]:
        """The response cache: backend, entries, bytes, hits, misses, hit rate, coalesced, saved cost."""
        await self.start()
        return await self.caching.stats()

    async def clear_cache(self, *, namespace: str | None = None, model: str | None = None) -> int:
        """Remove cached answers: all, or those of a namespace (a key id) and/or a model group."""
        await self.start()
        return await self.caching.clear(namespace=namespace, group=model)

    async def rate_limit_status(
        self, name: str | None = None, *, caller: Caller = ANONYMOUS
    ) -> dict[str, Any]:
        """Limit, remaining and reset: for the caller's key (or the global limit), and each upstream key.

        ``name`` narrows the upstream part to one provider or deployment.
        """
        return await self.limits.status(name, caller)

    def _strategy_of(self, group: ModelGroup) -> Strategy:
        name = group.strategy or self.settings.routing.strategy
        strategy = self._strategies.get(name)
        if strategy is None:
            strategy = self._strategies[name] = make_strategy(name)
        return strategy

    # --- batches ----------------------------------------------------------------------------------------

    def batch(
        self,
        requests: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        *,
        concurrency: int = 8,
        retries: int = 5,
        on_progress: Callable[[Progress], None] | None = None,
        caller: Caller = ANONYMOUS,
        batch_id: str | None = None,
    ) -> BatchRun:
        """Many calls: chat bodies, embeddings bodies or OpenAI batch lines. ``async for`` takes results
        as they finish, ``await`` returns them in input order; a failed request is a result. 429s and
        retryable failures back off and go again (``retries`` times); a spent budget stops the run.
        Each call's usage record carries ``batch_id`` (a new one by default)."""
        tagged = replace(caller, batch_id=batch_id or f"batch_{self._ids.getrandbits(96):024x}")
        return BatchRun(
            self, requests, concurrency=concurrency, retries=retries, on_progress=on_progress, caller=tagged
        )

    # --- embeddings -------------------------------------------------------------------------------------

    async def embed(
        self, model: str | EmbeddingRequest, input: str | Sequence[str] | None = None, **params: Any
    ) -> EmbeddingResult:
        """Vectors for ``input`` from an embedding model."""
        if isinstance(model, EmbeddingRequest):
            request = model
        else:
            body = {**params, "model": model, "input": input if isinstance(input, str) else list(input or [])}
            request = parse_embedding_request(body)
        return await self.embeddings(request)

    async def embeddings(
        self, request: EmbeddingRequest, *, request_id: str | None = None, caller: Caller = ANONYMOUS
    ) -> EmbeddingResult:
        """Serve a validated embeddings request (limits, budget and usage record as for chat)."""
        return await self.embedding_calls.embed(request, request_id or self.new_request_id(), caller)

    # --- callers, keys and limits -----------------------------------------------------------------------

    async def authenticate(self, token: str) -> Caller:
        """The caller a virtual key belongs to (``AuthenticationError`` when unknown, revoked or expired)."""
        state = await self.start()
        return await state.keys.authenticate(token)

    async def limit_status(self, caller: Caller = ANONYMOUS) -> LimitStatus | None:
        """The tightest request limit that applies to the caller, now."""
        state = await self.start()
        return await state.guard.limits.status(caller)

    # --- toolkit ----------------------------------------------------------------------------------------

    def count_tokens(self, model: str, content: Content) -> TokenCount:
        """Tokens of a text, a conversation or a request for ``model``: exact for OpenAI-family models
        (the first count loads the encoding, about a second), a labelled estimate otherwise."""
        return self.toolkit.count_tokens(model, content)

    def fit(
        self, messages: Conversation, model: str, *, reserve: int = 0, window: int | None = None
    ) -> FitResult:
        """The conversation with its oldest turns dropped or trimmed so it fits ``model``'s window less
        ``reserve`` tokens; system messages and the latest user turn stay verbatim."""
        return self.toolkit.fit(messages, model, reserve=reserve, window=window)

    async def condense(
        self, messages: Conversation, *, max_tokens: int, model: str | None = None, caller: Caller = ANONYMOUS
    ) -> Condensed:
        """The conversation with its older turns summarised by an LLM call so it fits ``max_tokens``."""
        return await self.toolkit.condense(messages, max_tokens=max_tokens, model=model, caller=caller)

    def render(self, name: str, /, **variables: Any) -> Rendered:
        """The named prompt template rendered (``.messages()`` gives chat messages)."""
        return self.toolkit.render(name, variables)

    def prompts(self) -> list[dict[str, Any]]:
        """The configured prompt templates (``GET /api/prompts``)."""
        return self.toolkit.prompt_list()

    def chat_body(self, body: Any) -> ChatRequest:
        """A chat request from a decoded JSON body; a ``prompt`` (name and variables) in place of
        ``messages`` is rendered first."""
        return parse_chat_request(self.toolkit.with_prompt(body))

    async def _summary_call(self, request: ChatRequest, caller: Caller) -> ChatResult:
        return await self.complete(request, caller=caller)

    # --- models -----------------------------------------------------------------------------------------

    def models(self) -> list[ModelCard]:
        """What callers can ask for: model groups, then catalogue models of configured providers."""
        return self.directory.cards()

    def model(self, model_id: str) -> ModelCard:
        """One model callers can ask for (``ModelNotFound`` with close matches otherwise)."""
        return self.directory.card(model_id)

    def groups(self) -> list[dict[str, Any]]:
        """The configured model groups: deployments (provider, model, context window), fallbacks,
        strategy, context overflow."""
        return self.directory.groups()

    async def probe(self, *, call: bool = False) -> list[dict[str, Any]]:
        """Each provider probed cheaply (its model listing; with ``call``, a one-token call for one that
        has none): reachable, key accepted, latency, models found, error, ok."""
        return await self.directory.probe(self.complete if call else None)

    async def health(self) -> dict[str, Any]:
        """Overall status, the problems behind it (named), every deployment's state, the usage-record
        writer's lag (from live traffic)."""
        return self.health_report.report()

    def provider_health(self) -> list[dict[str, Any]]:
        """Per deployment: state, error rate, latency p50/p95, last error (no secrets)."""
        return self.health_report.deployments()

    def provider_metrics(self, name: str) -> dict[str, Any]:
        """Live figures of a provider (all its deployments) or of one deployment, by name."""
        return self.health_report.metrics(name)

    def is_available(self, name: str) -> bool:
        """Whether a provider, deployment or model group has a deployment that could take a call now."""
        return self.health_report.is_available(name)
