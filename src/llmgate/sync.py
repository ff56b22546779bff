"""The gateway for scripts: the same calls, blocking, on a private event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from llmgate.config import Settings, load_settings
from llmgate.core.response import ChatChunk
from llmgate.core.results import ChatResult, EmbeddingResult
from llmgate.gateway import Gateway


class SyncGateway:
    """The gateway for scripts: the same calls, blocking, on a private event loop."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._runner = asyncio.Runner()
        self._gateway = self._runner.run(_create(settings))

    @classmethod
    def from_config(cls, path: str | Path | None) -> SyncGateway:
        """A blocking gateway configured from a YAML file."""
        return cls(load_settings(path))

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def chat(self, model: str, messages: Sequence[Mapping[str, Any]], **params: Any) -> ChatResult:
        """One complete reply."""
        return self._runner.run(self._gateway.chat(model, messages, **params))

    def stream(self, model: str, messages: Sequence[Mapping[str, Any]], **params: Any) -> Iterator[ChatChunk]:
        """Chunks as they arrive."""
        stream = self._gateway.stream(model, messages, **params)
        iterator = aiter(stream)

        async def step() -> ChatChunk:
            return await anext(iterator)

        try:
            while True:
                try:
                    yield self._runner.run(step())
                except StopAsyncIteration:
                    return
        finally:  # a caller that stops early must not leave the upstream generating (and billing)
            self._runner.run(stream.aclose())

    def embed(self, model: str, input: str | Sequence[str], **params: Any) -> EmbeddingResult:
        """Vectors for ``input``."""
        return self._runner.run(self._gateway.embed(model, input, **params))

    def cache_stats(self) -> dict[str, Any]:
        """The response cache's figures (see ``Gateway.cache_stats``)."""
        return self._runner.run(self._gateway.cache_stats())

    def clear_cache(self, *, namespace: str | None = None, model: str | None = None) -> int:
        """Remove cached answers (see ``Gateway.clear_cache``)."""
        return self._runner.run(self._gateway.clear_cache(namespace=namespace, model=model))

    @property
    def gateway(self) -> Gateway:
        """The underlying async gateway."""
        return self._gateway

    def close(self) -> None:
        """Close the gateway and its loop."""
        self._runner.run(self._gateway.close())
        self._runner.close()


async def _create(settings: Settings | None) -> Gateway:
    return Gateway(settings)
