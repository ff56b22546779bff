"""Priority: ordered tiers; the lowest priority number serves while it is available."""

from __future__ import annotations

from collections.abc import Sequence

from llmgate.routing.strategies.base import Candidate, PickContext, by_weight


class Priority:
    """The lowest priority number is the first tier; within the tier, random by weight.

    The executor removes tried candidates and open breakers, so the next tier serves once the first is
    used up. Health is otherwise ignored: a half-open first-tier deployment gets its probe.
    """

    name = "priority"

    def pick(self, candidates: Sequence[Candidate], context: PickContext) -> Candidate:
        """A candidate of the first tier, by weight."""
        tier = min(candidate.priority for candidate in candidates)
        return by_weight([c for c in candidates if c.priority == tier], context.rng)
