"""Anthropic's SSE events -> canonical OpenAI-shaped chunks.

Event flow (https://docs.anthropic.com/en/docs/build-with-claude/streaming#event-types): ``message_start``,
then per content block ``content_block_start`` / ``content_block_delta``* / ``content_block_stop``, then
``message_delta`` (stop reason, cumulative usage) and ``message_stop``; ``ping`` may come anywhere and
``error`` replaces the rest. Every other event type is reported as an unexpected response: a stream this
adapter does not understand is never passed off as a complete answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from llmgate.core.errors import UnexpectedResponse
from llmgate.core.response import (
    ChatChunk,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    ToolCallDelta,
)
from llmgate.providers.anthropic.errors import error_from_detail
from llmgate.providers.anthropic.response import finish_reason, unknown_block, usage_from
from llmgate.wire.anthropic import JSON_TOOL, ContentBlock, StreamEvent, UsageCounts

_event_decoder = msgspec.json.Decoder(StreamEvent)
_IGNORED_BLOCKS = frozenset({"redacted_thinking"})


@dataclass(slots=True)
class _Block:
    """What one open content block turns into: text, reasoning, a tool call (by index) or the JSON answer."""

    kind: str
    tool_index: int = -1
    has_arguments: bool = False


class AnthropicStream:
    """Translates one Messages API stream; keeps the ids, usage and open blocks between events."""

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self.finished = False
        self._created = int(clock())
        self._id = ""
        self._model = ""
        self._started = False
        self._usage = UsageCounts()
        self._blocks: dict[int, _Block] = {}
        self._tool_calls = 0
        self._json_answer = False

    def feed(self, data: bytes) -> list[ChatChunk]:
        """One event's data -> the chunks it yields; an ``error`` event raises its error."""
        try:
            event = _event_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise UnexpectedResponse(f"anthropic: unreadable stream event: {data[:200]!r}") from exc
        kind = event.type
        if kind == "ping":
            return []
        if kind == "error":
            detail = event.error
            raise error_from_detail(detail) if detail else UnexpectedResponse("anthropic: empty error event")
        if kind == "message_start":
            return self._message_start(event)
        if not self._started:
            raise UnexpectedResponse(f"anthropic: stream event '{kind}' before message_start")
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "content_block_stop":
            return self._block_stop(event)
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "message_stop":
            self.finished = True
            return [self._chunk([], usage=True)]
        raise UnexpectedResponse(f"anthropic: unknown stream event type '{kind}'")

    def _message_start(self, event: StreamEvent) -> list[ChatChunk]:
        message = event.message
        if message is None:
            raise UnexpectedResponse("anthropic: message_start without a message")
        self._started = True
        self._id, self._model, self._usage = message.id, message.model, message.usage
        return [self._delta(Delta(role="assistant", content=""))]

    def _block_start(self, event: StreamEvent) -> list[ChatChunk]:
        block = event.content_block
        if block is None:
            raise UnexpectedResponse("anthropic: content_block_start without a content block")
        opened = self._open(block)
        self._blocks[event.index] = opened
        if opened.kind == "tool":
            call = ToolCallDelta(
                index=opened.tool_index,
                id=block.id,
                type="function",
                function=FunctionCallDelta(name=block.name, arguments=""),
            )
            return [self._delta(Delta(tool_calls=[call]))]
        if opened.kind == "text" and block.text:
            return [self._delta(Delta(content=block.text))]
        if opened.kind == "thinking" and block.thinking:
            return [self._delta(Delta(reasoning_content=block.thinking))]
        return []

    def _open(self, block: ContentBlock) -> _Block:
        if block.type == "tool_use" and block.name == JSON_TOOL:
            self._json_answer = True
            return _Block("json")
        if block.type == "tool_use":
            self._tool_calls += 1
            return _Block("tool", tool_index=self._tool_calls - 1)
        if block.type in ("text", "thinking") or block.type in _IGNORED_BLOCKS:
            return _Block(block.type)
        raise unknown_block(block)

    def _block_delta(self, event: StreamEvent) -> list[ChatChunk]:
        delta, block = event.delta, self._blocks.get(event.index)
        if delta is None or block is None:
            raise UnexpectedResponse(f"anthropic: content_block_delta for unknown block {event.index}")
        if delta.type == "text_delta":
            return [self._delta(Delta(content=delta.text))] if delta.text else []
        if delta.type == "thinking_delta":
            return [self._delta(Delta(reasoning_content=delta.thinking))] if delta.thinking else []
        if delta.type == "input_json_delta":
            return self._arguments(block, delta.partial_json)
        if delta.type == "signature_delta":  # what Anthropic checks the thinking by in a later turn
            return [self._delta(Delta(reasoning_signature=delta.signature))] if delta.signature else []
        raise UnexpectedResponse(f"anthropic: unknown content delta type '{delta.type}'")

    def _arguments(self, block: _Block, fragment: str) -> list[ChatChunk]:
        if not fragment:
            return []
        block.has_arguments = True
        if block.kind == "json":
            return [self._delta(Delta(content=fragment))]
        if block.kind != "tool":
            raise UnexpectedResponse(f"anthropic: input_json_delta inside a '{block.kind}' block")
        call = ToolCallDelta(index=block.tool_index, function=FunctionCallDelta(arguments=fragment))
        return [self._delta(Delta(tool_calls=[call]))]

    def _block_stop(self, event: StreamEvent) -> list[ChatChunk]:
        block = self._blocks.pop(event.index, None)
        if block is None or block.has_arguments:
            return []
        # A tool called without arguments streams one empty fragment (recorded); OpenAI clients parse the
        # arguments as JSON, and "" is not JSON, so the empty object is sent instead.
        if block.kind == "json":
            return [self._delta(Delta(content="{}"))]
        if block.kind == "tool":
            call = ToolCallDelta(index=block.tool_index, function=FunctionCallDelta(arguments="{}"))
            return [self._delta(Delta(tool_calls=[call]))]
        return []

    def _message_delta(self, event: StreamEvent) -> list[ChatChunk]:
        if event.usage is not None:
            self._usage = _merged(self._usage, event.usage)
        stop_reason = event.delta.stop_reason if event.delta is not None else None
        if stop_reason is None:
            return []
        reason = finish_reason(stop_reason, json_answer=self._json_answer, tool_calls=self._tool_calls > 0)
        return [self._chunk([ChunkChoice(index=0, delta=Delta(), finish_reason=reason)])]

    def _delta(self, delta: Delta) -> ChatChunk:
        return self._chunk([ChunkChoice(index=0, delta=delta)])

    def _chunk(self, choices: list[ChunkChoice], *, usage: bool = False) -> ChatChunk:
        chunk = ChatChunk(id=self._id, created=self._created, model=self._model, choices=choices)
        if usage:
            chunk.usage = usage_from(self._usage)
        return chunk


def _merged(start: UsageCounts, update: UsageCounts) -> UsageCounts:
    """``message_delta`` usage is cumulative and may repeat the input counts; what it omits stays."""

    def pick(new: int | None, old: int | None) -> int | None:
        return new if new is not None else old

    return UsageCounts(
        input_tokens=pick(update.input_tokens, start.input_tokens),
        output_tokens=pick(update.output_tokens, start.output_tokens),
        cache_read_input_tokens=pick(update.cache_read_input_tokens, start.cache_read_input_tokens),
        cache_creation_input_tokens=pick(
            update.cache_creation_input_tokens, start.cache_creation_input_tokens
        ),
    )
