"""One chat call from end to end: the caller's scope, the cache, limits and budget, routing, the books.

``complete`` serves a whole reply, ``open_stream`` a streamed one (routing runs in its ``start``).
An answer from the cache costs nothing and counts against the caller's request rate only; a miss is
routed, then stored and handed to identical requests that waited for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from time import perf_counter
from typing import Protocol

from llmgate.calls.context import ContextStage
from llmgate.calls.stream import ChatStream
from llmgate.calls.stream_cache import StreamCache, cache_info
from llmgate.catalogue.pricing import cost_of
from llmgate.core.caller import Caller
from llmgate.core.controls import DEFAULT_CACHE_CONTROL, CacheControl
from llmgate.core.errors import ClientClosed, GatewayError, InvalidRequest, PermissionDenied
from llmgate.core.request import ChatRequest, EmbeddingRequest
from llmgate.core.response import ChatResponse
from llmgate.core.results import CallInfo, ChatResult, EmbeddingResult
from llmgate.core.usage import make_usage
from llmgate.policies.cache import NO_CACHE, ResponseCaching, Ticket, answer_of
from llmgate.policies.guard import Call, Guard, Pass
from llmgate.policies.structured import Expectation, StructuredOutput
from llmgate.providers.base import Target
from llmgate.routing.failover import Failover
from llmgate.routing.plan import Option, Plan
from llmgate.routing.router import Router

Embedder = Callable[[EmbeddingRequest, str, Caller], Awaitable[EmbeddingResult]]


class CallSpan(Protocol):
    """A trace span of one call (``observe.tracing``)."""

    def current(self) -> AbstractContextManager[None]:
        """Make it the parent of the attempt spans started inside."""
        ...

    def end(self, response: ChatResponse | None, info: CallInfo, error: GatewayError | None) -> None:
        """Close it with the call's outcome."""
        ...


class CallTracer(Protocol):
    """Starts the span of a call (``observe.tracing.Tracing``)."""

    def call(self, request: ChatRequest) -> CallSpan:
        """The span of one call, started now."""
        ...


Exchanges = Callable[[ChatRequest, ChatResponse | None, CallInfo, str | None, GatewayError | None], None]
PROMPT_MARGIN = 1.25  # the prompt estimate is ~4 chars/token: a budget reserves this much more


@dataclass(frozen=True, slots=True)
class CallOptions:
    """What a caller may ask of one call besides the request itself."""

    request_id: str
    time_limit: float | None = None
    fallbacks: tuple[str, ...] = ()
    cache: CacheControl = DEFAULT_CACHE_CONTROL
    require_schema: bool = False
    """Fail a reply that does not match its ``json_schema`` even without ``strict`` (``response_model``)."""


