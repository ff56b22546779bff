"""Anthropic's Messages API in (``POST /v1/messages``, ``POST /v1/messages/count_tokens``)."""

from __future__ import annotations

from typing import Any

from llmgate.core.errors import GatewayError
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatResponse
from llmgate.protocols.anthropic.answer import error_body, error_status, render_answer
from llmgate.protocols.anthropic.request import parse_count_tokens, parse_messages
from llmgate.protocols.anthropic.stream import MessagesStream

__all__ = ["MESSAGES", "MessagesProtocol", "parse_count_tokens"]


class MessagesProtocol:
    """The Messages protocol (``Inbound``)."""

    name = "anthropic.messages"

    def parse(self, data: Any) -> ChatRequest:
        """A Messages request -> the canonical request."""
        return parse_messages(data)

    def render(self, response: ChatResponse, request: ChatRequest) -> bytes:
        """A canonical answer -> a Messages response."""
        return render_answer(response)

    def stream(self, request: ChatRequest) -> MessagesStream:
        """A renderer of Messages stream events."""
        return MessagesStream(request)

    def error(self, error: GatewayError) -> tuple[int, bytes]:
        """Anthropic's status and error body."""
        status, _ = error_status(error)
        return status, error_body(error)


MESSAGES = MessagesProtocol()
