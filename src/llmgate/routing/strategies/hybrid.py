"""Hybrid, the default: cost first among deployments that are healthy, not near their rate limits, and
not much slower than the best."""

from __future__ import annotations

from collections.abc import Sequence

from llmgate.routing.strategies.base import Candidate, PickContext, cheapest

MIN_HEADROOM = 0.1  # avoid a key with less than 10% of its tightest limit left, before it returns 429
SLOWER_FACTOR = 1.5  # "much slower": above 1.5x the best latency ...
SLOWER_SLACK = 0.05  # ... plus 50 ms, so that tiny latencies do not split hairs


class Hybrid:
    """Filter to healthy candidates with headroom (unknown counts as enough) whose latency is unknown or
    within ``best * 1.5 + 0.05`` s of the best known; if nothing is left, use every candidate. Then the
    cheapest (unknown cost last), ties to the fewest in flight, then by weight."""

    name = "hybrid"

    def __init__(
        self,
        *,
        min_headroom: float = MIN_HEADROOM,
        slower_factor: float = SLOWER_FACTOR,
        slower_slack: float = SLOWER_SLACK,
    ) -> None:
        self.min_headroom = min_headroom
        self.slower_factor = slower_factor
        self.slower_slack = slower_slack

    def pick(self, candidates: Sequence[Candidate], context: PickContext) -> Candidate:
        """The cheapest of the candidates worth using."""
        return cheapest(self.eligible(candidates) or candidates, context.rng)

    def eligible(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The candidates that pass the health, headroom and latency filters (possibly none)."""
        usable = [
            c for c in candidates if c.healthy and (c.headroom is None or c.headroom >= self.min_headroom)
        ]
        latencies = [c.latency for c in usable if c.latency is not None]
        if not latencies:
            return usable
        limit = min(latencies) * self.slower_factor + self.slower_slack
        return [c for c in usable if c.latency is None or c.latency <= limit]
