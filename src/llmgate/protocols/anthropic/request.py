"""An Anthropic Messages request (``POST /v1/messages``) -> the canonical request.

Reference: https://docs.anthropic.com/en/api/messages. The body is checked against the same typed shapes
the Anthropic adapter sends (``llmgate.wire.anthropic``), then said again in the canonical (OpenAI) form:

- ``system`` -> a system message; each turn -> OpenAI messages: a user turn's ``tool_result`` blocks
  become ``tool`` messages (first, as OpenAI wants them right after the calls), its other blocks a user
  message; an assistant turn's text and ``tool_use`` blocks one assistant message with ``tool_calls``.
- ``thinking`` / ``redacted_thinking`` blocks of earlier turns have no canonical form and are left out
  (an Anthropic backend gets them, with the rest of the request as sent: see ``Native``).
- ``tools`` -> function tools, ``tool_choice`` ``auto`` / ``any`` / ``tool`` / ``none`` -> ``auto`` /
  ``required`` / the named function / ``none``, ``disable_parallel_tool_use`` -> ``parallel_tool_calls``.
- ``stop_sequences`` -> ``stop``, ``metadata.user_id`` -> ``user``, ``top_k`` rides as an extra field (the
  backends that have it take it), ``thinking.budget_tokens`` -> the ``reasoning_effort`` whose budget it
  reaches (the Anthropic adapter maps efforts back to budgets the same way).
- ``output_config.format`` -> ``response_format`` ``json_schema`` (so the answer is checked as on chat);
  a ``tool_result`` with ``is_error`` gets ``Error: `` before its text (chat has no such flag).
- Server tools (``web_search``, ``code_execution``...) run at Anthropic and are refused with a 400.
"""

from __future__ import annotations

from typing import Any

import msgspec

from llmgate.core.codec import check_nesting, convert_as, parse_chat_request
from llmgate.core.errors import InvalidRequest
from llmgate.core.request import ANTHROPIC_MESSAGES, ChatRequest, Native
from llmgate.wire.anthropic import (
    Base64Source,
    Block,
    DocumentBlock,
    ImageBlock,
    MessagesBody,
    TextBlock,
    Thinking,
    ToolChoiceSpec,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Turn,
)

JSONObject = dict[str, Any]

ERROR_MARK = "Error: "
"""Put before a tool result that says ``is_error: true`` (chat's tool messages have no such flag)."""

# The smallest budget that reaches each effort, from the top (the adapter's budgets: 2048 / 8192 / 16384).
_EFFORTS = ((16384, "high"), (8192, "medium"), (0, "low"))
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_FORMAT = ("response_format.json_schema", "output_config.format")
_encoder = msgspec.json.Encoder()


class CountTokensBody(msgspec.Struct, gc=False):
    """The body of ``POST /v1/messages/count_tokens``: a Messages request without ``max_tokens``."""

    model: str
    messages: list[Turn]
    system: str | list[TextBlock] | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: ToolChoiceSpec | None = None
    thinking: Thinking | None = None


