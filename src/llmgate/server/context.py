"""What every handler of one server shares: the gateway and the server's own settings."""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import Request

from llmgate.gateway import Gateway
from llmgate.server.auth import check_key

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True, slots=True)
class ServerContext:
    """The gateway behind the server, its master key and body limit."""

    gateway: Gateway
    master_key: bytes | None
    max_body: int

    @classmethod
    def for_gateway(cls, gateway: Gateway) -> ServerContext:
        """The context for a gateway, from its settings."""
        server = gateway.settings.server
        key = server.master_key.get_secret_value().encode() if server.master_key else None
        return cls(gateway, key, server.max_body_bytes)

    def authenticate(self, request: Request) -> None:
        """Raise unless the caller may use the gateway."""
        check_key(request, self.master_key)

    def request_id(self, request: Request) -> str:
        """The caller's ``x-request-id`` when it is a sane token, else a new one."""
        given = request.headers.get("x-request-id")
        if given and _SAFE_ID.match(given):
            return given
        return self.gateway.new_request_id()
