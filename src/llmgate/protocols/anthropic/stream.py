"""Canonical stream chunks -> Anthropic's stream events.

https://docs.anthropic.com/en/docs/build-with-claude/streaming: ``message_start``, then per content block
``content_block_start``, ``content_block_delta`` (``text_delta``, ``thinking_delta``,
``input_json_delta``) and ``content_block_stop``, then ``message_delta`` (``stop_reason`` and the usage
totals) and ``message_stop``; an ``error`` event ends a broken stream. Every event is a named SSE event.

Canonical chunks say what a block is only by which delta field they fill, so a block opens when a
different kind of output starts: text and thinking blocks one at a time, a tool call's block when its
index is first seen. Tool blocks stay open until text follows or the stream ends, so fragments of
parallel calls that interleave still reach the right block (the SDK finds blocks by ``index``). The
usage arrives after the finish reason (in the final usage chunk), so ``message_delta`` is written at
the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from llmgate.core.errors import GatewayError
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatChunk, StreamItem, ToolCallDelta, as_chunk
from llmgate.core.usage import Usage
from llmgate.protocols.anthropic.answer import error_body, message_id, stop_reason, usage_of
from llmgate.wire.anthropic import Answer, TextBlock, ThinkingBlock, ToolUseBlock, UsageCounts

_encoder = msgspec.json.Encoder()
_TEXT, _THINKING = -1, -2  # keys of the open text / thinking block; tool calls use their index (>= 0)
_DELTA_FIELD = {_TEXT: (b"text_delta", b"text"), _THINKING: (b"thinking_delta", b"thinking")}
PING = b'event: ping\ndata: {"type":"ping"}\n\n'
MESSAGE_STOP = b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


class _MessageDelta(msgspec.Struct, gc=False):
    stop_reason: str | None
    stop_sequence: None = None


class _MessageDeltaEvent(msgspec.Struct, gc=False):
    delta: _MessageDelta
    usage: UsageCounts
    type: str = "message_delta"


def event(name: bytes, data: bytes) -> bytes:
    """One named SSE event."""
    return b"event: " + name + b"\ndata: " + data + b"\n\n"


class MessagesStream:
    """The events of one stream (``StreamRender``)."""

    __slots__ = ("_blocks", "_calls", "_flow", "_open", "_pending", "_started", "_stop", "_usage")

    def __init__(self, request: ChatRequest) -> None:
        self._started = False
        self._blocks = 0  # content blocks opened so far: the next one's index
        self._flow: tuple[int, int] | None = None  # the open text or thinking block: (kind, index)
        self._calls: dict[int, int] = {}  # tool call index -> its block's index
        self._pending: dict[int, _PendingCall] = {}  # tool calls whose name has not come yet
        self._open: list[int] = []  # tool blocks not yet stopped
        self._stop: str | None = None
        self._usage: Usage | None = None

    def frames(self, batch: Sequence[StreamItem]) -> bytes:
        """The events for a batch of chunks."""
        out: list[bytes] = []
        for item in batch:
            chunk = as_chunk(item)
            if not self._started:
                out.append(self._start(chunk))
            if chunk.usage:
                self._usage = chunk.usage
            for choice in chunk.choices[:1]:  # Messages has no n: one choice
                delta = choice.delta
                reasoning = delta.reasoning_content or delta.reasoning
                if reasoning:
                    out.append(self._flow_delta(_THINKING, reasoning))
                if delta.reasoning_signature:
                    out.append(self._signature(delta.reasoning_signature))
                if delta.content:
                    out.append(self._flow_delta(_TEXT, delta.content))
                for call in delta.tool_calls or ():
                    out.append(self._tool_delta(call))
                if choice.finish_reason is not None:
                    self._stop = stop_reason(choice.finish_reason)
        return b"".join(out)

    def end(self) -> bytes:
        """Stop the open blocks, then ``message_delta`` with the stop reason and usage, and
        ``message_stop``."""
        out = [self._open_call(position, "") for position in list(self._pending)]  # never named
        out.append(self._close_all())
        usage = usage_of(self._usage)
        final = _MessageDeltaEvent(_MessageDelta(self._stop or "end_turn"), usage)
        out.append(event(b"message_delta", _encoder.encode(final)))
        out.append(MESSAGE_STOP)
        return b"".join(out)

    def error(self, error: GatewayError) -> bytes:
        """An ``error`` event (Anthropic's error body); nothing follows it."""
        return event(b"error", error_body(error))

    def _start(self, chunk: ChatChunk) -> bytes:
        self._started = True
        message = Answer(
            id=message_id(chunk.id),
            model=chunk.model,
            content=[],
            stop_reason=None,
            usage=UsageCounts(input_tokens=0, output_tokens=0),  # the totals come in message_delta
        )
        start = b'{"type":"message_start","message":' + _encoder.encode(message) + b"}"
        return event(b"message_start", start) + PING

    def _flow_delta(self, kind: int, text: str) -> bytes:
        out, index = self._enter(kind)
        delta_type, field = _DELTA_FIELD[kind]
        data = b'{"type":"content_block_delta","index":%d,"delta":{"type":"%s","%s":' % (
            index,
            delta_type,
            field,
        )
        return out + event(b"content_block_delta", data + _encoder.encode(text) + b"}}")

    def _signature(self, signature: str) -> bytes:
        # Anthropic sends a thinking block's signature last, as its own delta.
        out, index = self._enter(_THINKING)
        data = (
            b'{"type":"content_block_delta","index":%d,"delta":{"type":"signature_delta","signature":' % index
        )
        return out + event(b"content_block_delta", data + _encoder.encode(signature) + b"}}")

    def _enter(self, kind: int) -> tuple[bytes, int]:
        """The open text or thinking block of this kind: the events that open it (closing the others)
        when it is not open yet, and its index."""
        flow = self._flow
        if flow is not None and flow[0] == kind:
            return b"", flow[1]
        out = self._close_all()
        index, started = self._open_block(TextBlock("") if kind == _TEXT else ThinkingBlock(""))
        self._flow = (kind, index)
        return out + started, index

    def _tool_delta(self, call: ToolCallDelta) -> bytes:
        function = call.function
        arguments = function.arguments if function is not None and function.arguments else ""
        index = self._calls.get(call.index)
        if index is not None:
            return _arguments(index, arguments)
        # A block opens with the tool's name, which some servers send after the first fragment: until
        # then the call's id and fragments wait.
        pending = self._pending.setdefault(call.index, _PendingCall())
        pending.id = pending.id or call.id or ""
        pending.arguments.append(arguments)
        if function is None or not function.name:
            return b""
        return self._open_call(call.index, function.name)

    def _open_call(self, position: int, name: str) -> bytes:
        pending = self._pending.pop(position)
        out = self._close_flow()
        block = ToolUseBlock(id=pending.id or f"toolu_{self._blocks}", name=name, input={})
        index, started = self._open_block(block)
        self._calls[position] = index
        self._open.append(index)
        return out + started + _arguments(index, "".join(pending.arguments))

    def _open_block(self, block: TextBlock | ThinkingBlock | ToolUseBlock) -> tuple[int, bytes]:
        index = self._blocks
        self._blocks += 1
        data = b'{"type":"content_block_start","index":%d,"content_block":' % index
        return index, event(b"content_block_start", data + _encoder.encode(block) + b"}")

    def _close_flow(self) -> bytes:
        flow = self._flow
        if flow is None:
            return b""
        self._flow = None
        return _stop(flow[1])

    def _close_all(self) -> bytes:
        out = [self._close_flow(), *(_stop(index) for index in self._open)]
        self._open.clear()
        return b"".join(out)


class _PendingCall:
    __slots__ = ("arguments", "id")

    def __init__(self) -> None:
        self.id = ""
        self.arguments: list[str] = []


def _arguments(index: int, fragment: str) -> bytes:
    if not fragment:
        return b""
    data = (
        b'{"type":"content_block_delta","index":%d,"delta":{"type":"input_json_delta","partial_json":' % index
    )
    return event(b"content_block_delta", data + _encoder.encode(fragment) + b"}}")


def _stop(index: int) -> bytes:
    return event(b"content_block_stop", b'{"type":"content_block_stop","index":%d}' % index)
