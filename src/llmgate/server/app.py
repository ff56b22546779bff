"""The Starlette application: the route table, the error handlers and the gateway's lifetime."""

from __future__ import annotations

import atexit
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from llmgate.config import Settings, config_path_from_environment, load_settings, started_at_from_environment
from llmgate.core.errors import GatewayError
from llmgate.gateway import Gateway
from llmgate.server.admin_routes import AdminRoutes
from llmgate.server.api_routes import CatalogueRoutes, HealthRoutes, MetricsRoutes
from llmgate.server.batch_routes import BatchRoutes
from llmgate.server.context import ServerContext
from llmgate.server.cycle import START_WITH_BODY
from llmgate.server.disconnect import ClientGone
from llmgate.server.errors import classify, encode_error, error_body, error_headers
from llmgate.server.inbound_routes import InboundRoutes
from llmgate.server.logs import configure as configure_logs
from llmgate.server.openai_routes import OpenAIRoutes
from llmgate.server.report_routes import ReportRoutes
from llmgate.server.toolkit_routes import ToolkitRoutes
from llmgate.server.ui_routes import UIRoutes

log = logging.getLogger("llmgate.server")
JSON = "application/json"
GC_THRESHOLDS = (20_000, 50, 1000)
CLIENT_CLOSED = 499  # nginx's convention; nobody is listening any more


