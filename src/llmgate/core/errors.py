"""The error tree every layer speaks.

Adapters translate each vendor's errors into these once, on the way in; the server maps them to HTTP
once, on the way out (``llmgate.core.error_table``). ``retryable`` tells routing whether another attempt
(another key, deployment or group) may succeed.
"""

from __future__ import annotations

import re

from llmgate.core.caller import LimitStatus

_KEY_LIKE = re.compile(r"\b(sk|hf|AIza|key|Bearer )[-_]?[A-Za-z0-9*_\-]{8,}")


def redact(text: str, secret: str | None = None) -> str:
    """Remove a known secret, and anything shaped like an API key, from text bound for a client or log."""
    if secret:
        text = text.replace(secret, "<redacted>")
    return _KEY_LIKE.sub("<redacted>", text)


class GatewayError(Exception):
    """Base of every error llmgate raises on purpose."""

    code: str = "gateway_error"
    status: int = 500
    """The HTTP status the OpenAI SDK maps to the right error class (the server's table agrees)."""
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        provider: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.provider = provider
        self.retry_after = retry_after
        self.limit: LimitStatus | None = None
        """The caller's rate-limit status when it is known (for the ``X-RateLimit-*`` headers)."""
        self.request_id: str | None = None
        """The request the error ended, once the gateway has given it an id (``x-request-id``)."""
        self.attempts = 0
        """Upstream calls the request made before it ended with this error (for its usage record)."""
        self.tried: tuple[str, ...] = ()
        """The deployments those calls went to, in order."""
        self.recorded = False
        """Whether the call's usage record (with this error) has been written."""


class InvalidRequest(GatewayError):
    """The request is malformed or asks for something no deployment can do (client's fault)."""

    code = "invalid_request"
    status = 400


class ContextLengthExceeded(InvalidRequest):
    """The prompt does not fit the model's context window (normalised across providers)."""

    code = "context_length_exceeded"


class PayloadTooLarge(InvalidRequest):
    """The request body is over the configured size limit."""

    code = "payload_too_large"
    status = 413


class AuthenticationError(GatewayError):
    """The caller's gateway key is missing or invalid."""

    code = "invalid_api_key"
    status = 401


class PermissionDenied(GatewayError):
    """The caller is known but not allowed to do this."""

    code = "permission_denied"
    status = 403


class ModelNotFound(GatewayError):
    """No provider or model group answers to this name (or the upstream does not know the model)."""

    code = "model_not_found"
    status = 404

    def __init__(self, message: str, *, suggestions: tuple[str, ...] = (), **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.suggestions = suggestions


class NotFound(GatewayError):
    """A resource other than a model does not exist."""

    code = "not_found"
    status = 404


class Conflict(GatewayError):
    """The request does not fit the current state of what it names (cancelling a finished batch)."""

    code = "conflict"
    status = 409


class ClientClosed(GatewayError):
    """The caller went away before the answer was complete (recorded in usage, never sent)."""

    code = "client_closed"
    status = 499  # nginx's convention: nobody is listening any more


class RateLimited(GatewayError):
    """Too many requests or tokens: the caller's limit, or the upstream's (then ``provider`` is set)."""

    code = "rate_limit_exceeded"
    status = 429
    retryable = True


class QuotaExceeded(GatewayError):
    """A budget or billing quota is exhausted; waiting a few seconds will not help."""

    code = "insufficient_quota"
    status = 429


class UpstreamError(GatewayError):
    """The provider failed in a way that is not the caller's fault."""

    code = "upstream_error"
    status = 502
    retryable = True


class ProviderAuthError(UpstreamError):
    """The provider rejected the gateway's own API key for it (401/403 upstream)."""

    code = "upstream_authentication_error"


class Overloaded(UpstreamError):
    """The provider says it is overloaded (503, Anthropic 529)."""

    code = "upstream_overloaded"
    status = 503


class UpstreamTimeout(UpstreamError):
    """The provider did not answer (or went silent mid-stream) within the timeout."""

    code = "upstream_timeout"
    status = 504


class UpstreamConnectionError(UpstreamError):
    """The connection to the provider failed or was reset."""

    code = "upstream_connection_error"


class StreamInterrupted(UpstreamError):
    """A stream broke after content had started flowing; it cannot be resumed invisibly."""

    code = "stream_interrupted"


class SchemaViolation(UpstreamError):
    """The model's reply does not match the ``json_schema`` the caller asked for, after the retries."""

    code = "schema_violation"
    retryable = False


class UnexpectedResponse(UpstreamError):
    """The provider answered with something the adapter cannot read (never turned into success)."""

    code = "upstream_unexpected_response"
