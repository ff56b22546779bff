"""Anthropic's rate-limit headers -> ``Headroom``.

``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``, resets as
RFC 3339 timestamps (https://docs.anthropic.com/en/api/rate-limits#response-headers). The ``tokens``
family is the most restrictive token limit in effect; when it is absent, the tighter of the input and
output families stands in for it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime

from llmgate.core.headroom import Headroom
from llmgate.providers.ratelimit import retry_after_seconds

_PREFIX = "anthropic-ratelimit-"


def anthropic_headroom(headers: Mapping[str, str], *, now: float | None = None) -> Headroom | None:
    """The reading in a response's headers, or ``None`` when it carries none."""
    current = time.time() if now is None else now
    requests = _family(headers, "requests", current)
    tokens = _family(headers, "tokens", current)
    if tokens == (None, None, None):
        tokens = _tighter(
            _family(headers, "input-tokens", current), _family(headers, "output-tokens", current)
        )
    reading = Headroom(*requests, *tokens, retry_after=retry_after_seconds(headers))
    return None if reading == Headroom() else reading


_Family = tuple[int | None, int | None, float | None]


def _family(headers: Mapping[str, str], name: str, now: float) -> _Family:
    get = headers.get
    return (
        _int(get(f"{_PREFIX}{name}-limit")),
        _int(get(f"{_PREFIX}{name}-remaining")),
        _seconds_until(get(f"{_PREFIX}{name}-reset"), now),
    )


def _tighter(first: _Family, second: _Family) -> _Family:
    def fraction(family: _Family) -> float:
        limit, remaining, _ = family
        return remaining / limit if limit and remaining is not None else 2.0

    if first[0] is None:
        return second
    return second if fraction(second) < fraction(first) else first


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _seconds_until(stamp: str | None, now: float) -> float | None:
    if not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None  # RFC 3339 always carries an offset; a bare time is not one we can place
    return max(0.0, moment.timestamp() - now)
