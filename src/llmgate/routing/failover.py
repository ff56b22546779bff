"""Run one request over its plan: retries, failover, key rotation, breakers, hedging, deadlines.

Retryable failures (429, 408, 5xx, 529, timeouts, connection errors) move to the next option; an
upstream 401/403 rests that key and tries another; anything else (the caller's fault) returns at once.
Every option is tried once per round (open-circuit ones too, when the plan panics because nothing else
is left); after a round, up to ``retries`` more rounds follow a backoff that honours ``Retry-After``.
Attempts and time are bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from llmgate.core.errors import (
    ContextLengthExceeded,
    GatewayError,
    ProviderAuthError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from llmgate.core.request import ChatRequest
from llmgate.providers.base import Target
from llmgate.routing.backoff import Backoff
from llmgate.routing.deployments import ModelGroup
from llmgate.routing.health import BAD_KEY_COOLDOWN, HealthBoard
from llmgate.routing.plan import OUTPUT_GUESS, Option, Plan
from llmgate.routing.strategies.base import Strategy

T = TypeVar("T")
DEFAULT_RATE_LIMIT_REST = 1.0
TIMER_MARGIN = 0.01  # seconds a key rests after a 429 that named no Retry-After


class Admission(Protocol):
    """Upstream-side limits (deployment and API key rpm/tpm): may this option take one more call now?"""

    async def admit(self, option: Option, tokens: int) -> float | None:
        """``None`` if admitted (and counted); otherwise seconds until it could be."""
        ...

    async def release(self, option: Option, tokens: int, used: int | None) -> None:
        """Settle an admitted call's token reservation with what it really used (``None``: refund)."""
        ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds on one request's attempts."""

    retries: int = 3
    max_attempts: int = 10
    max_queue_wait: float = 5.0
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(slots=True)
class Attempts:
    """What has been tried for one request, for the final error and the ``x-llmgate-attempts`` header."""

    count: int = 0
    errors: list[tuple[str, GatewayError]] = field(default_factory=list)


Call = Callable[[Option, Target], Awaitable[T]]
Discard = Callable[[T], Awaitable[None]]


@dataclass(slots=True)
class _Run(Generic[T]):
    """One request's run over its plan."""

    plan: Plan
    call: Call[T]
    deadline: float | None
    discard: Discard[T] | None
    attempts: Attempts = field(default_factory=Attempts)


@dataclass(slots=True)
class Served(Generic[T]):
    """A successful attempt: the value, where it came from, and how to close its accounting."""

    value: T
    option: Option
    attempts: int
    started: float
    board: HealthBoard
    reserved: int = 0
    """Tokens reserved against upstream limits for this call."""
    tried: tuple[str, ...] = ()
    """Deployments that failed before this one served."""

    def finish(
        self, *, ok: bool, first_token: float | None = None, error: GatewayError | None = None
    ) -> None:
        """Record the end of the call (for streams: when the stream ends) in the deployment's health."""
        now = self.board.clock()
        health = self.board.of(self.option.deployment.name)
        latency = now - self.started
        health.stats.finished(
            ok=ok, latency=latency, first_token=first_token, now=now, error=_describe(error)
        )
        if ok:
            health.breaker.record_success(now, panic=self.option.panic)
        elif error is not None and _counts_against_deployment(error):
            health.count_failure(now, panic=self.option.panic)


