"""The one shared upstream client of a Gateway: pooled HTTP/1.1 connections (providers/client.py)."""

from __future__ import annotations

import asyncio

from llmgate.providers.client import HttpClient


class Transport:
    """Owns the pooled upstream connections of one Gateway (created lazily inside the running loop)."""

    def __init__(self, *, max_connections: int = 1000, keepalive_seconds: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive = keepalive_seconds
        self._client: HttpClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def client(self) -> HttpClient:
        """The pooled client; the first use on an event loop makes one there (a connection has one loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = HttpClient(
                max_connections=self._max_connections, keepalive_seconds=self._keepalive
            )
            self._loop = loop
        return self._client

    async def close(self) -> None:
        """Close every pooled connection."""
        if self._client is not None:
            await self._client.close()
        self._client = None
        self._loop = None
