"""Cost optimised: the deployment where this request is estimated to cost least."""

from __future__ import annotations

from collections.abc import Sequence

from llmgate.routing.strategies.base import Candidate, PickContext, cheapest, prefer_healthy


class CostOptimized:
    """Cheapest known cost among the healthy candidates; unknown costs come after every known one; ties
    go to the fewest in flight, then by weight."""

    name = "cost_optimized"

    def pick(self, candidates: Sequence[Candidate], context: PickContext) -> Candidate:
        """The cheapest candidate."""
        return cheapest(prefer_healthy(candidates), context.rng)
