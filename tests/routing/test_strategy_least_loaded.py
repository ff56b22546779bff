"""LeastLoaded: fewest in flight, spreading concurrent load."""

from __future__ import annotations

import random
from collections import Counter

from fake_deployments import candidate, deployment, from_stats

from llmgate.routing.stats import DeploymentStats
from llmgate.routing.strategies import LeastLoaded, PickContext


def test_picks_the_fewest_in_flight() -> None:
    candidates = [candidate("a", in_flight=3), candidate("b", in_flight=1), candidate("c", in_flight=2)]
    assert LeastLoaded().pick(candidates, PickContext(random.Random(1))).name == "b/m"


def test_ties_go_to_the_lowest_error_rate() -> None:
    candidates = [candidate("a", in_flight=1, error_rate=0.4), candidate("b", in_flight=1, error_rate=0.1)]
    assert LeastLoaded().pick(candidates, PickContext(random.Random(1))).name == "b/m"


def test_full_ties_are_broken_at_random() -> None:
    candidates = [candidate("a"), candidate("b")]
    rng = random.Random(2)
    got = Counter(LeastLoaded().pick(candidates, PickContext(rng)).name for _ in range(400))
    assert min(got.values()) > 100


def test_prefers_healthy_but_still_picks_when_none_is() -> None:
    candidates = [candidate("idle", healthy=False), candidate("busy", in_flight=5)]
    assert LeastLoaded().pick(candidates, PickContext(random.Random(1))).name == "busy/m"
    sick = [candidate("x", healthy=False, in_flight=2), candidate("y", healthy=False)]
    assert LeastLoaded().pick(sick, PickContext(random.Random(1))).name == "y/m"


def test_spreads_concurrent_load_and_refills_the_one_that_finishes() -> None:
    targets = [deployment("a"), deployment("b"), deployment("c")]
    stats = {target.name: DeploymentStats() for target in targets}
    strategy, rng = LeastLoaded(), random.Random(3)

    def start_one() -> str:
        chosen = strategy.pick([from_stats(t, stats[t.name]) for t in targets], PickContext(rng))
        stats[chosen.name].started()
        return chosen.name

    first = Counter(start_one() for _ in range(30))
    assert first == {"a/m": 10, "b/m": 10, "c/m": 10}
    for _ in range(4):
        stats["b/m"].finished(ok=True, latency=0.2, now=1.0)
    assert Counter(start_one() for _ in range(4)) == {"b/m": 4}
