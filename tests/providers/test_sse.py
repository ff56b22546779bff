"""The incremental SSE and NDJSON decoders: field parsing, line endings, end of stream, fragmentation."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from llmgate.providers.sse import NDJSONDecoder, SSEDecoder, SSEEvent


def _decode(pieces: list[bytes]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for piece in pieces:
        events.extend(decoder.feed(piece))
    events.extend(decoder.close())
    return events


def _split(raw: bytes, rng: random.Random) -> list[bytes]:
    points = sorted({rng.randrange(0, len(raw) + 1) for _ in range(rng.randint(0, 12))})
    edges = [0, *points, len(raw)]
    return [raw[start:end] for start, end in pairwise(edges)]


# --- SSE fields ------------------------------------------------------------------------------------------


def test_single_event() -> None:
    assert SSEDecoder().feed(b'data: {"a": 1}\n\n') == [SSEEvent(None, b'{"a": 1}')]


def test_several_events_in_one_feed() -> None:
    events = SSEDecoder().feed(b"data: one\n\ndata: two\n\ndata: [DONE]\n\n")
    assert [event.data for event in events] == [b"one", b"two", b"[DONE]"]


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert SSEDecoder().feed(b"data: first\ndata: second\ndata:third\n\n") == [
        SSEEvent(None, b"first\nsecond\nthird")
    ]


def test_only_one_leading_space_is_removed() -> None:
    assert SSEDecoder().feed(b"data:  two spaces\n\ndata:none\n\n") == [
        SSEEvent(None, b" two spaces"),
        SSEEvent(None, b"none"),
    ]


def test_colons_in_the_value_are_kept() -> None:
    assert SSEDecoder().feed(b'data: {"url": "http://x:1"}\n\n') == [SSEEvent(None, b'{"url": "http://x:1"}')]


def test_data_line_without_colon_is_an_empty_value() -> None:
    assert SSEDecoder().feed(b"data\ndata: x\n\n") == [SSEEvent(None, b"\nx")]


def test_empty_data_value_is_still_an_event() -> None:
    assert SSEDecoder().feed(b"data:\n\n") == [SSEEvent(None, b"")]


def test_comments_are_ignored() -> None:
    # OpenRouter keeps connections alive with ": OPENROUTER PROCESSING" comment blocks.
    raw = b": OPENROUTER PROCESSING\n\ndata: a\n: in the middle\ndata: b\n\n:\n\n"
    assert SSEDecoder().feed(raw) == [SSEEvent(None, b"a\nb")]


def test_event_field_names_the_event() -> None:
    raw = b"event: content_block_delta\ndata: {}\n\ndata: plain\n\n"
    assert SSEDecoder().feed(raw) == [SSEEvent("content_block_delta", b"{}"), SSEEvent(None, b"plain")]


def test_event_without_data_is_not_dispatched_and_does_not_leak() -> None:
    raw = b"event: ping\n\ndata: after\n\n"
    assert SSEDecoder().feed(raw) == [SSEEvent(None, b"after")]


def test_last_event_field_wins() -> None:
    assert SSEDecoder().feed(b"event: a\nevent: b\ndata: x\n\n") == [SSEEvent("b", b"x")]


def test_other_fields_are_ignored() -> None:
    raw = b"id: 7\nretry: 1000\nfoo: bar\ndata: x\n\n"
    assert SSEDecoder().feed(raw) == [SSEEvent(None, b"x")]


def test_extra_blank_lines_between_events() -> None:
    raw = b"\n\ndata: a\n\n\n\n\ndata: b\n\n"
    assert [event.data for event in SSEDecoder().feed(raw)] == [b"a", b"b"]


def test_utf8_split_inside_a_character() -> None:
    raw = "data: héllo 🌟\n\n".encode()
    cut = raw.index("🌟".encode()) + 2
    decoder = SSEDecoder()
    assert decoder.feed(raw[:cut]) == []
    assert decoder.feed(raw[cut:]) == [SSEEvent(None, "héllo 🌟".encode())]


# --- line endings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_any_line_ending(newline: bytes) -> None:
    raw = newline.join([b"event: e", b"data: a", b"data: b", b"", b"data: c", b"", b""])
    assert _decode([raw]) == [SSEEvent("e", b"a\nb"), SSEEvent(None, b"c")]


def test_mixed_line_endings() -> None:
    raw = b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r"
    assert _decode([raw]) == [SSEEvent(None, b"a\nb\nc"), SSEEvent(None, b"d")]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
def test_events_come_out_of_the_feed_that_completes_them(newline: bytes) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a" + newline) == []
    assert decoder.feed(newline) == [SSEEvent(None, b"a")]
    assert decoder.feed(b"data: b" + newline + newline + b"data: c") == [SSEEvent(None, b"b")]


def test_crlf_split_across_two_feeds_is_one_line_ending() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    # Had the \r and \n counted as two line endings, "a" would be an event of its own.
    assert decoder.feed(b"\ndata: b\r\n\r") == []
    assert decoder.feed(b"\n") == [SSEEvent(None, b"a\nb")]
    assert decoder.close() == []


def test_blank_line_crlf_split_across_feeds() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\n\r") == []
    assert decoder.feed(b"\ndata: b\r\n\r\n") == [SSEEvent(None, b"a"), SSEEvent(None, b"b")]


def test_cr_terminated_event_at_the_end_of_a_feed_is_delivered() -> None:
    decoder = SSEDecoder()
    first = decoder.feed(b"data: a\r\r")
    second = decoder.feed(b"data: b\r\r")
    assert [*first, *second, *decoder.close()] == [SSEEvent(None, b"a"), SSEEvent(None, b"b")]
    assert SSEEvent(None, b"a") in [*first, *second]


# --- end of stream and empty feeds -----------------------------------------------------------------------


def test_trailing_event_without_blank_line_comes_out_of_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: [DONE]") == []
    assert decoder.close() == [SSEEvent(None, b"[DONE]")]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_trailing_event_with_one_line_ending_comes_out_of_close(ending: bytes) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x" + ending) == []
    assert decoder.close() == [SSEEvent(None, b"x")]


def test_close_after_complete_events_yields_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\n") == [SSEEvent(None, b"a")]
    assert decoder.close() == []


def test_close_of_a_trailing_comment_yields_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\n\n: keep-alive") == [SSEEvent(None, b"a")]
    assert decoder.close() == []


def test_close_resets_the_buffer() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: old")
    assert decoder.close() == [SSEEvent(None, b"old")]
    assert decoder.close() == []
    assert decoder.feed(b"data: new\n\n") == [SSEEvent(None, b"new")]


def test_empty_feeds_change_nothing() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b"data: a") == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n\n") == [SSEEvent(None, b"a")]
    assert decoder.feed(b"") == []
    assert decoder.close() == []


def test_nothing_at_all() -> None:
    assert _decode([]) == []
    assert _decode([b"", b""]) == []


# --- property: any fragmentation yields the same events ---------------------------------------------------

_VALUES = ["", " ", "x", '{"a": "b:c"}', "héllo 🌟", " leading", "[DONE]", "tail ", "a:b: c"]


def _random_stream(rng: random.Random) -> tuple[bytes, list[SSEEvent]]:
    """A random SSE text and the events it must decode to (built independently of the decoder)."""
    newline = rng.choice(["\n", "\r\n", "\r"])
    lines: list[str] = []
    expected: list[SSEEvent] = []
    for _ in range(rng.randint(0, 8)):
        event = rng.choice([None, None, "message_start", "ping"])
        data = [rng.choice(_VALUES) for _ in range(rng.randint(0, 3))]
        block = [f"data: {value}" for value in data]
        if event is not None:
            block.insert(rng.randrange(len(block) + 1), f"event: {event}")
        if rng.random() < 0.3:
            block.insert(rng.randrange(len(block) + 1), ": comment")
        if not block:
            block = [": keep-alive"]
        lines.extend([*block, ""])
        if data:
            expected.append(SSEEvent(event, "\n".join(data).encode()))
    if lines and rng.random() < 0.3:
        lines.pop()  # the last event lacks its blank line: close() must still deliver it
    text = newline.join(lines) + (newline if lines else "")
    return text.encode(), expected


def test_any_fragmentation_yields_the_same_events() -> None:
    rng = random.Random(20240601)
    for _ in range(400):
        raw, expected = _random_stream(rng)
        assert _decode([raw]) == expected, raw
        fast = SSEDecoder()
        data = [*fast.feed_data(raw), *(event.data for event in fast.close())]
        assert data == [event.data for event in expected], raw
        assert _decode([raw[i : i + 1] for i in range(len(raw))]) == expected, raw
        for _ in range(5):
            assert _decode(_split(raw, rng)) == expected, raw


# --- NDJSON ----------------------------------------------------------------------------------------------


def test_ndjson_lines() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a": 1}\n{"b": 2}\n') == [b'{"a": 1}', b'{"b": 2}']
    assert decoder.close() == []


def test_ndjson_line_split_across_feeds() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a": ') == []
    assert decoder.feed(b'1}\n{"b"') == [b'{"a": 1}']
    assert decoder.feed(b": 2}\n") == [b'{"b": 2}']


def test_ndjson_blank_lines_and_crlf_are_skipped() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'\n{"a": 1}\r\n\r\n  \n{"b": 2}\r\n') == [b'{"a": 1}', b'{"b": 2}']


def test_ndjson_crlf_split_across_feeds() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a": 1}\r') == []
    assert decoder.feed(b"\n") == [b'{"a": 1}']


def test_ndjson_last_line_without_newline_comes_out_of_close() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b'{"a": 1}\n{"done": true}') == [b'{"a": 1}']
    assert decoder.close() == [b'{"done": true}']
    assert decoder.close() == []


def test_ndjson_empty_feeds_and_whitespace_tail() -> None:
    decoder = NDJSONDecoder()
    assert decoder.feed(b"") == []
    assert decoder.feed(b'{"a": 1}') == []
    assert decoder.feed(b"") == []
    assert decoder.feed(b"\n  ") == [b'{"a": 1}']
    assert decoder.close() == []


def test_ndjson_any_fragmentation_yields_the_same_lines() -> None:
    rng = random.Random(7)
    for _ in range(300):
        documents = [f'{{"i": {i}, "s": "{rng.choice(_VALUES)}"}}'.encode() for i in range(rng.randint(0, 6))]
        newline = rng.choice([b"\n", b"\r\n"])
        raw = newline.join(documents) + (newline if rng.random() < 0.7 else b"")
        for pieces in ([raw], [raw[i : i + 1] for i in range(len(raw))], _split(raw, rng)):
            decoder = NDJSONDecoder()
            lines = [line for piece in pieces for line in decoder.feed(piece)]
            assert [*lines, *decoder.close()] == documents, raw


FEED_DATA_CASES = [
    b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n',
    b'event: message_start\ndata: {"type": "x"}\n\n: ping\n\ndata: y\n\n',
    b"data: one\ndata: two\n\ndata: three\n\n",
    b'data: {"text": "data: not a field"}\n\nid: 7\ndata: z\n\n',
    b"data: a\r\n\r\ndata: b\r\rdata: c\n\n",
    b"data:nospace\n\n\n\ndata: after extra blank lines\n\n",
    # Anthropic's shape (an event line, then one data line) and its near misses
    b'event: content_block_delta\ndata: {"a": 1}\n\nevent: ping\ndata: {}\n\n',
    b"event: x\ndata: one\ndata: two\n\nevent: y\n: comment\ndata: z\n\n",
    b"event: x\ndata:nospace\n\nevent: no data\n\ndata: a\nevent: after\n\n",
    b"event: x\ndata: \n\nevent:\ndata: e\n\nevent: x\nid: 1\n\n",
]


@pytest.mark.parametrize("raw", FEED_DATA_CASES)
def test_feed_data_fast_path_agrees_with_the_full_parser(raw: bytes) -> None:
    rng = random.Random(11)
    expected = [event.data for event in SSEDecoder().feed(raw)]
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(raw)), k=min(4, len(raw) - 1)))
        decoder = SSEDecoder()
        got: list[bytes] = []
        for start, end in pairwise([0, *cuts, len(raw)]):
            got += decoder.feed_data(raw[start:end])
        got += [event.data for event in decoder.close()]
        assert got == expected
