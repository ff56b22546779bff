"""Fastest response: the deployment with the lowest recent latency (time to first token for streams)."""

from __future__ import annotations

from collections.abc import Sequence

from llmgate.routing.strategies.base import Candidate, PickContext, prefer_healthy

EXPLORATION = 0.05


class FastestResponse:
    """Lowest latency among the healthy candidates.

    Deployments with no measurement yet go first, one request at a time (one with nothing in flight), so
    that a new deployment gets measured. With probability ``epsilon`` a pick is uniform at random, so a
    deployment that was slow once is measured again rather than shunned forever.
    """

    name = "fastest_response"

    def __init__(self, *, epsilon: float = EXPLORATION) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError("epsilon must be in [0, 1]")
        self.epsilon = epsilon

    def pick(self, candidates: Sequence[Candidate], context: PickContext) -> Candidate:
        """The fastest candidate, or one still to be measured."""
        pool = prefer_healthy(candidates)
        rng = context.rng
        unmeasured = [c for c in pool if c.latency is None and c.in_flight == 0]
        if unmeasured:
            return unmeasured[0]
        if self.epsilon and rng.random() < self.epsilon:
            return rng.choice(pool)
        measured = [c for c in pool if c.latency is not None]
        if not measured:  # every candidate is unmeasured and already has its first request out
            return min(pool, key=lambda candidate: candidate.in_flight)
        return min(measured, key=lambda candidate: (candidate.latency, candidate.in_flight))
