"""The canonical chat and embedding requests: OpenAI's Chat Completions shape, typed.

Decoding is done by msgspec (C speed, precise error paths). Fields not named here are kept in
``ChatRequest.extra`` so OpenAI-compatible upstreams receive new OpenAI parameters untouched.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

JSONObject = dict[str, Any]

# Bounds on what one request may carry (SPEC.md section 15), besides the body-size limit: every size a
# caller chooses is capped, at or above what the providers themselves accept, so no number in a request
# makes the gateway do unbounded work. Exceeding one is a 400 naming the field.
MAX_MODEL_NAME = 256
MAX_MESSAGES = 10_000
MAX_OUTPUT_TOKENS = 1_000_000  # max_tokens / max_completion_tokens (the largest models emit ~128K)
MAX_CHOICES = 128  # n (OpenAI's own limit)
MAX_STOP_SEQUENCES = 16  # OpenAI takes 4, Gemini 5
MAX_TOOLS = 128  # OpenAI's own limit on tools (and legacy functions)
MAX_LOGIT_BIAS = 1024
MAX_METADATA = 16  # OpenAI: 16 pairs, keys up to 64 characters, values up to 512
MAX_TOP_LOGPROBS = 20
MAX_EMBEDDING_INPUTS = 2048  # OpenAI's own limit on inputs per request
MAX_DIMENSIONS = 8192
MAX_EMBEDDING_VALUES = 2048 * 3072  # inputs x dimensions: OpenAI's largest request, ~120 MB of JSON
MAX_DEPTH = 64  # nesting of free-form JSON (tool schemas, pass-through fields)
INT64 = 2**63


class TextPart(msgspec.Struct, gc=False, tag="text", tag_field="type", omit_defaults=True):
    """A text content part."""

    text: str


class ImageURL(msgspec.Struct, gc=False, omit_defaults=True):
    """An image by URL or ``data:`` URI."""

    url: str
    detail: str | None = None


class ImagePart(msgspec.Struct, gc=False, tag="image_url", tag_field="type", omit_defaults=True):
    """An image content part."""

    image_url: ImageURL


class InputAudio(msgspec.Struct, gc=False):
    """Base64 audio with its format."""

    data: str
    format: str


class AudioPart(msgspec.Struct, gc=False, tag="input_audio", tag_field="type"):
    """An audio content part."""

    input_audio: InputAudio


class FilePart(msgspec.Struct, gc=False, tag="file", tag_field="type"):
    """A file content part (``file_id`` or ``file_data`` + ``filename``)."""

    file: dict[str, str]


ContentPart = TextPart | ImagePart | AudioPart | FilePart
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class FunctionCall(msgspec.Struct, gc=False):
    """A function name with its JSON-encoded arguments."""

    name: str
    arguments: str


class ToolCall(msgspec.Struct, gc=False):
    """A complete tool call made by the assistant."""

    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class Message(msgspec.Struct, gc=False, omit_defaults=True):
    """One conversation turn."""

    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    function_call: FunctionCall | None = None
    refusal: str | None = None

    def text(self) -> str:
        """The message's text, with parts joined; images and other media are left out."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


class FunctionDefinition(msgspec.Struct, gc=False, omit_defaults=True):
    """A callable function with its JSON-schema parameters."""

    name: str
    description: str | None = None
    parameters: JSONObject | None = None
    strict: bool | None = None


class Tool(msgspec.Struct, gc=False):
    """A tool the model may call."""

    function: FunctionDefinition
    type: Literal["function"] = "function"


class NamedFunction(msgspec.Struct, gc=False):
    """``{"name": ...}`` inside a tool choice."""

    name: str


class ToolChoiceFunction(msgspec.Struct, gc=False):
    """Force one named tool."""

    function: NamedFunction
    type: Literal["function"] = "function"


ToolChoice = Literal["none", "auto", "required"] | ToolChoiceFunction


class JSONSchemaFormat(msgspec.Struct, gc=False, omit_defaults=True):
    """The ``json_schema`` member of a structured-output response format."""

    name: str
    schema: JSONObject | None = None
    description: str | None = None
    strict: bool | None = None


