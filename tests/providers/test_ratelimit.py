"""Rate-limit headers -> Headroom readings."""

from __future__ import annotations

import pytest

from llmgate.core.headroom import Headroom
from llmgate.providers.ratelimit import duration_seconds, openai_headroom


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6ms", 0.006),
        ("0s", 0.0),
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("1h2m3s", 3723.0),
        ("1.5s", 1.5),
        ("20", 20.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", [None, "", "soon", "5x", "1s and more"])
def test_unreadable_durations(text: str | None) -> None:
    assert duration_seconds(text) is None


def test_openai_headers() -> None:
    reading = openai_headroom(
        {
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": "9999",
            "x-ratelimit-reset-requests": "6ms",
            "x-ratelimit-limit-tokens": "50000000",
            "x-ratelimit-remaining-tokens": "49999992",
            "x-ratelimit-reset-tokens": "0s",
        }
    )
    assert reading == Headroom(10000, 9999, 0.006, 50000000, 49999992, 0.0)
    assert reading.fraction_left == pytest.approx(0.9999)


def test_mistral_minute_windows() -> None:
    reading = openai_headroom(
        {
            "x-ratelimit-limit-tokens-minute": "100000",
            "x-ratelimit-remaining-tokens-minute": "98321",
            "x-ratelimit-limit-req-minute": "100",
            "x-ratelimit-remaining-req-minute": "1",
        }
    )
    assert reading is not None
    assert (reading.requests_remaining, reading.requests_reset) == (1, 60.0)
    assert reading.fraction_left == pytest.approx(0.01)


def test_openrouter_epoch_reset() -> None:
    reading = openai_headroom(
        {"x-ratelimit-limit": "1", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1754667660000"},
        now=1754667650.0,
    )
    assert reading is not None
    assert (reading.requests_limit, reading.requests_remaining) == (1, 0)
    assert reading.requests_reset == pytest.approx(10.0)
    assert reading.fraction_left == 0.0


def test_no_headers_no_reading() -> None:
    assert openai_headroom({"content-type": "application/json"}) is None
    assert openai_headroom({"x-ratelimit-remaining-requests": "**REDACTED**"}) is None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "inf"}, None),
        ({"retry-after": "1e400"}, None),
        ({"retry-after-ms": "1e999", "retry-after": "3"}, 3.0),
        ({"retry-after": "99999999"}, 86_400.0),
        ({"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"}, 86_400.0),
    ],
)
def test_retry_after_is_finite_and_clamped(headers: dict[str, str], seconds: float | None) -> None:
    from llmgate.providers.ratelimit import retry_after_seconds

    assert retry_after_seconds(headers) == seconds
