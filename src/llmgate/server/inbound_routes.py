"""``/v1/messages``, ``/v1/responses``, ``/v1/completions``: the other inbound protocols.

Each handler is the chat handler with the protocol's parse and rendering: the same gateway call (routing,
limits, budgets, cache, usage records), and errors in the protocol's own shape.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from llmgate.core.caller import ANONYMOUS, Caller
from llmgate.core.codec import decode_json
from llmgate.core.errors import GatewayError, PermissionDenied
from llmgate.core.request import ChatRequest
from llmgate.protocols.anthropic import MESSAGES, parse_count_tokens
from llmgate.protocols.base import Inbound
from llmgate.protocols.completions import COMPLETIONS
from llmgate.protocols.responses import RESPONSES
from llmgate.server.chat_calls import JSON, record_refused, serve_chat
from llmgate.server.context import ServerContext
from llmgate.server.errors import error_headers
from llmgate.server.wire import encoder, read_body


class InboundRoutes:
    """The handlers, bound to one server's context."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def messages(self, request: Request) -> Response:
        """``POST /v1/messages`` (Anthropic Messages)."""
        return await self._serve(request, MESSAGES)

    async def responses(self, request: Request) -> Response:
        """``POST /v1/responses`` (OpenAI Responses, stateless)."""
        return await self._serve(request, RESPONSES)

    async def completions(self, request: Request) -> Response:
        """``POST /v1/completions`` (OpenAI's legacy text completions)."""
        return await self._serve(request, COMPLETIONS)

    async def count_tokens(self, request: Request) -> Response:
        """``POST /v1/messages/count_tokens``: the prompt's tokens for the model (``input_tokens``)."""
        try:
            caller = await self.ctx.authenticate(request)
            chat = parse_count_tokens(decode_json(await read_body(request, self.ctx.max_body)))
            if not caller.may_use(chat.model):  # as for a call: the count names the model's family
                raise PermissionDenied(f"This API key may not use the model '{chat.model}'.", param="model")
            # Off the event loop: the first count of an encoding loads it (about a second).
            counted = await asyncio.to_thread(self.ctx.gateway.count_tokens, chat.model, chat)
        except GatewayError as error:
            return self._error(request, error, MESSAGES)
        body = {"input_tokens": counted.tokens}
        headers = {"x-llmgate-token-count": counted.method, "x-request-id": self.ctx.request_id(request)}
        return Response(encoder.encode(body), media_type=JSON, headers=headers)

    async def _serve(self, request: Request, protocol: Inbound) -> Response:
        ctx = self.ctx
        caller, chat = ANONYMOUS, None
        try:
            caller = ANONYMOUS if ctx.master_key is None else await ctx.authenticate(request)
            chat = protocol.parse(decode_json(await read_body(request, ctx.max_body)))
            return await serve_chat(ctx, request, caller, chat, protocol)
        except GatewayError as error:
            if not error.recorded:
                await self._refused(request, error, caller, chat)
            return self._error(request, error, protocol)

    async def _refused(
        self, request: Request, error: GatewayError, caller: Caller, chat: ChatRequest | None
    ) -> None:
        model, stream = (chat.model, bool(chat.stream)) if chat else ("", False)
        await record_refused(self.ctx, request, error, caller, model=model, stream=stream)

    def _error(self, request: Request, error: GatewayError, protocol: Inbound) -> Response:
        if error.request_id is None:
            error.request_id = self.ctx.request_id(request)
        status, body = protocol.error(error)
        return Response(body, status_code=status, media_type=JSON, headers=error_headers(error, status))
