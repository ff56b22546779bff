"""``/v1/*``: the OpenAI-compatible endpoints. Each handler parses, calls the Gateway, encodes."""

from __future__ import annotations

import re
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from llmgate.core.caller import ANONYMOUS, Caller
from llmgate.core.codec import decode_json, parse_embedding_request
from llmgate.core.errors import GatewayError
from llmgate.core.request import ChatRequest
from llmgate.core.results import CallInfo
from llmgate.server.context import ServerContext
from llmgate.server.disconnect import DisconnectWatch, EventStreamResponse, until_disconnected
from llmgate.server.errors import limit_headers
from llmgate.server.wire import SSE_HEADERS, SSEBody, encode_embeddings, encoder, read_body

JSON = "application/json"
_HEADER_SAFE = re.compile(r"^[A-Za-z0-9_.\[\]-]{1,64}$")
_PRINTABLE = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) != "%")


class OpenAIRoutes:
    """The handlers, bound to one server's context."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def chat_completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions``, whole or streamed. A call refused before it is routed (its key,
        body or headers) still gets its usage record."""
        ctx = self.ctx
        caller, chat = ANONYMOUS, None
        try:
            caller = ANONYMOUS if ctx.master_key is None else await ctx.authenticate(request)
            chat = ctx.gateway.chat_body(decode_json(await read_body(request, ctx.max_body)))
            return await self._chat(request, caller, chat)
        except GatewayError as error:
            if not error.recorded:
                await self._refused(
                    request, error, caller, chat.model if chat else "", bool(chat and chat.stream)
                )
            raise

    async def _refused(
        self, request: Request, error: GatewayError, caller: Caller, model: str, stream: bool
    ) -> None:
        if error.request_id is None:
            error.request_id = self.ctx.request_id(request)
        await self.ctx.gateway.record_refusal(error, caller=caller, model=model, stream=stream)

    async def _chat(self, request: Request, caller: Caller, chat: ChatRequest) -> Response:
        ctx = self.ctx
        asked = ctx.call_options(request)
        if chat.stream:
            stream = ctx.gateway.open_stream(
                chat,
                request_id=asked.request_id,
                time_limit=asked.time_limit,
                fallbacks=asked.fallbacks,
                caller=caller,
                cache=asked.cache,
            )
            watch = DisconnectWatch(request.receive)  # one watch for the request, handed to the response
            try:
                await watch.guard(stream.start())
                headers = {**SSE_HEADERS, **call_headers(stream.info)}
                return EventStreamResponse(SSEBody(stream.batches()), headers, watch, stream.aclose)
            except BaseException:
                watch.stop()
                await stream.aclose()
                raise
        work = ctx.gateway.complete(
            chat,
            request_id=asked.request_id,
            time_limit=asked.time_limit,
            fallbacks=asked.fallbacks,
            caller=caller,
            cache=asked.cache,
        )
        result = await until_disconnected(request.receive, work)
        headers = call_headers(result.info)
        headers["x-llmgate-cost-usd"] = cost_header(result.cost)
        return Response(encoder.encode(result.response), media_type=JSON, headers=headers)

    async def embeddings(self, request: Request) -> Response:
        """``POST /v1/embeddings``."""
        ctx = self.ctx
        caller, body = ANONYMOUS, None
        try:
            caller = await ctx.authenticate(request)
            body = parse_embedding_request(decode_json(await read_body(request, ctx.max_body)))
            work = ctx.gateway.embeddings(body, request_id=ctx.request_id(request), caller=caller)
            result = await until_disconnected(request.receive, work)
        except GatewayError as error:
            if not error.recorded:
                await self._refused(request, error, caller, body.model if body else "", False)
            raise
        headers = call_headers(result.info)
        headers["x-llmgate-cost-usd"] = cost_header(result.cost)
        return Response(await encode_embeddings(result.response), media_type=JSON, headers=headers)

    async def list_models(self, request: Request) -> Response:
        """``GET /v1/models``."""
        caller = await self.ctx.authenticate(request)
        cards = self.ctx.gateway.models()
        headers = limit_headers(await self.ctx.gateway.limit_status(caller))
        return Response(encoder.encode({"object": "list", "data": cards}), media_type=JSON, headers=headers)

    async def get_model(self, request: Request) -> Response:
        """``GET /v1/models/{id}``."""
        caller = await self.ctx.authenticate(request)
        card = self.ctx.gateway.model(request.path_params["model_id"])
        headers = limit_headers(await self.ctx.gateway.limit_status(caller))
        return Response(encoder.encode(card), media_type=JSON, headers=headers)


def call_headers(info: CallInfo) -> dict[str, str]:
    """Which provider and deployment served the call, in how many attempts."""
    headers = {
        "x-request-id": info.request_id,
        "x-llmgate-provider": header_text(info.provider),
        "x-llmgate-deployment": header_text(info.deployment),  # names the model: caller text
        "x-llmgate-attempts": str(info.attempts),
        "x-llmgate-cache": info.cache,
    }
    headers.update(limit_headers(info.limit))
    if info.context is not None:
        headers["x-llmgate-context"] = info.context
    if info.schema is not None:
        headers["x-llmgate-schema"] = info.schema
    if info.dropped_params:
        # Names can come from the caller (unknown fields): only header-safe ones are listed.
        names = [name for name in info.dropped_params if _HEADER_SAFE.match(name)]
        if names:
            headers["x-llmgate-dropped-params"] = ",".join(names)
    return headers


def header_text(value: str) -> str:
    """Text for a header value: printable ASCII as it is, anything else percent-encoded (UTF-8), so a
    name with non-ASCII letters or control characters can neither break nor inject a header."""
    if value.isascii() and value.isprintable() and "%" not in value:  # "%" too: encoded text stays unique
        return value
    return quote(value, safe=_PRINTABLE)


def cost_header(cost: float | None) -> str:
    """USD with enough digits for a fraction of a cent; ``unknown`` when a price is missing."""
    if cost is None:
        return "unknown"
    return "0" if cost == 0 else f"{cost:.8f}"