class ResponseFormat(msgspec.Struct, gc=False, omit_defaults=True):
    """``text``, ``json_object`` or ``json_schema``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(msgspec.Struct, gc=False, omit_defaults=True):
    """``include_usage`` asks for a final chunk with the usage."""

    include_usage: bool | None = None


NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
OutputTokens = Annotated[int, msgspec.Meta(ge=1, le=MAX_OUTPUT_TOKENS)]
Metadata = Annotated[
    dict[Annotated[str, msgspec.Meta(max_length=64)], Annotated[str, msgspec.Meta(max_length=512)]],
    msgspec.Meta(max_length=MAX_METADATA),
]


ANTHROPIC_MESSAGES = "anthropic.messages"
"""``Native.protocol`` of a request that came in as Anthropic's ``POST /v1/messages``."""


class Native(msgspec.Struct, gc=False, frozen=True):
    """A request as its caller wrote it in a vendor's own protocol (``anthropic.messages``), checked and
    without ``model`` and ``stream``: an adapter of that vendor sends it on as it is, instead of
    translating the canonical request back (which would lose what the canonical form has no field for)."""

    protocol: str
    body: JSONObject


class ChatRequest(msgspec.Struct, gc=False, omit_defaults=True, frozen=True):
    """A Chat Completions request. ``model`` is the name the caller used (group or provider:model).

    ``extra`` holds unknown top-level fields; ``raw_messages`` the caller's messages exactly as sent
    (after validation), so OpenAI-compatible upstreams also get fields inside messages that llmgate does
    not model. Code that changes ``messages`` must drop ``raw_messages`` (``with_messages`` does).
    ``native`` is the request in the caller's own protocol, when it came in through one (the same rule
    applies: a changed conversation drops it).
    """

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_MODEL_NAME)]
    messages: Annotated[list[Message], msgspec.Meta(min_length=1, max_length=MAX_MESSAGES)]
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=MAX_CHOICES)] | None = None
    stop: str | Annotated[list[str], msgspec.Meta(max_length=MAX_STOP_SEQUENCES)] | None = None
    max_tokens: OutputTokens | None = None
    max_completion_tokens: OutputTokens | None = None
    presence_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, msgspec.Meta(ge=-2, le=2)] | None = None
    logit_bias: Annotated[dict[str, float], msgspec.Meta(max_length=MAX_LOGIT_BIAS)] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    seed: Annotated[int, msgspec.Meta(ge=-INT64, le=INT64 - 1)] | None = None
    user: str | None = None
    tools: Annotated[list[Tool], msgspec.Meta(max_length=MAX_TOOLS)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    functions: Annotated[list[FunctionDefinition], msgspec.Meta(max_length=MAX_TOOLS)] | None = None
    function_call: Literal["none", "auto"] | NamedFunction | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: str | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    metadata: Metadata | None = None
    extra: JSONObject = {}
    raw_messages: list[Any] | None = None
    native: Native | None = None

    @property
    def output_limit(self) -> int | None:
        """The caller's cap on generated tokens, whichever field carried it."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def wants_usage_chunk(self) -> bool:
        """Whether a streaming caller asked for the final usage chunk."""
        return bool(self.stream_options and self.stream_options.include_usage)

    def with_messages(self, messages: list[Message]) -> ChatRequest:
        """This request with other messages (and no stale raw copy of the old ones)."""
        return msgspec.structs.replace(self, messages=messages, raw_messages=None, native=None)


class EmbeddingRequest(msgspec.Struct, gc=False, omit_defaults=True, frozen=True):
    """An embeddings request; ``input`` is normalised to a list of strings or token lists."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_MODEL_NAME)]
    input: (
        str
        | Annotated[list[str | int | list[int]], msgspec.Meta(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
    )
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[int, msgspec.Meta(ge=1, le=MAX_DIMENSIONS)] | None = None
    user: str | None = None
    extra: JSONObject = {}

    def texts(self) -> list[str]:
        """The input as a list of strings (token-list input is not text and yields [])."""
        if isinstance(self.input, str):
            return [self.input]
        return [item for item in self.input if isinstance(item, str)]


CHAT_FIELDS = frozenset(ChatRequest.__struct_fields__) - {"extra", "raw_messages", "native"}
EMBEDDING_FIELDS = frozenset(EmbeddingRequest.__struct_fields__) - {"extra"}
