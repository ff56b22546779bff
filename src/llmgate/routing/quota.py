"""Upstream-side limits: each deployment's rpm/tpm and each upstream API key's (the provider's rpm/tpm).

Counted in the ``Counters`` port in one-minute windows, so replicas sharing Redis share them. A key at
its limit is rested until the window turns; routing then picks another key or deployment, or waits up
to ``max_queue_wait``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from llmgate.routing.plan import Option
from llmgate.state.ports import Counters

WINDOW = 60.0
TTL = 2 * WINDOW


class UpstreamQuota:
    """The ``Admission`` of the failover executor, on counters."""

    def __init__(self, counters: Counters, *, clock: Callable[[], float] = time.time) -> None:
        self.counters = counters
        self._clock = clock

    @staticmethod
    def _limits(option: Option) -> list[tuple[str, int | None, int | None]]:
        deployment = option.deployment
        account = deployment.account
        return [
            (f"dep:{deployment.name}", deployment.rpm, deployment.tpm),
            (f"ukey:{option.key.label}", account.rpm, account.tpm),
        ]

    async def admit(self, option: Option, tokens: int) -> float | None:
        """``None`` when admitted (and counted); else the seconds until the window turns."""
        limits = [limit for limit in self._limits(option) if limit[1] or limit[2]]
        if not limits:
            return None
        now = self._clock()
        minute = int(now // WINDOW)
        takes: list[tuple[str, float, float, float | None]] = []
        for scope, rpm, tpm in limits:
            if rpm:
                takes.append((f"rpm:{scope}:{minute}", 1, rpm, TTL))
            if tpm:
                takes.append((f"tpm:{scope}:{minute}", tokens, tpm, TTL))
        taken = await self.counters.take_many(takes)
        return None if taken.allowed else (minute + 1) * WINDOW - now

    async def release(self, option: Option, tokens: int, used: int | None) -> None:
        """Settle the token reservation with the real usage (``None``: keep the reservation)."""
        if used is None or used == tokens:
            return
        minute = int(self._clock() // WINDOW)
        for scope, _, tpm in self._limits(option):
            if tpm:
                await self.counters.adjust(f"tpm:{scope}:{minute}", used - tokens, ttl=TTL)

    async def key_requests(self, label: str) -> tuple[float, float]:
        """Requests an upstream key has made in the current window, and the seconds until it resets."""
        now = self._clock()
        minute = int(now // WINDOW)
        used = await self.counters.value(f"rpm:ukey:{label}:{minute}")
        return used, (minute + 1) * WINDOW - now
