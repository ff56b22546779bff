"""Least loaded: the deployment with the fewest requests in flight."""

from __future__ import annotations

from collections.abc import Sequence

from llmgate.routing.strategies.base import Candidate, PickContext, prefer_healthy


class LeastLoaded:
    """Fewest in flight (healthy ones first); ties go to the lowest error rate, then at random."""

    name = "least_loaded"

    def pick(self, candidates: Sequence[Candidate], context: PickContext) -> Candidate:
        """The least busy candidate."""
        pool = prefer_healthy(candidates)
        best = min((candidate.in_flight, candidate.error_rate) for candidate in pool)
        tied = [candidate for candidate in pool if (candidate.in_flight, candidate.error_rate) == best]
        return tied[0] if len(tied) == 1 else context.rng.choice(tied)
