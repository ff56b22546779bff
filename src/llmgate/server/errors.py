"""The one table from core errors to HTTP: status, OpenAI error ``type``, and headers (SPEC.md section 13)."""

from __future__ import annotations

import math

import msgspec

from llmgate.core.errors import (
    AuthenticationError,
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    ProviderAuthError,
    QuotaExceeded,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    redact,
)

# First match wins, so subclasses come before their bases. The statuses are the ones the OpenAI SDK
# maps to its error classes (400 BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError,
# 404 NotFoundError, 429 RateLimitError, >= 500 InternalServerError).
TABLE: tuple[tuple[type[GatewayError], int, str], ...] = (
    (PayloadTooLarge, 413, "invalid_request_error"),
    (ContextLengthExceeded, 400, "invalid_request_error"),
    (InvalidRequest, 400, "invalid_request_error"),
    (AuthenticationError, 401, "authentication_error"),
    (PermissionDenied, 403, "permission_error"),
    (ModelNotFound, 404, "invalid_request_error"),
    (NotFound, 404, "not_found_error"),
    (QuotaExceeded, 429, "insufficient_quota"),
    (RateLimited, 429, "rate_limit_error"),
    (ProviderAuthError, 502, "upstream_error"),
    (UpstreamTimeout, 504, "timeout_error"),
    (Overloaded, 503, "overloaded_error"),
    (UpstreamError, 502, "upstream_error"),
    (GatewayError, 500, "api_error"),
)

DEFAULT_RETRY_AFTER = 1


class _Body(msgspec.Struct, gc=False):
    message: str
    type: str
    param: str | None
    code: str | None


class _Envelope(msgspec.Struct, gc=False):
    error: _Body


_encoder = msgspec.json.Encoder()


def classify(error: GatewayError) -> tuple[int, str]:
    """The HTTP status and OpenAI error type of an error."""
    for kind, status, error_type in TABLE:
        if isinstance(error, kind):
            return status, error_type
    return 500, "api_error"


def error_message(error: GatewayError) -> str:
    """The client-facing message, naming the provider that failed, with anything key-like removed."""
    message = error.message
    if error.provider and not message.startswith(error.provider):
        message = f"{error.provider}: {message}"
    return redact(message)


def error_body(error: GatewayError) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}``."""
    _, error_type = classify(error)
    return encode_error(error_message(error), error_type, error.param, error.code)


def encode_error(message: str, error_type: str, param: str | None, code: str | None) -> bytes:
    """An OpenAI error body."""
    return _encoder.encode(_Envelope(_Body(message, error_type, param, code)))


def error_headers(error: GatewayError, status: int) -> dict[str, str]:
    """``Retry-After`` on every 429 and 503 (SPEC.md section 2.4)."""
    if status in (429, 503):
        wait = error.retry_after if error.retry_after is not None else DEFAULT_RETRY_AFTER
        return {"Retry-After": str(max(1, math.ceil(wait)))}
    return {}