class ChatCalls:
    """Chat calls of one gateway."""

    def __init__(
        self,
        *,
        router: Router,
        failover: Failover,
        caching: ResponseCaching,
        guard: Callable[[], Awaitable[Guard]],
        total_timeout: float,
        default_max_tokens: Callable[[str], int],
        embed: Embedder | None = None,
    ) -> None:
        self.router = router
        self.failover = failover
        self.caching = caching
        self._guard = guard
        self._total_timeout = total_timeout
        self._default_max_tokens = default_max_tokens
        self._embed = embed
        self.exchanges: Exchanges | None = None
        """Told of every whole exchange (the interaction log), when one is configured."""
        self.tracer: CallTracer | None = None
        """Starts a span per call, when traces are on."""
        self.context: ContextStage | None = None
        """Exact prompt counts near a window, and ``context_overflow`` fitting."""
        self.structured = StructuredOutput()
        """Checks ``json_schema`` replies (non-streamed)."""

    async def complete(self, request: ChatRequest, options: CallOptions, caller: Caller) -> ChatResult:
        """Serve a validated request whole: from the cache, or routed with limits, retries and failover."""
        if self.tracer is None:
            return await self._complete(request, options, caller, None)
        span = self.tracer.call(request)
        with span.current():
            return await self._complete(request, options, caller, span)

    async def _complete(
        self, request: ChatRequest, options: CallOptions, caller: Caller, span: CallSpan | None
    ) -> ChatResult:
        guard = await self._guard()
        try:
            plan = self.plan(request, options.fallbacks, caller)
            # a bad schema is refused before anything is spent
            expected = self.structured.expectation(request, require=options.require_schema)
        except GatewayError as refused:  # an unknown model or fallback: still one usage record
            refused.request_id = options.request_id
            guard.note_refusal(caller, request.model, refused, stream=False)
            if span is not None:
                span.end(None, CallInfo.failed(options.request_id, refused, None), refused)
            raise
        caching = self.caching
        ticket = (
            await self._ticket(request, caller, options.cache, options.request_id)
            if caching.store is not None
            else NO_CACHE
        )
        if ticket.answer is not None:
            hit = await self._from_cache(guard, request, ticket, caller, options.request_id)
            self._told(request, hit.response, hit.info, caller=caller, span=span)
            return hit
        try:
            context = self.context
            if expected is None and (context is None or not context.has_work(plan)):  # nearly every call
                result = await self._routed(guard, request, plan, caller, options=options, cache=ticket.state)
            else:
                result = await self._served(
                    guard, request, plan, caller, expected, options=options, cache=ticket.state
                )
        except BaseException as exc:
            caching.failed(ticket)
            if isinstance(exc, GatewayError):
                failed = CallInfo.failed(options.request_id, exc, exc.limit)
                self._told(request, None, failed, exc, caller=caller, span=span)
            raise
        self._told(request, result.response, result.info, caller=caller, span=span)
        if result.info.schema == "invalid":  # never stored; requests waiting on it go their own way
            caching.failed(ticket)
        elif ticket.lookup is not None:
            info = result.info
            answer = answer_of(
                result.response,
                cost=result.cost,
                provider=info.provider,
                deployment=info.deployment,
                upstream_model=info.upstream_model,
            )
            await caching.done(ticket, answer)
        return result

    def open_stream(self, request: ChatRequest, options: CallOptions, caller: Caller) -> ChatStream:
        """A streamed reply; routing (or the cache) runs when the stream starts. A strict ``json_schema``
        stream is checked when it ends."""
        plan = self.plan(request, options.fallbacks, caller)
        expected = self.structured.expectation(request, require=options.require_schema)
        span = self.tracer.call(request) if self.tracer is not None else None
        told = self.exchanges is not None or span is not None
        cache = None  # no cache and nobody to tell of the whole exchange: the chunks pass untouched
        if told or self.caching.store is not None:
            cache = StreamCache(
                self.caching,
                partial(self._ticket, request, caller, options.cache, options.request_id),
                partial(self._admit_free, request, caller, options.request_id),
                partial(self._told, request, caller=caller, span=span) if told else None,
            )
        return ChatStream(
            request,
            plan,
            self.failover,
            options.request_id,
            deadline=self._deadline(options.time_limit),
            admit=partial(self._admit, caller=caller, request_id=options.request_id),
            prepare=partial(self._prepared, caller=caller, fallbacks=options.fallbacks)
            if self.context is not None and self.context.has_work(plan)
            else None,  # most streams: nothing near any window, no overflow to fit
            expected=expected if expected is not None and expected.strict else None,
            cache=cache,
            span=span,
        )

    def _told(
        self,
        request: ChatRequest,
        response: ChatResponse | None,
        info: CallInfo,
        error: GatewayError | None = None,
        *,
        caller: Caller,
        span: CallSpan | None = None,
    ) -> None:
        if self.exchanges is not None:
            self.exchanges(request, response, info, caller.key_id, error)
        if span is not None:
            span.end(response, info, error)

    def plan(self, request: ChatRequest, fallbacks: tuple[str, ...], caller: Caller) -> Plan:
        """The routing plan, with only the groups the caller's key may use (the requested one is checked
        by the guard; a fallback the key excludes is skipped, one it asked for by name refused)."""
        allowed = caller.may_use if caller.models else None
        return self.failover.plan(
            request, self.router.group(request.model), self._fallbacks(fallbacks, caller), allowed=allowed
        )

    async def _served(
        self,
        guard: Guard,
        request: ChatRequest,
        plan: Plan,
        caller: Caller,
        expected: Expectation | None,
        *,
        options: CallOptions,
        cache: str,
    ) -> ChatResult:
        """Routed, after the context stage (exact count, overflow fitting) and within the structured-output
        stage (an invalid reply is asked for again, each time on a fresh plan)."""
        how = None
        context = self.context
        if context is not None and context.has_work(plan):  # most requests: nothing near any window
            request, plan, how = await self._prepared(
                request, plan, caller=caller, fallbacks=options.fallbacks
            )
        if expected is None:
            result = await self._routed(guard, request, plan, caller, options=options, cache=cache)
        else:
            plans = [plan]

            def attempt() -> Awaitable[ChatResult]:
                chosen = plans.pop() if plans else self._replanned(request, options, caller, plan)
                return self._routed(guard, request, chosen, caller, options=options, cache=cache)

            result = await self.structured.run(expected, attempt)
        if how is not None:
            result = dataclasses.replace(result, info=dataclasses.replace(result.info, context=how))
        return result

    async def _prepared(
        self, request: ChatRequest, plan: Plan, *, caller: Caller, fallbacks: tuple[str, ...]
    ) -> tuple[ChatRequest, Plan, str | None]:
        """The context stage: the prompt counted exactly near a window, and, when it fits no window and
        its group says so, fitted (``truncated`` or ``condensed``) and planned again."""
        context = self.context
        if context is None or not caller.may_use(request.model):  # the guard refuses it, before any work
            return request, plan, None
        await context.measure(plan)  # callers have asked has_work: there is something to do
        if not context.overflows(plan):
            return request, plan, None
        fitted = await context.fitted(plan, caller)
        replanned = self.plan(fitted.request, fallbacks, caller)
        await context.measure(replanned)
        return fitted.request, replanned, fitted.how

    def _replanned(self, request: ChatRequest, options: CallOptions, caller: Caller, first: Plan) -> Plan:
        plan = self.plan(request, options.fallbacks, caller)
        plan.counted(first.counts)
        return plan

    async def _routed(
        self,
        guard: Guard,
        request: ChatRequest,
        plan: Plan,
        caller: Caller,
        *,
        options: CallOptions,
        cache: str,
    ) -> ChatResult:
        request_id = options.request_id
        try:
            gate = await guard.open(caller, self._call(guard, request, plan, caller, request_id))
        except GatewayError as refused:
            refused.request_id = request_id
            raise
        try:
            served = await self.failover.run(
                plan, partial(_chat_once, request), deadline=self._deadline(options.time_limit)
            )
        except BaseException as exc:
            await close_failed(gate, request_id, exc, cache=cache)
            raise
        served.finish(ok=True)
        deployment = served.option.deployment
        response = served.value
        info = CallInfo(
            request_id,
            deployment.account.name,
            deployment.name,
            deployment.model,
            served.attempts,
            (served.board.clock() - served.started) * 1000,
            served.option.dropped,
            gate.limit,
            served.tried,
            cache,
            group=served.option.group.name,
        )
        usage = response.usage
        cost = cost_of(usage, deployment.prices) if usage is not None else None
        try:
            await self.failover.release(served, usage.total_tokens if usage is not None else None)
        finally:
            await gate.close(info=info, usage=usage, cost=cost, first_token_ms=info.latency_ms)
        return ChatResult(response, info, cost)

    async def _from_cache(
        self, guard: Guard, request: ChatRequest, ticket: Ticket, caller: Caller, request_id: str
    ) -> ChatResult:
        answer = ticket.answer
        assert answer is not None
        started = perf_counter()
        try:
            gate = await self._admit_free(request, caller, request_id, guard)
        except GatewayError as refused:
            refused.request_id = request_id
            raise
        info = cache_info(answer, request_id, gate, (perf_counter() - started) * 1000, ticket.state)
        await gate.close(info=info, usage=None, cost=0.0, first_token_ms=info.latency_ms)
        return ChatResult(answer.response, info, 0.0)

    async def _admit(self, request: ChatRequest, plan: Plan, *, caller: Caller, request_id: str) -> Pass:
        guard = await self._guard()
        return await guard.open(caller, self._call(guard, request, plan, caller, request_id))

    async def _admit_free(
        self, request: ChatRequest, caller: Caller, request_id: str, guard: Guard | None = None
    ) -> Pass:
        """An answer from the cache: the caller's request rate and model list apply, tokens and budget
        do not (nothing is spent)."""
        guard = guard or await self._guard()
        free = Call(request.model, 0, None, bool(request.stream), budgeted=False, request_id=request_id)
        return await guard.open(caller, free)

    async def _ticket(
        self, request: ChatRequest, caller: Caller, control: CacheControl, request_id: str
    ) -> Ticket:
        """The request's way through the cache (none for a model the caller may not use: the guard
        refuses it, and it must neither lead nor follow a flight)."""
        allowed = caller.may_use(request.model)
        lookup = self.caching.lookup_for(request, caller.key_id, control) if allowed else None
        embed = partial(self._embed_conversation, caller, f"{request_id}-embed")
        return await self.caching.open(lookup, embed if lookup is not None and lookup.bucket else None)

    async def _embed_conversation(self, caller: Caller, request_id: str, text: str) -> Sequence[float] | None:
        """The semantic cache's embedding, made as the caller's own call (its limits, budget and model
        list apply, and it has its usage record); ``None`` when it cannot be had."""
        model = self.caching.rules.embedding_model
        if model is None or self._embed is None or not caller.may_use(model):
            return None
        try:
            result = await self._embed(EmbeddingRequest(model=model, input=text), request_id, caller)
        except GatewayError:
            return None
        vectors = result.vectors
        return vectors[0] if vectors else None

    def _call(self, guard: Guard, request: ChatRequest, plan: Plan, caller: Caller, request_id: str) -> Call:
        """What the guard reserves: tokens when a token limit applies, the worst-case cost only for a key
        with a budget (each estimate is only made when something will read it)."""
        counted = guard.limits.applies_to(caller)
        worst = self._worst_cost(request, plan) if caller.budget_usd is not None else None
        tokens = plan.reserved_tokens if counted else 0
        return Call(request.model, tokens, worst, bool(request.stream), request_id=request_id)

    def _worst_cost(self, request: ChatRequest, plan: Plan) -> float | None:
        prompt = int(plan.prompt_tokens * PROMPT_MARGIN) + 1
        costs = []
        for group in plan.reachable():
            for deployment in group.deployments:
                output = request.output_limit or self._default_max_tokens(deployment.model)
                cost = cost_of(make_usage(prompt=prompt, completion=output), deployment.prices)
                if cost is not None:
                    costs.append(cost)
        return max(costs) if costs else None

    def _fallbacks(self, names: tuple[str, ...], caller: Caller) -> tuple[str, ...]:
        groups = self.router.groups
        unknown = [name for name in names if name not in groups]
        if unknown:
            raise InvalidRequest(
                f"unknown model group in fallbacks: {', '.join(unknown)[:200]} "
                f"(groups: {', '.join(groups) or 'none'})",
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
        total = self._total_timeout if time_limit is None else time_limit
        return self.failover.board.clock() + total


async def close_failed(gate: Pass, request_id: str, exc: BaseException, *, cache: str = "skip") -> None:
    """Close a call that failed (or whose caller went away) with its usage record."""
    error = exc if isinstance(exc, GatewayError) else ClientClosed("the client went away")
    if error.limit is None:
        error.limit = gate.limit
    error.request_id = request_id
    info = CallInfo.failed(request_id, error, gate.limit, cache=cache)
    await gate.close(info=info, usage=None, cost=None, error=error)


async def _chat_once(request: ChatRequest, option: Option, target: Target) -> ChatResponse:
    """One non-streaming attempt."""
    return await option.deployment.adapter.chat(request, target)
