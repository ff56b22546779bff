"""Anthropic error bodies and in-stream ``error`` events -> the core error tree.

Anthropic names each error by ``error.type`` (https://docs.anthropic.com/en/api/errors); the HTTP status
is used only when the body is not Anthropic's envelope (a proxy's HTML page, an empty 502).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

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
from llmgate.providers.openai import error_from_body
from llmgate.providers.ratelimit import retry_after_seconds
from llmgate.wire.anthropic import ErrorDetail, ErrorEnvelope

_envelope_decoder = msgspec.json.Decoder(ErrorEnvelope)
_any_decoder = msgspec.json.Decoder()

# Anthropic has no error code for an over-long prompt, only an invalid_request_error whose message says
# so: "prompt is too long: 3333404 tokens > 200000 maximum" (recorded), or, when the prompt plus
# max_tokens do not fit, "input length and `max_tokens` exceed context limit: ..."
# (https://docs.anthropic.com/en/docs/build-with-claude/context-windows). The wording is all there is.
_CONTEXT_WORDS = re.compile(r"prompt is too long|exceeds? (?:the )?context (?:limit|window)", re.IGNORECASE)
_OVERLOADED_STATUS = 529  # Anthropic's own status for overloaded_error

_Factory = Callable[[str, float | None], GatewayError]


def _invalid_request(message: str, retry_after: float | None) -> GatewayError:
    if _CONTEXT_WORDS.search(message):
        return ContextLengthExceeded(message, param="messages")
    return InvalidRequest(message, code="invalid_request_error")


_BY_TYPE: Mapping[str, _Factory] = {
    "invalid_request_error": _invalid_request,
    "request_too_large": lambda message, _: InvalidRequest(message, code="request_too_large"),
    "authentication_error": lambda message, _: ProviderAuthError(message),
    "permission_error": lambda message, _: ProviderAuthError(message, code="upstream_permission_error"),
    "not_found_error": lambda message, _: ModelNotFound(message, code="model_not_found"),
    "rate_limit_error": lambda message, after: RateLimited(message, retry_after=after),
    # A 402: the account is out of credit. Shaped like OpenAI's own insufficient_quota, a 429.
    "billing_error": lambda message, _: RateLimited(message, code="insufficient_quota"),
    "overloaded_error": lambda message, after: Overloaded(message, retry_after=after),
    "api_error": lambda message, after: UpstreamError(message, retry_after=after),
    "timeout_error": lambda message, _: UpstreamTimeout(message),
}


def error_from_detail(detail: ErrorDetail, *, retry_after: float | None = None) -> GatewayError:
    """The error for an Anthropic ``{"type", "message"}``; an unknown type is an ``UpstreamError``."""
    message = detail.message or detail.type or "Anthropic reported an error without a message"
    factory = _BY_TYPE.get(detail.type)
    if factory is None:
        return UpstreamError(f"{detail.type}: {message}", retry_after=retry_after)
    return factory(message, retry_after)


def parse_error(status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
    """An error response -> the matching core error, with ``retry_after`` from ``retry-after``."""
    retry_after = retry_after_seconds(headers)
    detail = _detail(body)
    if detail is not None and detail.type in _BY_TYPE:
        error = error_from_detail(detail, retry_after=retry_after)
    else:
        error = error_from_body(_payload(body), status=status, retry_after=retry_after)
    if status == _OVERLOADED_STATUS and not isinstance(error, Overloaded):
        return Overloaded(error.message, retry_after=retry_after)
    return error


def _detail(body: bytes) -> ErrorDetail | None:
    try:
        return _envelope_decoder.decode(body).error if body else None
    except msgspec.DecodeError:
        return None


def _payload(body: bytes) -> object:
    try:
        return _any_decoder.decode(body) if body else None
    except msgspec.DecodeError:
        return body.decode("utf-8", "replace")[:500]
