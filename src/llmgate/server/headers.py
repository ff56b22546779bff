"""The headers of a served call: who served it, in how many attempts, at what cost."""

from __future__ import annotations

import re
from urllib.parse import quote

from llmgate.core.results import CallInfo
from llmgate.server.errors import limit_headers

_HEADER_SAFE = re.compile(r"^[A-Za-z0-9_.\[\]-]{1,64}$")
_PRINTABLE = "".join(chr(code) for code in range(0x20, 0x7F) if chr(code) != "%")


def call_headers(info: CallInfo) -> dict[str, str]:
    """Which provider and deployment served the call, in how many attempts."""
    headers = {
        "x-request-id": info.request_id,
        "x-llmgate-provider": header_text(info.provider),
        "x-llmgate-deployment": header_text(info.deployment),  # names the model: caller text
        "x-llmgate-attempts": str(info.attempts),
        "x-llmgate-cache": info.cache,
    }
    headers.update(limit_headers(info.limit))
    if info.context is not None:
        headers["x-llmgate-context"] = info.context
    if info.schema is not None:
        headers["x-llmgate-schema"] = info.schema
    if info.dropped_params:
        # Names can come from the caller (unknown fields): only header-safe ones are listed.
        names = [name for name in info.dropped_params if _HEADER_SAFE.match(name)]
        if names:
            headers["x-llmgate-dropped-params"] = ",".join(names)
    return headers


def header_text(value: str) -> str:
    """Text for a header value: printable ASCII as it is, anything else percent-encoded (UTF-8), so a
    name with non-ASCII letters or control characters can neither break nor inject a header."""
    if value.isascii() and value.isprintable() and "%" not in value:  # "%" too: encoded text stays unique
        return value
    return quote(value, safe=_PRINTABLE)


def cost_header(cost: float | None) -> str:
    """USD with enough digits for a fraction of a cent; ``unknown`` when a price is missing."""
    if cost is None:
        return "unknown"
    return "0" if cost == 0 else f"{cost:.8f}"
