"""Per-request controls a caller sends alongside the request (headers, or library arguments)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CacheControl:
    """How one request uses the response cache: ``Cache-Control: no-cache`` skips the lookup (the answer
    is still stored), ``no-store`` keeps it from being stored, ``x-llmgate-cache-ttl`` sets its lifetime."""

    lookup: bool = True
    store: bool = True
    ttl: float | None = None


DEFAULT_CACHE_CONTROL = CacheControl()
