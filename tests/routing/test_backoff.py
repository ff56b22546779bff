"""Backoff: exponential, capped, jittered, and never shorter than Retry-After."""

from __future__ import annotations

import random

import pytest

from llmgate.routing.backoff import Backoff


def test_grows_exponentially_up_to_the_cap() -> None:
    backoff = Backoff(jitter=0.0)
    rng = random.Random(1)
    delays = [backoff.delay(attempt, retry_after=None, rng=rng) for attempt in range(1, 9)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])


def test_a_huge_attempt_number_is_the_cap() -> None:
    assert Backoff(jitter=0.0).delay(5000, retry_after=None, rng=random.Random(1)) == 5.0


def test_jitter_stays_within_its_fraction_and_spreads() -> None:
    backoff = Backoff()  # jitter 0.5
    rng = random.Random(42)
    delays = [backoff.delay(4, retry_after=None, rng=rng) for _ in range(2000)]
    assert all(0.4 <= d <= 0.8 for d in delays)  # 0.8 * (1 - 0.5 * [0, 1))
    assert min(delays) < 0.45
    assert max(delays) > 0.75


def test_same_seed_same_delays() -> None:
    backoff = Backoff()
    first = [backoff.delay(3, retry_after=None, rng=random.Random(7)) for _ in range(3)]
    second = [backoff.delay(3, retry_after=None, rng=random.Random(7)) for _ in range(3)]
    assert first == second


def test_retry_after_is_a_floor() -> None:
    backoff = Backoff()
    rng = random.Random(3)
    assert backoff.delay(1, retry_after=3.0, rng=rng) == 3.0
    assert backoff.delay(1, retry_after=0.0, rng=rng) <= 0.1
    assert Backoff(jitter=0.0).delay(7, retry_after=1.0, rng=rng) == 5.0  # longer backoff wins


def test_rejects_attempt_zero_and_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().delay(0, retry_after=None, rng=random.Random(1))
    with pytest.raises(ValueError):
        Backoff(jitter=1.5)
    with pytest.raises(ValueError):
        Backoff(factor=0.5)
