"""CircuitBreaker: closed -> open -> half-open -> closed (or open again, for longer); which runs of failures
open it; panic verdicts."""

from __future__ import annotations

import random

import pytest

from clock import FakeClock
from llmgate.routing.breaker import BreakerPolicy, BreakerState, CircuitBreaker
from llmgate.routing.health import DeploymentHealth
from llmgate.routing.stats import DeploymentStats


def opened_at(now: float, breaker: CircuitBreaker) -> CircuitBreaker:
    for _ in range(breaker.policy.failure_threshold):
        breaker.record_failure(now)
    assert breaker.state(now) is BreakerState.OPEN
    return breaker


def test_opens_on_the_fifth_consecutive_failure() -> None:
    breaker = CircuitBreaker()
    opened = [breaker.record_failure(float(i)) for i in range(5)]
    assert opened == [False, False, False, False, True]
    assert breaker.state(4.0) is BreakerState.OPEN
    assert breaker.opened_until == pytest.approx(4.0 + 30.0)
    assert breaker.consecutive_failures == 5


def test_a_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker()
    for _ in range(4):
        breaker.record_failure(1.0)
    breaker.record_success(1.0)
    assert breaker.consecutive_failures == 0
    for _ in range(4):
        assert not breaker.record_failure(2.0)
    assert breaker.state(2.0) is BreakerState.CLOSED


def test_opens_on_error_rate_once_the_window_has_enough_requests() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=100))
    assert not breaker.record_failure(1.0, errors=18, requests=19)
    assert not breaker.record_failure(1.0, errors=49, requests=100)
    assert breaker.record_failure(1.0, errors=10, requests=20)
    assert breaker.state(1.0) is BreakerState.OPEN


def test_open_rejects_until_the_cooldown_elapses() -> None:
    breaker = opened_at(100.0, CircuitBreaker())
    assert not breaker.allow(100.0)
    assert not breaker.allow(129.9)
    assert breaker.state(129.9) is BreakerState.OPEN
    assert breaker.state(130.0) is BreakerState.HALF_OPEN
    assert breaker.allow(130.0)


def test_closed_always_allows() -> None:
    breaker = CircuitBreaker()
    assert all(breaker.allow(float(i)) for i in range(10))


def test_half_open_lets_exactly_one_probe_out() -> None:
    breaker = opened_at(0.0, CircuitBreaker())
    assert breaker.state(31.0) is BreakerState.HALF_OPEN  # reading the state does not take the probe
    assert breaker.allow(31.0)
    assert not breaker.allow(31.0)
    assert not breaker.allow(40.0)


def test_a_lost_probe_is_replaced_after_the_probe_timeout() -> None:
    breaker = opened_at(0.0, CircuitBreaker(BreakerPolicy(probe_timeout=60.0)))
    assert breaker.allow(30.0)
    assert not breaker.allow(89.9)
    assert breaker.allow(90.0)


def test_probe_success_closes_and_resets_the_cooldown() -> None:
    breaker = opened_at(0.0, CircuitBreaker())
    assert breaker.allow(30.0)
    assert breaker.record_failure(30.0)  # failed probe: open for 60 s
    assert breaker.allow(90.0)
    breaker.record_success(90.0)
    assert breaker.state(90.0) is BreakerState.CLOSED
    assert breaker.opened_until is None
    assert breaker.allow(90.0) and breaker.allow(90.0)
    opened_at(100.0, breaker)
    assert breaker.opened_until == pytest.approx(130.0)  # back to the base cooldown


def test_probe_failure_reopens_with_a_doubled_capped_cooldown() -> None:
    breaker = opened_at(0.0, CircuitBreaker())
    now = 0.0
    cooldowns = []
    for _ in range(6):
        assert breaker.opened_until is not None
        now = breaker.opened_until
        assert breaker.allow(now)
        assert breaker.record_failure(now)
        assert breaker.opened_until is not None
        cooldowns.append(breaker.opened_until - now)
    assert cooldowns == [60.0, 120.0, 240.0, 300.0, 300.0, 300.0]


def test_results_arriving_while_open_change_nothing() -> None:
    breaker = opened_at(0.0, CircuitBreaker())
    breaker.record_success(10.0)  # a request sent before the breaker opened
    assert breaker.state(10.0) is BreakerState.OPEN
    assert not breaker.record_failure(10.0)
    assert breaker.opened_until == pytest.approx(30.0)


def test_trip_opens_until_the_given_time() -> None:
    breaker = CircuitBreaker()
    breaker.trip(50.0)
    assert breaker.state(49.0) is BreakerState.OPEN
    assert not breaker.allow(49.0)
    assert breaker.state(50.0) is BreakerState.HALF_OPEN
    assert breaker.allow(50.0)


def test_trip_never_shortens_a_longer_open_period() -> None:
    breaker = opened_at(0.0, CircuitBreaker())
    breaker.trip(10.0)
    assert breaker.opened_until == pytest.approx(30.0)
    breaker.trip(100.0)
    assert breaker.opened_until == pytest.approx(100.0)


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(failure_threshold=0)
    with pytest.raises(ValueError):
        BreakerPolicy(cooldown=60.0, max_cooldown=30.0)


# --- a run of failures against the rate seen before it ------------------------------------------------


def run_until_open(breaker: CircuitBreaker, *, before: int, failed_before: int, limit: int = 100) -> int:
    """Feed consecutive failures after a window of ``before`` outcomes (``failed_before`` of them failed);
    how many it took to open."""
    for run in range(1, limit + 1):
        if breaker.record_failure(1.0, errors=failed_before + run, requests=before + run):
            return run
    raise AssertionError(f"still closed after {limit} failures in a row")


