"""The Responses API objects llmgate sends: the ``Response``, its output items and the stream events.

Field sets follow OpenAI's OpenAPI spec (``Response``, ``ResponseOutputItem``, ``ResponseStreamEvent``):
every member the spec marks required is always encoded, ``null`` included, because the official SDKs
read a missing member as an error. https://platform.openai.com/docs/api-reference/responses/object
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

ItemStatus = Literal["in_progress", "completed", "incomplete"]
ResponseStatus = Literal["in_progress", "completed", "incomplete"]


class OutputText(msgspec.Struct, gc=False, tag="output_text", tag_field="type"):
    """Generated text inside a message (llmgate adds no citations, so ``annotations`` is empty)."""

    text: str
    annotations: list[Any] = []
    logprobs: list[Any] = []


class Refusal(msgspec.Struct, gc=False, tag="refusal", tag_field="type"):
    """The model's refusal, in place of text."""

    refusal: str


ContentPart = OutputText | Refusal


class MessageItem(msgspec.Struct, gc=False, tag="message", tag_field="type"):
    """The assistant's message."""

    id: str
    status: ItemStatus
    content: list[ContentPart]
    role: Literal["assistant"] = "assistant"


class FunctionCallItem(msgspec.Struct, gc=False, tag="function_call", tag_field="type"):
    """One call of a function tool; ``call_id`` is what the caller answers with ``function_call_output``."""

    id: str
    status: ItemStatus
    call_id: str
    name: str
    arguments: str


class SummaryText(msgspec.Struct, gc=False, tag="summary_text", tag_field="type"):
    """A piece of the model's visible reasoning."""

    text: str


class ReasoningItem(msgspec.Struct, gc=False, tag="reasoning", tag_field="type"):
    """The model's visible reasoning, as a summary (upstreams give the text, never encrypted content)."""

    id: str
    summary: list[SummaryText]


OutputItem = MessageItem | FunctionCallItem | ReasoningItem


class InputTokensDetails(msgspec.Struct, gc=False):
    """Prompt tokens read from the provider's cache, and written to it."""

    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(msgspec.Struct, gc=False):
    """Output tokens spent on reasoning."""

    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct, gc=False):
    """Token counts; both breakdowns are required members."""

    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class IncompleteDetails(msgspec.Struct, gc=False):
    """Why a response stopped early: ``max_output_tokens`` or ``content_filter``."""

    reason: str


class FunctionTool(msgspec.Struct, gc=False, tag="function", tag_field="type"):
    """A function tool, echoed from the request."""

    name: str
    description: str | None
    parameters: dict[str, Any] | None
    strict: bool | None


class ToolChoiceFunction(msgspec.Struct, gc=False, tag="function", tag_field="type"):
    """A tool choice naming one function."""

    name: str


class TextFormat(msgspec.Struct, gc=False, omit_defaults=True):
    """``text``, ``json_object`` or ``json_schema`` (with its name and schema)."""

    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(msgspec.Struct, gc=False):
    """The ``text`` member: the output format the request asked for."""

    format: TextFormat


class Reasoning(msgspec.Struct, gc=False):
    """The ``reasoning`` member: the effort the request asked for."""

    effort: str | None = None
    summary: str | None = None


class Response(msgspec.Struct, gc=False, kw_only=True):
    """A whole response, members in the order OpenAI sends them."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    background: bool = False
    error: None = None
    incomplete_details: IncompleteDetails | None
    instructions: str | None = None
    max_output_tokens: int | None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: None = None
    reasoning: Reasoning
    store: bool = False
    temperature: float | None
    text: TextConfig
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceFunction
    tools: list[FunctionTool]
    top_p: float | None
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None
    user: str | None
    metadata: dict[str, str]


# Stream events (https://platform.openai.com/docs/api-reference/responses-streaming). Each carries its
# ``type`` first and a ``sequence_number`` counting from 0 across the stream.


class LifecycleEvent(msgspec.Struct, gc=False):
    """``response.created`` / ``in_progress`` / ``completed`` / ``incomplete``."""

    type: str
    sequence_number: int
    response: Response


class ItemEvent(msgspec.Struct, gc=False):
    """``response.output_item.added`` / ``done``."""

    type: str
    sequence_number: int
    output_index: int
    item: OutputItem


class ContentPartEvent(msgspec.Struct, gc=False):
    """``response.content_part.added`` / ``done``."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    part: ContentPart


class TextDeltaEvent(msgspec.Struct, gc=False):
    """``response.output_text.delta`` (``logprobs`` is a required member)."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] = []


class TextDoneEvent(msgspec.Struct, gc=False):
    """``response.output_text.done``."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] = []


class RefusalDeltaEvent(msgspec.Struct, gc=False):
    """``response.refusal.delta``."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    delta: str


class RefusalDoneEvent(msgspec.Struct, gc=False):
    """``response.refusal.done``."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    content_index: int
    refusal: str


class ArgumentsDeltaEvent(msgspec.Struct, gc=False):
    """``response.function_call_arguments.delta``."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    delta: str


class ArgumentsDoneEvent(msgspec.Struct, gc=False):
    """``response.function_call_arguments.done`` (the spec requires ``name`` too)."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    name: str
    arguments: str


class SummaryPartEvent(msgspec.Struct, gc=False):
    """``response.reasoning_summary_part.added`` / ``done``."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class SummaryDeltaEvent(msgspec.Struct, gc=False):
    """``response.reasoning_summary_text.delta``."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    summary_index: int
    delta: str


class SummaryDoneEvent(msgspec.Struct, gc=False):
    """``response.reasoning_summary_text.done``."""

    type: str
    sequence_number: int
    item_id: str
    output_index: int
    summary_index: int
    text: str


class ErrorEvent(msgspec.Struct, gc=False, kw_only=True):
    """``error``: the stream broke; nothing follows it. ``code`` and ``param`` are required, maybe null."""

    type: Literal["error"] = "error"
    code: str | None
    message: str
    param: str | None
    sequence_number: int


Event = (
    LifecycleEvent
    | ItemEvent
    | ContentPartEvent
    | TextDeltaEvent
    | TextDoneEvent
    | RefusalDeltaEvent
    | RefusalDoneEvent
    | ArgumentsDeltaEvent
    | ArgumentsDoneEvent
    | SummaryPartEvent
    | SummaryDeltaEvent
    | SummaryDoneEvent
    | ErrorEvent
)
