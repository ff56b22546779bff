"""What one batch line came to, and OpenAI's batch output format for it.

An output line is ``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``: a
reply or an HTTP error (its OpenAI error body) is a ``response``; a failure with no HTTP status (the
gateway could not be reached at all) is an ``error`` with ``response`` null.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt at a line. ``status`` 0: no HTTP answer (``code`` and ``message`` say why)."""

    status: int
    body: bytes = b""
    """The response body (JSON): the reply, or an OpenAI error body."""
    request_id: str = ""
    code: str | None = None
    """The error's code (``rate_limit_exceeded``, ``insufficient_quota``...), ``None`` for a reply."""
    message: str = ""
    retry_after: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    """USD; ``None`` when unknown (no price, or a remote gateway that did not say)."""
    result: object = None
    """The typed result (``ChatResult`` / ``EmbeddingResult``) when the gateway is in-process."""

    @property
    def ok(self) -> bool:
        """Whether the line got a reply (2xx)."""
        return 200 <= self.status < 300


class _Response(msgspec.Struct):
    status_code: int
    request_id: str
    body: msgspec.Raw


class _Error(msgspec.Struct):
    code: str
    message: str


class _Line(msgspec.Struct):
    id: str
    custom_id: str
    response: _Response | None
    error: _Error | None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """A line's final outcome. ``index`` is its 0-based input line."""

    index: int
    custom_id: str
    outcome: Outcome
    attempts: int = 1

    @property
    def ok(self) -> bool:
        """Whether the line got a reply."""
        return self.outcome.ok

    @property
    def status_code(self) -> int:
        """The HTTP status of the last attempt (0: none)."""
        return self.outcome.status

    def body(self) -> Any:
        """The response body, decoded (the reply or the error envelope)."""
        return _decoder.decode(self.outcome.body) if self.outcome.body else None

    def line(self, batch_id: str = "") -> bytes:
        """The output line (JSON, no newline). Its ``id`` is stable for a batch and custom_id."""
        outcome = self.outcome
        line_id = (
            "batch_req_"
            + hashlib.blake2b(
                f"{batch_id}\0{self.custom_id}".encode("utf-8", "surrogatepass"), digest_size=12
            ).hexdigest()
        )
        if outcome.status:
            response = _Response(outcome.status, outcome.request_id, msgspec.Raw(outcome.body or b"null"))
            return _encoder.encode(_Line(line_id, self.custom_id, response, None))
        error = _Error(outcome.code or "request_failed", outcome.message)
        return _encoder.encode(_Line(line_id, self.custom_id, None, error))


def unrun_line(custom_id: str, code: str, message: str, batch_id: str = "") -> bytes:
    """The error line of an input line that never ran (its job was cancelled, expired or out of budget)."""
    outcome = Outcome(0, code=code, message=message)
    return BatchResult(-1, custom_id, outcome, 0).line(batch_id)


class _Answered(msgspec.Struct):
    custom_id: object = None


_answered = msgspec.json.Decoder(_Answered)


def done_custom_id(line: bytes) -> str | None:
    """The custom_id of an output line written by an earlier run (``None``: not one of ours). Only
    ``custom_id`` is decoded: the rest of the line is skipped, not built."""
    try:
        custom_id = _answered.decode(line).custom_id
    except (msgspec.DecodeError, RecursionError):
        return None
    return custom_id if isinstance(custom_id, str) else None


@dataclass
class Progress:
    """A run's figures so far (what a progress bar shows)."""

    total: int | None = None
    """Lines to run (``None``: not known in advance)."""
    started: float = 0.0
    done: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    unpriced: int = 0
    """Replies whose cost is not known."""
    elapsed: float = 0.0
    retried: int = field(default=0)
    """Attempts beyond the first, over all lines."""

    def add(self, result: BatchResult, now: float) -> None:
        """Count a finished line."""
        outcome = result.outcome
        self.done += 1
        self.failed += 0 if outcome.ok else 1
        self.retried += max(0, result.attempts - 1)
        self.prompt_tokens += outcome.prompt_tokens
        self.completion_tokens += outcome.completion_tokens
        if outcome.cost is None:
            self.unpriced += 1 if outcome.ok else 0
        else:
            self.cost += outcome.cost
        self.elapsed = now - self.started

    @property
    def rate(self) -> float:
        """Lines per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (``None`` when unknown)."""
        if self.total is None or not self.rate:
            return None
        return max(0, self.total - self.done) / self.rate
