"""The stages around one routed call: caller limits and budget before it, settlement and the usage
record after it. The gateway opens a ``Pass`` before routing and closes it exactly once afterwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from llmgate.core.caller import Caller, LimitStatus
from llmgate.core.errors import GatewayError, Overloaded, PermissionDenied
from llmgate.core.results import CallInfo
from llmgate.core.usage import Usage
from llmgate.policies.budgets import Budgets, BudgetTake, Hold
from llmgate.policies.limits import AlsoRefused, CallerLimits, Ticket
from llmgate.policies.settlements import in_order
from llmgate.policies.usage import UsageRecorder
from llmgate.state.ports import UsageRecord


@dataclass(frozen=True, slots=True)
class Call:
    """What the guard needs to know of a call before it is routed."""

    model: str
    tokens: int
    """Prompt estimate + output limit: reserved against token limits."""
    worst_cost: float | None
    """The most the call can cost (reserved against a budget); ``None`` when no price is known."""
    stream: bool = False
    budgeted: bool = True
    """Whether the key's budget applies (an answer from the cache spends nothing)."""
    request_id: str = ""
    """The request's id (for the usage record of a call refused here)."""


@dataclass(slots=True)
class Pass:
    """An admitted call: what it holds, released by ``close``."""

    guard: Guard
    caller: Caller
    call: Call
    ticket: Ticket | None
    hold: Hold | None
    started: float
    closed: bool = False

    @property
    def limit(self) -> LimitStatus | None:
        """The caller's rate-limit status after admission (for the response headers)."""
        return self.ticket.status if self.ticket is not None else None

    async def close(
        self,
        *,
        info: CallInfo | None,
        usage: Usage | None,
        cost: float | None,
        error: GatewayError | None = None,
        first_token_ms: float | None = None,
    ) -> None:
        """Write the usage record and settle the reservations with the real usage (once).

        The settlement runs to its end even when the caller is cancelled meanwhile (its client left):
        a parallel slot or budget hold left behind would count against the key until it expires.
        """
        if self.closed:
            return
        self.closed = True
        guard = self.guard
        guard.active -= 1
        if error is not None:
            error.recorded = True
        if guard.recorder is not None:
            guard.recorder.record(self.record(info, usage, cost, error, first_token_ms))
        if self.ticket is None and self.hold is None:
            return
        writes = self.start_settling(usage, cost, error)
        if writes:  # most often none: against a shared store the give-backs are gathered
            await asyncio.shield(in_order(writes))

    def start_settling(
        self, usage: Usage | None, cost: float | None, error: GatewayError | None
    ) -> list[Awaitable[object]]:
        """Settle the reservations with the real usage, gathering what can wait: the writes still to await."""
        guard = self.guard
        used = usage.total_tokens if usage is not None else None
        writes = []
        if self.ticket is not None:
            writes += guard.limits.start_settling(self.ticket, used if error is None else used or 0)
        if self.hold is not None:
            writes += guard.budgets.start_settling(
                self.hold, cost if error is None or usage is not None else 0.0
            )
        return writes

    def record(
        self,
        info: CallInfo | None,
        usage: Usage | None,
        cost: float | None,
        error: GatewayError | None,
        first_token_ms: float | None,
    ) -> UsageRecord:
        """The usage record of this call."""
        details = usage.prompt_tokens_details if usage is not None else None
        reasoning = usage.completion_tokens_details if usage is not None else None
        return UsageRecord(
            time=self.started,
            request_id=info.request_id if info is not None else self.call.request_id,
            key_id=self.caller.key_id,
            model_group=self.call.model,
            provider=(info.provider or None) if info is not None else None,
            deployment=(info.deployment or None) if info is not None else None,
            upstream_model=(info.upstream_model or None) if info is not None else None,
            prompt_tokens=usage.prompt_tokens if usage is not None else 0,
            completion_tokens=usage.completion_tokens if usage is not None else 0,
            cached_tokens=(details.cached_tokens or 0) if details else 0,
            reasoning_tokens=(reasoning.reasoning_tokens or 0) if reasoning else 0,
            cost_usd=cost if usage is not None or cost is not None else (0.0 if error is not None else None),
            latency_ms=(time.time() - self.started) * 1000,
            ttft_ms=first_token_ms,
            status=200 if error is None else error.status,
            error_type=error.code if error is not None else None,
            cache=info.cache if info is not None else None,
            attempts=info.attempts if info is not None else 0,
            stream=self.call.stream,
            tried=",".join(info.tried) if info is not None and info.tried else None,
            saved_usd=info.saved_usd if info is not None else None,
            upstream_ms=info.latency_ms if info is not None and info.provider and info.attempts else None,
            fallback_group=info.group
            if info is not None and info.group and info.group != self.call.model
            else None,
            batch_id=self.caller.batch_id,
        )


