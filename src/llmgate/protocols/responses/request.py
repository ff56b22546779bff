"""``POST /v1/responses`` body -> the canonical ``ChatRequest`` (the stateless subset of the API).

The translation builds a Chat Completions body and hands it to the canonical codec, so every bound the
gateway enforces is checked once, in one place; the codec's errors are renamed back into the Responses
request's terms. https://platform.openai.com/docs/api-reference/responses/create
"""

from __future__ import annotations

from typing import Any

import msgspec

from llmgate.core.codec import converted, parse_chat_request
from llmgate.core.errors import InvalidRequest
from llmgate.core.request import MAX_TOOLS, ChatRequest
from llmgate.protocols.responses.inputs import (
    CREATE_FIELDS,
    CreateResponse,
    FunctionToolInput,
    TextFormatJSONObject,
    TextFormatJSONSchema,
    TextFormatText,
)
from llmgate.protocols.responses.items import Conversation, add_input
from llmgate.protocols.responses.paths import translated

JSONObject = dict[str, Any]

# Members that change nothing a stateless gateway can honour, accepted and not translated: what to
# ``include`` (encrypted reasoning, logprobs), ``truncation`` (context overflow is a 400 here, as with
# ``disabled``), OpenAI's service tier and prompt-cache hints, the abuse-tracking identifier, logprobs,
# the stream's obfuscation option, and the cap on calls of built-in tools (which are refused anyway).
IGNORED_FIELDS = frozenset(
    {
        "include",
        "truncation",
        "service_tier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "top_logprobs",
        "stream_options",
        "max_tool_calls",
    }
)
# Members that need responses, conversations or prompts stored at the server: refused when set. (``store``
# and ``background`` are refused only when true, below.)
STATEFUL_FIELDS = frozenset({"previous_response_id", "conversation", "prompt"})
TOOL_CHOICES = frozenset({"auto", "none", "required"})


class _NamedChoice(msgspec.Struct, gc=False):
    name: str


def parse_request(data: Any) -> ChatRequest:
    """Validate a decoded ``POST /v1/responses`` body and translate it; ``InvalidRequest`` naming the
    member (``input[2].content[0].type``) otherwise."""
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    body = converted(_known_fields(data), CreateResponse)
    for field in ("store", "background"):
        if getattr(body, field) is True:
            raise _stateful(field)
    conversation = Conversation()
    if body.instructions is not None:
        conversation.add({"role": "system", "content": body.instructions}, "instructions")
    add_input(conversation, body.input)
    if not conversation.messages:
        raise InvalidRequest(
            "Missing required parameter: 'input' (at least one item).", param="input", code="missing_required"
        )
    chat: JSONObject = {"model": body.model, "messages": conversation.messages, **_options(body)}
    try:
        return parse_chat_request(chat)
    except InvalidRequest as exc:
        raise translated(exc, conversation.origins) from None


def _known_fields(data: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key in CREATE_FIELDS:
            fields[key] = value
        elif key in STATEFUL_FIELDS:
            if value is not None:
                raise _stateful(key)
        elif key not in IGNORED_FIELDS:
            name = str(key)[:128]
            raise InvalidRequest(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")
    return fields


def _stateful(field: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{field}' is not supported: responses are not stored by this gateway. Send the whole "
        "conversation in 'input' ('store': false, or leaving 'store' out, is fine).",
        param=field,
        code="unsupported_parameter",
    )


def _options(body: CreateResponse) -> JSONObject:
    """Every member besides the messages, in Chat Completions terms."""
    chat: JSONObject = {
        name: value
        for name in ("temperature", "top_p", "user", "metadata", "parallel_tool_calls")
        if (value := getattr(body, name)) is not None
    }
    if body.max_output_tokens is not None:
        chat["max_completion_tokens"] = body.max_output_tokens
    if body.reasoning is not None and body.reasoning.effort is not None:
        chat["reasoning_effort"] = body.reasoning.effort
    if body.text is not None and body.text.format is not None:
        chat["response_format"] = _response_format(body.text.format)
    if body.tools:  # Chat Completions refuses an empty list; the Responses API takes it as "no tools"
        chat["tools"] = _tools(body.tools)
    if body.tool_choice is not None:
        chat["tool_choice"] = _tool_choice(body.tool_choice)
    if body.stream:
        # response.completed carries the usage, so the stream must end with the usage chunk.
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


def _tools(tools: list[Any]) -> list[JSONObject]:
    if len(tools) > MAX_TOOLS:
        raise InvalidRequest(
            f"'tools' has {len(tools)} tools; the limit is {MAX_TOOLS}.", param="tools", code="invalid_value"
        )
    built: list[JSONObject] = []
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where, code="invalid_type")
        kind = tool.get("type")
        if kind != "function":
            raise _unsupported_type(kind, where, "Tools")
        # ``strict`` is passed on only when given: the Responses API defaults it to true for OpenAI's own
        # models (https://platform.openai.com/docs/guides/function-calling#strict-mode), but upstreams
        # behind Chat Completions default it to false, and a schema not written for strict mode is a 400
        # there.
        function = converted(tool, FunctionToolInput, prefix=where)
        built.append({"type": "function", "function": msgspec.to_builtins(function)})
    return built


def _tool_choice(choice: str | dict[str, Any]) -> str | JSONObject:
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise InvalidRequest(
                f"Invalid value at 'tool_choice': {choice[:64]!r} (expected 'auto', 'none', 'required' or a "
                "function).",
                param="tool_choice",
                code="invalid_value",
            )
        return choice
    if choice.get("type") != "function":
        raise _unsupported_type(choice.get("type"), "tool_choice", "Tool choices")
    named = converted(choice, _NamedChoice, prefix="tool_choice")
    return {"type": "function", "function": {"name": named.name}}


def _unsupported_type(kind: Any, where: str, what: str) -> InvalidRequest:
    """Built-in tools (web and file search, computer use, code interpreter, MCP...) run on OpenAI's own
    servers; an upstream behind this gateway has none of them."""
    if kind is None:
        return InvalidRequest(
            f"Missing required parameter: '{where}.type'.", param=f"{where}.type", code="missing_required"
        )
    shown = repr(kind[:64]) if isinstance(kind, str) else type(kind).__name__
    return InvalidRequest(
        f"{what} of type {shown} are not supported by this gateway: only 'function' tools are (built-in "
        "tools run on OpenAI's own servers).",
        param=f"{where}.type",
        code="unsupported_parameter",
    )


def _response_format(
    text_format: TextFormatText | TextFormatJSONObject | TextFormatJSONSchema,
) -> JSONObject:
    if isinstance(text_format, TextFormatText):
        return {"type": "text"}
    if isinstance(text_format, TextFormatJSONObject):
        return {"type": "json_object"}
    schema: JSONObject = {"name": text_format.name, "schema": text_format.schema}
    if text_format.description is not None:
        schema["description"] = text_format.description
    if text_format.strict is not None:
        schema["strict"] = text_format.strict
    return {"type": "json_schema", "json_schema": schema}
