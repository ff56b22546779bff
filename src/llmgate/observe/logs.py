"""One structured log line per request, from the usage records in batches (nothing on the request path
formats anything); the server's logging setup (``server.logs``) writes them off the event loop."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from llmgate.state.ports import UsageRecord

REQUESTS = "llmgate.requests"
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


class RequestLog:
    """A usage-record listener: one ``llmgate.requests`` line per request (at info level)."""

    def __init__(self) -> None:
        self._logger = logging.getLogger(REQUESTS)

    def __call__(self, records: Sequence[UsageRecord]) -> None:
        """Log a batch of records (nothing at all when info is off for the logger)."""
        logger = self._logger
        if not logger.isEnabledFor(logging.INFO):
            return
        for record in records:
            call = {name: getattr(record, name) for name in FIELDS}
            logger.info(
                "%s %s %s", record.status, record.model_group, record.request_id, extra={"call": call}
            )
