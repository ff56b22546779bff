"""Errors on the way out over HTTP: the table (``core.error_table``) plus the headers (SPEC.md section 13)."""

from __future__ import annotations

import math

from llmgate.core.caller import LimitStatus
from llmgate.core.error_table import TABLE, classify, encode_error, error_body, error_message
from llmgate.core.errors import GatewayError

__all__ = [
    "TABLE",
    "classify",
    "encode_error",
    "error_body",
    "error_headers",
    "error_message",
    "limit_headers",
]

DEFAULT_RETRY_AFTER = 1


def error_headers(error: GatewayError, status: int) -> dict[str, str]:
    """``Retry-After`` on every 429 and 503 (SPEC.md section 2.4) and Anthropic's 529,
    ``X-RateLimit-*`` when known."""
    headers = {}
    if status in (429, 503, 529):
        wait = error.retry_after if error.retry_after is not None else DEFAULT_RETRY_AFTER
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    if error.request_id is not None:
        headers["x-request-id"] = error.request_id
    headers.update(limit_headers(error.limit))
    return headers


def limit_headers(status: LimitStatus | None) -> dict[str, str]:
    """``X-RateLimit-*`` for the tightest request limit that applies to the caller."""
    if status is None:
        return {}
    return {
        "X-RateLimit-Limit": str(status.limit),
        "X-RateLimit-Remaining": str(status.remaining),
        "X-RateLimit-Reset": str(max(1, math.ceil(status.reset))),
    }
