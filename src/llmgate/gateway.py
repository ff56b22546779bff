"""The composition root and the library API: ``Settings`` -> adapters, catalogue, router -> calls.

This is the only module that names concrete classes; everything else depends on ports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from time import perf_counter
from types import TracebackType
from typing import Any, Self, get_args

from llmgate.assembly import Assembly
from llmgate.catalogue import Catalogue, ModelInfo, cost_of
from llmgate.config import Settings, how_to_enable, load_settings
from llmgate.config.settings import ProviderType
from llmgate.core.caller import ANONYMOUS, Caller, LimitStatus
from llmgate.core.codec import parse_chat_request, parse_embedding_request
from llmgate.core.errors import ClientClosed, GatewayError, InvalidRequest, ModelNotFound, PermissionDenied
from llmgate.core.request import ChatRequest, EmbeddingRequest
from llmgate.core.response import ChatResponse, ModelCard
from llmgate.core.results import CallInfo, ChatResult, EmbeddingResult
from llmgate.core.usage import make_usage
from llmgate.observe.health import Health
from llmgate.policies.guard import Call, Pass
from llmgate.policies.keys import KeyChanges, KeyFields, fields_from, key_view
from llmgate.providers.base import (
    EmbeddingProvider,
    ModelLister,
    Target,
)
from llmgate.providers.transport import Transport
from llmgate.routing.backoff import Backoff
from llmgate.routing.breaker import BreakerPolicy
from llmgate.routing.deployments import ApiKey, Deployment, ModelGroup
from llmgate.routing.failover import Failover, RetryPolicy
from llmgate.routing.health import HealthBoard
from llmgate.routing.plan import Option, Plan
from llmgate.routing.quota import UpstreamQuota
from llmgate.routing.router import Router
from llmgate.routing.strategies import make_strategy
from llmgate.routing.strategies.base import Strategy
from llmgate.streaming import ChatStream
from llmgate.wiring import State, open_state

log = logging.getLogger("llmgate")
PROMPT_MARGIN = 1.25  # the prompt estimate is ~4 chars/token: a budget reserves this much more


class Gateway:
    """One gateway: providers, routing and accounting. Use as an async context manager."""

    def __init__(self, settings: Settings | None = None, *, catalogue: Catalogue | None = None) -> None:
        self.settings = settings if settings is not None else load_settings(None)
        self.catalogue = catalogue if catalogue is not None else Catalogue.load()
        self._transport = Transport()
        self._ids = random.Random(os.urandom(16))  # seeded once from the OS; no syscall per request
        self._assembly = Assembly(self.settings, self.catalogue, self._transport)
        self.accounts = self._assembly.accounts
        self.router = Router(
            groups=self._assembly.build_groups(),
            accounts=self.accounts,
            facts=self._assembly.model_facts,
            catalogue_provider=self._assembly.catalogue_provider,
            known_providers=frozenset(get_args(ProviderType)),
            enable_hint=how_to_enable,
        )
        routing = self.settings.routing
        breaker = routing.breaker
        self.board = HealthBoard(
            BreakerPolicy(
                failure_threshold=breaker.failures,
                error_rate_threshold=breaker.error_rate,
                min_requests=breaker.min_requests,
                cooldown=breaker.cooldown,
                max_cooldown=breaker.max_cooldown,
            )
        )
        self._strategies: dict[str, Strategy] = {}
        self.failover = Failover(
            board=self.board,
            strategy_of=self._strategy_of,
            resolve=self.router.group,
            policy=RetryPolicy(routing.retries, routing.max_attempts, routing.max_queue_wait, Backoff()),
            rng=random.Random(os.urandom(16)),
            output_reserve=self.settings.limits.reserve_output_tokens,
        )
        self._state: State | None = None
        self._quota: UpstreamQuota | None = None
        self._starting = asyncio.Lock()
        self.health_report = Health(
            self.router,
            self.board,
            state_problems=lambda: self._state.problems() if self._state is not None else [],
            recorder=lambda: self._state.recorder if self._state is not None else None,
        )

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
                self._state = await open_state(self.settings, self.board)
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
        if self._state is not None:
            await self._state.close()
            self._state = None
        for account in self.accounts.values():
            await account.adapter.close()
        for adapter in self._assembly.extra_adapters:
            await adapter.close()
        await self._transport.close()

    # --- chat -------------------------------------------------------------------------------------------

    async def chat(
        self, model: str | ChatRequest, messages: Sequence[Mapping[str, Any]] | None = None, **params: Any
    ) -> ChatResult:
        """One complete reply. ``model`` is a group name or ``provider:model``; params as OpenAI's."""
        request = self._chat_request(model, messages, params, stream=False)
        return await self.complete(request)

    async def complete(
        self,
        request: ChatRequest,
        *,
        request_id: str | None = None,
        time_limit: float | None = None,
        fallbacks: tuple[str, ...] = (),
        caller: Caller = ANONYMOUS,
    ) -> ChatResult:
        """Serve a validated request (the server's entry point), with limits, retries and failover.

        ``time_limit`` (seconds) bounds all attempts together; ``fallbacks`` are groups to try first
        when the requested group fails (the ``x-llmgate-fallbacks`` header); ``caller`` is whose limits,
        budget and model list apply.
        """
        state = self._state or await self.start()
        request_id = request_id or self.new_request_id()
        plan = self._plan(request, fallbacks, caller)
        try:
            gate = await state.guard.open(caller, self._call(request, plan, caller))
        except GatewayError as refused:
            refused.request_id = request_id
            raise
        try:
            served = await self.failover.run(
                plan, partial(_chat_once, request), deadline=self._deadline(time_limit)
            )
        except BaseException as exc:
            await _close_failed(gate, request_id, exc)
            raise
        served.finish(ok=True)
        option = served.option
        deployment = option.deployment
        response = served.value
        info = CallInfo(
            request_id,
            deployment.account.name,
            deployment.name,
            deployment.model,
            served.attempts,
            (self.board.clock() - served.started) * 1000,
            option.dropped,
            gate.limit,
            served.tried,
        )
        usage = response.usage
        cost = cost_of(usage, deployment.prices) if usage is not None else None
        try:
            await self.failover.release(served, usage.total_tokens if usage is not None else None)
        finally:
            await gate.close(info=info, usage=usage, cost=cost, first_token_ms=info.latency_ms)
        return ChatResult(response, info, cost)

    def _call(self, request: ChatRequest, plan: Plan, caller: Caller) -> Call:
        """What the guard reserves: tokens when a token limit applies, the worst-case cost only for a key
        with a budget (each estimate is only made when something will read it)."""
        counted = self._state is not None and self._state.guard.limits.applies_to(caller)
        worst = self._worst_cost(request, plan) if caller.budget_usd is not None else None
        return Call(request.model, plan.reserved_tokens if counted else 0, worst, bool(request.stream))

    def _worst_cost(self, request: ChatRequest, plan: Plan) -> float | None:
        prompt = int(plan.prompt_tokens * PROMPT_MARGIN) + 1
        costs = []
        for group in plan.reachable():
            for deployment in group.deployments:
                output = request.output_limit or self._assembly.default_max_tokens(deployment.model)
                cost = cost_of(make_usage(prompt=prompt, completion=output), deployment.prices)
                if cost is not None:
                    costs.append(cost)
        return max(costs) if costs else None

    def stream(
        self, model: str | ChatRequest, messages: Sequence[Mapping[str, Any]] | None = None, **params: Any
    ) -> ChatStream:
        """A streamed reply: ``async for chunk in gw.stream(...)``."""
        request = self._chat_request(model, messages, params, stream=True)
        return self.open_stream(request)

    def open_stream(
        self,
        request: ChatRequest,
        *,
        request_id: str | None = None,
        time_limit: float | None = None,
        fallbacks: tuple[str, ...] = (),
        caller: Caller = ANONYMOUS,
    ) -> ChatStream:
        """Serve a validated streaming request (the server's entry point); routing runs in ``start()``."""
        plan = self._plan(request, fallbacks, caller)
        return ChatStream(
            request,
            plan,
            self.failover,
            request_id or self.new_request_id(),
            deadline=self._deadline(time_limit),
            admit=partial(self._admit_stream, request, plan, caller),
        )

    async def _admit_stream(self, request: ChatRequest, plan: Plan, caller: Caller) -> Pass:
        state = await self.start()
        return await state.guard.open(caller, self._call(request, plan, caller))

    async def rate_limit_status(
        self, name: str | None = None, *, caller: Caller = ANONYMOUS
    ) -> dict[str, Any]:
        """Limit, remaining and reset: for the caller's key (or the global limit), and each upstream key.

        ``name`` narrows the upstream part to one provider or deployment.
        """
        state = await self.start()
        own = await state.guard.limits.status(caller)
        upstream = await self._upstream_status(name)
        spent = await state.guard.budgets.spent(caller)
        return {
            "caller": _limit_view(own),
            "budget": None
            if caller.budget_usd is None
            else {"budget_usd": caller.budget_usd, "period": caller.budget_period, "spent_usd": spent},
            "upstream": upstream,
        }

    async def _upstream_status(self, name: str | None) -> list[dict[str, Any]]:
        rows = []
        seen: set[str] = set()
        for group in self.router.groups.values():
            for deployment in group.deployments:
                if name is not None and name not in (deployment.name, deployment.account.name):
                    continue
                for key in deployment.keys:
                    if key.label not in seen:
                        seen.add(key.label)
                        rows.append(await self._key_status(deployment, key))
        return rows

    async def _key_status(self, deployment: Deployment, key: ApiKey) -> dict[str, Any]:
        account = deployment.account
        used, reset = await self._quota.key_requests(key.label) if self._quota else (0.0, 0.0)
        reading = deployment.headroom(key)
        now = self.board.clock()
        return {
            "key": key.label,
            "provider": account.name,
            "limit": account.rpm,
            "remaining": None if account.rpm is None else max(0, int(account.rpm - used)),
            "reset": round(reset, 3),
            "upstream_remaining_fraction": None if reading is None else reading.fraction_left_at(now),
            "usable": self.board.usable(deployment.name, key.label, now),
        }

    def _plan(self, request: ChatRequest, fallbacks: tuple[str, ...], caller: Caller) -> Plan:
        """The routing plan, with only the groups the caller's key may use (the requested one is checked
        by the guard; a fallback the key excludes is skipped, one it asked for by name refused)."""
        allowed = caller.may_use if caller.models else None
        return self.failover.plan(
            request, self.router.group(request.model), self._fallbacks(fallbacks, caller), allowed=allowed
        )

    def _fallbacks(self, names: tuple[str, ...], caller: Caller) -> tuple[str, ...]:
        unknown = [name for name in names if name not in self.router.groups]
        if unknown:
            raise InvalidRequest(
                f"unknown model group in fallbacks: {', '.join(unknown)[:200]} "
                f"(groups: {', '.join(self.router.groups) or 'none'})",
                param="x-llmgate-fallbacks",
            )
        denied = [name for name in names if not caller.may_use(name)]
        if denied:
            raise PermissionDenied(
                f"This API key may not use the model group '{denied[0][:256]}' (x-llmgate-fallbacks).",
                param="x-llmgate-fallbacks",
            )
        return names

    def _deadline(self, time_limit: float | None) -> float:
        total = self.settings.routing.timeouts.total if time_limit is None else time_limit
        return self.board.clock() + total

    def _strategy_of(self, group: ModelGroup) -> Strategy:
        name = group.strategy or self.settings.routing.strategy
        strategy = self._strategies.get(name)
        if strategy is None:
            strategy = self._strategies[name] = make_strategy(name)
        return strategy

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
        state = await self.start()
        request_id = request_id or self.new_request_id()
        deployment = self.router.candidates(request.model)[0]
        adapter = deployment.adapter
        if not isinstance(adapter, EmbeddingProvider):
            raise InvalidRequest(f"provider '{deployment.account.name}' has no embeddings API", param="model")
        tokens = sum(len(text) for text in request.texts()) // 4 + 1
        worst = cost_of(make_usage(prompt=tokens * 2, completion=0), deployment.prices)
        gate = await state.guard.open(caller, Call(request.model, tokens, worst))
        started = perf_counter()
        try:
            response = await adapter.embed(request, deployment.target())
        except BaseException as exc:
            await _close_failed(gate, request_id, exc)
            raise
        info = CallInfo(
            request_id,
            deployment.account.name,
            deployment.name,
            deployment.model,
            1,
            (perf_counter() - started) * 1000,
            limit=gate.limit,
        )
        cost = cost_of(response.usage, deployment.prices) if response.usage is not None else None
        await gate.close(info=info, usage=response.usage, cost=cost)
        return EmbeddingResult(response, info, cost)

    # --- callers, keys and limits -----------------------------------------------------------------------

    async def authenticate(self, token: str) -> Caller:
        """The caller a virtual key belongs to (``AuthenticationError`` when unknown, revoked or expired)."""
        state = await self.start()
        return await state.keys.authenticate(token)

    async def limit_status(self, caller: Caller = ANONYMOUS) -> LimitStatus | None:
        """The tightest request limit that applies to the caller, now."""
        state = await self.start()
        return await state.guard.limits.status(caller)

    async def create_key(self, fields: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        """A new virtual key from admin fields (``name``, ``models``, ``rpm``, ...); the secret is
        returned only here."""
        state = await self.start()
        checked = fields_from(fields, KeyFields)
        self._check_models(checked.models)
        key, secret = await state.keys.create(checked)
        return dict(key_view(key)), secret

    async def list_keys(self) -> list[dict[str, Any]]:
        """Every virtual key (never the secret)."""
        state = await self.start()
        return [dict(key_view(key)) for key in await state.keys.list()]

    async def get_key(self, key_id: str) -> dict[str, Any]:
        """One virtual key (``NotFound`` when unknown)."""
        state = await self.start()
        return dict(key_view(await state.keys.get(key_id)))

    async def update_key(self, key_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change some fields of a virtual key."""
        state = await self.start()
        checked = fields_from(changes, KeyChanges)
        if isinstance(checked.models, list):
            self._check_models(checked.models)
        return dict(key_view(await state.keys.update(key_id, checked)))

    def _check_models(self, models: Sequence[str] | None) -> None:
        """A key's models must be names this gateway serves (a typo would lock the key out silently)."""
        unknown = []
        for name in models or ():
            try:
                self.router.group(name)
            except ModelNotFound:
                unknown.append(name)
        if unknown:
            groups = ", ".join(self.router.groups) or "none"
            raise InvalidRequest(
                f"unknown model '{unknown[0][:256]}' in the key's models: it is neither a model group nor "
                f"'provider:model' of a configured provider (groups: {groups})",
                param="models",
            )

    async def revoke_key(self, key_id: str) -> dict[str, Any]:
        """Revoke a virtual key."""
        state = await self.start()
        return dict(key_view(await state.keys.revoke(key_id)))

    # --- models -----------------------------------------------------------------------------------------

    def models(self) -> list[ModelCard]:
        """What callers can ask for: model groups, then catalogue models of configured providers."""
        cards = [ModelCard(id=name, owned_by="llmgate") for name in self.router.groups]
        for account in self.accounts.values():
            for info in self.catalogue.search(provider=self._assembly.catalogue_name(account)):
                cards.append(ModelCard(id=f"{account.name}:{info.id}", owned_by=account.name))
        return cards

    def model(self, model_id: str) -> ModelCard:
        """One model callers can ask for (``ModelNotFound`` with close matches otherwise)."""
        for card in self.models():
            if card.id == model_id:
                return card
        deployment = self.router.candidates(model_id)[0]
        return ModelCard(id=model_id, owned_by=deployment.account.name)

    async def upstream_models(self, provider: str) -> list[ModelCard]:
        """Ask a provider which models it serves."""
        account = self.accounts.get(provider)
        if account is None:
            raise InvalidRequest(f"unknown provider '{provider}'", param="provider")
        if not isinstance(account.adapter, ModelLister):
            raise InvalidRequest(f"provider '{provider}' cannot list its models", param="provider")
        target = Deployment(account=account, model="").target()
        return await account.adapter.list_models(target)

    def catalogue_model(self, model_id: str) -> ModelInfo | None:
        """The catalogue's entry for an id (``provider/id`` accepted)."""
        return self.catalogue.get(model_id)

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

    # --- building ---------------------------------------------------------------------------------------

    def _chat_request(
        self,
        model: str | ChatRequest,
        messages: Sequence[Mapping[str, Any]] | None,
        params: dict[str, Any],
        *,
        stream: bool,
    ) -> ChatRequest:
        if isinstance(model, ChatRequest):
            return model
        if messages is None:
            raise InvalidRequest("messages are required", param="messages")
        return parse_chat_request({**params, "model": model, "messages": list(messages), "stream": stream})


def _limit_view(status: LimitStatus | None) -> dict[str, Any] | None:
    if status is None:
        return None
    return {"limit": status.limit, "remaining": status.remaining, "reset": round(status.reset, 3)}


async def _close_failed(gate: Pass, request_id: str, exc: BaseException) -> None:
    """Close a call that failed (or whose caller went away) with its usage record."""
    error = exc if isinstance(exc, GatewayError) else ClientClosed("the client went away")
    if error.limit is None:
        error.limit = gate.limit
    error.request_id = request_id
    await gate.close(info=CallInfo.failed(request_id, error, gate.limit), usage=None, cost=None, error=error)


async def _chat_once(request: ChatRequest, option: Option, target: Target) -> ChatResponse:
    """One non-streaming attempt."""
    return await option.deployment.adapter.chat(request, target)
