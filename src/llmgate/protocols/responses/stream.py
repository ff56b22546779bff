"""Canonical stream chunks -> Responses API stream events (``event: <type>`` / ``data: <json>`` frames).

Order, as OpenAI sends it: ``response.created``, ``response.in_progress``; per output item
``response.output_item.added``, its part and delta events, its ``done`` events and
``response.output_item.done``; last ``response.completed`` (or ``response.incomplete``) carrying the
whole ``Response``. https://platform.openai.com/docs/api-reference/responses-streaming

Chat Completions chunks may interleave text, reasoning and several tool calls (keyed by ``index``), so
an item is opened when its first piece arrives and stays open until the stream ends; the ``done``
events of all items then follow in output order (the SDK's stream helper accepts several open items).
The final ``Response`` is the whole-answer render of the accumulated chunks, items in stream order.
No ``[DONE]`` line: the Responses API does not send one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from llmgate.core.accumulate import StreamAccumulator
from llmgate.core.error_table import error_message
from llmgate.core.errors import GatewayError
from llmgate.core.request import ChatRequest
from llmgate.core.response import Delta, StreamItem, ToolCallDelta, as_chunk
from llmgate.protocols.responses.render import (
    MESSAGE_KEY,
    REASONING_KEY,
    ItemKey,
    call_item,
    encode,
    fallback_call_id,
    id_base,
    item_status,
    reasoning_item,
    render_response,
    response_object,
)
from llmgate.protocols.responses.shapes import (
    ArgumentsDeltaEvent,
    ArgumentsDoneEvent,
    ContentPart,
    ContentPartEvent,
    ErrorEvent,
    Event,
    ItemEvent,
    ItemStatus,
    LifecycleEvent,
    MessageItem,
    OutputItem,
    OutputText,
    ReasoningItem,
    Refusal,
    RefusalDeltaEvent,
    RefusalDoneEvent,
    SummaryDeltaEvent,
    SummaryDoneEvent,
    SummaryPartEvent,
    SummaryText,
    TextDeltaEvent,
    TextDoneEvent,
)

TEXT = "output_text"
REFUSAL = "refusal"


@dataclass(slots=True)
class _Item:
    """An output item announced in the stream, with what it has received so far."""

    key: ItemKey
    output_index: int
    item_id: str
    pieces: list[str] = field(default_factory=list)  # reasoning, text or arguments
    refusal: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)  # a message's content parts, by content_index
    name: str = ""


@dataclass(slots=True)
class _Call:
    """A tool call by its chunk ``index``: announced once its name is known, arguments kept until then."""

    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    item: _Item | None = None


class ResponsesStream:
    """The frames of one Responses stream (``base.StreamRender``)."""

    def __init__(self, request: ChatRequest) -> None:
        self._request = request
        self._accumulator = StreamAccumulator()
        self._sequence = 0
        self._base = ""
        self._started = False
        self._finished = False
        self._items: list[_Item] = []
        self._keyed: dict[ItemKey, _Item] = {}
        self._calls: dict[int, _Call] = {}
        self._out = bytearray()

    def frames(self, batch: Sequence[StreamItem]) -> bytes:
        """The events for one batch of chunks (``response.created`` comes with the first chunk)."""
        if self._finished:
            return b""
        for item in batch:
            chunk = as_chunk(item)
            self._accumulator.add(chunk)
            if not self._started:
                self._start(chunk.id, chunk.created, chunk.model)
            for choice in chunk.choices:
                if choice.index == 0:  # the Responses API has no ``n``: one answer
                    self._delta(choice.delta)
        return self._flush()

    def end(self) -> bytes:
        """Close every item, then ``response.completed`` (or ``response.incomplete``) with the usage."""
        if self._finished:
            return b""
        self._finished = True
        self._start("", 0, "")
        for index, call in sorted(self._calls.items()):
            if call.item is None:  # never named: announce it anyway, the final response lists it
                self._open_call(index, call)
        response = self._accumulator.response()
        finish = next((choice.finish_reason for choice in response.choices if choice.index == 0), None)
        for position, item in enumerate(self._items):
            self._close(item, item_status(position, len(self._items), finish))
        final = render_response(response, self._request, [item.key for item in self._items])
        kind = "response.incomplete" if final.status == "incomplete" else "response.completed"
        self._emit(LifecycleEvent(type=kind, sequence_number=self._next(), response=final))
        return self._flush()

    def error(self, error: GatewayError) -> bytes:
        """An ``error`` event; nothing follows it."""
        if self._finished:
            return b""
        self._finished = True
        self._start("", 0, "")  # the SDK's stream helper wants response.created first, whatever comes
        self._emit(
            ErrorEvent(
                code=error.code,
                message=error_message(error),
                param=error.param,
                sequence_number=self._next(),
            )
        )
        return self._flush()

    # -- the events ------------------------------------------------------------------------------

    def _start(self, chunk_id: str, created: int, model: str) -> None:
        if self._started:
            return
        self._started = True
        self._base = id_base(chunk_id)
        response = response_object(
            self._request,
            base=self._base,
            created=created,
            model=model or self._request.model,
            status="in_progress",
            output=[],
            usage=None,
        )
        for kind in ("response.created", "response.in_progress"):
            self._emit(LifecycleEvent(type=kind, sequence_number=self._next(), response=response))

    def _delta(self, delta: Delta) -> None:
        reasoning = delta.reasoning_content or delta.reasoning
        if reasoning:
            self._reasoning(reasoning)
        if delta.content:
            self._text(TEXT, delta.content)
        if delta.refusal:
            self._text(REFUSAL, delta.refusal)
        for call in delta.tool_calls or ():
            self._call(call)

    def _open(self, key: ItemKey, item: OutputItem) -> _Item:
        opened = _Item(key=key, output_index=len(self._items), item_id=item.id)
        self._items.append(opened)
        self._keyed[key] = opened
        self._emit(
            ItemEvent(
                type="response.output_item.added",
                sequence_number=self._next(),
                output_index=opened.output_index,
                item=item,
            )
        )
        return opened

    def _reasoning(self, text: str) -> None:
        item = self._keyed.get(REASONING_KEY)
        if item is None:
            item = self._open(REASONING_KEY, ReasoningItem(id=f"rs_{self._base}", summary=[]))
            self._emit(self._summary_part(item, "response.reasoning_summary_part.added", ""))
        item.pieces.append(text)
        self._emit(
            SummaryDeltaEvent(
                type="response.reasoning_summary_text.delta",
                sequence_number=self._next(),
                item_id=item.item_id,
                output_index=item.output_index,
                summary_index=0,
                delta=text,
            )
        )

    def _text(self, kind: str, text: str) -> None:
        item = self._keyed.get(MESSAGE_KEY)
        if item is None:
            message = MessageItem(id=f"msg_{self._base}", status="in_progress", content=[])
            item = self._open(MESSAGE_KEY, message)
        if kind not in item.parts:
            item.parts.append(kind)
            self._emit(self._part(item, "response.content_part.added", kind, ""))
        index = item.parts.index(kind)
        if kind == TEXT:
            item.pieces.append(text)
            delta: TextDeltaEvent | RefusalDeltaEvent = TextDeltaEvent(
                type="response.output_text.delta",
                sequence_number=self._next(),
                item_id=item.item_id,
                output_index=item.output_index,
                content_index=index,
                delta=text,
            )
        else:
            item.refusal.append(text)
            delta = RefusalDeltaEvent(
                type="response.refusal.delta",
                sequence_number=self._next(),
                item_id=item.item_id,
                output_index=item.output_index,
                content_index=index,
                delta=text,
            )
        self._emit(delta)

    def _call(self, delta: ToolCallDelta) -> None:
        call = self._calls.setdefault(delta.index, _Call())
        call.id = call.id or delta.id or ""
        arguments = ""
        if delta.function is not None:
            call.name = call.name or delta.function.name or ""
            arguments = delta.function.arguments or ""
        if call.item is None:
            if arguments:
                call.arguments.append(arguments)
            if call.name:
                self._open_call(delta.index, call)
        elif arguments:
            self._arguments(call.item, arguments)

    def _open_call(self, index: int, call: _Call) -> None:
        call_id = call.id or fallback_call_id(self._base, index)
        call.item = self._open(("function_call", call_id), call_item(call_id, call.name, "", "in_progress"))
        call.item.name = call.name
        if call.arguments:
            self._arguments(call.item, "".join(call.arguments))

    def _arguments(self, item: _Item, fragment: str) -> None:
        item.pieces.append(fragment)
        self._emit(
            ArgumentsDeltaEvent(
                type="response.function_call_arguments.delta",
                sequence_number=self._next(),
                item_id=item.item_id,
                output_index=item.output_index,
                delta=fragment,
            )
        )

    def _close(self, item: _Item, status: ItemStatus) -> None:
        """An item's ``done`` events, built from what was streamed for it."""
        text = "".join(item.pieces)
        done: OutputItem
        if item.key == REASONING_KEY:
            self._emit(
                SummaryDoneEvent(
                    type="response.reasoning_summary_text.done",
                    sequence_number=self._next(),
                    item_id=item.item_id,
                    output_index=item.output_index,
                    summary_index=0,
                    text=text,
                )
            )
            self._emit(self._summary_part(item, "response.reasoning_summary_part.done", text))
            done = reasoning_item(self._base, text)
        elif item.key == MESSAGE_KEY:
            done = self._close_message(item, text, status)
        else:
            self._emit(
                ArgumentsDoneEvent(
                    type="response.function_call_arguments.done",
                    sequence_number=self._next(),
                    item_id=item.item_id,
                    output_index=item.output_index,
                    name=item.name,
                    arguments=text,
                )
            )
            done = call_item(item.key[1], item.name, text, status)
        self._emit(
            ItemEvent(
                type="response.output_item.done",
                sequence_number=self._next(),
                output_index=item.output_index,
                item=done,
            )
        )

    def _close_message(self, item: _Item, text: str, status: ItemStatus) -> MessageItem:
        refusal = "".join(item.refusal)
        content: list[ContentPart] = []
        for index, kind in enumerate(item.parts):
            done: TextDoneEvent | RefusalDoneEvent
            if kind == TEXT:
                done = TextDoneEvent(
                    type="response.output_text.done",
                    sequence_number=self._next(),
                    item_id=item.item_id,
                    output_index=item.output_index,
                    content_index=index,
                    text=text,
                )
            else:
                done = RefusalDoneEvent(
                    type="response.refusal.done",
                    sequence_number=self._next(),
                    item_id=item.item_id,
                    output_index=item.output_index,
                    content_index=index,
                    refusal=refusal,
                )
            self._emit(done)
            part = self._part(item, "response.content_part.done", kind, text if kind == TEXT else refusal)
            self._emit(part)
            content.append(part.part)
        return MessageItem(id=item.item_id, status=status, content=content)

    def _part(self, item: _Item, kind: str, part_kind: str, text: str) -> ContentPartEvent:
        part: ContentPart = OutputText(text=text) if part_kind == TEXT else Refusal(refusal=text)
        return ContentPartEvent(
            type=kind,
            sequence_number=self._next(),
            item_id=item.item_id,
            output_index=item.output_index,
            content_index=item.parts.index(part_kind),
            part=part,
        )

    def _summary_part(self, item: _Item, kind: str, text: str) -> SummaryPartEvent:
        return SummaryPartEvent(
            type=kind,
            sequence_number=self._next(),
            item_id=item.item_id,
            output_index=item.output_index,
            summary_index=0,
            part=SummaryText(text=text),
        )

    def _next(self) -> int:
        number = self._sequence
        self._sequence += 1
        return number

    def _emit(self, event: Event) -> None:
        self._out += b"event: " + event.type.encode() + b"\ndata: " + encode(event) + b"\n\n"

    def _flush(self) -> bytes:
        frames = bytes(self._out)
        self._out.clear()
        return frames
