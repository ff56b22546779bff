"""What an upstream key has left before its rate limit, as the provider's response headers said."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Headroom:
    """One reading of an upstream key's rate-limit headers; ``None`` where the provider said nothing.

    ``*_reset`` are seconds from the moment of the reading until the window resets; ``observed_at`` is
    that moment (monotonic seconds), so a reading can be ignored once its window has reset.
    """

    requests_limit: int | None = None
    requests_remaining: int | None = None
    requests_reset: float | None = None
    tokens_limit: int | None = None
    tokens_remaining: int | None = None
    tokens_reset: float | None = None
    retry_after: float | None = None
    observed_at: float = 0.0

    def fraction_left_at(self, now: float) -> float | None:
        """``fraction_left``, or ``None`` once the reading's window has reset (it says nothing then)."""
        resets = [r for r in (self.requests_reset, self.tokens_reset) if r is not None]
        valid_for = max(resets) if resets else 60.0
        if now - self.observed_at > valid_for:
            return None
        return self.fraction_left

    @property
    def fraction_left(self) -> float | None:
        """The smaller of requests and tokens remaining as a fraction of their limit, if known."""
        fractions = [
            remaining / limit
            for remaining, limit in (
                (self.requests_remaining, self.requests_limit),
                (self.tokens_remaining, self.tokens_limit),
            )
            if remaining is not None and limit
        ]
        return min(fractions) if fractions else None


@dataclass(frozen=True, slots=True)
class ParamReport:
    """Request parameters an adapter cannot honour: ``dropped`` ones do not change the meaning of the
    request and are left out (listed in ``x-llmgate-dropped-params``); ``refused`` ones would, so the call
    must go elsewhere or fail with 400 naming them."""

    dropped: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()


NOTHING_UNSUPPORTED = ParamReport()
