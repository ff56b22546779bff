"""The circuit breaker: a deployment that keeps failing is left alone for a cooldown, then probed.

The breaker only counts what it is told: the caller decides which failures say something about the
deployment (a 5xx or a timeout does, a 400 from a bad request does not). Time is always passed in.

A run of consecutive failures opens it only when the run says more than the deployment's usual error
rate: at 20% random failures, five in a row come about once every 3,000 requests, and opening the only
deployment of a group for that refuses everything for a cooldown while the upstream is 80% healthy.
"""

from __future__ import annotations

import math
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

    It opens when the error rate over the stats window reaches ``error_rate_threshold`` with at least
    ``min_requests`` requests in it, or after a run of at least ``failure_threshold`` consecutive failures
    that the window cannot explain: the window held fewer than ``min_requests`` outcomes before the run
    (too little to know the usual rate), or the run's chance at the error rate seen before it, p ** run, is
    below ``implausible_run`` (p = 0: any run of ``failure_threshold``; p = 0.05: 7; p = 0.2: 13). The
    cooldown doubles on each failed probe, up to ``max_cooldown``. A probe not reported within
    ``probe_timeout`` is presumed lost (e.g. its client went away) and another one is let through.
    """

    failure_threshold: int = 5
    error_rate_threshold: float = 0.5
    min_requests: int = 20
    cooldown: float = 30.0
    max_cooldown: float = 300.0
    probe_timeout: float = 120.0
    implausible_run: float = 1e-9

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if not 0.0 < self.error_rate_threshold <= 1.0:
            raise ValueError("error_rate_threshold must be in (0, 1]")
        if self.cooldown < 0 or self.max_cooldown < self.cooldown:
            raise ValueError("cooldown must be >= 0 and max_cooldown >= cooldown")
        if not 0.0 < self.implausible_run < 1.0:
            raise ValueError("implausible_run must be in (0, 1)")


class CircuitBreaker:
    """One deployment's breaker (one per replica; ``trip`` carries another replica's verdict).

    A *panic* verdict is that of an attempt sent while the breaker was open (routing had nothing else to
    try): it counts in the run of failures, but never opens, closes or reopens the breaker, which stays
    the business of its own rules and of its one half-open probe.
    """

    __slots__ = ("_cooldown", "_failures", "_log_implausible", "_opened_until", "_policy", "_probe_sent_at")

    def __init__(self, policy: BreakerPolicy = BreakerPolicy()) -> None:
        self._policy = policy
        self._opened_until: float | None = None
        self._cooldown = policy.cooldown
        self._failures = 0
        self._probe_sent_at: float | None = None
        self._log_implausible = math.log(policy.implausible_run)

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
        """Failures recorded since the last success, in any state (panic attempts and probes included)."""
        return self._failures

    @property
    def fails_everything(self) -> bool:
        """Its last ``min_requests`` verdicts were all failures: not worth a panic attempt (only its probe
        may find it back). Counted by the breaker rather than the stats window, which empties after a
        minute while an open period may last five."""
        return self._failures >= self._policy.min_requests

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

    def record_success(self, now: float, *, panic: bool = False) -> None:
        """A request succeeded: the run of failures ends, and a half-open breaker closes (cooldown reset)
        unless this was a panic attempt. A success arriving while open (a request sent before it opened,
        or a panic attempt) leaves it open."""
        self._failures = 0
        if self.state(now) is BreakerState.HALF_OPEN and not panic:
            self._opened_until = None
            self._cooldown = self._policy.cooldown
            self._probe_sent_at = None

    def record_failure(self, now: float, *, errors: int = 0, requests: int = 0, panic: bool = False) -> bool:
        """A request failed in a way that blames the deployment; ``errors`` and ``requests`` are the stats
        window's figures, this failure included. Returns True when this call opened (or reopened) the
        breaker; a panic attempt's failure never does while it is open or half-open."""
        state = self.state(now)
        self._failures += 1
        if state is BreakerState.OPEN or (state is BreakerState.HALF_OPEN and panic):
            return False
        if state is BreakerState.HALF_OPEN:
            self._cooldown = min(self._cooldown * 2, self._policy.max_cooldown)
            self._open(now + self._cooldown)
            return True
        if self._too_often(errors, requests) or self._run_is_telling(errors, requests):
            self._open(now + self._cooldown)
            return True
        return False

    def _too_often(self, errors: int, requests: int) -> bool:
        policy = self._policy
        return requests >= policy.min_requests and errors / requests >= policy.error_rate_threshold

    def _run_is_telling(self, errors: int, requests: int) -> bool:
        """Whether the current run of failures says more than the error rate seen before it (O(1))."""
        run, policy = self._failures, self._policy
        if run < policy.failure_threshold:
            return False
        before = requests - run  # the window's outcomes older than the run (it may outlast the window)
        if before < policy.min_requests:
            return True  # too little history to call the run a fluke of the usual rate
        rate = max(0, errors - run) / before
        # p ** run < implausible_run, in logs: a run this long at this rate is not chance but a change.
        return rate == 0.0 or run * math.log(rate) < self._log_implausible

    def trip(self, until: float) -> None:
        """Open until ``until`` (another replica opened it, or the provider asked for a long pause). An
        open period that already lasts longer is kept."""
        if self._opened_until is None or until > self._opened_until:
            self._open(until)

    def _open(self, until: float) -> None:
        self._opened_until = until
        self._probe_sent_at = None
