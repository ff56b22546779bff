"""Live health of every deployment and upstream key, from real traffic only (no billed probes).

The board holds one ``DeploymentStats`` and one ``CircuitBreaker`` per deployment, and one ``KeyState``
per upstream API key (a key the provider rejected, or one that is rate limited, is left alone until
its time is up). ``report()`` is what ``/health/providers`` and ``gw.health()`` show.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from llmgate.routing.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from llmgate.routing.stats import DeploymentStats

MAX_TRACKED = 10_000  # direct `provider:model` names come from callers: keep the board bounded
BAD_KEY_COOLDOWN = 300.0  # a key the provider rejected (401/403) is retried after this long
HEDGE_CREDIT_CAP = 5.0
SWEEP_INTERVAL = 5.0


@dataclass(slots=True)
class KeyState:
    """One upstream API key: when it may be used again, and why not now."""

    bad_until: float = 0.0
    cooling_until: float = 0.0
    last_error: str | None = None

    def usable(self, now: float) -> bool:
        """Neither rejected by the provider nor waiting out a rate limit."""
        return now >= self.bad_until and now >= self.cooling_until

    def free_at(self) -> float:
        """When the key may be used again."""
        return max(self.bad_until, self.cooling_until)


@dataclass(slots=True)
class DeploymentHealth:
    """The stats and the breaker of one deployment."""

    stats: DeploymentStats
    breaker: CircuitBreaker
    provider: str = ""

    def count_failure(self, now: float, *, panic: bool = False) -> bool:
        """A failure that blames the deployment, already in the stats window: tell the breaker (with the
        window's figures); whether it opened. ``panic``: the attempt was sent while the breaker was open."""
        stats = self.stats
        return self.breaker.record_failure(now, errors=stats.errors, requests=stats.requests, panic=panic)

    def abandoned(self, now: float, *, panic: bool = False) -> None:
        """A call ended because its caller left (or it lost a hedge): no verdict on the deployment, and a
        half-open probe slot is free again (unless this was a panic attempt, which took no probe slot)."""
        self.stats.finished(ok=True, latency=None, now=now)
        if not panic:
            self.breaker.release_probe()

    def state(self, now: float) -> str:
        """``healthy``, ``degraded`` (errors in the window) or ``open`` / ``half_open``."""
        breaker = self.breaker.state(now)
        if breaker is not BreakerState.CLOSED:
            return breaker.value
        return "degraded" if self.stats.errors else "healthy"


@dataclass(slots=True)
class HedgeBudget:
    """Caps hedged requests to a share of a group's requests: each request earns ``share`` of a hedge."""

    credit: float = 0.0

    def earn(self, share: float) -> None:
        """One more request in the group."""
        self.credit = min(HEDGE_CREDIT_CAP, self.credit + share)

    def spend(self) -> bool:
        """Take one hedge if the budget allows it."""
        if self.credit >= 1.0:
            self.credit -= 1.0
            return True
        return False


@dataclass
class HealthBoard:
    """Everything routing knows about the health of deployments and keys, owned by one gateway."""

    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    clock: Callable[[], float] = time.monotonic
    _deployments: dict[str, DeploymentHealth] = field(default_factory=dict)
    _keys: dict[str | tuple[str, str], KeyState] = field(default_factory=dict)
    _hedges: dict[str, HedgeBudget] = field(default_factory=dict)
    _next_sweep: float = 0.0

    def of(self, deployment: str, provider: str = "") -> DeploymentHealth:
        """The health record of a deployment (created on first use)."""
        health = self._deployments.get(deployment)
        if health is None:
            if len(self._deployments) >= MAX_TRACKED:
                self._evict_idle()
            health = DeploymentHealth(DeploymentStats(), CircuitBreaker(self.policy), provider)
            self._deployments[deployment] = health
        return health

    def key(self, label: str | tuple[str, str]) -> KeyState:
        """The state of an upstream key (by its label)."""
        state = self._keys.get(label)
        if state is None:
            if len(self._keys) >= 2 * MAX_TRACKED:
                self._evict_rested_keys()
            state = self._keys[label] = KeyState()
        return state

    def _evict_rested_keys(self) -> None:
        """Forget keys with nothing to remember (no rest pending); if all rest, the oldest half."""
        self.forget_rested()
        if len(self._keys) >= MAX_TRACKED:
            for label in list(self._keys)[: len(self._keys) // 2]:
                del self._keys[label]

    def slot(self, deployment: str, label: str) -> KeyState:
        """The state of a key for one deployment: a 429 rests the key for that model, not for all."""
        return self.key((deployment, label))

    @property
    def calm(self) -> bool:
        """No key has failed lately: every key is usable (the hot path's shortcut)."""
        return not self._keys

    def usable(self, deployment: str, label: str, now: float) -> bool:
        """Whether a key may serve a deployment now (not rejected, not resting for that model)."""
        keys = self._keys
        if not keys:  # the common case: no key has failed lately
            return True
        for name in (label, (deployment, label)):
            state = keys.get(name)
            if state is not None and not state.usable(now):
                return False
        return True

    def free_at(self, deployment: str, label: str) -> float:
        """When a key may serve a deployment again."""
        states = [self._keys.get(name) for name in (label, (deployment, label))]
        return max((state.free_at() for state in states if state is not None), default=0.0)

    def cooling_until(self, deployment: str, label: str) -> float:
        """Until when a key rests for a deployment after its 429."""
        state = self._keys.get((deployment, label))
        return state.cooling_until if state is not None else 0.0

    def sweep(self, now: float) -> None:
        """Every few seconds, forget key states whose rest is over (restores the fast path)."""
        if self._keys and now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            self.forget_rested()

    def forget_rested(self) -> None:
        """Drop key states whose rest is over (they say nothing any more)."""
        now = self.clock()
        for name in [name for name, state in self._keys.items() if state.free_at() <= now]:
            del self._keys[name]

    def hedge_budget(self, group: str) -> HedgeBudget:
        """The hedging allowance of a group."""
        budget = self._hedges.get(group)
        if budget is None:
            budget = self._hedges[group] = HedgeBudget()
        return budget

    def known(self) -> Iterable[tuple[str, DeploymentHealth]]:
        """Every deployment that has seen traffic."""
        return self._deployments.items()

    def report(self, names: Iterable[tuple[str, str]] = ()) -> list[dict[str, Any]]:
        """One entry per deployment: state, error rate, latency p50/p95, last error (no secrets).

        ``names`` are (deployment, provider) pairs to include even before they have seen traffic.
        """
        now = self.clock()
        for name, provider in names:
            self.of(name, provider)
        rows = []
        for name, health in self._deployments.items():
            stats = health.stats
            stats.expire(now)
            p50, p95 = stats.percentile(0.5), stats.percentile(0.95)
            rows.append(
                {
                    "deployment": name,
                    "provider": health.provider,
                    "state": health.state(now),
                    "requests": stats.requests,
                    "error_rate": round(stats.error_rate, 4),
                    "in_flight": stats.in_flight,
                    "latency_p50_ms": None if p50 is None else round(p50 * 1000, 1),
                    "latency_p95_ms": None if p95 is None else round(p95 * 1000, 1),
                    "total_requests": stats.total_requests,
                    "total_errors": stats.total_errors,
                    "last_error": stats.last_error,
                    "open_until_s": _seconds_left(health.breaker.opened_until, now),
                }
            )
        return rows

    def keys_report(self) -> list[dict[str, Any]]:
        """Upstream keys that are resting: rejected or rate limited (labels only, never the key)."""
        now = self.clock()
        rows = []
        for name, state in self._keys.items():
            if state.free_at() <= now:
                continue
            deployment, label = name if isinstance(name, tuple) else (None, name)
            rows.append(
                {
                    "key": label,
                    "deployment": deployment,
                    "free_in_s": _seconds_left(state.free_at(), now),
                    "last_error": state.last_error,
                }
            )
        return rows

    def _evict_idle(self) -> None:
        idle = [name for name, health in self._deployments.items() if health.stats.in_flight == 0]
        for name in idle[: max(1, len(idle) // 2)]:
            del self._deployments[name]


def _seconds_left(until: float | None, now: float) -> float | None:
    if until is None or until <= now:
        return None
    return round(until - now, 3)