@pytest.mark.parametrize(
    ("failed_before", "needed"),
    [(0, 5), (4, 7), (16, 13), (24, 18)],
    ids=["healthy-then-dead", "p=0.05", "p=0.2", "p=0.3"],
)
def test_a_run_must_be_implausible_at_the_rate_seen_before_it(failed_before: int, needed: int) -> None:
    # 80 outcomes before the run: p = failed_before / 80; the run opens it once p ** run < 1e-9.
    breaker = CircuitBreaker(BreakerPolicy(error_rate_threshold=1.0))  # the run rule alone
    assert run_until_open(breaker, before=80, failed_before=failed_before) == needed


def test_a_run_opens_after_the_threshold_when_the_window_is_too_small_to_judge_the_rate() -> None:
    # Fewer than min_requests (20) outcomes before the run: the classic five in a row, whatever the rate.
    assert run_until_open(CircuitBreaker(), before=19, failed_before=6) == 5
    # A run longer than the window (the older outcomes expired): nothing to weigh it against.
    breaker = CircuitBreaker()
    assert [breaker.record_failure(1.0, errors=3, requests=3) for _ in range(5)] == [False] * 4 + [True]


def test_the_error_rate_rule_still_opens_in_the_middle_of_a_short_run() -> None:
    breaker = CircuitBreaker()
    assert not breaker.record_failure(1.0, errors=49, requests=100)
    assert breaker.record_failure(1.0, errors=50, requests=100)
    assert breaker.consecutive_failures == 2


def feed(health: DeploymentHealth, clock: FakeClock, *, ok: bool) -> bool:
    """One outcome through the stats window and the breaker, as failover reports it; whether it opened."""
    clock.advance(0.01)  # 100 requests a second: the window (100 outcomes, 60 s) is bounded by count
    health.stats.finished(ok=ok, latency=0.01, now=clock())
    if ok:
        health.breaker.record_success(clock())
        return False
    return health.count_failure(clock())


@pytest.mark.parametrize(("rate", "old_trips"), [(0.05, 0), (0.2, 10), (0.3, 100)])
def test_random_failures_at_a_steady_rate_never_open_the_breaker(rate: float, old_trips: int) -> None:
    clock, rng = FakeClock(0.0), random.Random(20240607)
    health = DeploymentHealth(DeploymentStats(), CircuitBreaker())
    trips = runs_of_five = run = 0
    for _ in range(100_000):
        ok = rng.random() >= rate
        run = 0 if ok else run + 1
        runs_of_five += run == 5
        trips += feed(health, clock, ok=ok)
    assert trips == 0
    assert runs_of_five >= old_trips  # each would have opened it under "five in a row" alone


def test_a_healthy_deployment_that_dies_opens_at_exactly_the_threshold() -> None:
    clock, rng = FakeClock(0.0), random.Random(7)
    health = DeploymentHealth(DeploymentStats(), CircuitBreaker())
    for _ in range(500):
        assert not feed(health, clock, ok=True)
    assert [feed(health, clock, ok=False) for _ in range(5)] == [False] * 4 + [True]
    assert health.breaker.state(clock()) is BreakerState.OPEN

    flaky = DeploymentHealth(DeploymentStats(), CircuitBreaker())  # one failing a fifth, then dying
    for _ in range(500):
        feed(flaky, clock, ok=rng.random() >= 0.2)
    assert flaky.breaker.state(clock()) is BreakerState.CLOSED
    needed = next(n for n in range(1, 60) if feed(flaky, clock, ok=False))
    assert 10 <= needed <= 20  # about 13 at p = 0.2: long before the error-rate rule (about 38 here)


# --- panic verdicts and fails_everything ----------------------------------------------------------------


def test_panic_verdicts_never_move_an_open_or_half_open_breaker() -> None:
    breaker = opened_at(0.0, CircuitBreaker())
    assert not breaker.record_failure(10.0, panic=True)
    breaker.record_success(10.0, panic=True)
    assert breaker.state(10.0) is BreakerState.OPEN
    assert breaker.allow(30.0)  # half-open: the probe is out
    assert not breaker.record_failure(31.0, panic=True)  # a panic failure does not reopen (nor double)
    breaker.record_success(31.0, panic=True)  # a panic success does not close: the probe decides
    assert breaker.state(31.0) is BreakerState.HALF_OPEN
    assert breaker.opened_until == pytest.approx(30.0)
    breaker.record_success(32.0)  # the probe
    assert breaker.state(32.0) is BreakerState.CLOSED


def test_a_panic_failure_arriving_after_the_breaker_closed_counts_as_any() -> None:
    breaker = CircuitBreaker(BreakerPolicy(failure_threshold=1))
    assert breaker.record_failure(1.0, panic=True)


def test_fails_everything_counts_failures_in_every_state_until_a_success() -> None:
    breaker = opened_at(0.0, CircuitBreaker(BreakerPolicy(min_requests=8)))
    assert not breaker.fails_everything
    for _ in range(3):
        breaker.record_failure(1.0, panic=True)  # open: failures still count in the run
    assert breaker.consecutive_failures == 8
    assert breaker.fails_everything
    breaker.record_success(2.0, panic=True)  # any success says it does not fail everything
    assert not breaker.fails_everything
    assert breaker.state(2.0) is BreakerState.OPEN


def test_policy_rejects_an_implausibility_outside_zero_one() -> None:
    for value in (0.0, 1.0):
        with pytest.raises(ValueError):
            BreakerPolicy(implausible_run=value)
