"""Serving one chat call over HTTP, whichever protocol it came in: whole or streamed, with the call's
headers; and the usage record of a call refused before it was routed."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from llmgate.core.caller import Caller
from llmgate.core.errors import GatewayError
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatResponse
from llmgate.protocols.base import Rendering
from llmgate.server.context import ServerContext
from llmgate.server.disconnect import DisconnectWatch, EventStreamResponse, until_disconnected
from llmgate.server.headers import call_headers, cost_header
from llmgate.server.wire import OPENAI_FRAMES, SSE_HEADERS, OpenAIFrames, SSEBody, encoder

JSON = "application/json"


class OpenAIChat:
    """OpenAI Chat Completions, the canonical shape itself (``Rendering``)."""

    __slots__ = ()

    def render(self, response: ChatResponse, request: ChatRequest) -> bytes:
        """The response as it is."""
        return encoder.encode(response)

    def stream(self, request: ChatRequest) -> OpenAIFrames:
        """OpenAI's ``data:`` frames and ``[DONE]``."""
        return OPENAI_FRAMES


OPENAI_CHAT = OpenAIChat()


async def serve_chat(
    ctx: ServerContext, request: Request, caller: Caller, chat: ChatRequest, rendering: Rendering
) -> Response:
    """Serve a parsed chat request, streamed or whole, and write the answer as ``rendering`` says."""
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
            body = SSEBody(stream.batches(), rendering.stream(chat))
            return EventStreamResponse(body, headers, watch, stream.aclose)
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
    return Response(rendering.render(result.response, chat), media_type=JSON, headers=headers)


async def record_refused(
    ctx: ServerContext, request: Request, error: GatewayError, caller: Caller, *, model: str, stream: bool
) -> None:
    """The usage record of a call refused before it was routed (its key, body or headers)."""
    if error.request_id is None:
        error.request_id = ctx.request_id(request)
    await ctx.gateway.record_refusal(error, caller=caller, model=model, stream=stream)
