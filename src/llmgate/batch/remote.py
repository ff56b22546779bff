"""Batch lines sent to a running gateway over HTTP (``llmgate batch --url URL --key K``): each line is a
``POST`` of its body to the gateway's OpenAI-compatible endpoint, so the server applies its routing,
limits, budgets, cache and records, as for any client."""

from __future__ import annotations

import math
from typing import Any

import aiohttp
import msgspec

from llmgate.batch.lines import BatchLine
from llmgate.batch.results import Outcome

REQUEST_TIMEOUT_S = 600.0
_decoder = msgspec.json.Decoder()


class RemoteSender:
    """POSTs lines to ``url`` (the gateway's base URL, e.g. ``http://127.0.0.1:8000/v1``)."""

    def __init__(self, url: str, key: str | None, *, concurrency: int = 8) -> None:
        self.url = url.rstrip("/").removesuffix("/v1")
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # made on the loop that uses it
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S, sock_connect=10)
            connector = aiohttp.TCPConnector(limit=self._concurrency)
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=timeout, connector=connector)
        return self._session

    async def send(self, line: BatchLine) -> Outcome:
        """One attempt: the gateway's answer as it gave it; no answer at all is status 0."""
        try:
            async with self._client().post(f"{self.url}{line.url}", json=line.body) as response:
                body = await response.read()
                return _outcome(response.status, body, response.headers)
        except (TimeoutError, aiohttp.ClientError) as error:
            reason = str(error) or type(error).__name__
            return Outcome(0, code="connection_error", message=f"cannot reach {self.url}: {reason}")

    async def close(self) -> None:
        """Close the connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def _outcome(status: int, body: bytes, headers: Any) -> Outcome:
    try:
        data = _decoder.decode(body) if body else None
    except (msgspec.DecodeError, RecursionError):
        data = None
    if not isinstance(data, dict):
        data = {}
    request_id = str(headers.get("x-request-id", ""))
    if 200 <= status < 300:
        usage = _mapping(data.get("usage"))
        return Outcome(
            status,
            body,
            request_id,
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            cost=_float(headers.get("x-llmgate-cost-usd")),
        )
    error = _mapping(data.get("error"))
    if not body or not data:  # not an OpenAI error body (a proxy's page, say): keep it readable
        body = msgspec.json.encode({"error": {"message": body[:500].decode("utf-8", "replace")}})
    return Outcome(
        status,
        body,
        request_id,
        code=str(error.get("code") or error.get("type") or f"http_{status}"),
        message=str(error.get("message", "")),
        retry_after=_float(headers.get("retry-after")),
    )


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: object) -> float | None:
    """A finite, non-negative number from a header (``unknown``, ``nan`` or junk: ``None``)."""
    try:
        number = float(value) if isinstance(value, str | int | float) else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) and number >= 0 else None
