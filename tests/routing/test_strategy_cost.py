"""CostOptimized and Hybrid: cheapest first, with real catalogue prices."""

from __future__ import annotations

import random

import pytest
from fake_deployments import candidate, deployment

from llmgate.catalogue import UNKNOWN, Catalogue, Prices, cost_of
from llmgate.core.usage import Usage
from llmgate.routing.strategies import Candidate, CostOptimized, Hybrid, PickContext

USAGE = Usage(prompt_tokens=2000, completion_tokens=500, total_tokens=2500)


def priced(provider: str, model: str, **snapshot: object) -> Candidate:
    info = Catalogue.load().lookup(model, "openai")
    assert info is not None
    prices = Prices.of(info)
    return Candidate(deployment(provider, model, prices=prices), cost=cost_of(USAGE, prices), **snapshot)  # type: ignore[arg-type]


def unpriced(provider: str, **snapshot: object) -> Candidate:
    return Candidate(deployment(provider, prices=UNKNOWN), cost=cost_of(USAGE, UNKNOWN), **snapshot)  # type: ignore[arg-type]


def pick(strategy: CostOptimized | Hybrid, candidates: list[Candidate], seed: int = 1) -> str:
    return strategy.pick(candidates, PickContext(random.Random(seed))).name


def test_real_prices_make_the_mini_model_cheaper() -> None:
    assert priced("x", "gpt-4o-mini").cost == pytest.approx((2000 * 0.15 + 500 * 0.6) / 1e6)
    candidates = [priced("big", "gpt-4o"), priced("small", "gpt-4o-mini")]
    assert pick(CostOptimized(), candidates) == "small/gpt-4o-mini"


def test_unknown_cost_comes_after_every_known_cost() -> None:
    candidates = [unpriced("mystery"), priced("big", "gpt-4o")]
    assert candidates[0].cost is None
    assert pick(CostOptimized(), candidates) == "big/gpt-4o"
    assert pick(CostOptimized(), [unpriced("m1", in_flight=1), unpriced("m2")]) == "m2/m"


def test_cost_prefers_healthy_and_falls_back_when_none_is() -> None:
    candidates = [priced("small", "gpt-4o-mini", healthy=False), priced("big", "gpt-4o")]
    assert pick(CostOptimized(), candidates) == "big/gpt-4o"
    sick = [priced("small", "gpt-4o-mini", healthy=False), priced("big", "gpt-4o", healthy=False)]
    assert pick(CostOptimized(), sick) == "small/gpt-4o-mini"


def test_equal_costs_go_to_the_fewest_in_flight() -> None:
    candidates = [priced("a", "gpt-4o-mini", in_flight=2), priced("b", "gpt-4o-mini", in_flight=0)]
    assert pick(CostOptimized(), candidates) == "b/gpt-4o-mini"


def test_hybrid_takes_the_cheapest_when_all_are_fine() -> None:
    candidates = [priced("big", "gpt-4o", latency=0.3), priced("small", "gpt-4o-mini", latency=0.35)]
    assert pick(Hybrid(), candidates) == "small/gpt-4o-mini"


def test_hybrid_avoids_unhealthy() -> None:
    candidates = [priced("big", "gpt-4o"), priced("small", "gpt-4o-mini", healthy=False)]
    assert pick(Hybrid(), candidates) == "big/gpt-4o"


def test_hybrid_avoids_near_limit_but_not_unknown_headroom() -> None:
    near = [priced("big", "gpt-4o", headroom=0.5), priced("small", "gpt-4o-mini", headroom=0.05)]
    assert pick(Hybrid(), near) == "big/gpt-4o"
    unknown = [priced("big", "gpt-4o", headroom=0.5), priced("small", "gpt-4o-mini", headroom=None)]
    assert pick(Hybrid(), unknown) == "small/gpt-4o-mini"
    edge = [priced("big", "gpt-4o", headroom=0.5), priced("small", "gpt-4o-mini", headroom=0.1)]
    assert pick(Hybrid(), edge) == "small/gpt-4o-mini"


def test_hybrid_avoids_much_slower_but_not_slightly_slower() -> None:
    # best 0.5 s -> the limit is 0.5 * 1.5 + 0.05 = 0.8 s
    slow = [priced("big", "gpt-4o", latency=0.5), priced("small", "gpt-4o-mini", latency=0.81)]
    assert pick(Hybrid(), slow) == "big/gpt-4o"
    close = [priced("big", "gpt-4o", latency=0.5), priced("small", "gpt-4o-mini", latency=0.8)]
    assert pick(Hybrid(), close) == "small/gpt-4o-mini"
    unmeasured = [priced("big", "gpt-4o", latency=0.5), priced("small", "gpt-4o-mini")]
    assert pick(Hybrid(), unmeasured) == "small/gpt-4o-mini"


def test_hybrid_best_latency_ignores_unhealthy_candidates() -> None:
    candidates = [
        priced("failing-fast", "gpt-4o", latency=0.01, healthy=False),
        priced("small", "gpt-4o-mini", latency=0.6),
    ]
    assert pick(Hybrid(), candidates) == "small/gpt-4o-mini"


def test_hybrid_falls_back_to_all_when_everything_is_filtered() -> None:
    candidates = [
        priced("big", "gpt-4o", healthy=False),
        priced("small", "gpt-4o-mini", headroom=0.01),
        unpriced("mystery", healthy=False),
    ]
    assert Hybrid().eligible(candidates) == []
    assert pick(Hybrid(), candidates) == "small/gpt-4o-mini"


def test_hybrid_unknown_cost_last_then_ties_by_in_flight() -> None:
    assert pick(Hybrid(), [unpriced("mystery"), priced("big", "gpt-4o")]) == "big/gpt-4o"
    tied = [candidate("a", in_flight=3), candidate("b", in_flight=1)]
    assert pick(Hybrid(), tied) == "b/m"
