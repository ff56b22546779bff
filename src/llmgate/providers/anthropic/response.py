"""A complete Messages API answer -> the canonical response; shared by the stream translator.

Reference: https://docs.anthropic.com/en/api/messages (response) and
https://docs.anthropic.com/en/api/handling-stop-reasons (stop reasons).
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from msgspec import UNSET

from llmgate.core.errors import GatewayError, UnexpectedResponse
from llmgate.core.request import FunctionCall, ToolCall
from llmgate.core.response import ChatResponse, Choice, ResponseMessage
from llmgate.core.usage import Usage, make_usage
from llmgate.providers.anthropic.errors import error_from_detail
from llmgate.wire.anthropic import (
    JSON_TOOL,
    ContentBlock,
    ErrorEnvelope,
    MessageOut,
    UsageCounts,
)

_message_decoder = msgspec.json.Decoder(MessageOut)
_error_decoder = msgspec.json.Decoder(ErrorEnvelope)
_json_encoder = msgspec.json.Encoder()

# Stop reasons with an OpenAI equivalent. Any other (pause_turn, a future one) is passed on as it is:
# a finish reason the client does not know is honest, a made-up "stop" is not.
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    # The answer was cut because the context window filled up: truncated output, as OpenAI's "length".
    # https://docs.anthropic.com/en/api/handling-stop-reasons#model-context-window-exceeded
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Blocks that carry nothing a Chat Completions client can use: encrypted reasoning.
_IGNORED_BLOCKS = frozenset({"redacted_thinking"})


def finish_reason(stop_reason: str | None, *, json_answer: bool, tool_calls: bool) -> str | None:
    """The OpenAI finish reason for a stop reason; a JSON answer given through the JSON tool is a stop."""
    if stop_reason == "tool_use" and json_answer and not tool_calls:
        return "stop"
    if stop_reason is None:
        return None
    return _FINISH_REASONS.get(stop_reason, stop_reason)


def usage_from(counts: UsageCounts) -> Usage:
    """Anthropic's counts -> canonical usage: ``input_tokens`` excludes cache reads and writes, OpenAI's
    ``prompt_tokens`` includes them (https://docs.anthropic.com/en/api/messages#response-usage)."""
    cached = counts.cache_read_input_tokens or 0
    written = counts.cache_creation_input_tokens or 0
    return make_usage(
        prompt=(counts.input_tokens or 0) + cached + written,
        completion=counts.output_tokens or 0,
        cached=cached,
        cache_creation=written or None,
    )


def parse_message(body: bytes, *, clock: Callable[[], float]) -> ChatResponse:
    """Decode a complete answer; an error object (even with status 200) raises its error."""
    try:
        message = _message_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise UnexpectedResponse(f"anthropic: unreadable response: {exc}") from exc
    if message.type != "message":
        raise _not_a_message(body, message.type)
    text: list[str] = []
    reasoning: list[str] = []
    signatures: list[str] = []
    calls: list[ToolCall] = []
    json_answer = False
    for block in message.content:
        if block.type == "text":
            text.append(block.text)
        elif block.type == "thinking":
            reasoning.append(block.thinking)
            signatures.append(block.signature)
        elif block.type == "tool_use" and block.name == JSON_TOOL:
            text.append(_json_encoder.encode(block.input).decode())
            json_answer = True
        elif block.type == "tool_use":
            calls.append(ToolCall(id=block.id, function=FunctionCall(block.name, _arguments(block))))
        elif block.type not in _IGNORED_BLOCKS:
            raise unknown_block(block)
    answer = ResponseMessage(
        content="".join(text) if text else None,
        tool_calls=calls or UNSET,
        reasoning_content="".join(reasoning) if reasoning else UNSET,
        reasoning_signature="".join(signatures) if any(signatures) else UNSET,
    )
    reason = finish_reason(message.stop_reason, json_answer=json_answer, tool_calls=bool(calls))
    return ChatResponse(
        id=message.id,
        created=int(clock()),
        model=message.model,
        choices=[Choice(index=0, message=answer, finish_reason=reason)],
        usage=usage_from(message.usage),
    )


def unknown_block(block: ContentBlock) -> UnexpectedResponse:
    """A content block this adapter cannot express (server tools, which llmgate never asks for)."""
    return UnexpectedResponse(f"anthropic: unsupported content block type '{block.type}'")


def _arguments(block: ContentBlock) -> str:
    return _json_encoder.encode(block.input if block.input is not None else {}).decode()


def _not_a_message(body: bytes, kind: str) -> GatewayError:
    if kind == "error":
        envelope = _error_decoder.decode(body)
        if envelope.error is not None:
            return error_from_detail(envelope.error)
    return UnexpectedResponse(f"anthropic: expected a message, got type '{kind}': {body[:200]!r}")
