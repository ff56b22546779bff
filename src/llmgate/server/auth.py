"""Who is calling: the master key, a virtual key, or anyone (open mode, loopback only)."""

from __future__ import annotations

import hmac

from starlette.requests import Request

from llmgate.core.caller import ANONYMOUS, MASTER, Caller
from llmgate.core.errors import AuthenticationError, PermissionDenied
from llmgate.gateway import Gateway


def bearer_token(request: Request) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``x-api-key``."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return request.headers.get("x-api-key") or None


async def identify(request: Request, master_key: bytes | None, gateway: Gateway) -> Caller:
    """The caller: 401 without a valid key once a master key is set; anyone in open mode."""
    if master_key is None:
        return ANONYMOUS
    token = bearer_token(request)
    if token is None:
        raise AuthenticationError(
            "Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key"
        )
    if hmac.compare_digest(token.encode(), master_key):
        return MASTER
    return await gateway.authenticate(token)


async def require_admin(request: Request, master_key: bytes | None, gateway: Gateway) -> None:
    """Only the master key may use the admin API (401 without a key, 403 with a virtual key)."""
    if master_key is None:
        raise PermissionDenied(
            "The admin API needs a master key: set LLMGATE_MASTER_KEY (or server.master_key).",
        )
    caller = await identify(request, master_key, gateway)
    if not caller.admin:
        raise PermissionDenied("Only the master key may manage keys.")