class Guard:
    """Limits, budgets and usage records for every call of one gateway."""

    def __init__(
        self,
        *,
        limits: CallerLimits,
        budgets: Budgets,
        recorder: UsageRecorder | None,
        budgets_closed: Callable[[], bool] = lambda: False,
    ) -> None:
        self.limits = limits
        self.budgets = budgets
        self.recorder = recorder
        self._budgets_closed = budgets_closed
        self.active = 0
        """Calls admitted and not yet closed (the in-flight gauge)."""

    async def close(self) -> None:
        """Write the gathered settlements."""
        await self.limits.settlements.close()
        if self.budgets.settlements is not self.limits.settlements:
            await self.budgets.settlements.close()

    async def open(self, caller: Caller, call: Call) -> Pass:
        """Admit a call (403 for a model the key may not use, 429 over a limit or budget)."""
        started = time.time()
        if not caller.may_use(call.model):
            denied = PermissionDenied(
                f"This API key may not use the model '{call.model[:256]}'.", param="model"
            )
            self._refused(caller, call, denied, started)
            raise denied
        try:
            ticket, hold = await self._take(caller, call)
        except GatewayError as error:
            self._refused(caller, call, error, started)
            raise
        self.active += 1
        return Pass(self, caller, call, ticket, hold, started)

    async def _take(self, caller: Caller, call: Call) -> tuple[Ticket | None, Hold | None]:
        """The call's rate-limit ticket and budget hold, taken in one all-or-nothing call to the
        counters when both apply (one round trip to a shared store)."""
        planned = await self._plan_budget(caller, call)
        together = planned is not None and self.limits.counters is self.budgets.counters
        also = planned.take if planned is not None and together else None
        ticket = None
        if self.limits.applies_to(caller):
            try:
                ticket = await self.limits.admit(caller, call.tokens, also=also)
            except AlsoRefused as refused:
                assert planned is not None
                error = await self.budgets.refusal(caller, planned)
                error.limit = refused.status
                raise error from None
        if planned is None or (together and ticket is not None):
            return ticket, planned.hold() if planned is not None else None
        try:  # the budget alone: no limit applies, or its counters are another store
            return ticket, await self.budgets.take(caller, planned)
        except BaseException as error:
            if ticket is not None:
                await self.limits.settle(ticket, 0)
                if isinstance(error, GatewayError) and error.limit is None:
                    error.limit = ticket.status
            raise

    async def _plan_budget(self, caller: Caller, call: Call) -> BudgetTake | None:
        if caller.budget_usd is None or not call.budgeted:
            return None
        if self._budgets_closed():
            raise Overloaded(
                "Budgets cannot be checked while the shared store is unreachable (budget_on_outage: closed).",
                retry_after=5,
            )
        return await self.budgets.plan(caller, call.worst_cost)

    def note_refusal(self, caller: Caller, model: str, error: GatewayError, *, stream: bool) -> None:
        """A call refused before it reached the guard (bad body, unknown model, no key...): its record."""
        if not error.recorded:
            self._refused(
                caller, Call(model, 0, None, stream, request_id=error.request_id or ""), error, time.time()
            )

    def _refused(self, caller: Caller, call: Call, error: GatewayError, started: float) -> None:
        """A refused call still gets its usage record (status 429 / 403 / 503, no tokens)."""
        error.recorded = True
        if self.recorder is not None:
            refused = Pass(self, caller, call, None, None, started, closed=True)
            self.recorder.record(refused.record(None, None, None, error, None))
