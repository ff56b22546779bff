"""The interaction log (opt-in): every call's full request and response as one JSON line, with anything
shaped like a key redacted, in a file rotated by size. The request path only enqueues; a thread of its
own encodes and writes, and when it falls behind lines are dropped (counted), never waited for."""

from __future__ import annotations

import logging
import logging.handlers
import queue
import threading
import time
from dataclasses import dataclass

import msgspec

from llmgate.core.errors import GatewayError, redact
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatResponse
from llmgate.core.results import CallInfo

QUEUE_LIMIT = 10_000
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Exchange:
    """One call as the log keeps it."""

    at: float
    key_id: str | None
    request: ChatRequest
    response: ChatResponse | None
    info: CallInfo
    error: GatewayError | None


class InteractionLog:
    """Writes exchanges to ``path`` (JSONL), rotated at ``max_bytes`` keeping ``backups`` old files."""

    def __init__(self, path: str, *, max_bytes: int, backups: int) -> None:
        self._file = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups)
        self._file.setFormatter(logging.Formatter("%(message)s"))
        self._queue: queue.Queue[Exchange | None] = queue.Queue(QUEUE_LIMIT)
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="llmgate-interactions", daemon=True)
        self._thread.start()

    def write(
        self,
        request: ChatRequest,
        response: ChatResponse | None,
        info: CallInfo,
        *,
        key_id: str | None = None,
        error: GatewayError | None = None,
    ) -> None:
        """Queue one exchange (never blocks)."""
        try:
            self._queue.put_nowait(Exchange(time.time(), key_id, request, response, info, error))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)
        self._file.close()

    def _run(self) -> None:
        while (exchange := self._queue.get()) is not None:
            try:
                line = redact(_encoder.encode(_entry(exchange)).decode())
                self._file.emit(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))
                self.written += 1
            except Exception:  # one odd exchange must not stop the log
                self.dropped += 1


def _without_native(response: object) -> object:
    if isinstance(response, ChatResponse) and response.native is not msgspec.UNSET:
        return msgspec.structs.replace(response, native=msgspec.UNSET)
    return response


def _entry(exchange: Exchange) -> dict[str, object]:
    info, error = exchange.info, exchange.error
    request = msgspec.structs.replace(exchange.request, raw_messages=None, native=None)
    entry: dict[str, object] = {
        "time": exchange.at,
        "request_id": info.request_id,
        "key_id": exchange.key_id,
        "provider": info.provider or None,
        "deployment": info.deployment or None,
        "cache": info.cache,
        "attempts": info.attempts,
        "request": request,
        # An upstream's own answer bytes (Messages passthrough) would only repeat the response, encoded.
        "response": _without_native(exchange.response),
    }
    if error is not None:
        entry["error"] = {"status": error.status, "code": error.code, "message": error.message}
    return entry
