"""What every handler of one server shares: the gateway and the server's own settings."""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.requests import Request

from llmgate.core.caller import Caller
from llmgate.core.controls import DEFAULT_CACHE_CONTROL, CacheControl
from llmgate.core.errors import InvalidRequest
from llmgate.gateway import Gateway
from llmgate.server.auth import identify, require_admin

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_TIME_LIMIT = 3600.0
MAX_FALLBACKS = 10
MAX_CACHE_TTL = 365 * 86_400.0


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

    async def authenticate(self, request: Request) -> Caller:
        """The caller, or 401 unless it may use the gateway."""
        return await identify(request, self.master_key, self.gateway)

    async def authenticate_admin(self, request: Request) -> None:
        """401 / 403 unless the caller holds the master key."""
        await require_admin(request, self.master_key, self.gateway)

    def request_id(self, request: Request) -> str:
        """The caller's ``x-request-id`` when it is a sane token, else a new one."""
        return self._request_id(request.headers.get("x-request-id"))

    def _request_id(self, given: str | None) -> str:
        if given and _SAFE_ID.match(given):
            return given
        return self.gateway.new_request_id()

    def call_options(self, request: Request) -> CallHeaders:
        """Request id, ``x-llmgate-timeout``, ``x-llmgate-fallbacks`` and the cache controls, from one pass
        over the headers."""
        found: dict[bytes, bytes] = {}
        for name, value in request.scope["headers"]:
            if name in _CALL_HEADERS:
                found[name] = value
        if not found:
            return CallHeaders(self.gateway.new_request_id())
        given = found.get(b"x-request-id")
        timeout = found.get(b"x-llmgate-timeout")
        fallbacks = found.get(b"x-llmgate-fallbacks")
        return CallHeaders(
            self._request_id(given.decode("latin-1") if given is not None else None),
            parse_time_limit(timeout.decode("latin-1")) if timeout is not None else None,
            parse_fallbacks(fallbacks.decode("latin-1")) if fallbacks is not None else (),
            parse_cache_control(found.get(b"cache-control"), found.get(b"x-llmgate-cache-ttl")),
        )


@dataclass(frozen=True, slots=True)
class CallHeaders:
    """What a chat request's headers ask of the call."""

    request_id: str
    time_limit: float | None = None
    fallbacks: tuple[str, ...] = ()
    cache: CacheControl = DEFAULT_CACHE_CONTROL


_CALL_HEADERS = frozenset(
    (b"x-request-id", b"x-llmgate-timeout", b"x-llmgate-fallbacks", b"cache-control", b"x-llmgate-cache-ttl")
)


def parse_cache_control(control: bytes | None, ttl: bytes | None) -> CacheControl:
    """``Cache-Control: no-cache`` (skip the lookup, still store) / ``no-store`` (do not store), and
    ``x-llmgate-cache-ttl: SECONDS`` (in (0, 1 year]); other directives are ignored."""
    directives = {part.strip().lower() for part in control.decode("latin-1").split(",")} if control else set()
    seconds = None
    if ttl is not None:
        raw = ttl.decode("latin-1")
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= MAX_CACHE_TTL:
            raise InvalidRequest(
                f"x-llmgate-cache-ttl must be a number of seconds in (0, {MAX_CACHE_TTL:g}], "
                f"not '{raw[:40]}'",
                param="x-llmgate-cache-ttl",
            )
    if not directives and seconds is None:
        return DEFAULT_CACHE_CONTROL
    return CacheControl(lookup="no-cache" not in directives, store="no-store" not in directives, ttl=seconds)


def parse_time_limit(raw: str) -> float:
    """``x-llmgate-timeout``: seconds in (0, 3600], else 400."""
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_TIME_LIMIT:
        raise InvalidRequest(
            f"x-llmgate-timeout must be a number of seconds in (0, {MAX_TIME_LIMIT:g}], not '{raw[:40]}'",
            param="x-llmgate-timeout",
        )
    return seconds


def parse_fallbacks(raw: str) -> tuple[str, ...]:
    """``x-llmgate-fallbacks``: up to 10 group names, comma separated."""
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    if len(names) > MAX_FALLBACKS:
        raise InvalidRequest(
            f"x-llmgate-fallbacks names at most {MAX_FALLBACKS} groups", param="x-llmgate-fallbacks"
        )
    return names
