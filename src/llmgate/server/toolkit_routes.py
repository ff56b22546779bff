"""``POST /api/condense``, ``POST /api/tokens`` and ``GET /api/prompts``: the toolkit over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from llmgate.core.caller import Caller
from llmgate.core.codec import decode_json
from llmgate.core.errors import InvalidRequest, PermissionDenied
from llmgate.core.request import MAX_MESSAGES
from llmgate.server.context import ServerContext
from llmgate.server.disconnect import until_disconnected
from llmgate.server.wire import encoder, read_body

JSON = "application/json"
MAX_TOKENS = 100_000_000


class ToolkitRoutes:
    """Condensing, counting and the prompt list, for any caller that may use the gateway."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def condense(self, request: Request) -> Response:
        """``{messages, max_tokens, model?}`` -> ``{summary, messages, original_tokens, condensed_tokens}``;
        the summary is written by an LLM call made as the caller (its model list, limits and budget)."""
        caller = await self.ctx.authenticate(request)
        body = await self._body(request)
        max_tokens = body.get("max_tokens")
        if (
            isinstance(max_tokens, bool)
            or not isinstance(max_tokens, int)
            or not 0 < max_tokens <= MAX_TOKENS
        ):
            raise InvalidRequest(f"max_tokens must be an integer in [1, {MAX_TOKENS}]", param="max_tokens")
        model = _model(body)
        if model is not None:
            _may_use(caller, model)
        work = self.ctx.gateway.condense(_messages(body), max_tokens=max_tokens, model=model, caller=caller)
        condensed = await until_disconnected(request.receive, work)
        return Response(encoder.encode(condensed.as_dict()), media_type=JSON)

    async def tokens(self, request: Request) -> Response:
        """``{model, messages | text}`` -> ``{tokens, exact, method}`` (counted in a worker thread)."""
        caller = await self.ctx.authenticate(request)
        body = await self._body(request)
        model = _model(body)
        if model is None:
            raise InvalidRequest("model is required", param="model")
        _may_use(caller, model)
        text = body.get("text")
        if text is not None and not isinstance(text, str):
            raise InvalidRequest("text must be a string", param="text")
        content: Any = text if text is not None else _messages(body)
        count = await asyncio.to_thread(self.ctx.gateway.count_tokens, model, content)
        return Response(encoder.encode(count.as_dict()), media_type=JSON)

    async def prompts(self, request: Request) -> Response:
        """The prompt templates the gateway knows, with their variables."""
        await self.ctx.authenticate(request)
        prompts = self.ctx.gateway.prompts()
        return Response(encoder.encode({"prompts": prompts, "count": len(prompts)}), media_type=JSON)

    async def _body(self, request: Request) -> dict[str, Any]:
        body = decode_json(await read_body(request, self.ctx.max_body))
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object", param=None)
        return body


def _model(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not 0 < len(model) <= 256):
        raise InvalidRequest("model must be a model name", param="model")
    return model


def _messages(body: dict[str, Any]) -> list[Any]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise InvalidRequest(f"at most {MAX_MESSAGES} messages", param="messages")
    return messages


def _may_use(caller: Caller, model: str) -> None:
    """403 for a model outside the caller's key's ``models`` (as for chat)."""
    if not caller.may_use(model):
        raise PermissionDenied(f"This API key may not use the model '{model[:256]}'.", param="model")
