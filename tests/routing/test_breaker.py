"""CircuitBreaker: closed -> open -> half-open -> closed (or open again, for longer)."""

from __future__ import annotations

import pytest

from llmgate.routing.breaker import BreakerPolicy, BreakerState, CircuitBreaker


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
    assert not breaker.record_failure(1.0, error_rate=0.9, requests=19)
    assert not breaker.record_failure(1.0, error_rate=0.49, requests=50)
    assert breaker.record_failure(1.0, error_rate=0.5, requests=20)
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
