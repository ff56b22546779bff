"""Scripted fake adapters, an injected clock and a recording sleep for routing and failover tests.

A ``FakeProvider`` answers each call from its script: ``None`` succeeds, a ``GatewayError`` is raised,
and a ``Step`` (an async function of the call) runs first, to wait on an event or move the clock. When
the script runs out, ``then`` applies to every further call. Nothing touches the network.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from clock import FakeClock
from llmgate.core.codec import parse_chat_request
from llmgate.core.errors import GatewayError, ProviderAuthError
from llmgate.core.headroom import Headroom, ParamReport
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatChunk, ChatResponse, Choice, ChunkChoice, Delta, ResponseMessage
from llmgate.core.usage import make_usage
from llmgate.providers.base import Target
from llmgate.routing.backoff import Backoff
from llmgate.routing.breaker import BreakerPolicy
from llmgate.routing.deployments import Deployment, Hedge, ModelGroup, ProviderAccount
from llmgate.routing.failover import Admission, Failover, RetryPolicy
from llmgate.routing.health import HealthBoard
from llmgate.routing.plan import Option, Plan
from llmgate.routing.strategies import Candidate, PickContext, Strategy, make_strategy

T = TypeVar("T")
MONOTONIC_START = 1000.0
Step = Callable[["Call"], Awaitable[GatewayError | None]]
Outcome = GatewayError | Step | None


@dataclass
class FakeSleep:
    """Records each requested delay and moves the clock by it instead of waiting."""

    clock: FakeClock
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.clock.advance(seconds)


@dataclass(frozen=True)
class Call:
    """One call a fake provider received."""

    provider: str
    model: str
    api_key: str | None
    total: float


def role_chunk(model: str) -> ChatChunk:
    """A chunk that only announces the assistant's role (no content)."""
    return chunk(model, Delta(role="assistant", content=""))


def chunk(model: str, delta: Delta, finish: str | None = None) -> ChatChunk:
    """A one-choice chunk."""
    return ChatChunk(
        id="chatcmpl-fake",
        created=0,
        model=model,
        choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)],
    )


def usage_chunk(model: str) -> ChatChunk:
    """The final usage chunk (no choices)."""
    return ChatChunk(
        id="chatcmpl-fake", created=0, model=model, choices=[], usage=make_usage(prompt=3, completion=2)
    )


class FakeProvider:
    """A ChatProvider whose calls follow a script; it records every call, stream close and cancellation."""

    def __init__(
        self,
        name: str,
        *,
        script: Iterable[Outcome] = (),
        then: Outcome = None,
        rejects: Iterable[str] = (),
        refuses: tuple[str, ...] = (),
        drops: tuple[str, ...] = (),
        stream_error: GatewayError | None = None,
        cut_after: int = 1,
    ) -> None:
        self.name = name
        self.script: deque[Outcome] = deque(script)
        self.then = then
        self.rejects = set(rejects)
        """API keys the provider answers with 401."""
        self.refuses = refuses
        self.drops = drops
        self.stream_error = stream_error
        """Raised mid-stream after ``cut_after`` batches (content flows from the second batch on)."""
        self.cut_after = cut_after
        self.calls: list[Call] = []
        self.cancelled = 0
        self.streams_closed = 0
        self.headroom: dict[str, Headroom] = {}

    def check(self, request: ChatRequest) -> ParamReport:
        asked = set(request.extra) | {name for name in ("logprobs", "seed") if getattr(request, name)}
        return ParamReport(
            dropped=tuple(p for p in self.drops if p in asked),
            refused=tuple(p for p in self.refuses if p in asked),
        )

    async def _serve(self, target: Target) -> None:
        call = Call(self.name, target.model, target.api_key, target.timeouts.total)
        self.calls.append(call)
        if target.api_key in self.rejects:
            raise ProviderAuthError(f"{self.name}: invalid api key")
        outcome = self.script.popleft() if self.script else self.then
        try:
            if callable(outcome):
                outcome = await outcome(call)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if outcome is not None:
            raise outcome

    async def chat(self, request: ChatRequest, target: Target) -> ChatResponse:
        await self._serve(target)
        return reply(f"from {self.name}", target.model)

    async def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[list[ChatChunk]]:
        try:
            await self._serve(target)
            yield [role_chunk(target.model)]
            if self.stream_error is not None and self.cut_after <= 1:
                raise self.stream_error
            yield [chunk(target.model, Delta(content=f"from {self.name}"))]
            if self.stream_error is not None:
                raise self.stream_error
            yield [chunk(target.model, Delta(), "stop"), usage_chunk(target.model)]
        finally:
            self.streams_closed += 1

    async def close(self) -> None:
        return None


