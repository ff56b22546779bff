"""Caller-side rate limits: global and per virtual key, requests and tokens per minute, parallel calls.

Counting is in fixed one-minute windows on wall-clock time (so every replica agrees on the window),
in the ``Counters`` port: all of a request's buckets are taken in one all-or-nothing call, so with a
shared Redis N replicas admit exactly what one would. Tokens are reserved up front (prompt estimate +
output limit) and settled with the real usage afterwards.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from llmgate.core.caller import Caller, LimitStatus
from llmgate.core.errors import RateLimited
from llmgate.policies.settlements import Settlements, in_order
from llmgate.state.ports import Counters

WINDOW = 60.0
BUCKET_TTL = 2 * WINDOW  # a window's counters outlive it briefly, for late settlements
PARALLEL_TTL = 3600.0  # safety net: a crashed replica's in-flight count fades within the hour


Take = tuple[str, float, float, float | None]
"""``(bucket, amount, limit, ttl)``, as ``Counters.take_many`` takes it."""


class AlsoRefused(Exception):
    """The other take made with a request's limits (``admit(also=...)``) refused, no limit did."""

    def __init__(self, status: LimitStatus | None) -> None:
        super().__init__("refused by the other take")
        self.status = status


@dataclass(frozen=True, slots=True)
class Rate:
    """Requests and tokens per minute (``None``: no limit)."""

    rpm: int | None = None
    tpm: int | None = None


@dataclass(slots=True)
class Ticket:
    """What one admitted request holds: its token reservations and its parallel slot."""

    token_buckets: list[str] = field(default_factory=list)
    reserved: int = 0
    parallel_bucket: str | None = None
    status: LimitStatus | None = None


