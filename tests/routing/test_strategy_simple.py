"""Round robin, weighted and priority: the configured split, exactly or within tolerance."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest
from fake_deployments import candidate

from llmgate.routing.strategies import Candidate, PickContext, Priority, RoundRobin, Strategy, Weighted


def shares(
    strategy: Strategy, candidates: Sequence[Candidate], picks: int, seed: int = 1
) -> dict[str, float]:
    rng = random.Random(seed)
    counts = Counter(strategy.pick(candidates, PickContext(rng, turn)).name for turn in range(picks))
    return {name: count / picks for name, count in counts.items()}


def test_candidate_reads_name_weight_and_priority_from_its_deployment() -> None:
    c = candidate("openai", weight=3.0, priority=2)
    assert (c.name, c.weight, c.priority) == ("openai/m", 3.0, 2)


def test_round_robin_cycles_exactly_with_the_turn() -> None:
    candidates = [candidate("a"), candidate("b"), candidate("c")]
    rng = random.Random(1)
    names = [RoundRobin().pick(candidates, PickContext(rng, turn)).name for turn in range(7)]
    assert names == ["a/m", "b/m", "c/m", "a/m", "b/m", "c/m", "a/m"]


def test_round_robin_ignores_health_so_a_half_open_deployment_gets_its_turn() -> None:
    candidates = [candidate("a"), candidate("b", healthy=False)]
    assert RoundRobin().pick(candidates, PickContext(random.Random(1), 1)).name == "b/m"


def test_weighted_two_to_one_sends_two_thirds_to_the_heavier() -> None:
    got = shares(Weighted(), [candidate("heavy", weight=2.0), candidate("light", weight=1.0)], 6000)
    assert got["heavy/m"] == pytest.approx(2 / 3, abs=0.05)
    assert got["light/m"] == pytest.approx(1 / 3, abs=0.05)


def test_weighted_never_picks_a_zero_weight_and_is_uniform_when_all_are_zero() -> None:
    got = shares(Weighted(), [candidate("a", weight=1.0), candidate("zero", weight=0.0)], 2000)
    assert "zero/m" not in got
    uniform = shares(Weighted(), [candidate("a", weight=0.0), candidate("b", weight=0.0)], 4000)
    assert uniform["a/m"] == pytest.approx(0.5, abs=0.05)


def test_weighted_is_reproducible_with_a_seed() -> None:
    candidates = [candidate("a", weight=2.0), candidate("b")]
    first = [Weighted().pick(candidates, PickContext(random.Random(9))).name for _ in range(3)]
    assert first == [Weighted().pick(candidates, PickContext(random.Random(9))).name for _ in range(3)]


def test_priority_serves_the_lowest_tier_weighted_within_it() -> None:
    candidates = [
        candidate("backup", priority=1, weight=10.0),
        candidate("main", priority=0, weight=2.0),
        candidate("main2", priority=0, weight=1.0),
    ]
    got = shares(Priority(), candidates, 6000)
    assert "backup/m" not in got
    assert got["main/m"] == pytest.approx(2 / 3, abs=0.05)


def test_priority_moves_to_the_next_tier_once_the_first_is_used_up() -> None:
    tiers = [candidate("t2", priority=2), candidate("t1", priority=1), candidate("t1b", priority=1)]
    strategy, rng = Priority(), random.Random(5)
    tried: list[str] = []
    remaining = list(tiers)
    while remaining:
        chosen = strategy.pick(remaining, PickContext(rng))
        tried.append(chosen.name)
        remaining.remove(chosen)
    assert sorted(tried[:2]) == ["t1/m", "t1b/m"]
    assert tried[2] == "t2/m"
