"""Weighted: random, in proportion to each deployment's configured weight."""

from __future__ import annotations

from collections.abc import Sequence

from llmgate.routing.strategies.base import Candidate, PickContext, by_weight


class Weighted:
    """Random by weight (a 2:1 weighting sends about two thirds of requests to the first).

    Health is ignored, as in round robin: the configured split is the point of this strategy.
    """

    name = "weighted"

    def pick(self, candidates: Sequence[Candidate], context: PickContext) -> Candidate:
        """One candidate drawn by weight."""
        return by_weight(candidates, context.rng)
