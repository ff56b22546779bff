"""Live traffic figures of a deployment (or of one API key), fed by real requests only.

This sits on the hot path: every call does O(1) work here, except ``percentile()``, which sorts the window.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

WINDOW_SIZE = 100
WINDOW_SECONDS = 60.0
EWMA_ALPHA = 0.3

# (finished at, ok, latency): a plain tuple, the cheapest record to build per request.
_Outcome = tuple[float, bool, float | None]


def _ewma(previous: float | None, sample: float, alpha: float) -> float:
    return sample if previous is None else alpha * sample + (1.0 - alpha) * previous


@dataclass(slots=True)
class DeploymentStats:
    """Live traffic figures of one deployment (or one API key), from real requests only.

    The window holds the last ``window_size`` outcomes that finished less than ``window_seconds`` ago; it is
    trimmed by time whenever an outcome is recorded, or on ``expire(now)``. Latencies are seconds.
    """

    in_flight: int = 0
    total_requests: int = 0
    total_errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    window_size: int = WINDOW_SIZE
    window_seconds: float = WINDOW_SECONDS
    alpha: float = EWMA_ALPHA
    _outcomes: deque[_Outcome] = field(init=False, repr=False, compare=False)
    _errors: int = field(default=0, init=False, repr=False, compare=False)
    _latency: float | None = field(default=None, init=False, repr=False, compare=False)
    _first_token: float | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.window_size < 1:
            raise ValueError("window_size must be at least 1")
        self._outcomes = deque(maxlen=self.window_size)

    def started(self) -> None:
        """A request to this deployment has been sent."""
        self.in_flight += 1

    def finished(
        self,
        *,
        ok: bool,
        latency: float | None,
        first_token: float | None = None,
        now: float,
        error: str | None = None,
    ) -> None:
        """A request ended. ``latency``/``first_token`` are recorded as given (``None``: nothing measured);
        ``error`` must already be free of secrets."""
        self.in_flight = max(0, self.in_flight - 1)
        self.total_requests += 1
        outcomes = self._outcomes
        if len(outcomes) == self.window_size:
            self._forget(outcomes.popleft())
        outcomes.append((now, ok, latency))
        if not ok:
            self._errors += 1
            self.total_errors += 1
            self.last_error = error
            self.last_error_at = now
        if latency is not None:
            self._latency = _ewma(self._latency, latency, self.alpha)
        if first_token is not None:
            self._first_token = _ewma(self._first_token, first_token, self.alpha)
        self.expire(now)

    def expire(self, now: float) -> None:
        """Drop outcomes that finished more than ``window_seconds`` before ``now``."""
        outcomes = self._outcomes
        oldest = now - self.window_seconds
        while outcomes and outcomes[0][0] < oldest:
            self._forget(outcomes.popleft())

    def _forget(self, outcome: _Outcome) -> None:
        if not outcome[1]:
            self._errors -= 1

    @property
    def requests(self) -> int:
        """Requests finished within the window."""
        return len(self._outcomes)

    @property
    def errors(self) -> int:
        """Failed requests within the window."""
        return self._errors

    @property
    def error_rate(self) -> float:
        """Share of failed requests within the window, 0..1; 0 when the window is empty."""
        count = len(self._outcomes)
        return self._errors / count if count else 0.0

    def latency(self, *, stream: bool) -> float | None:
        """Recent latency (EWMA); for streams the time to first token, falling back to the latency until
        a first-token time has been seen. ``None`` before any measurement."""
        if stream and self._first_token is not None:
            return self._first_token
        return self._latency

    def percentile(self, q: float) -> float | None:
        """The ``q`` quantile (0 < q <= 1, nearest rank) of the latencies in the window, if any."""
        if not 0.0 < q <= 1.0:
            raise ValueError(f"percentile must be in (0, 1], got {q}")
        latencies = sorted(latency for _, _, latency in self._outcomes if latency is not None)
        if not latencies:
            return None
        # Nearest rank; the tolerance keeps float noise (0.07 * 100 = 7.000000000000001) from adding a rank.
        rank = max(1, math.ceil(q * len(latencies) - 1e-9))
        return latencies[rank - 1]
