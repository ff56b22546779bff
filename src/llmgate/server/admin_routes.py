"""``/admin/keys`` (virtual keys) and ``/admin/cache``, for the master key only; and ``/api/rate-limits``
for any caller."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from llmgate.core.codec import decode_json
from llmgate.server.context import ServerContext
from llmgate.server.wire import encoder, read_body

JSON = "application/json"
MAX_ADMIN_BODY = 64 * 1024


class AdminRoutes:
    """Create, list, read, update and revoke virtual keys."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def create(self, request: Request) -> Response:
        """``POST /admin/keys`` -> 201 with the key (shown only here)."""
        await self.ctx.authenticate_admin(request)
        body = decode_json(await read_body(request, MAX_ADMIN_BODY))
        view, secret = await self.ctx.gateway.keys.create(body)
        return Response(encoder.encode({**view, "key": secret}), status_code=201, media_type=JSON)

    async def list(self, request: Request) -> Response:
        """``GET /admin/keys``."""
        await self.ctx.authenticate_admin(request)
        keys = await self.ctx.gateway.keys.list()
        return Response(encoder.encode({"keys": keys, "count": len(keys)}), media_type=JSON)

    async def get(self, request: Request) -> Response:
        """``GET /admin/keys/{id}``."""
        await self.ctx.authenticate_admin(request)
        key = await self.ctx.gateway.keys.get(request.path_params["key_id"])
        return Response(encoder.encode(key), media_type=JSON)

    async def update(self, request: Request) -> Response:
        """``PATCH /admin/keys/{id}``."""
        await self.ctx.authenticate_admin(request)
        body = decode_json(await read_body(request, MAX_ADMIN_BODY))
        key = await self.ctx.gateway.keys.update(request.path_params["key_id"], body)
        return Response(encoder.encode(key), media_type=JSON)

    async def revoke(self, request: Request) -> Response:
        """``DELETE /admin/keys/{id}``: the key stops working."""
        await self.ctx.authenticate_admin(request)
        key = await self.ctx.gateway.keys.revoke(request.path_params["key_id"])
        return Response(encoder.encode(key), media_type=JSON)

    async def clear_cache(self, request: Request) -> Response:
        """``DELETE /admin/cache[?namespace=KEY_ID][&model=GROUP]``: drop cached answers."""
        await self.ctx.authenticate_admin(request)
        params = request.query_params
        deleted = await self.ctx.gateway.clear_cache(
            namespace=params.get("namespace") or None, model=params.get("model") or None
        )
        return Response(encoder.encode({"deleted": deleted}), media_type=JSON)

    async def rate_limits(self, request: Request) -> Response:
        """``GET /api/rate-limits[?name=provider]``: the caller's limit and each upstream key's."""
        caller = await self.ctx.authenticate(request)
        name = request.query_params.get("name") or None
        status = await self.ctx.gateway.rate_limit_status(name, caller=caller)
        return Response(encoder.encode(status), media_type=JSON)
