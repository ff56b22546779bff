"""The exact cache's key: a stable hash of everything in a request that changes the answer.

Every field takes part except those that cannot change what the model says (``stream``,
``stream_options``, ``user``, ``metadata``); unknown pass-through fields do. Dict keys are sorted, so
the order a client wrote its JSON in does not matter, and whitespace never reaches the parsed request.
"""

from __future__ import annotations

import hashlib

import msgspec

from llmgate.core.request import ChatRequest, Native

_encoder = msgspec.json.Encoder(order="deterministic")


def _without_metadata(native: Native | None) -> Native | None:
    """A request in its caller's protocol without the metadata (an end user's id), as for chat."""
    if native is None or "metadata" not in native.body:
        return native
    return Native(native.protocol, {k: v for k, v in native.body.items() if k != "metadata"})


def request_digest(request: ChatRequest, group: str) -> str:
    """The hex SHA-256 of the request as served by ``group``, without the fields that do not matter."""
    canonical = msgspec.structs.replace(
        request,
        model=group,
        stream=None,
        stream_options=None,
        user=None,
        metadata=None,
        # The caller's own messages (with any field llmgate does not model) when they were kept.
        messages=[] if request.raw_messages is not None else request.messages,
        native=_without_metadata(request.native),
    )
    return hashlib.sha256(_encoder.encode(canonical)).hexdigest()


def parameters_digest(request: ChatRequest, group: str) -> str:
    """The hex SHA-256 of everything but the conversation: semantic matches are only made among
    requests whose other parameters are identical."""
    canonical = msgspec.structs.replace(
        request,
        model=group,
        stream=None,
        stream_options=None,
        user=None,
        metadata=None,
        messages=[],
        raw_messages=None,
        native=None,  # it holds the conversation too; what else it says is in the canonical fields
    )
    return hashlib.sha256(_encoder.encode(canonical)).hexdigest()


CONVERSATION_CHARS = 8000  # the end of a long conversation is what the semantic cache compares


def conversation_text(request: ChatRequest) -> str:
    """The conversation as one text to embed: each turn's role and text, the latest turns kept."""
    text = "\n".join(f"{message.role}: {message.text()}" for message in request.messages if message.text())
    return text[-CONVERSATION_CHARS:]


def is_deterministic(request: ChatRequest) -> bool:
    """Whether the caller asked for a repeatable answer: temperature 0, or a seed."""
    return request.temperature == 0 or request.seed is not None
