"""Round robin: each deployment in turn, by the group's shared turn counter."""

from __future__ import annotations

from collections.abc import Sequence

from llmgate.routing.strategies.base import Candidate, PickContext


class RoundRobin:
    """``candidates[turn % len(candidates)]``: an exact cycle as the caller advances ``turn``.

    Health is ignored here: the executor has already removed open breakers, and a half-open deployment's
    turn is its probe.
    """

    name = "round_robin"

    def pick(self, candidates: Sequence[Candidate], context: PickContext) -> Candidate:
        """The candidate whose turn it is."""
        return candidates[context.turn % len(candidates)]
