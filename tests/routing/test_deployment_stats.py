"""DeploymentStats: the sliding window, error rate, latency EWMAs and percentiles."""

from __future__ import annotations

import pytest

from llmgate.routing.stats import DeploymentStats


def record(stats: DeploymentStats, *, ok: bool, now: float, latency: float | None = 1.0) -> None:
    stats.started()
    stats.finished(ok=ok, latency=latency, now=now, error=None if ok else "upstream 503")


def test_in_flight_counts_started_minus_finished_and_never_goes_negative() -> None:
    stats = DeploymentStats()
    stats.started()
    stats.started()
    assert stats.in_flight == 2
    stats.finished(ok=True, latency=0.1, now=1.0)
    assert stats.in_flight == 1
    stats.finished(ok=True, latency=0.1, now=1.0)
    stats.finished(ok=True, latency=0.1, now=1.0)  # one finish too many (e.g. a double report)
    assert stats.in_flight == 0


def test_empty_window_has_no_requests_and_zero_error_rate() -> None:
    stats = DeploymentStats()
    assert (stats.requests, stats.error_rate, stats.latency(stream=False), stats.percentile(0.5)) == (
        0,
        0.0,
        None,
        None,
    )


def test_error_rate_and_last_error() -> None:
    stats = DeploymentStats()
    record(stats, ok=True, now=1.0)
    record(stats, ok=False, now=2.0)
    record(stats, ok=True, now=3.0)
    record(stats, ok=False, now=4.0)
    assert stats.requests == 4
    assert stats.error_rate == pytest.approx(0.5)
    assert (stats.last_error, stats.last_error_at) == ("upstream 503", 4.0)
    assert (stats.total_requests, stats.total_errors) == (4, 2)


def test_window_keeps_only_the_last_hundred_outcomes() -> None:
    stats = DeploymentStats()
    for i in range(50):
        record(stats, ok=False, now=i * 0.01)
    for i in range(100):
        record(stats, ok=True, now=1.0 + i * 0.01)
    assert stats.requests == 100
    assert stats.error_rate == 0.0  # the 50 failures were pushed out by count
    assert (stats.total_requests, stats.total_errors) == (150, 50)


def test_window_size_is_configurable() -> None:
    stats = DeploymentStats(window_size=3)
    for now, ok in ((1.0, False), (2.0, True), (3.0, True), (4.0, True)):
        record(stats, ok=ok, now=now)
    assert (stats.requests, stats.error_rate) == (3, 0.0)


def test_window_drops_outcomes_older_than_sixty_seconds() -> None:
    stats = DeploymentStats()
    record(stats, ok=False, now=0.0)
    record(stats, ok=False, now=10.0)
    record(stats, ok=True, now=30.0)
    record(stats, ok=True, now=65.0)  # 0.0 is now older than 60 s; 10.0 is not
    assert stats.requests == 3
    assert stats.error_rate == pytest.approx(1 / 3)
    record(stats, ok=True, now=75.0)  # 10.0 is now older than 60 s too
    assert stats.requests == 3
    assert stats.error_rate == 0.0


def test_outcome_exactly_at_the_window_edge_is_kept() -> None:
    stats = DeploymentStats()
    record(stats, ok=False, now=0.0)
    record(stats, ok=True, now=60.0)
    assert stats.requests == 2


def test_expire_trims_by_time_without_new_traffic() -> None:
    stats = DeploymentStats()
    record(stats, ok=False, now=0.0)
    stats.expire(30.0)
    assert stats.error_rate == 1.0
    stats.expire(61.0)
    assert (stats.requests, stats.error_rate) == (0, 0.0)
    assert stats.total_errors == 1  # lifetime counters are not windowed


def test_latency_is_an_ewma_with_alpha_point_three() -> None:
    stats = DeploymentStats()
    record(stats, ok=True, now=1.0, latency=1.0)
    assert stats.latency(stream=False) == pytest.approx(1.0)
    record(stats, ok=True, now=2.0, latency=2.0)
    assert stats.latency(stream=False) == pytest.approx(1.3)
    record(stats, ok=True, now=3.0, latency=2.0)
    assert stats.latency(stream=False) == pytest.approx(0.3 * 2.0 + 0.7 * 1.3)


def test_a_failure_without_latency_leaves_the_ewma_alone() -> None:
    stats = DeploymentStats()
    record(stats, ok=True, now=1.0, latency=1.0)
    record(stats, ok=False, now=2.0, latency=None)
    assert stats.latency(stream=False) == pytest.approx(1.0)
    assert stats.percentile(1.0) == pytest.approx(1.0)


def test_stream_latency_is_time_to_first_token_falling_back_to_latency() -> None:
    stats = DeploymentStats()
    record(stats, ok=True, now=1.0, latency=4.0)
    assert stats.latency(stream=True) == pytest.approx(4.0)  # no first-token time yet
    stats.started()
    stats.finished(ok=True, latency=4.0, first_token=0.5, now=2.0)
    assert stats.latency(stream=True) == pytest.approx(0.5)
    assert stats.latency(stream=False) == pytest.approx(4.0)
    stats.started()
    stats.finished(ok=True, latency=4.0, first_token=1.5, now=3.0)
    assert stats.latency(stream=True) == pytest.approx(0.3 * 1.5 + 0.7 * 0.5)


def test_percentiles_over_the_window() -> None:
    stats = DeploymentStats()
    for i in range(1, 101):
        record(stats, ok=True, now=float(i) * 0.1, latency=float(i))
    assert stats.percentile(0.5) == 50.0
    assert stats.percentile(0.95) == 95.0
    assert stats.percentile(0.07) == 7.0
    assert stats.percentile(1.0) == 100.0
    for i in range(101, 151):  # push the 50 fastest out of the window
        record(stats, ok=True, now=float(i) * 0.1, latency=float(i))
    assert stats.percentile(0.5) == 100.0


@pytest.mark.parametrize("q", [0.0, -0.1, 1.5])
def test_percentile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError, match="percentile"):
        DeploymentStats().percentile(q)
