"""Google API errors -> the core error tree.

Gemini answers errors in Google's envelope ``{"error": {"code", "message", "status", "details": [...]}}``
(https://ai.google.dev/gemini-api/docs/troubleshooting#error-codes, https://google.aip.dev/193). The
canonical ``status`` and the typed ``details`` decide the class, not the HTTP code alone: an invalid API
key is a 400 ``INVALID_ARGUMENT`` whose ``ErrorInfo.reason`` is ``API_KEY_INVALID``, and a quota error
says when to retry only in ``RetryInfo.retryDelay`` (no ``Retry-After`` header).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from llmgate.core.errors import (
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    ProviderAuthError,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from llmgate.providers.ratelimit import retry_after_seconds

# Gemini has no error code for an over-long prompt, only this sentence: "The input token count (1283524)
# exceeds the maximum number of tokens allowed (1048576)."
_CONTEXT_WORDS = re.compile(r"token count.*exceeds the maximum number of tokens", re.IGNORECASE | re.DOTALL)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)s")
# ErrorInfo reasons that mean the gateway's own key or project cannot call the API
# (https://cloud.google.com/apis/design/errors#error_info).
_AUTH_REASONS = frozenset({"SERVICE_DISABLED", "CONSUMER_SUSPENDED", "ACCESS_TOKEN_EXPIRED"})
_AUTH_STATUSES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})
_MAX_MESSAGE = 500


class GoogleError(msgspec.Struct):
    """The inside of Google's error envelope."""

    code: int = 0
    message: str = ""
    status: str = ""
    details: list[dict[str, Any]] = []


class _Envelope(msgspec.Struct):
    error: GoogleError


_envelope = msgspec.json.Decoder(_Envelope | list[_Envelope])


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
    """An error response -> the matching core error."""
    try:
        envelope = _envelope.decode(body) if body else None
    except msgspec.DecodeError:
        envelope = None
    if isinstance(envelope, list):  # streamGenerateContent without alt=sse wraps it in an array
        envelope = envelope[0] if envelope else None
    if envelope is None:
        text = body.decode("utf-8", "replace").strip()[:_MAX_MESSAGE]
        error = GoogleError(code=status, message=text or f"upstream answered HTTP {status}")
    else:
        error = envelope.error
    return error_from_google(error, status=status, retry_after=retry_after_seconds(headers))


def error_from_google(error: GoogleError, *, status: int, retry_after: float | None = None) -> GatewayError:
    """Classify by Google's canonical status and error details, then by HTTP status."""
    message, google = error.message or f"upstream answered HTTP {status}", error.status
    reason = _detail(error.details, "ErrorInfo", "reason")
    if (isinstance(reason, str) and (reason.startswith("API_KEY_") or reason in _AUTH_REASONS)) or (
        google in _AUTH_STATUSES or status in (401, 403)
    ):
        return ProviderAuthError(message)
    if google == "NOT_FOUND" or status == 404:
        return ModelNotFound(message, code="model_not_found")
    if google == "RESOURCE_EXHAUSTED" or status == 429:
        delay = retry_after if retry_after is not None else _retry_delay(error.details)
        return RateLimited(message, retry_after=delay)
    if google == "FAILED_PRECONDITION":
        # e.g. "User location is not supported for the API use": this account cannot serve, another may.
        return UpstreamError(message)
    if google == "INVALID_ARGUMENT" or status in (400, 413, 422):
        if _CONTEXT_WORDS.search(message):
            return ContextLengthExceeded(message, param="messages")
        return InvalidRequest(message, param=_field(error.details), code="invalid_request")
    if google == "DEADLINE_EXCEEDED" or status == 504:
        return UpstreamTimeout(message)
    if google == "UNAVAILABLE" or status == 503:
        return Overloaded(message, retry_after=retry_after)
    if status >= 500 or google in ("INTERNAL", "UNKNOWN"):
        return UpstreamError(message, retry_after=retry_after)
    return UpstreamError(f"HTTP {status} {google}: {message}" if google else f"HTTP {status}: {message}")


def _detail(details: list[dict[str, Any]], kind: str, key: str) -> Any:
    """A field of the first detail of a type (``type.googleapis.com/google.rpc.<kind>``)."""
    for detail in details:
        if str(detail.get("@type", "")).endswith(f"google.rpc.{kind}") and key in detail:
            return detail[key]
    return None


def _retry_delay(details: list[dict[str, Any]]) -> float | None:
    """``RetryInfo.retryDelay``: a protobuf Duration, ``"48s"`` / ``"0.5s"`` in JSON."""
    delay = _detail(details, "RetryInfo", "retryDelay")
    if isinstance(delay, str) and (match := _DURATION.fullmatch(delay.strip())):
        return float(match.group(1))
    if isinstance(delay, dict):  # the proto form, in case a proxy re-serialises it
        return float(delay.get("seconds", 0)) + float(delay.get("nanos", 0)) / 1e9
    return None


def _field(details: list[dict[str, Any]]) -> str | None:
    """The first ``BadRequest.fieldViolations[].field``, which names the offending request field."""
    violations = _detail(details, "BadRequest", "fieldViolations")
    if isinstance(violations, list) and violations and isinstance(violations[0], dict):
        field = violations[0].get("field")
        return field if isinstance(field, str) else None
    return None
