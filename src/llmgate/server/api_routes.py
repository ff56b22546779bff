"""``/api/models*`` (the seed's catalogue API, SPEC.md section 2.3) and ``/health``."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from llmgate.core.errors import InvalidRequest, ModelNotFound
from llmgate.server.auth import bearer_token
from llmgate.server.context import ServerContext
from llmgate.server.wire import encoder

JSON = "application/json"


def model_view(info: Any) -> dict[str, Any]:
    """A catalogue entry as the seed's API shows it (costs in USD per 1K tokens)."""
    view: dict[str, Any] = info.view()
    return view


class CatalogueRoutes:
    """The model catalogue, searchable."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def list_models(self, request: Request) -> Response:
        """``GET /api/models``."""
        await self.ctx.authenticate(request)
        return _models(self.ctx.gateway.catalogue.models)

    async def search(self, request: Request) -> Response:
        """``GET /api/models/search?q=&provider=&supports_chat=&capability=&min_context=&max_input_cost=``."""
        await self.ctx.authenticate(request)
        params = request.query_params
        found = self.ctx.gateway.catalogue.search(
            query=params.get("q") or None,
            provider=params.get("provider") or None,
            supports_chat=_flag(params.get("supports_chat"), "supports_chat"),
            capability=params.get("capability") or None,
            min_context=_number(params.get("min_context"), "min_context", int),
            max_input_cost_per_1k=_number(params.get("max_input_cost"), "max_input_cost", float),
        )
        return _models(found)

    async def get_model(self, request: Request) -> Response:
        """``GET /api/models/{id}``: 404 with the nearest ids when unknown."""
        await self.ctx.authenticate(request)
        model_id = request.path_params["model_id"]
        catalogue = self.ctx.gateway.catalogue
        info = catalogue.get(model_id)
        if info is None:
            close = tuple(catalogue.closest(model_id))
            hint = f" Nearest: {', '.join(close)}." if close else ""
            raise ModelNotFound(
                f"No model '{model_id}' in the catalogue.{hint}", param="id", suggestions=close
            )
        return Response(encoder.encode({"model": model_view(info)}), media_type=JSON)


class HealthRoutes:
    """Liveness and status."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def health(self, request: Request) -> Response:
        """``GET /health``: liveness and the overall status (``ok`` or ``degraded``) for anyone; the
        problems, deployments and the usage-record writer's lag only with a key, once one is set."""
        report = await self.ctx.gateway.health()
        if self.ctx.master_key is not None and bearer_token(request) is None:
            report = {"status": report["status"]}  # for load balancers: nothing about the deployments
        else:
            await self.ctx.authenticate(request)
        return Response(encoder.encode(report), media_type=JSON)

    async def providers(self, request: Request) -> Response:
        """``GET /health/providers``: per deployment state, error rate, latency p50/p95, last error (a key
        is needed once one is set: names and upstream errors are for the operator)."""
        await self.ctx.authenticate(request)
        gateway = self.ctx.gateway
        body = {"deployments": gateway.provider_health(), "keys": gateway.board.keys_report()}
        return Response(encoder.encode(body), media_type=JSON)

    async def cache(self, request: Request) -> Response:
        """``GET /health/cache``: backend, entries, bytes, hits, misses, hit rate, coalesced, saved cost."""
        await self.ctx.authenticate(request)
        return Response(encoder.encode(await self.ctx.gateway.cache_stats()), media_type=JSON)


class MetricsRoutes:
    """``GET /metrics``: Prometheus text. Open to loopback callers (not forwarded by a proxy) and in open
    mode; otherwise the master key or ``server.metrics_token``."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        token = ctx.gateway.settings.server.metrics_token
        self._token = token.get_secret_value().encode() if token is not None else None

    async def metrics(self, request: Request) -> Response:
        """The exposition (version 0.0.4 of the text format)."""
        if not self._open_to(request):
            presented = bearer_token(request)
            if (
                self._token is None
                or presented is None
                or not hmac.compare_digest(presented.encode(), self._token)
            ):
                await self.ctx.authenticate_admin(request)
        body = await self.ctx.gateway.metrics_text()
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    def _open_to(self, request: Request) -> bool:
        if self.ctx.master_key is None:
            return True
        client = request.client
        forwarded = any(name in request.headers for name in ("x-forwarded-for", "forwarded", "x-real-ip"))
        return client is not None and not forwarded and _is_loopback(client.host)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _models(models: Any) -> Response:
    views = [model_view(info) for info in models]
    return Response(encoder.encode({"models": views, "count": len(views)}), media_type=JSON)


def _flag(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise InvalidRequest(f"'{name}' must be true or false, not '{value}'", param=name)


def _number(value: str | None, name: str, kind: type[int] | type[float]) -> Any:
    if value is None or value == "":
        return None
    try:
        number = kind(value)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be a {kind.__name__}, not '{value}'", param=name) from None
    if number < 0:
        raise InvalidRequest(f"'{name}' must not be negative", param=name)
    return number
