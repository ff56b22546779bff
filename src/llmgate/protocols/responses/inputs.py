"""The Responses API request as llmgate reads it: msgspec structs of ``POST /v1/responses``.

Only the members llmgate translates are declared; msgspec ignores other members of an item or a part
(``id``, ``status``, ``annotations``...), so output items a client sends back as history are accepted as
they are. Bounds (temperature range, token limits, metadata sizes) are checked once, by the canonical
codec. https://platform.openai.com/docs/api-reference/responses/create
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class InputText(msgspec.Struct, gc=False, tag="input_text", tag_field="type"):
    """Text the caller wrote."""

    text: str


class OutputText(msgspec.Struct, gc=False, tag="output_text", tag_field="type"):
    """Text the model wrote earlier (assistant history)."""

    text: str


class RefusalPart(msgspec.Struct, gc=False, tag="refusal", tag_field="type"):
    """A refusal the model gave earlier (assistant history)."""

    refusal: str


class InputImage(msgspec.Struct, gc=False, tag="input_image", tag_field="type"):
    """An image by URL or ``data:`` URI, or (refused here) by the id of a file stored at OpenAI."""

    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class InputFile(msgspec.Struct, gc=False, tag="input_file", tag_field="type"):
    """A file inline as base64 ``file_data``; ``file_id`` and ``file_url`` are refused here."""

    file_data: str | None = None
    filename: str | None = None
    file_id: str | None = None
    file_url: str | None = None


Part = InputText | OutputText | RefusalPart | InputImage | InputFile


class MessageInput(msgspec.Struct, gc=False):
    """A message item (``type: "message"`` may be left out)."""

    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[Part]


class FunctionCallInput(msgspec.Struct, gc=False):
    """A function call the model made earlier."""

    call_id: str
    name: str
    arguments: str


class FunctionCallOutputInput(msgspec.Struct, gc=False):
    """The caller's result of a function call."""

    call_id: str
    output: str | list[Part]


class FunctionToolInput(msgspec.Struct, gc=False, omit_defaults=True):
    """A function tool (the Responses form: flat, no ``function`` wrapper)."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class TextFormatText(msgspec.Struct, gc=False, tag="text", tag_field="type"):
    """Plain text output."""


class TextFormatJSONObject(msgspec.Struct, gc=False, tag="json_object", tag_field="type"):
    """Any JSON object."""


class TextFormatJSONSchema(msgspec.Struct, gc=False, tag="json_schema", tag_field="type"):
    """Structured output: JSON following a schema (flat here, nested in Chat Completions)."""

    name: str
    schema: dict[str, Any]
    description: str | None = None
    strict: bool | None = None


class TextInput(msgspec.Struct, gc=False):
    """The ``text`` member; ``verbosity`` is accepted and not translated."""

    format: TextFormatText | TextFormatJSONObject | TextFormatJSONSchema | None = None
    verbosity: str | None = None


class ReasoningInput(msgspec.Struct, gc=False):
    """The ``reasoning`` member; ``summary`` is accepted (upstreams give what reasoning they give)."""

    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None


class CreateResponse(msgspec.Struct, gc=False):
    """The top-level members llmgate translates (the caller's other members are sorted out before)."""

    model: str
    input: str | list[Any] | None = None  # items are told apart by ``type`` one by one (see items.py)
    instructions: str | None = None
    tools: list[Any] | None = None  # likewise: a non-function tool is refused by name, not by shape
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextInput | None = None
    reasoning: ReasoningInput | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    stream: bool | None = None
    store: bool | None = None
    background: bool | None = None


CREATE_FIELDS = frozenset(CreateResponse.__struct_fields__)
