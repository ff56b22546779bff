"""FastestResponse: lowest recent latency, measuring new deployments first."""

from __future__ import annotations

import random
from collections import Counter

from fake_deployments import candidate, deployment, from_stats

from llmgate.routing.stats import DeploymentStats
from llmgate.routing.strategies import FastestResponse, PickContext


def feed(stats: DeploymentStats, latency: float, times: int = 1, first_token: float | None = None) -> None:
    for _ in range(times):
        stats.started()
        stats.finished(ok=True, latency=latency, first_token=first_token, now=1.0)


def test_follows_the_fastest_as_latencies_change() -> None:
    a, b = deployment("a"), deployment("b")
    stats_a, stats_b = DeploymentStats(), DeploymentStats()
    feed(stats_a, 0.5)
    feed(stats_b, 1.0)
    strategy, rng = FastestResponse(epsilon=0.0), random.Random(1)
    assert strategy.pick([from_stats(a, stats_a), from_stats(b, stats_b)], PickContext(rng)).name == "a/m"
    feed(stats_a, 3.0, times=3)  # a slows down
    feed(stats_b, 0.4, times=3)  # b speeds up
    assert strategy.pick([from_stats(a, stats_a), from_stats(b, stats_b)], PickContext(rng)).name == "b/m"


def test_streams_are_ranked_by_time_to_first_token() -> None:
    a, b = deployment("a"), deployment("b")
    stats_a, stats_b = DeploymentStats(), DeploymentStats()
    feed(stats_a, 2.0, first_token=0.2)  # slow to finish, quick to start
    feed(stats_b, 1.0, first_token=0.8)
    strategy, rng = FastestResponse(epsilon=0.0), random.Random(1)

    def pick(stream: bool) -> str:
        candidates = [from_stats(a, stats_a, stream=stream), from_stats(b, stats_b, stream=stream)]
        return strategy.pick(candidates, PickContext(rng)).name

    assert (pick(stream=False), pick(stream=True)) == ("b/m", "a/m")


def test_an_unmeasured_deployment_is_tried_first_once() -> None:
    strategy, rng = FastestResponse(epsilon=0.0), random.Random(1)
    fresh = [candidate("known", latency=0.1), candidate("new")]
    assert strategy.pick(fresh, PickContext(rng)).name == "new/m"
    being_measured = [candidate("known", latency=0.1), candidate("new", in_flight=1)]
    assert strategy.pick(being_measured, PickContext(rng)).name == "known/m"


def test_still_picks_when_nothing_is_measured_and_everything_is_busy() -> None:
    candidates = [candidate("a", in_flight=2), candidate("b", in_flight=1)]
    assert FastestResponse(epsilon=0.0).pick(candidates, PickContext(random.Random(1))).name == "b/m"


def test_prefers_healthy_over_faster_unhealthy() -> None:
    candidates = [candidate("fast", latency=0.1, healthy=False), candidate("ok", latency=0.5)]
    assert FastestResponse(epsilon=0.0).pick(candidates, PickContext(random.Random(1))).name == "ok/m"


def test_default_exploration_remeasures_the_slower_now_and_then() -> None:
    candidates = [candidate("fast", latency=0.2), candidate("slow", latency=1.0)]
    rng = random.Random(4)
    got = Counter(FastestResponse().pick(candidates, PickContext(rng)).name for _ in range(2000))
    assert got["fast/m"] > 0.9 * 2000
    assert got["slow/m"] > 0
