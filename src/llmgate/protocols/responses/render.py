"""The canonical ``ChatResponse`` -> a Responses API ``Response`` object.

The stream renderer builds its items with the same functions and ends with this same render of the
accumulated stream, so a streamed answer and a whole one cannot drift apart.
https://platform.openai.com/docs/api-reference/responses/object
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal

import msgspec

from llmgate.core.request import ChatRequest, ResponseFormat
from llmgate.core.request import ToolChoiceFunction as ChatToolChoiceFunction
from llmgate.core.response import ChatResponse, ResponseMessage
from llmgate.core.usage import Usage
from llmgate.protocols.responses.shapes import (
    ContentPart,
    FunctionCallItem,
    FunctionTool,
    IncompleteDetails,
    InputTokensDetails,
    ItemStatus,
    MessageItem,
    OutputItem,
    OutputText,
    OutputTokensDetails,
    Reasoning,
    ReasoningItem,
    Refusal,
    Response,
    ResponseStatus,
    ResponseUsage,
    SummaryText,
    TextConfig,
    TextFormat,
    ToolChoiceFunction,
)

ItemKey = tuple[str, str]
"""Names one output item across a stream: ``("reasoning", "")``, ``("message", "")`` or
``("function_call", call_id)``."""
REASONING_KEY: ItemKey = ("reasoning", "")
MESSAGE_KEY: ItemKey = ("message", "")

# finish_reason -> incomplete_details.reason; any other finish is a completed response.
INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}

_UNSAFE = re.compile(r"[^A-Za-z0-9]")
_encoder = msgspec.json.Encoder()


def id_base(chat_id: str) -> str:
    """The upstream's id reduced to letters and digits, the common part of the ids llmgate makes."""
    return _UNSAFE.sub("", chat_id.removeprefix("chatcmpl-"))[:96] or "0"


def call_item_id(call_id: str) -> str:
    """The ``fc_`` id of a function call item, derived from its call id (so it is stable in a stream)."""
    return "fc_" + (_UNSAFE.sub("", call_id.removeprefix("call_"))[:96] or "0")


def fallback_call_id(base: str, position: int) -> str:
    """A call id for an upstream that sent none (the caller needs one to send the output back)."""
    return f"call_{base}_{position}"


def item_status(position: int, count: int, finish: str | None) -> ItemStatus:
    """An item's status: the last one is ``incomplete`` when the answer was cut off."""
    return "incomplete" if position == count - 1 and finish in INCOMPLETE_REASONS else "completed"


def message_item(base: str, text: str, refusal: str, status: ItemStatus) -> MessageItem:
    """The assistant's message item: its text and/or its refusal."""
    content: list[ContentPart] = []
    if text:
        content.append(OutputText(text=text))
    if refusal:
        content.append(Refusal(refusal=refusal))
    return MessageItem(id=f"msg_{base}", status=status, content=content)


def call_item(call_id: str, name: str, arguments: str, status: ItemStatus) -> FunctionCallItem:
    """One function call item."""
    return FunctionCallItem(
        id=call_item_id(call_id), status=status, call_id=call_id, name=name, arguments=arguments
    )


def reasoning_item(base: str, text: str) -> ReasoningItem:
    """The reasoning item, its text as one summary part."""
    return ReasoningItem(id=f"rs_{base}", summary=[SummaryText(text=text)])


def output_items(
    message: ResponseMessage, base: str, finish: str | None, order: Sequence[ItemKey] = ()
) -> list[OutputItem]:
    """The output items of a message: reasoning, text, then one item per tool call, unless ``order``
    (a stream's order of first appearance) says otherwise."""
    builders: dict[ItemKey, Callable[[ItemStatus], OutputItem]] = {}
    if message.reasoning_text:
        builders[REASONING_KEY] = partial(_reasoning, base, message.reasoning_text)
    if message.content or message.refusal:
        builders[MESSAGE_KEY] = partial(message_item, base, message.content or "", message.refusal or "")
    for position, call in enumerate(message.tool_calls or ()):
        call_id = call.id or fallback_call_id(base, position)
        builders[("function_call", call_id)] = partial(
            call_item, call_id, call.function.name, call.function.arguments
        )
    keys = [key for key in order if key in builders]
    keys += [key for key in builders if key not in keys]
    return [builders[key](item_status(position, len(keys), finish)) for position, key in enumerate(keys)]


