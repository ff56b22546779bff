"""The gateway for scripts: the same calls, blocking, on a private event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self, overload

from pydantic import BaseModel

from llmgate.batch import BatchReport, Progress
from llmgate.config import Settings, load_settings
from llmgate.core.response import ChatChunk, ModelCard
from llmgate.core.results import ChatResult, EmbeddingResult
from llmgate.gateway import Gateway
from llmgate.toolkit import Condensed, FitResult, Rendered, TokenCount
from llmgate.toolkit.service import Content, Conversation
from llmgate.toolkit.typed import Parsed

Messages = Sequence[Mapping[str, Any]]


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

    @overload
    def chat(
        self, model: str, messages: Sequence[Mapping[str, Any]], *, response_model: None = None, **params: Any
    ) -> ChatResult: ...

    @overload
    def chat(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        response_model: type[Parsed],
        **params: Any,
    ) -> Parsed: ...

    def chat(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        response_model: type[BaseModel] | None = None,
        **params: Any,
    ) -> ChatResult | BaseModel:
        """One complete reply (with ``response_model``: the reply parsed as that pydantic model)."""
        if response_model is None:
            reply: ChatResult = self._runner.run(self._gateway.chat(model, messages, **params))
            return reply
        return self._runner.run(self._gateway.chat(model, messages, response_model=response_model, **params))

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

    def batch(
        self,
        requests: Iterable[Mapping[str, Any]],
        *,
        concurrency: int = 8,
        retries: int = 5,
        on_progress: Callable[[Progress], None] | None = None,
        batch_id: str | None = None,
    ) -> BatchReport:
        """Many calls at once (see ``Gateway.batch``): every result in input order, with the figures."""
        run = self._gateway.batch(
            requests, concurrency=concurrency, retries=retries, on_progress=on_progress, batch_id=batch_id
        )
        return self._runner.run(run.report())

    def count_tokens(self, model: str, content: Content) -> TokenCount:
        """Tokens of a text or a conversation (see ``Gateway.count_tokens``)."""
        return self._gateway.count_tokens(model, content)

    def fit(
        self, messages: Conversation, model: str, *, reserve: int = 0, window: int | None = None
    ) -> FitResult:
        """The conversation fitted into ``model``'s window (see ``Gateway.fit``)."""
        return self._gateway.fit(messages, model, reserve=reserve, window=window)

    def condense(self, messages: Conversation, *, max_tokens: int, model: str | None = None) -> Condensed:
        """The conversation with its older turns summarised (see ``Gateway.condense``)."""
        return self._runner.run(self._gateway.condense(messages, max_tokens=max_tokens, model=model))

    def render(self, name: str, /, **variables: Any) -> Rendered:
        """A named prompt rendered (see ``Gateway.render``)."""
        return self._gateway.render(name, **variables)

    def stats(self, *, window: float | None = None) -> dict[str, Any]:
        """The service's figures (see ``Gateway.stats``)."""
        return self._runner.run(self._gateway.stats(window=window))

    def usage(
        self, *, since: float | None = None, until: float | None = None, group_by: str = "group"
    ) -> list[dict[str, Any]]:
        """Usage totals (see ``Gateway.usage``)."""
        return self._runner.run(self._gateway.usage(since=since, until=until, group_by=group_by))

    def usage_series(self, *, since: float, step: float, group_by: str = "provider") -> list[dict[str, Any]]:
        """Usage totals per time slot (see ``Gateway.usage_series``)."""
        return self._runner.run(self._gateway.usage_series(since=since, step=step, group_by=group_by))

    def recent_errors(self, *, limit: int = 50) -> list[dict[str, Any]]:
        """The latest failed calls (see ``Gateway.recent_errors``)."""
        return self._runner.run(self._gateway.recent_errors(limit=limit))

    def is_available(self, name: str) -> bool:
        """Whether a provider, deployment or group could take a call now."""
        return self._gateway.is_available(name)

    def provider_health(self) -> list[dict[str, Any]]:
        """Per deployment: state, error rate, latency, last error."""
        return self._gateway.provider_health()

    def health(self) -> dict[str, Any]:
        """Overall status and every deployment's state (see ``Gateway.health``)."""
        return self._runner.run(self._gateway.health())

    def provider_metrics(self, name: str) -> dict[str, Any]:
        """Live figures of a provider or deployment."""
        return self._gateway.provider_metrics(name)

    def rate_limit_status(self, name: str | None = None) -> dict[str, Any]:
        """Limit, remaining and reset (see ``Gateway.rate_limit_status``)."""
        return self._runner.run(self._gateway.rate_limit_status(name))

    def models(self) -> list[ModelCard]:
        """What callers can ask for."""
        return self._gateway.models()

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
