"""Canonical answers and errors -> Anthropic Messages responses and error bodies.

References: https://docs.anthropic.com/en/api/messages (the response),
https://docs.anthropic.com/en/api/errors (error types and statuses). Anthropic counts ``input_tokens``
without the prompt-cache reads and writes, which it reports apart; the canonical ``prompt_tokens`` includes
them, so they are taken out here.
"""

from __future__ import annotations

import msgspec

from llmgate.core.error_table import classify, error_message
from llmgate.core.errors import GatewayError, Overloaded, PayloadTooLarge, QuotaExceeded
from llmgate.core.request import ToolCall
from llmgate.core.response import ChatResponse
from llmgate.core.usage import Usage
from llmgate.wire.anthropic import Answer, Block, TextBlock, ThinkingBlock, ToolUseBlock, UsageCounts

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# Anthropic's own stop reasons, which the Anthropic adapter passes on as they are (``pause_turn``: a server
# tool's long turn paused, https://docs.anthropic.com/en/api/handling-stop-reasons): kept, not flattened.
ANTHROPIC_STOP_REASONS = frozenset(
    {
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
        "model_context_window_exceeded",
    }
)
# The core error table's OpenAI types -> Anthropic's (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "rate_limit_error": "rate_limit_error",
    "timeout_error": "timeout_error",
    "overloaded_error": "overloaded_error",
}
OVERLOADED_STATUS = 529
"""Anthropic's status for ``overloaded_error``: its SDK raises ``OverloadedError`` and retries it."""

_encoder = msgspec.json.Encoder()
_object = msgspec.json.Decoder(dict[str, object])


class _ErrorDetail(msgspec.Struct, gc=False):
    type: str
    message: str


class _ErrorBody(msgspec.Struct, gc=False, omit_defaults=True):
    type: str
    error: _ErrorDetail
    request_id: str | None = None


def render_answer(response: ChatResponse) -> bytes:
    """A complete answer as a Messages response; an Anthropic upstream's own answer as it came."""
    if isinstance(response.native, bytes):
        return response.native
    return _encoder.encode(answer_of(response))


def answer_of(response: ChatResponse) -> Answer:
    """The Messages response a canonical answer stands for (its first choice: Messages has no ``n``)."""
    content: list[Block] = []
    stop = None
    if response.choices:
        choice = response.choices[0]
        message = choice.message
        if message.reasoning_text:
            signature = message.reasoning_signature
            content.append(
                ThinkingBlock(message.reasoning_text, signature if isinstance(signature, str) else "")
            )
        if message.content:
            content.append(TextBlock(message.content))
        elif message.refusal:
            content.append(TextBlock(message.refusal))
        content += [tool_use(call) for call in message.tool_calls or ()]
        stop = stop_reason(choice.finish_reason)
    return Answer(
        id=message_id(response.id),
        model=response.model,
        content=content,
        stop_reason=stop,
        usage=usage_of(response.usage),
    )


def tool_use(call: ToolCall) -> ToolUseBlock:
    """A canonical tool call as a ``tool_use`` block (arguments that are not a JSON object: ``{}``)."""
    try:
        arguments = _object.decode(call.function.arguments or "{}")
    except msgspec.DecodeError:  # cut off by max_tokens, say: Anthropic's input is always an object
        arguments = {}
    return ToolUseBlock(id=call.id, name=call.function.name, input=arguments)


def stop_reason(finish_reason: str | None) -> str | None:
    """A canonical finish reason as Anthropic's ``stop_reason``."""
    if finish_reason is None:
        return None
    if finish_reason in ANTHROPIC_STOP_REASONS:
        return finish_reason
    return STOP_REASONS.get(finish_reason, "end_turn")  # another server's own reason: a plain end


def message_id(canonical: str) -> str:
    """Anthropic's ``msg_`` id for a canonical response id."""
    return canonical if canonical.startswith("msg_") else f"msg_{canonical}"


def usage_of(usage: Usage | None) -> UsageCounts:
    """Canonical usage in Anthropic's counts (input without cache reads and writes)."""
    if usage is None:
        return UsageCounts(input_tokens=0, output_tokens=0)
    # Some servers report more cached tokens than prompt tokens (Azure AI Foundry): never more than all.
    cached = min(usage.cached_tokens, usage.prompt_tokens)
    written = min(usage.cache_creation_tokens, usage.prompt_tokens - cached)
    return UsageCounts(
        input_tokens=usage.prompt_tokens - cached - written,
        output_tokens=usage.completion_tokens,
        cache_read_input_tokens=cached,
        cache_creation_input_tokens=written,
    )


def error_status(error: GatewayError) -> tuple[int, str]:
    """The HTTP status and Anthropic error type of an error."""
    status, openai_type = classify(error)
    if isinstance(error, Overloaded):
        return OVERLOADED_STATUS, "overloaded_error"
    if isinstance(error, PayloadTooLarge):
        return status, "request_too_large"
    if isinstance(error, QuotaExceeded):
        return status, "billing_error"
    return status, _ERROR_TYPES.get(openai_type, "api_error")


def error_body(error: GatewayError) -> bytes:
    """``{"type": "error", "error": {"type", "message"}, "request_id"}``."""
    _, error_type = error_status(error)
    detail = _ErrorDetail(error_type, error_message(error))
    return _encoder.encode(_ErrorBody("error", detail, request_id=error.request_id))
