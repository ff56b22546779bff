"""Responses ``input`` items -> Chat Completions messages (plain dicts, validated by the codec after).

Each built message remembers the item it came from (``origins``) so a later error names that item.
https://platform.openai.com/docs/api-reference/responses/create#responses-create-input
"""

from __future__ import annotations

from typing import Any

from llmgate.core.codec import converted
from llmgate.core.errors import InvalidRequest
from llmgate.core.request import MAX_MESSAGES
from llmgate.protocols.responses.inputs import (
    FunctionCallInput,
    FunctionCallOutputInput,
    InputFile,
    InputImage,
    InputText,
    MessageInput,
    OutputText,
    Part,
    RefusalPart,
)

JSONObject = dict[str, Any]

# Items that only mean something to OpenAI's own servers: reasoning is re-derived by the model (a
# stateless upstream cannot take encrypted reasoning back), so those items are dropped, not refused.
DROPPED_ITEM_TYPES = frozenset({"reasoning"})
# Items that point at state stored at OpenAI, which this gateway does not keep.
STATEFUL_ITEM_TYPES = frozenset({"item_reference"})


class Conversation:
    """The messages built so far, and the request member each one came from."""

    __slots__ = ("messages", "origins")

    def __init__(self) -> None:
        self.messages: list[JSONObject] = []
        self.origins: list[str] = []

    def add(self, message: JSONObject, origin: str) -> None:
        """Append a message."""
        self.messages.append(message)
        self.origins.append(origin)


def add_input(conversation: Conversation, value: str | list[Any] | None) -> None:
    """Translate ``input``: a string is one user message, a list is items."""
    if value is None:
        return
    if isinstance(value, str):
        conversation.add({"role": "user", "content": value}, "input")
        return
    if len(value) > MAX_MESSAGES:
        raise InvalidRequest(
            f"'input' has {len(value)} items; the limit is {MAX_MESSAGES}.",
            param="input",
            code="invalid_value",
        )
    for index, item in enumerate(value):
        _add_item(conversation, item, f"input[{index}]")


def _add_item(conversation: Conversation, item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise InvalidRequest(f"'{where}' must be an object.", param=where, code="invalid_type")
    kind = item.get("type", "message" if "role" in item else None)
    if kind is None:
        raise InvalidRequest(
            f"Missing required parameter: '{where}.type'.", param=f"{where}.type", code="missing_required"
        )
    if not isinstance(kind, str):
        raise InvalidRequest(f"'{where}.type' must be a string.", param=f"{where}.type", code="invalid_type")
    if kind == "message":
        _add_message(conversation, converted(item, MessageInput, prefix=where), where)
    elif kind == "function_call":
        _add_call(conversation, converted(item, FunctionCallInput, prefix=where), where)
    elif kind == "function_call_output":
        output = converted(item, FunctionCallOutputInput, prefix=where)
        content = _tool_output(output.output, f"{where}.output")
        conversation.add({"role": "tool", "tool_call_id": output.call_id, "content": content}, where)
    elif kind in DROPPED_ITEM_TYPES:
        return
    elif kind in STATEFUL_ITEM_TYPES:
        raise InvalidRequest(
            f"'{where}.type': item references point at stored items; this gateway does not store responses "
            "or items: send the whole conversation in 'input'.",
            param=f"{where}.type",
            code="unsupported_parameter",
        )
    else:
        raise InvalidRequest(
            f"'{where}.type': input items of type {_shown(kind)} are not supported by this gateway (it takes "
            "'message', 'function_call', 'function_call_output' and 'reasoning' items).",
            param=f"{where}.type",
            code="unsupported_value",
        )


def _add_message(conversation: Conversation, message: MessageInput, where: str) -> None:
    if isinstance(message.content, str):
        conversation.add({"role": message.role, "content": message.content}, where)
        return
    prefix = f"{where}.content"
    if message.role == "user":
        parts = [_user_part(part, f"{prefix}[{index}]") for index, part in enumerate(message.content)]
        conversation.add({"role": "user", "content": parts}, where)
        return
    text: list[str] = []
    refusal: list[str] = []
    for index, part in enumerate(message.content):
        if isinstance(part, InputText | OutputText):
            text.append(part.text)
        elif isinstance(part, RefusalPart) and message.role == "assistant":
            refusal.append(part.refusal)
        else:
            raise _part_not_allowed(part, message.role, f"{prefix}[{index}].type")
    built: JSONObject = {"role": message.role, "content": "".join(text) if text or not refusal else None}
    if refusal:
        built["refusal"] = "".join(refusal)
    conversation.add(built, where)


def _add_call(conversation: Conversation, call: FunctionCallInput, where: str) -> None:
    """Consecutive calls (and a call right after the assistant's text) are one assistant turn in Chat
    Completions: one message with several ``tool_calls``."""
    tool_call = {
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    last = conversation.messages[-1] if conversation.messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(tool_call)
        return
    conversation.add({"role": "assistant", "content": None, "tool_calls": [tool_call]}, where)


def _user_part(part: Part, where: str) -> JSONObject:
    if isinstance(part, InputText | OutputText):
        return {"type": "text", "text": part.text}
    if isinstance(part, InputImage):
        if part.image_url is None:
            raise _stored_file(f"{where}.file_id" if part.file_id is not None else f"{where}.image_url")
        image: JSONObject = {"url": part.image_url}
        if part.detail is not None:
            image["detail"] = part.detail
        return {"type": "image_url", "image_url": image}
    if isinstance(part, InputFile):
        if part.file_data is None:
            field = (
                "file_id"
                if part.file_id is not None
                else "file_url"
                if part.file_url is not None
                else "file_data"
            )
            raise _stored_file(f"{where}.{field}")
        file = {"file_data": part.file_data, **({"filename": part.filename} if part.filename else {})}
        return {"type": "file", "file": file}
    raise _part_not_allowed(part, "user", f"{where}.type")


def _tool_output(output: str | list[Part], where: str) -> str:
    """A function's output is text in Chat Completions: text parts are joined, anything else refused."""
    if isinstance(output, str):
        return output
    text: list[str] = []
    for index, part in enumerate(output):
        if not isinstance(part, InputText | OutputText):
            raise _part_not_allowed(part, "a function_call_output", f"{where}[{index}].type")
        text.append(part.text)
    return "".join(text)


def _stored_file(param: str) -> InvalidRequest:
    return InvalidRequest(
        f"'{param}': this gateway does not store files and cannot fetch OpenAI's; send the content inline "
        "(an image as 'image_url' with a URL or a data: URI, a file as base64 'file_data').",
        param=param,
        code="unsupported_parameter",
    )


def _part_not_allowed(part: Part, role: str, param: str) -> InvalidRequest:
    kind = type(part).__struct_config__.tag
    owner = role if role.startswith("a ") else f"{role} messages"
    return InvalidRequest(
        f"'{param}': content parts of type '{kind}' are not allowed in {owner}.",
        param=param,
        code="invalid_value",
    )


def _shown(value: str) -> str:
    return repr(value[:64])
