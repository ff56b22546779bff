"""The legacy OpenAI Completions protocol (``POST /v1/completions``), answered by chat.

A completions request becomes a chat request with the prompt as its one user message; the answer's
message text comes back as the choice's ``text``. What has no chat equivalent is refused with a 400
naming the field rather than silently ignored:

- ``prompt`` must be text: a string, or a list holding exactly one string. Several prompts and token
  arrays (lists of integers) are refused. A missing or ``null`` prompt is refused too ("prompt is
  required"): OpenAI's default, ``<|endoftext|>``, is a special token of its own tokenizers that means
  "start of a new document"; sent to a chat model it would be five literal characters meaning nothing.
- ``suffix`` (non-empty), ``echo: true``, ``best_of`` above 1 and ``logprobs`` (any non-null value)
  are refused; their neutral values (``""``, ``false``, ``0``/``1``, ``null``) are accepted and dropped.
- Chat-only parameters (``messages``, ``tools``, ``response_format``, ...) are refused: this endpoint
  cannot show what they would change (tool calls have no text form), and ``messages`` would collide
  with the prompt. They belong on ``/v1/chat/completions``.

``max_tokens`` defaults to 16 when it is omitted (or ``null``), as the legacy endpoint does
(https://platform.openai.com/docs/api-reference/completions/create#completions-create-max_tokens);
without it, a chat model would generate up to its own, much larger, limit. Every other field maps to the
chat field of the same name, and unknown fields go to the chat request's ``extra``, all validated by
``core.codec.parse_chat_request``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from llmgate.core.codec import convert_as, parse_chat_request
from llmgate.core.error_table import classify, error_body
from llmgate.core.errors import GatewayError, InvalidRequest
from llmgate.core.request import CHAT_FIELDS, ChatRequest
from llmgate.core.response import ChatChunk, ChatResponse, StreamItem, as_chunk
from llmgate.core.usage import Usage

LEGACY_MAX_TOKENS = 16
"""What the legacy endpoint generates at most when ``max_tokens`` is not given."""

# Completions fields that are also chat fields with the same meaning: copied into the chat request.
_SHARED_FIELDS = frozenset(
    (
        "model",
        "max_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "seed",
        "user",
        "stream",
        "stream_options",
    )
)
# Completions fields handled here and never copied (``logprobs`` is an integer here, a flag in chat).
_LEGACY_FIELDS = frozenset(("prompt", "suffix", "echo", "best_of", "logprobs"))
_CHAT_ONLY_FIELDS = CHAT_FIELDS - _SHARED_FIELDS - _LEGACY_FIELDS

_CHAT_ID_PREFIX = "chatcmpl-"
_ID_PREFIX = "cmpl-"
_DONE = b"data: [DONE]\n\n"


class LegacyOptions(msgspec.Struct, gc=False, frozen=True):
    """The completions options with no chat equivalent, accepted only at their neutral values."""

    suffix: str | None = None
    echo: bool | None = None
    best_of: Annotated[int, msgspec.Meta(ge=0)] | None = None


class CompletionChoice(msgspec.Struct, gc=False, kw_only=True):
    """One choice of a completion (``logprobs`` is always ``null``: they cannot be asked for)."""

    text: str
    index: int
    logprobs: None = None
    finish_reason: str | None = None


class Completion(msgspec.Struct, gc=False, kw_only=True):
    """A ``text_completion``: the whole answer, or one streamed chunk (both have this shape)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | UnsetType = UNSET
    system_fingerprint: str | UnsetType = UNSET


_encoder = msgspec.json.Encoder()


def completion_id(chat_id: str) -> str:
    """A completion id for a canonical one: ``chatcmpl-X`` -> ``cmpl-X``; other ids get the prefix."""
    if chat_id.startswith(_CHAT_ID_PREFIX):
        return _ID_PREFIX + chat_id[len(_CHAT_ID_PREFIX) :]
    return chat_id if chat_id.startswith(_ID_PREFIX) else _ID_PREFIX + chat_id


def _unsupported(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="unsupported_parameter")


def _legacy_options(data: dict[str, Any]) -> LegacyOptions:
    """The legacy options, typed strictly (``true`` is no integer), or a 400 naming the field."""
    given = {name: data[name] for name in LegacyOptions.__struct_fields__ if name in data}
    return convert_as(given, LegacyOptions)


def _prompt_text(prompt: Any) -> str:
    """The prompt as the one user message's text."""
    if prompt is None:
        raise InvalidRequest("Missing required parameter: 'prompt'.", param="prompt", code="missing_required")
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt:
        if len(prompt) == 1 and isinstance(prompt[0], str):
            return prompt[0]
        if all(isinstance(item, str) for item in prompt):
            raise _unsupported(
                "prompt",
                f"A list of {len(prompt)} prompts is not supported: send one request per prompt "
                "(use 'n' for several completions of one prompt).",
            )
        if all(isinstance(item, int | list) and not isinstance(item, bool) for item in prompt):
            raise _unsupported(
                "prompt", "Token-array prompts are not supported: send the prompt as a string of text."
            )
    raise InvalidRequest(
        "'prompt' must be a string (or a list holding one string).", param="prompt", code="invalid_value"
    )