def create_app(
    gateway: Gateway | None = None, *, settings: Settings | None = None, started_at: float | None = None
) -> Starlette:
    """The HTTP server around a gateway (built from ``settings`` when not given), which it closes on exit;
    ``started_at``: when the server started, if before this process (a worker of several)."""
    if gateway is None:
        gateway = Gateway(settings if settings is not None else load_settings(None), started_at=started_at)
    gw = gateway
    ctx = ServerContext.for_gateway(gw)
    openai, catalogue, health = OpenAIRoutes(ctx), CatalogueRoutes(ctx), HealthRoutes(ctx)
    admin, reports, ui = AdminRoutes(ctx), ReportRoutes(ctx), UIRoutes()
    toolkit, batches, inbound = ToolkitRoutes(ctx), BatchRoutes(ctx), InboundRoutes(ctx)
    # The hot paths: dispatched ahead of Starlette's layers (see GatewayApp).
    calls: dict[str, Callable[[Request], Awaitable[Response]]] = {
        "/v1/chat/completions": openai.chat_completions,
        "/chat/completions": openai.chat_completions,
        "/v1/messages": inbound.messages,
        "/v1/responses": inbound.responses,
        "/v1/completions": inbound.completions,
    }
    routes = [
        *(Route(path, handler, methods=["POST"]) for path, handler in calls.items()),
        Route("/v1/messages/count_tokens", inbound.count_tokens, methods=["POST"]),
        Route("/v1/embeddings", openai.embeddings, methods=["POST"]),
        Route("/v1/models", openai.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", openai.get_model, methods=["GET"]),
        Route("/v1/files", batches.upload, methods=["POST"]),
        Route("/v1/files", batches.list_files, methods=["GET"]),
        Route("/v1/files/{file_id}", batches.get_file, methods=["GET"]),
        Route("/v1/files/{file_id}", batches.delete_file, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", batches.file_content, methods=["GET"]),
        Route("/v1/batches", batches.create, methods=["POST"]),
        Route("/v1/batches", batches.list, methods=["GET"]),
        Route("/v1/batches/{batch_id}", batches.get, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", batches.cancel, methods=["POST"]),
        Route("/api/models", catalogue.list_models, methods=["GET"]),
        Route("/api/models/search", catalogue.search, methods=["GET"]),
        Route("/api/models/{model_id:path}", catalogue.get_model, methods=["GET"]),
        Route("/health", health.health, methods=["GET"]),
        Route("/health/providers", health.providers, methods=["GET"]),
        Route("/health/cache", health.cache, methods=["GET"]),
        Route("/metrics", MetricsRoutes(ctx).metrics, methods=["GET"]),
        Route("/api/rate-limits", admin.rate_limits, methods=["GET"]),
        Route("/ui", ui.page, methods=["GET"]),
        Route("/ui/static/{path:path}", ui.static, methods=["GET"]),
        Route("/api/usage", reports.usage, methods=["GET"]),
        Route("/api/usage/series", reports.series, methods=["GET"]),
        Route("/api/errors", reports.errors, methods=["GET"]),
        Route("/api/stats", reports.stats, methods=["GET"]),
        Route("/api/condense", toolkit.condense, methods=["POST"]),
        Route("/api/tokens", toolkit.tokens, methods=["POST"]),
        Route("/api/prompts", toolkit.prompts, methods=["GET"]),
        Route("/admin/keys", admin.create, methods=["POST"]),
        Route("/admin/keys", admin.list, methods=["GET"]),
        Route("/admin/keys/{key_id}", admin.get, methods=["GET"]),
        Route("/admin/keys/{key_id}", admin.update, methods=["PATCH"]),
        Route("/admin/keys/{key_id}", admin.revoke, methods=["DELETE"]),
        Route("/admin/cache", admin.clear_cache, methods=["DELETE"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.start()  # open the database and Redis now: a bad URL fails the start, not a request
        if gw.settings.batch.worker:
            gw.batch_worker.start()
        try:
            yield
        finally:
            await gw.close()

    app = GatewayApp(routes=routes, lifespan=lifespan, exception_handlers=dict(ERROR_HANDLERS))
    app.calls = calls
    app.state.gateway = gw
    return app


class GatewayApp(Starlette):
    """Starlette, with the chat calls (``POST /v1/chat/completions``, ``/v1/messages``...) dispatched
    ahead of its middleware and router.

    They are the hot path: Starlette's per-request layers (error and exception middleware, route
    matching, the request/response wrapper) cost ~5% of a request there. Errors get the same handlers
    as every other route. Middleware added to the app does not see these requests: add it around the
    app instead.
    """

    calls: dict[str, Callable[[Request], Awaitable[Response]]] = {}  # noqa: RUF012 - replaced, never mutated

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = self.calls.get(scope["path"]) if scope["type"] == "http" else None
        if call is None or scope["method"] != "POST":
            await super().__call__(scope, receive, send)  # everything else, a 405 for GET included
            return
        request = Request(scope, receive)
        try:
            response = await call(request)
        except Exception as exc:
            response = await _handle(request, exc)
        if (
            type(response) is Response
            and response.background is None
            and START_WITH_BODY in scope.get("extensions", ())
        ):  # whole: head and body in one write
            await send(
                {
                    "type": START_WITH_BODY,
                    "status": response.status_code,
                    "headers": response.raw_headers,
                    "body": response.body,
                }
            )
            return
        await response(scope, receive, send)


async def _handle(request: Request, exc: Exception) -> Response:
    """The response the app's exception handlers give for an error (the most specific one)."""
    handler = next(ERROR_HANDLERS[kind] for kind in type(exc).__mro__ if kind in ERROR_HANDLERS)
    return await handler(request, exc)  # Exception itself has one: there always is a handler


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    status, _ = classify(exc)
    return Response(error_body(exc), status_code=status, media_type=JSON, headers=error_headers(exc, status))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error_type = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return Response(
        encode_error(message, error_type, None, None),
        status_code=exc.status_code,
        media_type=JSON,
        headers=exc.headers,
    )


async def _client_gone(request: Request, exc: Exception) -> Response:
    return Response(b"", status_code=CLIENT_CLOSED)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = encode_error("The gateway hit an internal error; it has been logged.", "api_error", None, None)
    return Response(body, status_code=500, media_type=JSON)


ERROR_HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    GatewayError: _gateway_error,
    HTTPException: _http_error,
    ClientGone: _client_gone,
    Exception: _unexpected,
}


def app_from_environment() -> Starlette:
    """The app for worker processes: configured from ``LLMGATE_CONFIG`` and the environment."""
    settings = load_settings(config_path_from_environment())
    listener = configure_logs(format=settings.log.format, level=settings.log.level)
    atexit.register(listener.stop)
    app = create_app(settings=settings, started_at=started_at_from_environment())
    tune_process()
    return app


def tune_process() -> None:
    """Settings for a process that does nothing but serve (called by ``llmgate serve``, not by the app).

    Everything alive after start-up lives as long as the process, so it is frozen out of the cyclic
    garbage collector's scans, and collections of the youngest generation run less often: per-request
    garbage is freed by reference counting; the profile showed the collector at ~15% of CPU otherwise.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