class CallerLimits:
    """Admits or refuses a caller's request, and settles its reservation afterwards."""

    def __init__(
        self,
        counters: Counters,
        *,
        global_rate: Rate = Rate(),
        default_key: Rate = Rate(),
        clock: Callable[[], float] = time.time,
        settlements: Settlements | None = None,
    ) -> None:
        self.counters = counters
        self.settlements = settlements if settlements is not None else Settlements(counters)
        """Where token settlements go (gathered against a shared store: one write, not one per request)."""
        self.global_rate = global_rate
        self.default_key = default_key
        self._clock = clock

    def key_rate(self, caller: Caller) -> Rate | None:
        """The per-minute limits of a caller's key (its own, else the default), ``None`` for no key."""
        if caller.key_id is None:
            return None
        return Rate(
            caller.rpm if caller.rpm is not None else self.default_key.rpm,
            caller.tpm if caller.tpm is not None else self.default_key.tpm,
        )

    def applies_to(self, caller: Caller) -> bool:
        """Whether any limit applies to the caller (the hot path skips the counters when none does)."""
        if self.global_rate.rpm or self.global_rate.tpm:
            return True
        rate = self.key_rate(caller)
        return rate is not None and bool(rate.rpm or rate.tpm or caller.max_parallel)

    async def admit(self, caller: Caller, tokens: int, *, also: Take | None = None) -> Ticket:
        """Take one request and ``tokens`` for the caller, or raise ``RateLimited`` (429).

        ``also`` (a budget's reservation) is taken in the same all-or-nothing call: one round trip to a
        shared store for every counter of the request. When it alone refuses, ``AlsoRefused``.
        """
        now = self._clock()
        minute = int(now // WINDOW)
        reset = (minute + 1) * WINDOW - now
        limit_takes, ticket = self._takes(caller, minute, tokens)
        takes = [*limit_takes, also] if also is not None else limit_takes
        for bucket, amount, limit, _ in takes:
            if amount > limit and bucket.startswith("tpm:"):  # it could never fit: waiting will not help
                raise RateLimited(
                    f"Request too large: it needs about {int(amount)} tokens, and "
                    f"{self._who(bucket)} limit is {int(limit)} tokens per minute.",
                    code="request_too_large",
                )
        if ticket.parallel_bucket is not None and not await self._take_parallel(caller, ticket, reset):
            raise self._refusal(caller, "too many parallel requests", reset=1.0, status=None)
        if not takes:
            return ticket
        try:
            taken = await self.counters.take_many(takes)
        except BaseException:  # the store failed or the caller left: give the parallel slot back
            await asyncio.shield(self._release_parallel(ticket))
            raise
        if not taken.allowed:
            await self._release_parallel(ticket)
            reason = await self._which(limit_takes)
            status = await self.status(caller)
            if reason is None and also is not None:
                raise AlsoRefused(status)
            raise self._refusal(caller, reason or "a rate limit is reached", reset=reset, status=status)
        first_limit = takes[0][2]
        if takes[0][0].startswith("rpm:"):
            ticket.status = LimitStatus(int(first_limit), max(0, int(first_limit - taken.value)), reset)
        return ticket

    def _takes(self, caller: Caller, minute: int, tokens: int) -> tuple[list[Take], Ticket]:
        ticket = Ticket(reserved=tokens)
        takes: list[Take] = []
        scopes = []
        key_rate = self.key_rate(caller)
        if key_rate is not None:
            scopes.append((f"key:{caller.key_id}", key_rate))
        scopes.append(("global", self.global_rate))
        share = caller.limit_share
        for scope, rate in scopes:  # the key's request limit first: it is the one the headers report
            if rate.rpm:
                takes.append((f"rpm:{scope}:{minute}", 1, _shared(rate.rpm, share), BUCKET_TTL))
        for scope, rate in scopes:
            if rate.tpm:
                bucket = f"tpm:{scope}:{minute}"
                takes.append((bucket, tokens, _shared(rate.tpm, share), BUCKET_TTL))
                ticket.token_buckets.append(bucket)
        if caller.key_id is not None and caller.max_parallel:
            ticket.parallel_bucket = f"par:key:{caller.key_id}"
        return takes, ticket

    async def _take_parallel(self, caller: Caller, ticket: Ticket, reset: float) -> bool:
        assert ticket.parallel_bucket is not None and caller.max_parallel is not None
        taken = await self.counters.take(
            ticket.parallel_bucket, 1, limit=caller.max_parallel, ttl=PARALLEL_TTL
        )
        if not taken.allowed:
            ticket.parallel_bucket = None
        return taken.allowed

    async def _release_parallel(self, ticket: Ticket) -> None:
        if ticket.parallel_bucket is not None:
            await self.counters.adjust(ticket.parallel_bucket, -1, ttl=PARALLEL_TTL)
            ticket.parallel_bucket = None

    async def _which(self, takes: list[Take]) -> str | None:
        """Which limit refused, ``None`` when none is over (read back on the refusal path only)."""
        for bucket, amount, limit, _ in takes:
            if await self.counters.value(bucket) + amount > limit:
                unit = "requests" if bucket.startswith("rpm:") else "tokens"
                return f"{self._who(bucket)} limit of {int(limit)} {unit} per minute is reached"
        return None

    @staticmethod
    def _who(bucket: str) -> str:
        return "this key's" if bucket.split(":", 2)[1] == "key" else "the gateway's global"

    def _refusal(
        self, caller: Caller, reason: str, *, reset: float, status: LimitStatus | None
    ) -> RateLimited:
        error = RateLimited(f"Rate limit exceeded: {reason}.", retry_after=max(1.0, math.ceil(reset)))
        error.limit = status
        return error

    async def settle(self, ticket: Ticket, used: int | None) -> None:
        """Give back the unused part of the token reservation (or take the overrun), free the slot."""
        await in_order(self.start_settling(ticket, used))

    def start_settling(self, ticket: Ticket, used: int | None) -> list[Awaitable[object]]:
        """Settle, gathering what can wait: the writes still to await (none when all is gathered)."""
        writes: list[Awaitable[object]] = []
        if ticket.parallel_bucket is not None:
            writes.append(self._release_parallel(ticket))
        if used is None:
            return writes
        delta = used - ticket.reserved
        for bucket in ticket.token_buckets:
            write = self.settlements.correct(bucket, delta, BUCKET_TTL)
            if write is not None:
                writes.append(write)
        return writes

    async def status(self, caller: Caller) -> LimitStatus | None:
        """The tightest request limit for the caller now: its key's, else the global one."""
        key_rate = self.key_rate(caller)
        if key_rate is not None and key_rate.rpm:
            scope, limit = f"key:{caller.key_id}", key_rate.rpm
        elif self.global_rate.rpm:
            scope, limit = "global", self.global_rate.rpm
        else:
            return None
        now = self._clock()
        minute = int(now // WINDOW)
        used = await self.counters.value(f"rpm:{scope}:{minute}")
        return LimitStatus(limit, max(0, int(limit - used)), (minute + 1) * WINDOW - now)


def _shared(limit: int, share: float) -> float:
    """The part of a limit a caller with ``share`` may fill (a batch job's; at least one unit): the
    same bucket counts everyone's use, so the rest stays free for the others."""
    return limit if share >= 1.0 else max(1.0, limit * share)