def _refuse_legacy_options(data: dict[str, Any]) -> None:
    """400 for the completions options chat cannot honour; their neutral values pass."""
    options = _legacy_options(data)
    if options.suffix:
        raise _unsupported("suffix", "'suffix' (insertion) is not supported: put all the text in 'prompt'.")
    if options.echo:
        raise _unsupported("echo", "'echo' is not supported: the answer never repeats the prompt.")
    if options.best_of is not None and options.best_of > 1:
        raise _unsupported("best_of", "'best_of' above 1 is not supported: use 'n' and choose yourself.")
    if data.get("logprobs") is not None:
        raise _unsupported("logprobs", "'logprobs' is not supported on this endpoint: send null or omit it.")
    chat_only = sorted(_CHAT_ONLY_FIELDS.intersection(data))
    if chat_only:
        raise _unsupported(
            chat_only[0],
            f"'{chat_only[0]}' is a Chat Completions parameter: send the request to /v1/chat/completions.",
        )


def _chat_body(data: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI chat body a validated completions body stands for."""
    text = _prompt_text(data.get("prompt"))
    body = {key: value for key, value in data.items() if key not in _LEGACY_FIELDS}
    body["messages"] = [{"role": "user", "content": text}]
    if body.get("max_tokens") is None:
        body["max_tokens"] = LEGACY_MAX_TOKENS
    return body


def _chunk_completion(chunk: ChatChunk) -> Completion | None:
    """The completion chunk for a chat chunk, or ``None`` when it carries nothing a completion shows
    (a role announcement, or a delta of something other than text)."""
    choices = [
        CompletionChoice(
            text=choice.delta.content or "", index=choice.index, finish_reason=choice.finish_reason
        )
        for choice in chunk.choices
        if choice.delta.content or choice.finish_reason is not None
    ]
    usage = chunk.usage if isinstance(chunk.usage, Usage) else UNSET
    if not choices and usage is UNSET:
        return None
    fingerprint = chunk.system_fingerprint
    return Completion(
        id=completion_id(chunk.id),
        created=chunk.created,
        model=chunk.model,
        choices=choices,
        usage=usage,
        system_fingerprint=fingerprint if isinstance(fingerprint, str) else UNSET,
    )


class CompletionsStream:
    """The SSE frames of one completions stream: ``data: {text_completion}`` events, then ``[DONE]``;
    a broken stream ends with an OpenAI error event instead (which the OpenAI SDK raises)."""

    __slots__ = ()

    def frames(self, batch: Sequence[StreamItem]) -> bytes:
        """The frames for one batch (raw items are OpenAI chat chunks, decoded to be reshaped)."""
        parts: list[bytes] = []
        for item in batch:
            completion = _chunk_completion(as_chunk(item))
            if completion is not None:
                parts.append(b"data: " + _encoder.encode(completion) + b"\n\n")
        return b"".join(parts)

    def end(self) -> bytes:
        """``[DONE]``, as OpenAI ends a stream that finished."""
        return _DONE

    def error(self, error: GatewayError) -> bytes:
        """The error event (never followed by ``[DONE]``: the client must not see a clean end)."""
        return b"data: " + error_body(error) + b"\n\n"


class CompletionsProtocol:
    """``/v1/completions`` as an inbound protocol (``protocols.base.Inbound``); holds no state."""

    __slots__ = ()
    name = "openai.completions"

    def parse(self, data: Any) -> ChatRequest:
        """A completions body -> the canonical chat request; ``InvalidRequest`` naming the field."""
        if not isinstance(data, dict):
            raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
        _refuse_legacy_options(data)
        return parse_chat_request(_chat_body(data))

    def render(self, response: ChatResponse, request: ChatRequest) -> bytes:
        """A canonical answer -> a ``text_completion`` body (a choice with only tool calls has text "")."""
        fingerprint = response.system_fingerprint
        completion = Completion(
            id=completion_id(response.id),
            created=response.created,
            model=response.model,
            choices=[
                CompletionChoice(
                    text=choice.message.content or "", index=choice.index, finish_reason=choice.finish_reason
                )
                for choice in response.choices
            ],
            usage=response.usage if response.usage is not None else UNSET,
            system_fingerprint=fingerprint if isinstance(fingerprint, str) else UNSET,
        )
        return _encoder.encode(completion)

    def stream(self, request: ChatRequest) -> CompletionsStream:
        """A renderer for one stream (stateless: whether usage is sent is the canonical stream's call)."""
        return CompletionsStream()

    def error(self, error: GatewayError) -> tuple[int, bytes]:
        """The status and OpenAI error body (``{"error": {message, type, param, code}}``)."""
        status, _ = classify(error)
        return status, error_body(error)


COMPLETIONS = CompletionsProtocol()
"""The completions protocol (one instance: it holds no per-request state)."""
