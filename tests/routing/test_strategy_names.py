"""make_strategy and STRATEGY_NAMES; every strategy always returns one of its candidates."""

from __future__ import annotations

import random

import pytest
from fake_deployments import candidate

from llmgate.routing.strategies import STRATEGY_NAMES, PickContext, make_strategy


def test_the_seven_names() -> None:
    assert STRATEGY_NAMES == (
        "round_robin",
        "weighted",
        "least_loaded",
        "fastest_response",
        "cost_optimized",
        "priority",
        "hybrid",
    )


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_each_name_makes_its_strategy(name: str) -> None:
    assert make_strategy(name).name == name


@pytest.mark.parametrize(
    ("spelling", "name"),
    [
        ("ROUND_ROBIN", "round_robin"),
        ("least-loaded", "least_loaded"),
        ("LEAST_LOADED", "least_loaded"),
        ("COST_OPTIMIZED", "cost_optimized"),
        ("FASTEST_RESPONSE", "fastest_response"),
        (" Hybrid ", "hybrid"),
        ("RoundRobin", "round_robin"),
    ],
)
def test_the_seeds_spellings_are_accepted(spelling: str, name: str) -> None:
    assert make_strategy(spelling).name == name


def test_an_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"random_walk.*round_robin.*hybrid"):
        make_strategy("random_walk")


def test_each_call_makes_a_fresh_strategy() -> None:
    assert make_strategy("hybrid") is not make_strategy("hybrid")


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_every_strategy_picks_one_even_when_none_is_healthy(name: str) -> None:
    candidates = [
        candidate("a", healthy=False, latency=0.3, headroom=0.0, in_flight=2),
        candidate("b", healthy=False, in_flight=1, priority=1),
    ]
    strategy = make_strategy(name)
    rng = random.Random(1)
    for turn in range(5):
        assert strategy.pick(candidates, PickContext(rng, turn)) in candidates
    assert strategy.pick(candidates[1:], PickContext(rng)) is candidates[1]
