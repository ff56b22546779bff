"""The OpenAI Responses API (``POST /v1/responses``), stateless subset, as an inbound protocol.

``RESPONSES`` parses a Responses request into the canonical ``ChatRequest`` and renders canonical answers,
streams and errors back as Responses objects and events. Nothing is stored: ``previous_response_id``,
``conversation``, ``store: true`` and ``background: true`` are refused; callers send the whole
conversation in ``input``. https://platform.openai.com/docs/api-reference/responses
"""

from __future__ import annotations

from typing import Any

from llmgate.core.error_table import classify, error_body
from llmgate.core.errors import GatewayError
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatResponse
from llmgate.protocols.base import Inbound
from llmgate.protocols.responses.render import encode, render_response
from llmgate.protocols.responses.request import IGNORED_FIELDS, STATEFUL_FIELDS, parse_request
from llmgate.protocols.responses.stream import ResponsesStream

__all__ = ["IGNORED_FIELDS", "RESPONSES", "STATEFUL_FIELDS", "ResponsesProtocol", "ResponsesStream"]


class ResponsesProtocol:
    """The Responses API protocol (``base.Inbound``); holds no state, use the ``RESPONSES`` singleton."""

    name = "openai.responses"

    def parse(self, data: Any) -> ChatRequest:
        """A decoded ``POST /v1/responses`` body -> the canonical request (``InvalidRequest`` naming the
        member otherwise)."""
        return parse_request(data)

    def render(self, response: ChatResponse, request: ChatRequest) -> bytes:
        """A complete canonical answer -> the JSON of a ``Response`` object."""
        return encode(render_response(response, request))

    def stream(self, request: ChatRequest) -> ResponsesStream:
        """A renderer of the Responses stream events answering ``request``."""
        return ResponsesStream(request)

    def error(self, error: GatewayError) -> tuple[int, bytes]:
        """OpenAI's error shape, as for Chat Completions: ``{"error": {message, type, param, code}}``."""
        status, _ = classify(error)
        return status, error_body(error)


RESPONSES = ResponsesProtocol()
"""The one Responses protocol instance."""

_CONFORMS: Inbound = RESPONSES  # mypy proves the singleton satisfies the contract
