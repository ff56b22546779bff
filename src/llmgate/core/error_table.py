"""The one table from core errors to the OpenAI wire: status, error ``type`` and body (SPEC.md section 13).

The server answers with it and batch output files record failed items with it, so both agree.
"""

from __future__ import annotations

import msgspec

from llmgate.core.errors import (
    AuthenticationError,
    Conflict,
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

# First match wins, so subclasses come before their bases. Each error carries its HTTP status (the one
# the OpenAI SDK maps to its error classes: 400 BadRequestError, 401 AuthenticationError, 403
# PermissionDeniedError, 404 NotFoundError, 429 RateLimitError, >= 500 InternalServerError); this table
# gives the OpenAI error ``type`` that goes with it.
TABLE: tuple[tuple[type[GatewayError], str], ...] = (
    (PayloadTooLarge, "invalid_request_error"),
    (ContextLengthExceeded, "invalid_request_error"),
    (InvalidRequest, "invalid_request_error"),
    (AuthenticationError, "authentication_error"),
    (PermissionDenied, "permission_error"),
    (ModelNotFound, "invalid_request_error"),
    (NotFound, "not_found_error"),
    (Conflict, "invalid_request_error"),
    (QuotaExceeded, "insufficient_quota"),
    (RateLimited, "rate_limit_error"),
    (ProviderAuthError, "upstream_error"),
    (UpstreamTimeout, "timeout_error"),
    (Overloaded, "overloaded_error"),
    (UpstreamError, "upstream_error"),
)


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
    for kind, error_type in TABLE:
        if isinstance(error, kind):
            return error.status, error_type
    return error.status, "api_error"


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