class Failover:
    """Runs requests over plans; owned by one gateway (its board, RNG and policies)."""

    def __init__(
        self,
        *,
        board: HealthBoard,
        strategy_of: Callable[[ModelGroup], Strategy],
        resolve: Callable[[str], ModelGroup],
        policy: RetryPolicy,
        admission: Admission | None = None,
        turn: Callable[[str], Awaitable[int]] | None = None,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        output_reserve: int = OUTPUT_GUESS,
    ) -> None:
        self.board = board
        self._strategy_of = strategy_of
        self._resolve = resolve
        self.policy = policy
        self.admission = admission
        self.attempt_span: Callable[[Option], AbstractContextManager[object]] | None = None
        """A span around each upstream attempt (tracing), when traces are on."""
        self._turns: dict[str, int] = {}
        self.turn = turn or self._local_turn
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._output_reserve = output_reserve

    async def release(self, served: Served[T], used_tokens: int | None) -> None:
        """Settle the upstream token reservation of a served call with its real usage."""
        if self.admission is not None and served.option.deployment.limited:
            await self.admission.release(served.option, served.reserved, used_tokens)

    def plan(
        self,
        request: ChatRequest,
        group: ModelGroup,
        extra: tuple[str, ...] = (),
        *,
        allowed: Callable[[str], bool] | None = None,
    ) -> Plan:
        """The plan for a request: the group, then its fallbacks chain (``extra`` first, if given).

        ``allowed`` says which groups the caller may use: a fallback (configured, or a context
        fallback) outside it is skipped, so no fallback serves a caller a model its key excludes.
        """
        return Plan(
            request,
            self._chain(group, extra, allowed),
            board=self.board,
            strategy_of=self._strategy_of,
            resolve=self._resolve,
            rng=self._rng,
            output_reserve=self._output_reserve,
            allowed=allowed,
        )

    def _chain(
        self, group: ModelGroup, extra: tuple[str, ...], allowed: Callable[[str], bool] | None
    ) -> list[ModelGroup]:
        if not extra and not group.fallbacks:
            return [group]
        walked = [group]  # every group reached, breadth first; the chain keeps those the caller may use
        seen = {group.name}
        index = 0
        pending = list(extra)
        while index < len(walked) or pending:
            names = pending or list(walked[index].fallbacks)
            if not pending:
                index += 1
            pending = []
            for name in names:
                if name not in seen:
                    seen.add(name)
                    walked.append(self._resolve(name))
        if allowed is None:
            return walked
        return [group, *(other for other in walked[1:] if allowed(other.name))]

    async def run(
        self,
        plan: Plan,
        call: Call[T],
        *,
        deadline: float | None = None,
        discard: Discard[T] | None = None,
    ) -> Served[T]:
        """Serve the plan: the first successful attempt, or the error that explains why none succeeded."""
        run = _Run(plan, call, deadline, discard)
        for group in plan.chain:  # each request earns its groups a share of a hedge (the spend cap)
            if group.hedge is not None:
                self.board.hedge_budget(group.name).earn(group.hedge.max_share)
        try:
            return await self._rounds(run)
        except GatewayError as error:  # what was tried goes with the error, into the usage record
            error.attempts = run.attempts.count
            error.tried = tuple(name for name, _ in run.attempts.errors)
            raise

    async def _rounds(self, run: _Run[T]) -> Served[T]:
        plan = run.plan
        rounds = 0
        while True:
            if run.attempts.count >= self.policy.max_attempts:  # before picking: a pick takes a probe slot
                raise self._give_up(plan, run.attempts)
            option = await self._next(plan) if self._takes_turns(plan) else self._pick_now(plan)
            if option is None:
                wait = self._wait_for_more(run, rounds)
                if wait is not None:
                    rounds += 1
                    await self._sleep(wait)
                    plan.failed.clear()
                    continue
                option = await self._next(plan)  # a key may have come free since the last look
                if option is None:
                    raise self._give_up(plan, run.attempts)
            hedge = option.group.hedge
            if hedge is not None and len(option.group.deployments) > 1:
                served = await self._hedged(run, option, hedge.after)
            else:
                served = await self._single(run, option)
            if served is not None:
                return served

    def _takes_turns(self, plan: Plan) -> bool:
        """Whether the first group's strategy needs its shared turn counter (round robin does)."""
        group = plan.chain[0]
        return len(group.deployments) > 1 and self._strategy_of(group).name == "round_robin"

    def _pick_now(self, plan: Plan) -> Option | None:
        now = self.board.clock()
        self.board.sweep(now)
        return plan.next(now)

    async def _next(self, plan: Plan) -> Option | None:
        if not self._takes_turns(plan):
            return self._pick_now(plan)
        now = self.board.clock()
        self.board.sweep(now)
        group = plan.chain[0]
        return plan.next(now, {group.name: await self.turn(group.name)})

    async def _local_turn(self, group: str) -> int:
        turn = self._turns.get(group, 0)
        self._turns[group] = turn + 1
        return turn

    async def _single(self, run: _Run[T], option: Option) -> Served[T] | None:
        try:
            target = self._target(option, run)
            admitted = await self._admit(run.plan, option)
        except BaseException:
            self._not_sent(option)
            raise
        if not admitted:
            self._not_sent(option)
            return None
        run.attempts.count += 1
        health = self.board.of(option.deployment.name)
        health.stats.started()
        started = self.board.clock()
        try:
            if self.attempt_span is None:
                value = await run.call(option, target)
            else:
                with self.attempt_span(option):
                    value = await run.call(option, target)
        except GatewayError as error:
            self._failed(run, option, error)
            return None
        except BaseException:  # cancelled (caller gone, or a hedge lost): no verdict on the deployment
            health.abandoned(self.board.clock(), panic=option.panic)
            raise
        tried = tuple(name for name, _ in run.attempts.errors)
        return Served(value, option, run.attempts.count, started, self.board, run.plan.reserved_tokens, tried)

    def _not_sent(self, option: Option) -> None:
        """A picked option whose call never went out: a half-open probe slot it took is free again."""
        if not option.panic:  # a panic attempt took no probe slot, and must not free the probe's
            self.board.of(option.deployment.name).breaker.release_probe()

    async def _admit(self, plan: Plan, option: Option) -> bool:
        if self.admission is None or not option.deployment.limited:
            return True
        wait = await self.admission.admit(option, plan.reserved_tokens)
        if wait is None:
            return True
        state = self.board.slot(option.deployment.name, option.key.label)
        state.cooling_until = max(state.cooling_until, self.board.clock() + wait)
        state.last_error = "at its configured rate limit"
        return False

    def _target(self, option: Option, run: _Run[T]) -> Target:
        if run.deadline is None:
            return option.deployment.target(option.key)
        left = run.deadline - self.board.clock()
        if left <= 0:
            raise self._give_up_timeout(run.attempts)
        return option.deployment.target(option.key, total=left)

    def _failed(self, run: _Run[T], option: Option, error: GatewayError) -> None:
        """Record a failed attempt and decide what it rules out; re-raise what no retry can fix."""
        plan, attempts = run.plan, run.attempts
        now = self.board.clock()
        deployment = option.deployment
        health = self.board.of(deployment.name)
        unwell = _counts_against_deployment(error)  # a caller's 400 says nothing about the deployment
        health.stats.finished(ok=not unwell, latency=None, now=now, error=_describe(error))
        attempts.errors.append((deployment.name, error))
        if isinstance(error, ContextLengthExceeded):  # too small for this prompt: skip it, go bigger
            plan.too_small(deployment.name)
            return
        if not error.retryable:
            raise error
        slot = self.board.slot(deployment.name, option.key.label)
        if isinstance(error, ProviderAuthError):  # 403 is often one model's permission: rest the slot only
            slot.bad_until = now + BAD_KEY_COOLDOWN
            slot.last_error = _describe(error)
            plan.rejected.add((deployment.name, option.key.label))
            return
        if isinstance(error, RateLimited):
            rest = error.retry_after if error.retry_after is not None else DEFAULT_RATE_LIMIT_REST
            slot.cooling_until = max(slot.cooling_until, now + rest)
            slot.last_error = _describe(error)
            return
        plan.failed.add(deployment.name)
        if unwell:
            health.count_failure(now, panic=option.panic)

    def _wait_for_more(self, run: _Run[T], rounds: int) -> float | None:
        """How long to wait before another round, or ``None`` to give up now."""
        plan, attempts, deadline = run.plan, run.attempts, run.deadline
        if rounds >= self.policy.retries or attempts.count >= self.policy.max_attempts:
            return None
        if plan.dead_end() is not None and not plan.failed:
            return None  # no deployment can take this request at all: waiting changes nothing
        now = self.board.clock()
        soonest = plan.soonest_key(now)
        rest = None if soonest is None else soonest - now
        if not plan.failed and (rest is None or rest > self.policy.max_queue_wait):
            return None  # nothing failed that a retry could fix, and no key frees up soon enough
        if rest is not None and rest > self.policy.max_queue_wait:
            rest = None
        wait = self.policy.backoff.delay(rounds + 1, retry_after=rest, rng=self._rng)
        if rest is not None:
            wait += TIMER_MARGIN  # event-loop timers may fire a little early: wake after the key is free
        if deadline is not None and now + wait >= deadline:
            return None
        return wait

    def _give_up(self, plan: Plan, attempts: Attempts) -> GatewayError:
        dead_end = plan.dead_end()
        if dead_end is not None and not attempts.errors:
            return dead_end
        if not attempts.errors:
            return plan.unavailable(self.board.clock())
        errors = [error for _, error in attempts.errors]
        if len(errors) == 1:
            return errors[0]
        summary = "; ".join(f"{name}: {error.message}" for name, error in attempts.errors[-6:])
        message = f"all {attempts.count} attempts for '{plan.chain[0].name}' failed ({summary})"
        kind = type(errors[-1]) if len({type(error) for error in errors}) == 1 else UpstreamError
        if all(isinstance(error, RateLimited) for error in errors):
            kind = RateLimited
        elif all(isinstance(error, UpstreamTimeout) for error in errors):
            kind = UpstreamTimeout
        waits = [error.retry_after for error in errors if error.retry_after is not None]
        soonest = plan.soonest_key(self.board.clock())
        if soonest is not None:
            waits.append(soonest - self.board.clock())
        return kind(message, retry_after=min(waits) if waits else None)

    @staticmethod
    def _give_up_timeout(attempts: Attempts) -> GatewayError:
        tried = ", ".join(name for name, _ in attempts.errors) or "none"
        return UpstreamTimeout(f"the request's time ran out (deployments tried: {tried})")

    async def _hedged(self, run: _Run[T], option: Option, after: float) -> Served[T] | None:
        """Start ``option``; if it has not answered after ``after`` s, race a second option against it."""
        first = asyncio.ensure_future(self._single(run, option))
        try:
            done, _ = await asyncio.wait({first}, timeout=after)
        except BaseException:  # the caller went away during the hedge delay: stop the upstream call too
            first.cancel()
            raise
        if done or not self.board.hedge_budget(option.group.name).spend():
            return await first
        plan = run.plan
        plan.failed.add(option.deployment.name)  # the hedge goes elsewhere
        second_option = plan.next(self.board.clock(), panic=False)  # a hedge never panics: it only races
        plan.failed.discard(option.deployment.name)
        if second_option is None:
            return await first
        second = asyncio.ensure_future(self._single(run, second_option))
        return await _first_success(first, second, run.discard)


async def _first_success(
    first: asyncio.Future[Served[T] | None],
    second: asyncio.Future[Served[T] | None],
    discard: Discard[T] | None,
) -> Served[T] | None:
    """The first of two racing attempts to succeed; the loser is cancelled (or its value discarded)."""
    pending = {first, second}
    winner: Served[T] | None = None
    try:
        while pending and winner is None:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                result = task.result()
                if result is not None and winner is None:
                    winner = result
                elif result is not None:
                    await _drop(result, discard)
        return winner
    finally:
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(BaseException):
                result = await task
                if result is not None:
                    await _drop(result, discard)


async def _drop(loser: Served[T], discard: Discard[T] | None) -> None:
    """Close the books on an attempt that answered but lost the race."""
    loser.finish(ok=True)
    if discard is not None:
        await discard(loser.value)


def _counts_against_deployment(error: GatewayError) -> bool:
    """Failures that say the deployment is unwell (not the caller's fault, not one key's limit)."""
    return isinstance(error, UpstreamError) and not isinstance(error, ProviderAuthError)


def _describe(error: GatewayError | None) -> str | None:
    if error is None:
        return None
    return f"{type(error).__name__}: {error.message}"[:300]
