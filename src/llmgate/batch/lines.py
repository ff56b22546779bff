"""OpenAI's batch input format, one JSON object per line: ``{"custom_id", "method", "url", "body"}``.

Each line is checked on its own (``parse_line``); a whole input is checked in one streaming pass
(``Checker``) that also finds duplicate ``custom_id``s in bounded memory: 16 bytes of digest per line, not
the ids themselves (a million lines: 16 MB).
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")
"""The ``url``s a batch line may name."""
MAX_CUSTOM_ID = 512
MAX_PROBLEMS = 100
"""Problems reported in detail; the rest are counted."""

_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One valid input line. ``index`` is 0-based."""

    index: int
    custom_id: str
    url: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LineProblem:
    """Why an input line cannot run. ``line`` is 1-based, as an editor shows it."""

    line: int
    message: str
    custom_id: str | None = None

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


BodyCheck = Callable[[str, dict[str, Any]], None]
"""Checks a line's body for its url before any spend (the gateway parses it; raises on a bad one)."""


def parse_line(raw: bytes | str, index: int, check: BodyCheck | None = None) -> BatchLine | LineProblem:
    """One input line, or what is wrong with it."""
    number = index + 1
    try:
        data = _decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError) as error:
        return LineProblem(number, f"not valid JSON ({_short(str(error))})")
    if not isinstance(data, dict):
        return LineProblem(number, "not a JSON object")
    custom_id = data.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return LineProblem(number, "no custom_id (a non-empty string)")
    if len(custom_id) > MAX_CUSTOM_ID:
        return LineProblem(number, f"custom_id is longer than {MAX_CUSTOM_ID} characters")
    method, url, body = data.get("method", "POST"), data.get("url"), data.get("body")
    if method != "POST":
        return LineProblem(number, f"method must be POST, not {_short(repr(method))}", custom_id)
    if url not in ENDPOINTS:
        supported = " or ".join(ENDPOINTS)
        return LineProblem(number, f"unsupported url {_short(repr(url))}: use {supported}", custom_id)
    if not isinstance(body, dict):
        return LineProblem(number, "body must be a JSON object (the request)", custom_id)
    if body.get("stream"):
        return LineProblem(number, "stream is not supported in a batch", custom_id)
    if check is not None:
        try:
            check(url, body)
        except Exception as error:  # a body the gateway would refuse: reported, not run
            return LineProblem(number, _short(str(error) or type(error).__name__), custom_id)
    return BatchLine(index, custom_id, str(url), body)


@dataclass
class Checker:
    """Feeds every line of an input through ``parse_line`` and finds duplicate ids at the end."""

    check: BodyCheck | None = None
    lines: int = 0
    problem_count: int = 0
    problems: list[LineProblem] = field(default_factory=list)
    _digests: bytearray = field(default_factory=bytearray)
    _at: array[int] = field(default_factory=lambda: array("q"))
    """The 0-based line of each digest (only kept when a duplicate needs naming: see ``finish``)."""

    def feed(self, raw: bytes | str) -> BatchLine | None:
        """Check the next line; the parsed line, or ``None`` (its problem is noted)."""
        index = self.lines
        self.lines += 1
        if not raw.strip():
            self._note(LineProblem(index + 1, "empty line"))
            return None
        parsed = parse_line(raw, index, self.check)
        if isinstance(parsed, LineProblem):
            self._note(parsed)
            if parsed.custom_id is None:
                return None
        self._digests += digest(parsed.custom_id or "")
        self._at.append(index)
        return parsed if isinstance(parsed, BatchLine) else None

    def _note(self, problem: LineProblem) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def finish(self) -> list[LineProblem]:
        """Every problem found, duplicates included (in line order, the first ``MAX_PROBLEMS``)."""
        for first, again in duplicates(self._digests, self._at):
            self._note(LineProblem(again + 1, f"duplicate custom_id (first on line {first + 1})"))
        self._digests, self._at = bytearray(), array("q")
        self.problems.sort(key=lambda problem: problem.line)
        return self.problems


def digest(custom_id: str) -> bytes:
    """16 bytes standing for a custom_id (BLAKE2b: collisions are out of reach)."""
    return hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def duplicates(digests: bytes | bytearray, at: array[int]) -> list[tuple[int, int]]:
    """(first line, repeated line) for each repeated digest, by a sort: O(n log n), 16 bytes per line."""
    if not digests:
        return []
    import numpy as np  # here, not at the top: only a batch input pays for loading NumPy

    keys = np.frombuffer(bytes(digests), dtype="S16")
    order = np.argsort(keys, kind="stable")
    ranked = keys[order]
    same = np.flatnonzero(ranked[1:] == ranked[:-1])
    found, start, previous = [], -2, -2
    for position in same.tolist():
        if position != previous + 1:  # a new run of equal digests starts at ``position``
            start = position
        previous = position
        # The stable sort keeps equal digests in input order: a run's first entry is the first line.
        found.append((at[int(order[start])], at[int(order[position + 1])]))
    return found


class DoneSet:
    """The custom_ids already answered (from an earlier run's output), as sorted digests."""

    def __init__(self, digests: bytes | bytearray) -> None:
        import numpy as np  # as in ``duplicates``

        self._np = np
        self._keys = np.sort(np.frombuffer(bytes(digests), dtype="S16"))

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, custom_id: object) -> bool:
        if not isinstance(custom_id, str) or not len(self._keys):
            return False
        key = self._np.array(digest(custom_id), dtype="S16")
        at = int(self._np.searchsorted(self._keys, key))
        return at < len(self._keys) and bool(self._keys[at] == key)


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class LineSplitter:
    """Cuts a body that arrives in blocks into lines, without their line ends, in linear time (a line
    spanning many blocks is joined once, not re-copied per block)."""

    def __init__(self) -> None:
        self._rest: list[bytes] = []

    def feed(self, block: bytes) -> list[bytes]:
        """The lines the block completes."""
        lines = block.split(b"\n")
        if len(lines) == 1:
            self._rest.append(block)
            return []
        if self._rest:
            lines[0] = b"".join([*self._rest, lines[0]])
        tail = lines.pop()
        self._rest = [tail] if tail else []
        return [line.removesuffix(b"\r") for line in lines]

    def end(self) -> bytes | None:
        """The last line when it has no line end."""
        rest, self._rest = b"".join(self._rest), []
        return rest.removesuffix(b"\r") if rest else None


async def split_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The lines of a body read in chunks (a last line without a line end included)."""
    splitter = LineSplitter()
    async for chunk in chunks:
        for line in splitter.feed(chunk):
            yield line
    last = splitter.end()
    if last is not None:
        yield last
