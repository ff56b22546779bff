"""Batch lines sent to the in-process gateway: each is an ordinary call (routing, failover, limits,
budgets, cache, one usage record) made as the batch's caller, whose ``batch_id`` tags the record."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from llmgate.batch.lines import BatchLine, BodyCheck
from llmgate.batch.results import Outcome
from llmgate.core.caller import ANONYMOUS, Caller
from llmgate.core.codec import parse_embedding_request
from llmgate.core.error_table import error_body, error_message
from llmgate.core.errors import GatewayError
from llmgate.core.request import ChatRequest, EmbeddingRequest
from llmgate.core.results import ChatResult, EmbeddingResult
from llmgate.core.usage import Usage

CHAT = "/v1/chat/completions"
_encoder = msgspec.json.Encoder()


class Calls(Protocol):
    """What a batch needs of the gateway (``Gateway`` is one)."""

    def new_request_id(self) -> str:
        """A new request id."""
        ...

    def chat_body(self, body: Any) -> ChatRequest:
        """A chat request from a decoded body (prompt templates rendered)."""
        ...

    async def complete(
        self, request: ChatRequest, *, request_id: str | None = None, caller: Caller = ANONYMOUS
    ) -> ChatResult:
        """One whole chat call."""
        ...

    async def embeddings(
        self, request: EmbeddingRequest, *, request_id: str | None = None, caller: Caller = ANONYMOUS
    ) -> EmbeddingResult:
        """One embeddings call."""
        ...

    async def record_refusal(
        self, error: GatewayError, *, caller: Caller = ANONYMOUS, model: str = "", stream: bool = False
    ) -> None:
        """The usage record of a call refused before routing."""
        ...


def check_body(calls: Calls) -> BodyCheck:
    """A ``BodyCheck`` that parses a line's body as the gateway will (bad bodies fail before any spend)."""

    def check(url: str, body: dict[str, Any]) -> None:
        if url == CHAT:
            calls.chat_body(body)
        else:
            parse_embedding_request(body)

    return check


class LocalSender:
    """Sends lines through an in-process gateway as ``caller``."""

    def __init__(self, calls: Calls, *, caller: Caller = ANONYMOUS) -> None:
        self.calls = calls
        self.caller = caller

    async def send(self, line: BatchLine) -> Outcome:
        """One attempt: the reply, or the error as the server would have answered it."""
        calls, request_id = self.calls, self.calls.new_request_id()
        model = str(line.body.get("model", ""))[:256]
        try:
            if line.url == CHAT:
                chat = await calls.complete(
                    calls.chat_body(line.body), request_id=request_id, caller=self.caller
                )
                return _reply(chat.response, chat.info.request_id, chat.usage, chat.cost, chat)
            request = parse_embedding_request(line.body)
            vectors = await calls.embeddings(request, request_id=request_id, caller=self.caller)
            return _reply(
                vectors.response, vectors.info.request_id, vectors.response.usage, vectors.cost, vectors
            )
        except GatewayError as error:
            if not error.recorded:
                error.request_id = error.request_id or request_id
                await calls.record_refusal(error, caller=self.caller, model=model)
            return Outcome(
                error.status,
                error_body(error),
                error.request_id or request_id,
                code=error.code,
                message=error_message(error),
                retry_after=error.retry_after,
            )


def _reply(
    response: object, request_id: str, usage: Usage | None, cost: float | None, result: object
) -> Outcome:
    return Outcome(
        200,
        _encoder.encode(response),
        request_id,
        prompt_tokens=usage.prompt_tokens if usage is not None else 0,
        completion_tokens=usage.completion_tokens if usage is not None else 0,
        cost=cost,
        result=result,
    )
