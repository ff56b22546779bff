"""What every strategy sees and promises: candidates in, one candidate out, no I/O.

The helpers here are the tie-breaks the strategies share, so that "fewest in flight, then by weight"
means the same thing everywhere.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from llmgate.routing.deployments import Deployment


@dataclass(frozen=True, slots=True)
class Candidate:
    """A deployment as a strategy sees it at one moment (a snapshot; strategies never do I/O)."""

    deployment: Deployment
    in_flight: int = 0
    latency: float | None = None  # recent latency (time to first token for streams), seconds
    error_rate: float = 0.0
    healthy: bool = True  # breaker closed
    headroom: float | None = None  # fraction of the tightest upstream limit left (0..1), None unknown
    cost: float | None = None  # estimated USD cost of THIS request on it; None unknown

    @property
    def name(self) -> str:
        """The deployment's name."""
        return self.deployment.name

    @property
    def weight(self) -> float:
        """The deployment's configured weight."""
        return self.deployment.weight

    @property
    def priority(self) -> int:
        """The deployment's priority (lower goes first)."""
        return self.deployment.priority


@dataclass(frozen=True, slots=True)
class PickContext:
    """What a pick may use besides the candidates: the random source and the group's turn counter."""

    rng: random.Random
    turn: int = 0  # a shared ever-increasing counter for this group (round robin position)


class Strategy(Protocol):
    """Chooses where one request goes."""

    name: str

    def pick(self, candidates: Sequence[Candidate], context: PickContext) -> Candidate:
        """Choose one of a non-empty sequence of candidates (the executor removes tried ones and calls
        again)."""
        ...


def prefer_healthy(candidates: Sequence[Candidate]) -> Sequence[Candidate]:
    """The healthy candidates, or all of them when none is healthy (health is a preference)."""
    healthy = [candidate for candidate in candidates if candidate.healthy]
    return healthy or candidates


def by_weight(candidates: Sequence[Candidate], rng: random.Random) -> Candidate:
    """One candidate at random, in proportion to weight (uniform when no weight is positive)."""
    if not candidates:
        raise ValueError("no candidates to pick from")
    weights = [max(candidate.weight, 0.0) for candidate in candidates]
    total = sum(weights)
    if total <= 0:
        return rng.choice(candidates)
    point = rng.random() * total
    for candidate, weight in zip(candidates, weights, strict=True):
        point -= weight
        if point < 0:
            return candidate
    # Float rounding can leave the point at ~0 after the last subtraction: the last positive weight wins.
    return next(c for c, w in zip(reversed(candidates), reversed(weights), strict=True) if w > 0)


def least_busy(candidates: Sequence[Candidate], rng: random.Random) -> Candidate:
    """Among the candidates with the fewest requests in flight, one chosen by weight."""
    fewest = min(candidate.in_flight for candidate in candidates)
    return by_weight([c for c in candidates if c.in_flight == fewest], rng)


def cheapest(candidates: Sequence[Candidate], rng: random.Random) -> Candidate:
    """The candidate with the lowest known cost (unknown costs come after every known one); ties go to
    the fewest in flight, then by weight."""
    known = [candidate for candidate in candidates if candidate.cost is not None]
    if not known:
        return least_busy(candidates, rng)
    lowest = min(candidate.cost for candidate in known if candidate.cost is not None)
    return least_busy([candidate for candidate in known if candidate.cost == lowest], rng)
