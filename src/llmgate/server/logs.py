"""The server process's logging: a queue between the loggers and the output, so the event loop only
enqueues a record and a listener thread formats and writes it; ``text`` or ``json`` lines.

Request lines (logger ``llmgate.requests``) carry the request's fields: ``key=value`` after the message
in text, members of the object in JSON. Every line is redacted of anything shaped like a key.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from llmgate.core.errors import redact

QUEUE_LIMIT = 100_000  # records waiting for the writer; beyond, lines are dropped (counted), never a wait


_ENCODER = msgspec.json.Encoder(enc_hook=str)
CALLER_TEXT = ("model_group", "upstream_model", "request_id")
"""A request line's fields that may hold what a caller typed: redacted like a message."""


def _iso(created: float) -> str:
    millis = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{millis:03d}Z"


def _redacted(call: dict[str, Any]) -> dict[str, Any]:
    for name in CALLER_TEXT:
        value = call.get(name)
        if isinstance(value, str):
            call[name] = redact(value)
    return call


def _lines(record: logging.LogRecord) -> Iterable[tuple[float, str, dict[str, Any]]] | None:
    """A batch record's request lines as ``(time, message, fields)`` (``observe.logs.RequestLines``)."""
    lines = getattr(record, "lines", None)
    return lines if isinstance(lines, Iterable) and not isinstance(lines, str | bytes) else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a request's fields when it is one
    (a batch record of requests becomes one line each)."""

    def format(self, record: logging.LogRecord) -> str:
        """The line (the lines, for a batch)."""
        lines = _lines(record)
        if lines is not None:
            return "\n".join(self._request(*line, record.name) for line in lines)
        line: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        call = getattr(record, "call", None)
        if isinstance(call, dict):
            line.update(_redacted(dict(call)))
            line["time"] = _iso(record.created)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return _ENCODER.encode(line).decode()

    @staticmethod
    def _request(created: float, message: str, fields: dict[str, Any], logger: str) -> str:
        line: dict[str, Any] = {"time": "", "level": "info", "logger": logger, "message": redact(message)}
        line.update(_redacted(fields))
        line["time"] = _iso(created)
        return _ENCODER.encode(line).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with a request's fields as ``key=value`` after the message (a batch record of
    requests becomes one line each)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The line (the lines, for a batch)."""
        lines = _lines(record)
        if lines is not None:
            return "\n".join(self._request(*line, record.name) for line in lines)
        text = redact(super().format(record))
        call = getattr(record, "call", None)
        if isinstance(call, dict):
            text += " " + _pairs(_redacted(dict(call)))
        return text

    @staticmethod
    def _request(created: float, message: str, fields: dict[str, Any], logger: str) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
        millis = int(created * 1000) % 1000
        return f"{stamp},{millis:03d} INFO {logger}: {redact(message)} {_pairs(_redacted(fields))}"


def _pairs(call: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in call.items() if value is not None)


class _EnqueueOnly(logging.handlers.QueueHandler):
    """Hands the record to the writer thread as it is: formatting happens there, not on the loop. It
    takes batch records (``observe.logs.takes_batches``): the formatters write their lines."""

    dropped = 0
    takes_batches = True

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            _EnqueueOnly.dropped += 1


def configure(*, format: str, level: str) -> logging.handlers.QueueListener:
    """Route llmgate's loggers (and uvicorn's) through a queue to stderr in the chosen format; returns
    the listener (stop it at exit to write what is left)."""
    output = logging.StreamHandler(sys.stderr)
    output.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    lines: queue.Queue[logging.LogRecord] = queue.Queue(QUEUE_LIMIT)
    listener = logging.handlers.QueueListener(lines, output, respect_handler_level=False)
    listener.start()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_EnqueueOnly(lines))
    root.setLevel(level.upper())
    return listener
