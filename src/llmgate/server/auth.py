"""Who is calling. This version knows the master key; virtual keys plug in here later."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from llmgate.core.errors import AuthenticationError


def bearer_token(request: Request) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``x-api-key``."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key") or None


def check_key(request: Request, master_key: bytes | None) -> None:
    """Raise ``AuthenticationError`` unless the request carries the master key (when one is set)."""
    if master_key is None:
        return
    token = bearer_token(request)
    if token is None:
        raise AuthenticationError(
            "Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key"
        )
    if not hmac.compare_digest(token.encode(), master_key):
        raise AuthenticationError("Invalid API key.", code="invalid_api_key")
