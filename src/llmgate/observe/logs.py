"""One structured log line per request, from the usage records in batches (nothing on the request path
formats anything); the server's logging setup (``server.logs``) writes them off the event loop.

Where every handler that would see the lines can take a whole batch (``takes_batches``: the server's
queue does), a batch is a ``LogRecord`` per 64 records whose ``lines`` (``RequestLines``) the writer
thread turns into one line per request: the loop pays one record per 64 requests. Any other handler
(a library user's ``basicConfig``, pytest's caplog) gets one ``LogRecord`` per request, its fields in
``call``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from llmgate.state.ports import UsageRecord

REQUESTS = "llmgate.requests"
LINES_PER_RECORD = 64
"""Requests per batch record: the writer thread formats at most this many lines before its write lets
the event loop have the interpreter back (a whole usage batch at once would hold it for milliseconds)."""
FIELDS = (
    "request_id",
    "key_id",
    "model_group",
    "provider",
    "deployment",
    "upstream_model",
    "status",
    "error_type",
    "latency_ms",
    "ttft_ms",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cache",
    "attempts",
    "tried",
    "stream",
    "time",
)


def call_fields(record: UsageRecord) -> dict[str, Any]:
    """The fields of one request's line."""
    return {name: getattr(record, name) for name in FIELDS}


def call_message(record: UsageRecord) -> str:
    """The message of one request's line: status, group, request id."""
    return f"{record.status} {record.model_group} {record.request_id}"


class RequestLines:
    """Some requests' lines as ``(time, message, fields)``, made when iterated (by the writer thread)."""

    __slots__ = ("_records",)

    def __init__(self, records: Sequence[UsageRecord]) -> None:
        self._records = records

    def __iter__(self) -> Iterator[tuple[float, str, dict[str, Any]]]:
        for record in self._records:
            yield record.time, call_message(record), call_fields(record)

    def __len__(self) -> int:
        return len(self._records)


def takes_batches(logger: logging.Logger) -> bool:
    """Whether every handler the logger's records reach can take a batch record (and there is one)."""
    current: logging.Logger | None = logger
    found = False
    while current is not None:
        for handler in current.handlers:
            if not getattr(handler, "takes_batches", False):
                return False
            found = True
        if not current.propagate:
            break
        current = current.parent
    return found


class RequestLog:
    """A usage-record listener: one ``llmgate.requests`` line per request (at info level)."""

    def __init__(self) -> None:
        self._logger = logging.getLogger(REQUESTS)

    def __call__(self, records: Sequence[UsageRecord]) -> None:
        """Log a batch of records (nothing at all when info is off for the logger)."""
        logger = self._logger
        if not records or not logger.isEnabledFor(logging.INFO):
            return
        if takes_batches(logger):
            for start in range(0, len(records), LINES_PER_RECORD):
                lines = RequestLines(tuple(records[start : start + LINES_PER_RECORD]))
                logger.info("%d requests", len(lines), extra={"lines": lines})
            return
        for record in records:
            logger.info("%s", call_message(record), extra={"call": call_fields(record)})
