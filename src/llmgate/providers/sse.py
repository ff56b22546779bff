"""The one incremental decoder for Server-Sent Events and newline-delimited JSON.

Written by hand, deliberately: it is ~60 lines, sits on the hot path of every stream, and the SSE
libraries available are tied to one HTTP client. It follows the WHATWG event-stream parsing rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation) for the
fields llmgate needs: ``data`` (multi-line joined with \\n), ``event``, comments, any line ending.
"""

from __future__ import annotations

from typing import NamedTuple


class SSEEvent(NamedTuple):
    """One dispatched event: its type (``None`` for the default ``message``) and its data."""

    event: str | None
    data: bytes


class SSEDecoder:
    """Feed raw bytes in any fragmentation; get complete events out."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Events completed by this chunk."""
        return [event for block in self._blocks(chunk) if (event := _parse_block(block)) is not None]

    def feed_data(self, chunk: bytes) -> list[bytes]:
        """The data of the events completed by this chunk (event names dropped).

        The hot path: blocks of one ``data: ...`` line (OpenAI, Gemini), or of an ``event: ...`` line and
        one ``data: ...`` line (Anthropic), skip the general parser.
        """
        data: list[bytes] = []
        for block in self._blocks(chunk):
            first_end = block.find(b"\n")
            if first_end < 0:
                if block[:6] == b"data: ":
                    data.append(block[6:])
                    continue
            elif (
                block[:7] == b"event: "
                and block[first_end + 1 : first_end + 7] == b"data: "
                and block.find(b"\n", first_end + 1) < 0
            ):
                data.append(block[first_end + 7 :])
                continue
            event = _parse_block(block)
            if event is not None:
                data.append(event.data)
        return data

    def _blocks(self, chunk: bytes) -> list[bytes]:
        """The complete blocks (an event's lines, \n-separated) this chunk ends; the rest is kept."""
        buffer = self._buffer + chunk
        if b"\r" in buffer:
            # Keep a trailing \r: it may be the first half of a \r\n split across chunks.
            tail = b"\r" if buffer.endswith(b"\r") else b""
            buffer = buffer[: len(buffer) - len(tail)].replace(b"\r\n", b"\n").replace(b"\r", b"\n") + tail
        blocks = buffer.split(b"\n\n")
        self._buffer = blocks.pop()
        return blocks

    @property
    def pending(self) -> int:
        """Bytes held of an event not yet complete."""
        return len(self._buffer)

    def close(self) -> list[SSEEvent]:
        """Whatever complete event the stream ended with, without the final blank line."""
        block, self._buffer = self._buffer.rstrip(b"\r\n"), b""
        event = _parse_block(block) if block else None
        return [event] if event is not None else []


def _parse_block(block: bytes) -> SSEEvent | None:
    data: list[bytes] = []
    event: str | None = None
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        name, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", "replace")
    if not data:
        return None
    return SSEEvent(event, b"\n".join(data))


class NDJSONDecoder:
    """Feed raw bytes; get complete non-empty lines (one JSON document each) out."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        """Lines completed by this chunk."""
        lines = (self._buffer + chunk).split(b"\n")
        self._buffer = lines.pop()
        return [stripped for line in lines if (stripped := line.strip())]

    @property
    def pending(self) -> int:
        """Bytes held of a line not yet complete."""
        return len(self._buffer)

    def close(self) -> list[bytes]:
        """A last line the stream ended without a newline."""
        line, self._buffer = self._buffer.strip(), b""
        return [line] if line else []