def reply(text: str, model: str) -> ChatResponse:
    """A complete one-choice response."""
    return ChatResponse(
        id="chatcmpl-fake",
        created=0,
        model=model,
        choices=[Choice(index=0, message=ResponseMessage(content=text), finish_reason="stop")],
        usage=make_usage(prompt=3, completion=2),
    )


def waits_for(event: asyncio.Event, error: GatewayError | None = None) -> Step:
    """A step that blocks the call until ``event`` is set, then fails with ``error`` (or succeeds)."""

    async def step(call: Call) -> GatewayError | None:
        await event.wait()
        return error

    return step


def takes(clock: FakeClock, seconds: float, error: GatewayError | None = None) -> Step:
    """A step that moves the injected clock, as a call lasting ``seconds`` would, then ends with ``error``."""

    async def step(call: Call) -> GatewayError | None:
        clock.advance(seconds)
        return error

    return step


class InOrder:
    """A deterministic strategy for tests: the first candidate, in the group's configured order."""

    name = "in_order"

    def pick(self, candidates: Sequence[Candidate], context: PickContext) -> Candidate:
        return candidates[0]


def deployment(
    adapter: FakeProvider,
    model: str = "m",
    *,
    keys: tuple[str, ...] = ("sk-test-key-one",),
    context_length: int | None = None,
    priority: int = 0,
    rpm: int | None = None,
) -> Deployment:
    """A deployment ``<adapter name>/<model>`` served by ``adapter`` with the given upstream keys."""
    account = ProviderAccount(adapter.name, "fake", adapter, api_keys=keys)
    return Deployment(account, model, context_length=context_length, priority=priority, rpm=rpm)


def group(
    name: str,
    *deployments: Deployment,
    fallbacks: tuple[str, ...] = (),
    context_fallbacks: tuple[str, ...] = (),
    strategy: str = "in_order",
    hedge: Hedge | None = None,
) -> ModelGroup:
    """A model group."""
    return ModelGroup(name, deployments, fallbacks, strategy, context_fallbacks, hedge)


def request(text: str = "hello", **params: object) -> ChatRequest:
    """A validated chat request to group ``g``."""
    body: dict[str, object] = {"model": "g", "messages": [{"role": "user", "content": text}], **params}
    return parse_chat_request(body)


class Rig:
    """A failover engine over some groups, with an injected clock, sleep and RNG."""

    def __init__(
        self,
        *groups: ModelGroup,
        retries: int = 0,
        max_attempts: int = 10,
        max_queue_wait: float = 5.0,
        breaker: BreakerPolicy | None = None,
        admission: Admission | None = None,
        seed: int = 0,
    ) -> None:
        self.clock = FakeClock(MONOTONIC_START)
        self.sleep = FakeSleep(self.clock)
        self.groups = {g.name: g for g in groups}
        self.board = HealthBoard(breaker or BreakerPolicy(), clock=self.clock)
        self.rng = random.Random(seed)
        self.strategies: dict[str, Strategy] = {"in_order": InOrder()}
        self.failover = Failover(
            board=self.board,
            strategy_of=self.strategy_of,
            resolve=self.groups.__getitem__,
            policy=RetryPolicy(retries, max_attempts, max_queue_wait, Backoff(base=0.1, cap=1.0)),
            admission=admission,
            rng=self.rng,
            sleep=self.sleep,
        )

    def strategy_of(self, model_group: ModelGroup) -> Strategy:
        name = model_group.strategy or "in_order"
        if name not in self.strategies:
            self.strategies[name] = make_strategy(name)
        return self.strategies[name]

    def plan(
        self,
        req: ChatRequest | None = None,
        name: str | None = None,
        extra: tuple[str, ...] = (),
        allowed: Callable[[str], bool] | None = None,
    ) -> Plan:
        first = self.groups[name] if name is not None else next(iter(self.groups.values()))
        return self.failover.plan(req or request(), first, extra, allowed=allowed)


def names(calls: Iterable[Call]) -> list[str]:
    """The providers that received the calls, in order."""
    return [call.provider for call in calls]


def chat_via(req: ChatRequest) -> Callable[[Option, Target], Awaitable[ChatResponse]]:
    """The attempt function of a non-streaming call (as the gateway's)."""

    async def call(option: Option, target: Target) -> ChatResponse:
        return await option.deployment.adapter.chat(req, target)

    return call


HANG_GUARD = 2.0  # seconds: not a timing assertion, only so that a regression fails instead of hanging


async def within(awaitable: Awaitable[T]) -> T:
    """Await something that should finish promptly; fail (TimeoutError) rather than hang if it does not."""
    return await asyncio.wait_for(awaitable, HANG_GUARD)