def _reasoning(base: str, text: str, _status: ItemStatus) -> ReasoningItem:
    return reasoning_item(base, text)


def render_response(response: ChatResponse, request: ChatRequest, order: Sequence[ItemKey] = ()) -> Response:
    """The ``Response`` for a complete canonical answer (its first choice: the API has no ``n``)."""
    choice = next((choice for choice in response.choices if choice.index == 0), None)
    message = choice.message if choice is not None else ResponseMessage()
    finish = choice.finish_reason if choice is not None else None
    base = id_base(response.id)
    reason = INCOMPLETE_REASONS.get(finish or "")
    return response_object(
        request,
        base=base,
        created=response.created,
        model=response.model or request.model,
        status="incomplete" if reason else "completed",
        output=output_items(message, base, finish, order),
        usage=response_usage(response.usage),
        incomplete=reason,
    )


def response_object(
    request: ChatRequest,
    *,
    base: str,
    created: int,
    model: str,
    status: ResponseStatus,
    output: list[OutputItem],
    usage: ResponseUsage | None,
    incomplete: str | None = None,
) -> Response:
    """A ``Response`` with the request's settings echoed, as the API does (the SDK requires them)."""
    return Response(
        id=f"resp_{base}",
        created_at=created,
        status=status,
        incomplete_details=IncompleteDetails(reason=incomplete) if incomplete else None,
        max_output_tokens=request.output_limit,
        model=model,
        output=output,
        parallel_tool_calls=request.parallel_tool_calls is not False,
        reasoning=Reasoning(effort=request.reasoning_effort),
        temperature=request.temperature,
        text=TextConfig(format=_text_format(request.response_format)),
        tool_choice=_tool_choice(request),
        tools=[
            FunctionTool(
                name=tool.function.name,
                description=tool.function.description,
                parameters=tool.function.parameters,
                strict=tool.function.strict,
            )
            for tool in request.tools or ()
        ],
        top_p=request.top_p,
        usage=usage,
        user=request.user,
        metadata=request.metadata or {},
    )


def response_usage(usage: Usage | None) -> ResponseUsage | None:
    """Chat Completions usage in the Responses API's names (both breakdowns always present)."""
    if usage is None:
        return None
    return ResponseUsage(
        input_tokens=usage.prompt_tokens,
        input_tokens_details=InputTokensDetails(
            cached_tokens=usage.cached_tokens, cache_write_tokens=usage.cache_creation_tokens
        ),
        output_tokens=usage.completion_tokens,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=usage.reasoning_tokens),
        total_tokens=usage.total_tokens,
    )


def encode(value: msgspec.Struct) -> bytes:
    """JSON of a Responses object or event."""
    return _encoder.encode(value)


def _tool_choice(request: ChatRequest) -> Literal["none", "auto", "required"] | ToolChoiceFunction:
    choice = request.tool_choice
    if isinstance(choice, ChatToolChoiceFunction):
        return ToolChoiceFunction(name=choice.function.name)
    return choice or "auto"


def _text_format(response_format: ResponseFormat | None) -> TextFormat:
    if response_format is None:
        return TextFormat(type="text")
    schema = response_format.json_schema
    if response_format.type != "json_schema" or schema is None:
        return TextFormat(type=response_format.type)
    return TextFormat(
        type="json_schema",
        name=schema.name,
        schema=schema.schema or {},
        description=schema.description,
        strict=schema.strict,
    )
