"""``/api/usage`` and ``/api/stats``: reports from the usage ledger. A virtual key sees its own calls
only; the master key (and the open mode) sees all, or one key's with ``?key=``."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from llmgate.core.caller import Caller
from llmgate.core.errors import InvalidRequest, PermissionDenied
from llmgate.gateway import Gateway
from llmgate.server.context import ServerContext
from llmgate.server.wire import encoder

JSON = "application/json"
MAX_WINDOW = 366 * 86_400.0


class ReportRoutes:
    """The report endpoints of one server."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def usage(self, request: Request) -> Response:
        """``GET /api/usage?since=&until=&group_by=&format=json|csv|jsonl[&key=]``."""
        caller = await self.ctx.authenticate(request)
        params = request.query_params
        gateway: Gateway = self.ctx.gateway
        rows = await gateway.usage(
            since=gateway.parse_time(params.get("since"), "since"),
            until=gateway.parse_time(params.get("until"), "until"),
            group_by=params.get("group_by") or "group",
            key_id=_scope(caller, params.get("key")),
        )
        body, media_type = gateway.render_report(rows, params.get("format") or "json")
        return Response(body, media_type=media_type)

    async def series(self, request: Request) -> Response:
        """``GET /api/usage/series?since=&step=60&group_by=provider[&key=]``: totals per time slot."""
        caller = await self.ctx.authenticate(request)
        params = request.query_params
        gateway = self.ctx.gateway
        since = gateway.parse_time(params.get("since"), "since")
        step = _number(params.get("step") or "60", "step")
        rows = await gateway.usage_series(
            since=since if since is not None else time.time() - 3600,
            step=step,
            group_by=params.get("group_by") or "provider",
            key_id=_scope(caller, params.get("key")),
        )
        return Response(encoder.encode({"rows": rows, "count": len(rows), "step": step}), media_type=JSON)

    async def errors(self, request: Request) -> Response:
        """``GET /api/errors?limit=50``: the latest failed calls (the operator's view: master key)."""
        caller = await self.ctx.authenticate(request)
        if caller.key_id is not None:
            raise PermissionDenied("Only the master key may read other callers' failures.")
        limit = int(_number(request.query_params.get("limit") or "50", "limit"))
        errors = await self.ctx.gateway.recent_errors(limit=limit)
        return Response(encoder.encode({"errors": errors, "count": len(errors)}), media_type=JSON)

    async def stats(self, request: Request) -> Response:
        """``GET /api/stats[?window=SECONDS][&key=]``: since start, or over the last window."""
        caller = await self.ctx.authenticate(request)
        params = request.query_params
        window = _window(params.get("window"))
        stats = await self.ctx.gateway.stats(window=window, key_id=_scope(caller, params.get("key")))
        return Response(encoder.encode(stats), media_type=JSON)


def _scope(caller: Caller, asked: str | None) -> str | None:
    """Whose records a caller may read: a virtual key only its own, whatever it asks."""
    if caller.key_id is not None:
        return caller.key_id
    return asked or None


def _number(raw: str, param: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise InvalidRequest(f"'{param}' must be a number, not '{raw[:40]}'", param=param) from None


def _window(raw: str | None) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_WINDOW:
        raise InvalidRequest(
            f"window must be seconds in (0, {MAX_WINDOW:g}], not '{raw[:40]}'", param="window"
        )
    return seconds