def parse_messages(data: Any) -> ChatRequest:
    """A decoded Messages body -> the canonical request, carrying the checked body as ``native``."""
    body = convert_as(data, MessagesBody)
    check_nesting(data.items(), "")  # all of it may go upstream as it is: bounded as chat's free JSON
    chat = _chat(body.model, body.system, body.messages, body.tools, body.tool_choice)
    chat["max_tokens"] = body.max_tokens
    _sampling(body, chat)
    if body.output_config is not None:  # checked (and retried) like chat's json_schema answers
        schema = body.output_config.format.schema
        chat["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    if body.stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # message_delta reports the usage
    request = _parse(chat)
    # What is passed on is the checked body: fields the shapes do not know are not sent to Anthropic.
    native: JSONObject = msgspec.to_builtins(msgspec.structs.replace(body, stream=None))
    del native["model"]  # the deployment's, when it is sent
    return msgspec.structs.replace(request, native=Native(ANTHROPIC_MESSAGES, native))


def parse_count_tokens(data: Any) -> ChatRequest:
    """A decoded ``count_tokens`` body -> the canonical request whose prompt it counts."""
    body = convert_as(data, CountTokensBody)
    return _parse(_chat(body.model, body.system, body.messages, body.tools, body.tool_choice))


def _parse(chat: JSONObject) -> ChatRequest:
    try:
        return parse_chat_request(chat)
    except InvalidRequest as exc:  # a bound of the canonical request: say it in this protocol's words
        if exc.param is not None and exc.param.startswith(("stop", "response_format")):
            canonical, ours = ("stop", "stop_sequences") if exc.param.startswith("stop") else _FORMAT
            exc.param = exc.param.replace(canonical, ours, 1)
            exc.message = exc.message.replace(f"'{canonical}", f"'{ours}")
        raise


def _chat(
    model: str,
    system: str | list[TextBlock] | None,
    turns: list[Turn],
    tools: list[ToolSpec] | None,
    tool_choice: ToolChoiceSpec | None,
) -> JSONObject:
    messages: list[JSONObject] = []
    if system:
        text = system if isinstance(system, str) else [{"type": "text", "text": b.text} for b in system]
        messages.append({"role": "system", "content": text})
    for position, turn in enumerate(turns):
        messages += _user(turn, position) if turn.role == "user" else [_assistant(turn, position)]
    chat: JSONObject = {"model": model, "messages": messages}
    if tools:
        chat["tools"] = [_tool(tool, index) for index, tool in enumerate(tools)]
    if tool_choice is not None and tools:  # without tools there is nothing to choose
        _choose(tool_choice, chat)
    return chat


def _sampling(body: MessagesBody, chat: JSONObject) -> None:
    for name, value in (("temperature", body.temperature), ("top_p", body.top_p), ("top_k", body.top_k)):
        if value is not None:
            chat[name] = value
    if body.stop_sequences:
        chat["stop"] = body.stop_sequences
    if body.metadata is not None:
        chat["user"] = body.metadata.user_id
    thinking = body.thinking
    if thinking is not None and thinking.type == "enabled":
        budget = thinking.budget_tokens or 0
        chat["reasoning_effort"] = next(effort for floor, effort in _EFFORTS if budget >= floor)


def _user(turn: Turn, position: int) -> list[JSONObject]:
    if isinstance(turn.content, str):
        return [{"role": "user", "content": turn.content}]
    results: list[JSONObject] = []
    parts: list[JSONObject] = []
    for index, block in enumerate(turn.content):
        where = f"messages[{position}].content[{index}]"
        if isinstance(block, ToolResultBlock):
            results.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": _result(block)})
        elif isinstance(block, ToolUseBlock):
            raise InvalidRequest("tool_use blocks belong in assistant turns.", param=f"{where}.type")
        else:
            part = _part(block, where)
            if part is not None:
                parts.append(part)
    return results + ([{"role": "user", "content": parts}] if parts or not results else [])


def _assistant(turn: Turn, position: int) -> JSONObject:
    if isinstance(turn.content, str):
        return {"role": "assistant", "content": turn.content}
    text: list[str] = []
    calls: list[JSONObject] = []
    for index, block in enumerate(turn.content):
        if isinstance(block, TextBlock):
            text.append(block.text)
        elif isinstance(block, ToolUseBlock):
            arguments = _encoder.encode(block.input).decode()
            calls.append(
                {"id": block.id, "type": "function", "function": {"name": block.name, "arguments": arguments}}
            )
        elif isinstance(block, ToolResultBlock | ImageBlock | DocumentBlock):
            raise InvalidRequest(
                f"An assistant turn cannot carry {_kind(block)} blocks.",
                param=f"messages[{position}].content[{index}].type",
            )
        # thinking and redacted_thinking: no canonical form (see the module docstring)
    message: JSONObject = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def _result(block: ToolResultBlock) -> str | list[JSONObject]:
    # A chat tool message has no is_error: the failure is said in its text, where the model reads it.
    flag = ERROR_MARK if block.is_error else ""
    if isinstance(block.content, str):
        return flag + block.content
    parts = [part for part in (_part(item, "tool_result") for item in block.content) if part is not None]
    return [{"type": "text", "text": flag.strip()}, *parts] if flag else parts


def _part(block: Block, where: str) -> JSONObject | None:
    if isinstance(block, TextBlock):
        return {"type": "text", "text": block.text}
    if isinstance(block, ImageBlock):
        source = block.source
        url = (
            f"data:{source.media_type};base64,{source.data}"
            if isinstance(source, Base64Source)
            else source.url
        )
        return {"type": "image_url", "image_url": {"url": url}}
    if isinstance(block, DocumentBlock):
        data = f"data:{block.source.media_type};base64,{block.source.data}"
        return {"type": "file", "file": {"file_data": data, "filename": block.title or "document.pdf"}}
    return None  # thinking blocks in a user turn: Anthropic ignores what it did not write


def _kind(block: Block) -> str:
    return {ToolResultBlock: "tool_result", ImageBlock: "image", DocumentBlock: "document"}.get(
        type(block), "these"
    )


def _tool(tool: ToolSpec, index: int) -> JSONObject:
    if tool.type not in (None, "custom"):
        raise InvalidRequest(
            f"Server tools ('{tool.type[:64]}') run at Anthropic and are not supported by this gateway; "
            "send client tools (name, description, input_schema).",
            param=f"tools[{index}].type",
            code="unsupported_parameter",
        )
    if not tool.input_schema:
        raise InvalidRequest(
            "Missing required parameter: 'input_schema'.", param=f"tools[{index}].input_schema"
        )
    function: JSONObject = {"name": tool.name, "parameters": tool.input_schema}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _choose(choice: ToolChoiceSpec, chat: JSONObject) -> None:
    if choice.type == "tool":
        if not choice.name:
            raise InvalidRequest("tool_choice of type 'tool' needs a name.", param="tool_choice.name")
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    else:
        chat["tool_choice"] = _TOOL_CHOICES[choice.type]
    if choice.disable_parallel_tool_use:
        chat["parallel_tool_calls"] = False
