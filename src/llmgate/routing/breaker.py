"""The circuit breaker: a deployment that keeps failing is left alone for a cooldown, then probed.

The breaker only counts what it is told: the caller decides which failures say something about the
deployment (a 5xx or a timeout does, a 400 from a bad request does not). Time is always passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class BreakerState(StrEnum):
    """Closed: traffic flows. Open: none. Half-open: one live request probes whether it works again."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When a breaker opens and for how long (seconds).

    It opens after ``failure_threshold`` consecutive failures, or when the error rate over the stats window
    reaches ``error_rate_threshold`` with at least ``min_requests`` requests in it. The cooldown doubles on
    each failed probe, up to ``max_cooldown``. A probe not reported within ``probe_timeout`` is presumed
    lost (e.g. its client went away) and another one is let through.
    """

    failure_threshold: int = 5
    error_rate_threshold: float = 0.5
    min_requests: int = 20
    cooldown: float = 30.0
    max_cooldown: float = 300.0
    probe_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if not 0.0 < self.error_rate_threshold <= 1.0:
            raise ValueError("error_rate_threshold must be in (0, 1]")
        if self.cooldown < 0 or self.max_cooldown < self.cooldown:
            raise ValueError("cooldown must be >= 0 and max_cooldown >= cooldown")


class CircuitBreaker:
    """One deployment's breaker (one per replica; ``trip`` carries another replica's verdict)."""

    __slots__ = ("_cooldown", "_failures", "_opened_until", "_policy", "_probe_sent_at")

    def __init__(self, policy: BreakerPolicy = BreakerPolicy()) -> None:
        self._policy = policy
        self._opened_until: float | None = None
        self._cooldown = policy.cooldown
        self._failures = 0
        self._probe_sent_at: float | None = None

    @property
    def policy(self) -> BreakerPolicy:
        """The thresholds this breaker applies."""
        return self._policy

    @property
    def opened_until(self) -> float | None:
        """When the open period ends (it stays set while half-open); ``None`` when closed."""
        return self._opened_until

    @property
    def consecutive_failures(self) -> int:
        """Failures recorded since the last success while closed."""
        return self._failures

    @property
    def cooldown(self) -> float:
        """The cooldown the next (re)opening will use."""
        return self._cooldown

    def state(self, now: float) -> BreakerState:
        """The state at ``now``: an open breaker whose cooldown has elapsed reads as half-open."""
        if self._opened_until is None:
            return BreakerState.CLOSED
        if now < self._opened_until:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allow(self, now: float) -> bool:
        """Whether a request may go now. Half-open lets exactly one probe out at a time; calling this
        when it answers True for a half-open breaker takes that probe slot."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        sent = self._probe_sent_at
        if sent is not None and now < sent + self._policy.probe_timeout:
            return False
        self._probe_sent_at = now
        return True

    def release_probe(self) -> None:
        """The probe ended without a verdict (cancelled: its client left, or it lost a hedge race):
        the next request may probe instead of waiting out ``probe_timeout``."""
        self._probe_sent_at = None

    def record_success(self, now: float) -> None:
        """A request succeeded: a half-open breaker closes (cooldown reset). A success arriving while
        open (a request sent before it opened) changes nothing."""
        state = self.state(now)
        if state is BreakerState.OPEN:
            return
        self._failures = 0
        if state is BreakerState.HALF_OPEN:
            self._opened_until = None
            self._cooldown = self._policy.cooldown
            self._probe_sent_at = None

    def record_failure(self, now: float, *, error_rate: float = 0.0, requests: int = 0) -> bool:
        """A request failed in a way that blames the deployment; ``error_rate`` and ``requests`` are the
        stats window's figures. Returns True when this call opened (or reopened) the breaker."""
        state = self.state(now)
        if state is BreakerState.OPEN:
            return False
        if state is BreakerState.HALF_OPEN:
            self._cooldown = min(self._cooldown * 2, self._policy.max_cooldown)
            self._open(now + self._cooldown)
            return True
        self._failures += 1
        policy = self._policy
        too_many = self._failures >= policy.failure_threshold
        too_often = requests >= policy.min_requests and error_rate >= policy.error_rate_threshold
        if too_many or too_often:
            self._open(now + self._cooldown)
            return True
        return False

    def trip(self, until: float) -> None:
        """Open until ``until`` (another replica opened it, or the provider asked for a long pause). An
        open period that already lasts longer is kept."""
        if self._opened_until is None or until > self._opened_until:
            self._open(until)

    def _open(self, until: float) -> None:
        self._opened_until = until
        self._probe_sent_at = None
