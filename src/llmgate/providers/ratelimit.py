"""Rate-limit headers of OpenAI-style servers -> ``Headroom`` (routing steers away from keys near 0).

Shapes seen in real traffic (../shared/provider-recordings): OpenAI and Azure
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` with resets like ``6ms``, ``1s``, ``6m0s``;
Mistral ``x-ratelimit-{limit,remaining}-{req,tokens}-minute``; OpenRouter ``x-ratelimit-{limit,remaining}``
(requests) with ``x-ratelimit-reset`` in epoch milliseconds.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from llmgate.core.headroom import Headroom

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_MINUTE = 60.0
MAX_RETRY_AFTER = 86_400.0


def duration_seconds(value: str | None) -> float | None:
    """``6ms`` / ``1s`` / ``6m0s`` / ``1h2m`` / a bare number of seconds -> seconds."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value.strip():
        return None
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def openai_headroom(headers: Mapping[str, str], *, now: float | None = None) -> Headroom | None:
    """The reading in OpenAI-style headers, or ``None`` when there are none."""
    if not any(name[:12].lower() == "x-ratelimit-" for name in headers):
        return None  # most self-hosted servers send none: one pass instead of a dozen lookups
    get = headers.get
    requests_limit = _int(get("x-ratelimit-limit-requests") or get("x-ratelimit-limit-req-minute"))
    tokens_limit = _int(get("x-ratelimit-limit-tokens") or get("x-ratelimit-limit-tokens-minute"))
    requests_remaining = _int(
        get("x-ratelimit-remaining-requests") or get("x-ratelimit-remaining-req-minute")
    )
    tokens_remaining = _int(get("x-ratelimit-remaining-tokens") or get("x-ratelimit-remaining-tokens-minute"))
    requests_reset = duration_seconds(get("x-ratelimit-reset-requests"))
    tokens_reset = duration_seconds(get("x-ratelimit-reset-tokens"))
    if get("x-ratelimit-limit-req-minute") and requests_reset is None:
        requests_reset = _MINUTE
    if get("x-ratelimit-limit-tokens-minute") and tokens_reset is None:
        tokens_reset = _MINUTE
    if requests_limit is None and get("x-ratelimit-limit"):  # OpenRouter: one request window
        requests_limit = _int(get("x-ratelimit-limit"))
        requests_remaining = _int(get("x-ratelimit-remaining"))
        requests_reset = _epoch_ms_from_now(get("x-ratelimit-reset"), now)
    reading = Headroom(
        requests_limit, requests_remaining, requests_reset, tokens_limit, tokens_remaining, tokens_reset
    )
    return None if reading == Headroom() else reading


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def _epoch_ms_from_now(value: str | None, now: float | None) -> float | None:
    stamp = _int(value)
    if stamp is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, stamp / 1000 - current)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), if present and readable.

    Values are clamped to a day: a hostile or broken upstream must not make the gateway wait forever
    or fail on ``inf``.
    """
    millis = headers.get("retry-after-ms")
    if millis:
        seconds = _finite(millis)
        # Azure sends "retry-after-ms: 0" next to "retry-after: 1"; a zero hint is no hint.
        if seconds is not None and seconds > 0:
            return min(seconds / 1000, MAX_RETRY_AFTER)
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = _finite(value)
    if seconds is None:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


def _finite(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
