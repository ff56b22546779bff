"""The Messages API's JSON, typed: requests (the adapter sends them, the inbound protocol reads them)
and the answers the adapter reads.

Reference: https://docs.anthropic.com/en/api/messages (request and response) and
https://docs.anthropic.com/en/docs/build-with-claude/streaming (stream events).
Structs have no reference cycles, so they opt out of the garbage collector (``gc=False``) like the core
types. Answers are decoded leniently (one generic block and event shape, unknown fields ignored) so that an
unknown block or event type reaches the adapter with its name and is reported, not lost in a decode error.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

JSONObject = dict[str, Any]

MIN_THINKING_BUDGET = 1024  # https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking
MAX_BUDGET = 1_000_000  # as the canonical request's output limit
MAX_TOP_K = 2**31 - 1

JSON_TOOL = "llmgate_json_response"
"""The tool llmgate adds to carry a JSON answer when ``response_format`` asks for JSON (see request.py)."""


# --- request -----------------------------------------------------------------------------------------


CacheControl = dict[str, Any]
"""``{"type": "ephemeral", "ttl": "5m"}``: a prompt-cache breakpoint, kept as sent."""


class TextBlock(msgspec.Struct, gc=False, tag="text", tag_field="type", omit_defaults=True):
    """Text in a turn or in the system prompt."""

    text: str
    cache_control: CacheControl | None = None


class Base64Source(msgspec.Struct, gc=False, tag="base64", tag_field="type"):
    """Inline media: base64 data with its media type."""

    media_type: str
    data: str


class URLSource(msgspec.Struct, gc=False, tag="url", tag_field="type"):
    """Media Anthropic fetches itself."""

    url: str


class ImageBlock(msgspec.Struct, gc=False, tag="image", tag_field="type", omit_defaults=True):
    """An image."""

    source: Base64Source | URLSource
    cache_control: CacheControl | None = None


class DocumentBlock(msgspec.Struct, gc=False, tag="document", tag_field="type", omit_defaults=True):
    """A PDF document."""

    source: Base64Source
    title: str | None = None
    cache_control: CacheControl | None = None


class ToolUseBlock(msgspec.Struct, gc=False, tag="tool_use", tag_field="type", omit_defaults=True):
    """A tool call the assistant made earlier in the conversation."""

    id: str
    name: str
    input: JSONObject
    cache_control: CacheControl | None = None


class ToolResultBlock(msgspec.Struct, gc=False, tag="tool_result", tag_field="type", omit_defaults=True):
    """The result of one tool call, sent in a user turn."""

    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] = ""
    is_error: bool | None = None
    cache_control: CacheControl | None = None


class ThinkingBlock(msgspec.Struct, gc=False, tag="thinking", tag_field="type"):
    """The assistant's extended thinking, sent back in a later turn with its signature."""

    thinking: str
    signature: str = ""


class RedactedThinkingBlock(msgspec.Struct, gc=False, tag="redacted_thinking", tag_field="type"):
    """Thinking the safety system encrypted; only Anthropic can read it."""

    data: str


Block = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | ToolUseBlock
    | ToolResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
)
Content = str | list[Block]


class Turn(msgspec.Struct, gc=False):
    """One message of the conversation; roles strictly alternate."""

    role: Literal["user", "assistant"]
    content: Content


class ToolSpec(msgspec.Struct, gc=False, omit_defaults=True):
    """A client tool (``type`` names a server tool, such as ``web_search_20250305``, which has no
    ``input_schema``)."""

    name: str
    input_schema: JSONObject = {}
    type: str | None = None
    description: str | None = None
    strict: bool | None = None
    cache_control: CacheControl | None = None


class ToolChoiceSpec(msgspec.Struct, gc=False, omit_defaults=True):
    """``auto``, ``any``, ``tool`` (with ``name``) or ``none``."""

    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Thinking(msgspec.Struct, gc=False, omit_defaults=True):
    """Extended thinking: ``enabled`` with a token budget, ``disabled``, or ``adaptive`` (the model
    decides, https://docs.anthropic.com/en/docs/build-with-claude/adaptive-thinking)."""

    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: Annotated[int, msgspec.Meta(ge=MIN_THINKING_BUDGET, le=MAX_BUDGET)] | None = None


class OutputFormat(msgspec.Struct, gc=False):
    """A JSON schema the answer's text must follow (structured outputs)."""

    schema: JSONObject
    type: Literal["json_schema"] = "json_schema"


class OutputConfig(msgspec.Struct, gc=False):
    """``output_config``: where structured outputs are asked for."""

    format: OutputFormat


class Metadata(msgspec.Struct, gc=False):
    """Request metadata: an opaque end-user id for Anthropic's abuse detection."""

    user_id: str


class MessagesBody(msgspec.Struct, gc=False, omit_defaults=True):
    """The body of ``POST /v1/messages``."""

    model: str
    messages: list[Turn]
    max_tokens: int
    system: str | list[TextBlock] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: Annotated[int, msgspec.Meta(ge=1, le=MAX_TOP_K)] | None = None
    stop_sequences: list[str] | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: ToolChoiceSpec | None = None
    thinking: Thinking | None = None
    output_config: OutputConfig | None = None
    metadata: Metadata | None = None
    stream: bool | None = None


# --- answers -----------------------------------------------------------------------------------------


class UsageCounts(msgspec.Struct, gc=False):
    """Token counts; in a stream's ``message_delta`` any of them may be absent."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class ContentBlock(msgspec.Struct, gc=False):
    """Any content block of an answer, by its ``type``."""

    type: str
    text: str = ""
    id: str = ""
    name: str = ""
    input: Any = None
    thinking: str = ""
    signature: str = ""


class MessageOut(msgspec.Struct, gc=False):
    """A complete answer (also the ``message`` of ``message_start``), or an error object (``type``)."""

    type: str = ""
    id: str = ""
    model: str = ""
    content: list[ContentBlock] = []
    stop_reason: str | None = None
    usage: UsageCounts = msgspec.field(default_factory=UsageCounts)


class ErrorDetail(msgspec.Struct, gc=False):
    """``{"type": "overloaded_error", "message": "Overloaded"}``."""

    type: str = ""
    message: str = ""


class ErrorEnvelope(msgspec.Struct, gc=False):
    """``{"type": "error", "error": {...}, "request_id": ...}``."""

    type: str = ""
    error: ErrorDetail | None = None


class EventDelta(msgspec.Struct, gc=False):
    """The ``delta`` of ``content_block_delta`` (has a ``type``) or of ``message_delta`` (has none)."""

    type: str = ""
    text: str = ""
    partial_json: str = ""
    thinking: str = ""
    signature: str = ""
    stop_reason: str | None = None


class Answer(msgspec.Struct, gc=False, kw_only=True):
    """A complete answer as the inbound Messages protocol writes it (the ``message`` of
    ``message_start`` too, with no content yet)."""

    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[Block]
    stop_reason: str | None
    stop_sequence: str | None = None
    usage: UsageCounts


class StreamEvent(msgspec.Struct, gc=False):
    """One SSE event's data."""

    type: str
    index: int = 0
    message: MessageOut | None = None
    content_block: ContentBlock | None = None
    delta: EventDelta | None = None
    usage: UsageCounts | None = None
    error: ErrorDetail | None = None
