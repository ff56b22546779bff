"""The server process's logging: a queue between the loggers and the output, so the event loop only
enqueues a record and a listener thread formats and writes it; ``text`` or ``json`` lines.

Request lines (logger ``llmgate.requests``) carry the request's fields: ``key=value`` after the message
in text, members of the object in JSON. Every line is redacted of anything shaped like a key.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import time
from typing import Any

from llmgate.core.errors import redact

QUEUE_LIMIT = 100_000  # records waiting for the writer; beyond, lines are dropped (counted), never a wait


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a request's fields when it is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The line."""
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        call = getattr(record, "call", None)
        if isinstance(call, dict):
            line.update(call)
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with a request's fields as ``key=value`` after the message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The line."""
        text = redact(super().format(record))
        call = getattr(record, "call", None)
        if isinstance(call, dict):
            text += " " + " ".join(f"{key}={value}" for key, value in call.items() if value is not None)
        return text


class _EnqueueOnly(logging.handlers.QueueHandler):
    """Hands the record to the writer thread as it is: formatting happens there, not on the loop."""

    dropped = 0

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
