"""Routing strategies, one module each behind one ``pick()`` protocol, and their names."""

from __future__ import annotations

from llmgate.routing.strategies.base import Candidate, PickContext, Strategy
from llmgate.routing.strategies.cost_optimized import CostOptimized
from llmgate.routing.strategies.fastest_response import FastestResponse
from llmgate.routing.strategies.hybrid import Hybrid
from llmgate.routing.strategies.least_loaded import LeastLoaded
from llmgate.routing.strategies.priority import Priority
from llmgate.routing.strategies.round_robin import RoundRobin
from llmgate.routing.strategies.weighted import Weighted

_KINDS: tuple[type[Strategy], ...] = (
    RoundRobin,
    Weighted,
    LeastLoaded,
    FastestResponse,
    CostOptimized,
    Priority,
    Hybrid,
)

STRATEGY_NAMES: tuple[str, ...] = tuple(kind.name for kind in _KINDS)


def _squashed(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch not in "_- ")


def make_strategy(name: str) -> Strategy:
    """A fresh strategy by name. Case, ``-``, ``_`` and spaces are ignored, so the seed's spellings
    (``ROUND_ROBIN``, ``least-loaded``, ``COST_OPTIMIZED``) work too."""
    wanted = _squashed(name)
    for kind in _KINDS:
        if _squashed(kind.name) == wanted:
            return kind()
    raise ValueError(f"unknown routing strategy {name!r}; valid: {', '.join(STRATEGY_NAMES)}")


__all__ = [
    "STRATEGY_NAMES",
    "Candidate",
    "CostOptimized",
    "FastestResponse",
    "Hybrid",
    "LeastLoaded",
    "PickContext",
    "Priority",
    "RoundRobin",
    "Strategy",
    "Weighted",
    "make_strategy",
]
