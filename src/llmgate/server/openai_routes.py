"""``/v1/*``: the OpenAI-compatible endpoints. Each handler parses, calls the Gateway, encodes."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from llmgate.core.caller import ANONYMOUS
from llmgate.core.codec import decode_json, parse_embedding_request
from llmgate.core.errors import GatewayError
from llmgate.server.chat_calls import OPENAI_CHAT, record_refused, serve_chat
from llmgate.server.context import ServerContext
from llmgate.server.disconnect import until_disconnected
from llmgate.server.errors import limit_headers
from llmgate.server.headers import call_headers, cost_header
from llmgate.server.wire import encode_embeddings, encoder, read_body

JSON = "application/json"


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
            return await serve_chat(ctx, request, caller, chat, OPENAI_CHAT)
        except GatewayError as error:
            if not error.recorded:
                model, stream = (chat.model, bool(chat.stream)) if chat else ("", False)
                await record_refused(ctx, request, error, caller, model=model, stream=stream)
            raise

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
                await record_refused(
                    ctx, request, error, caller, model=body.model if body else "", stream=False
                )
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
