"""The one accumulator: canonical chunks -> the complete response they add up to.

Streamed and non-streamed results go through the same types, so they cannot drift apart; caching,
usage records and tests rebuild a streamed reply with this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from msgspec import UNSET

from llmgate.core.request import FunctionCall, ToolCall
from llmgate.core.response import (
    ChatResponse,
    Choice,
    Delta,
    ResponseMessage,
    StreamItem,
    as_chunk,
)
from llmgate.core.usage import Usage


@dataclass(slots=True)
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _ChoiceParts:
    content: list[str] = field(default_factory=list)
    reasoning_content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    reasoning_signature: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, _ToolCallParts] = field(default_factory=dict)
    function_name: str = ""
    function_arguments: list[str] = field(default_factory=list)
    finish_reason: str | None = None


class StreamAccumulator:
    """Feed every chunk of one stream with ``add``; ``response()`` gives the whole reply."""

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.created = 0
        self.usage: Usage | None = None
        self.system_fingerprint: str | None = None
        self._choices: dict[int, _ChoiceParts] = {}

    def add(self, item: StreamItem) -> None:
        """Take one chunk (or raw chunk) into account."""
        chunk = as_chunk(item)
        self.id = self.id or chunk.id
        self.model = self.model or chunk.model
        self.created = self.created or chunk.created
        if isinstance(chunk.system_fingerprint, str):
            self.system_fingerprint = chunk.system_fingerprint
        if chunk.usage:
            self.usage = chunk.usage
        for choice in chunk.choices:
            parts = self._choices.setdefault(choice.index, _ChoiceParts())
            _add_delta(parts, choice.delta)
            if choice.finish_reason is not None:
                parts.finish_reason = choice.finish_reason

    def response(self) -> ChatResponse:
        """The complete response the chunks so far add up to."""
        choices = [self._choice(index, parts) for index, parts in sorted(self._choices.items())]
        return ChatResponse(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=choices,
            usage=self.usage,
            system_fingerprint=self.system_fingerprint if self.system_fingerprint is not None else UNSET,
        )

    @staticmethod
    def _choice(index: int, parts: _ChoiceParts) -> Choice:
        tool_calls = [
            ToolCall(id=slot.id, function=FunctionCall(name=slot.name, arguments="".join(slot.arguments)))
            for _, slot in sorted(parts.tool_calls.items())
        ]
        message = ResponseMessage(
            content="".join(parts.content) if parts.content else None,
            tool_calls=tool_calls or UNSET,
            function_call=(
                FunctionCall(name=parts.function_name, arguments="".join(parts.function_arguments))
                if parts.function_name
                else UNSET
            ),
            refusal="".join(parts.refusal) if parts.refusal else None,
            reasoning_content="".join(parts.reasoning_content) if parts.reasoning_content else UNSET,
            reasoning="".join(parts.reasoning) if parts.reasoning else UNSET,
            reasoning_signature="".join(parts.reasoning_signature) if parts.reasoning_signature else UNSET,
        )
        return Choice(index=index, message=message, finish_reason=parts.finish_reason)


def _add_delta(parts: _ChoiceParts, delta: Delta) -> None:
    for source, sink in (
        (delta.content, parts.content),
        (delta.reasoning_content, parts.reasoning_content),
        (delta.reasoning, parts.reasoning),
        (delta.reasoning_signature, parts.reasoning_signature),
        (delta.refusal, parts.refusal),
    ):
        if source:
            sink.append(source)
    for call in delta.tool_calls or ():
        slot = parts.tool_calls.setdefault(call.index, _ToolCallParts())
        slot.id = call.id or slot.id
        if call.function is not None:
            slot.name = call.function.name or slot.name
            if call.function.arguments:
                slot.arguments.append(call.function.arguments)
    if delta.function_call is not None:
        parts.function_name = delta.function_call.name or parts.function_name
        if delta.function_call.arguments:
            parts.function_arguments.append(delta.function_call.arguments)
