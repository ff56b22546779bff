"""The composition root and the library API: ``Settings`` -> adapters, catalogue, router -> calls.

This is the only module that names concrete classes; everything else depends on ports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from time import perf_counter
from types import TracebackType
from typing import Any, Self

from msgspec import UNSET

from llmgate.catalogue import UNKNOWN, Catalogue, ModelInfo, Prices, cost_of
from llmgate.config import ConfigError, ProviderSettings, Settings, load_settings
from llmgate.config.settings import Timeouts
from llmgate.core.codec import parse_chat_request, parse_embedding_request
from llmgate.core.errors import InvalidRequest
from llmgate.core.request import ChatRequest, EmbeddingRequest
from llmgate.core.response import ChatChunk, ModelCard
from llmgate.core.results import CallInfo, ChatResult, EmbeddingResult
from llmgate.core.usage import Usage
from llmgate.providers.base import (
    AdapterConfigError,
    EmbeddingProvider,
    ModelLister,
    ProviderSpec,
    TimeoutPolicy,
)
from llmgate.providers.mock import MockBehaviour, MockFailurePlan
from llmgate.providers.registry import build_provider
from llmgate.providers.transport import Transport
from llmgate.routing.deployments import Deployment, ModelGroup, ProviderAccount
from llmgate.routing.router import Router

log = logging.getLogger("llmgate")
DEFAULT_MAX_TOKENS = 4096


class Gateway:
    """One gateway: providers, routing and accounting. Use as an async context manager."""

    def __init__(self, settings: Settings | None = None, *, catalogue: Catalogue | None = None) -> None:
        self.settings = settings if settings is not None else load_settings(None)
        self.catalogue = catalogue if catalogue is not None else Catalogue.load()
        self._transport = Transport()
        self._ids = random.Random(os.urandom(16))  # seeded once from the OS; no syscall per request
        self.accounts = self._build_accounts(self.settings.providers)
        self.router = Router(
            groups=self._build_groups(),
            accounts=self.accounts,
            facts=self._model_facts,
            catalogue_provider=self._catalogue_provider,
        )

    def new_request_id(self) -> str:
        """A short random id for one request (unique in practice, not a secret)."""
        return f"req_{self._ids.getrandbits(96):024x}"

    @classmethod
    def from_config(cls, path: str | Path | None, *, environ: Mapping[str, str] | None = None) -> Gateway:
        """A gateway configured from a YAML file (``None``: environment only)."""
        return cls(load_settings(path, environ=environ))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Release every connection the gateway holds."""
        for account in self.accounts.values():
            await account.adapter.close()
        await self._transport.close()

    # --- chat -------------------------------------------------------------------------------------------

    async def chat(
        self, model: str | ChatRequest, messages: Sequence[Mapping[str, Any]] | None = None, **params: Any
    ) -> ChatResult:
        """One complete reply. ``model`` is a group name or ``provider:model``; params as OpenAI's."""
        request = self._chat_request(model, messages, params, stream=False)
        return await self.complete(request)

    async def complete(self, request: ChatRequest, *, request_id: str | None = None) -> ChatResult:
        """Serve a validated request (the server's entry point)."""
        deployment = self.router.candidates(request.model)[0]
        dropped = _honoured(deployment, request)
        started = perf_counter()
        response = await deployment.account.adapter.chat(request, deployment.target())
        info = CallInfo(
            request_id or self.new_request_id(),
            deployment.account.name,
            deployment.name,
            deployment.model,
            1,
            (perf_counter() - started) * 1000,
            dropped,
        )
        cost = cost_of(response.usage, deployment.prices) if response.usage is not None else None
        return ChatResult(response, info, cost)

    def stream(
        self, model: str | ChatRequest, messages: Sequence[Mapping[str, Any]] | None = None, **params: Any
    ) -> ChatStream:
        """A streamed reply: ``async for chunk in gw.stream(...)``."""
        request = self._chat_request(model, messages, params, stream=True)
        return self.open_stream(request)

    def open_stream(self, request: ChatRequest, *, request_id: str | None = None) -> ChatStream:
        """Serve a validated streaming request (the server's entry point)."""
        deployment = self.router.candidates(request.model)[0]
        dropped = _honoured(deployment, request)
        return ChatStream(request, deployment, request_id or self.new_request_id(), dropped)

    # --- embeddings -------------------------------------------------------------------------------------

    async def embed(
        self, model: str | EmbeddingRequest, input: str | Sequence[str] | None = None, **params: Any
    ) -> EmbeddingResult:
        """Vectors for ``input`` from an embedding model."""
        if isinstance(model, EmbeddingRequest):
            request = model
        else:
            body = {**params, "model": model, "input": input if isinstance(input, str) else list(input or [])}
            request = parse_embedding_request(body)
        return await self.embeddings(request)

    async def embeddings(
        self, request: EmbeddingRequest, *, request_id: str | None = None
    ) -> EmbeddingResult:
        """Serve a validated embeddings request."""
        deployment = self.router.candidates(request.model)[0]
        adapter = deployment.account.adapter
        if not isinstance(adapter, EmbeddingProvider):
            raise InvalidRequest(f"provider '{deployment.account.name}' has no embeddings API", param="model")
        started = perf_counter()
        response = await adapter.embed(request, deployment.target())
        info = CallInfo(
            request_id or self.new_request_id(),
            deployment.account.name,
            deployment.name,
            deployment.model,
            1,
            (perf_counter() - started) * 1000,
        )
        cost = cost_of(response.usage, deployment.prices) if response.usage is not None else None
        return EmbeddingResult(response, info, cost)

    # --- models -----------------------------------------------------------------------------------------

    def models(self) -> list[ModelCard]:
        """What callers can ask for: model groups, then catalogue models of configured providers."""
        cards = [ModelCard(id=name, owned_by="llmgate") for name in self.router.groups]
        for account in self.accounts.values():
            for info in self.catalogue.search(provider=self._catalogue_name(account)):
                cards.append(ModelCard(id=f"{account.name}:{info.id}", owned_by=account.name))
        return cards

    def model(self, model_id: str) -> ModelCard:
        """One model callers can ask for (``ModelNotFound`` with close matches otherwise)."""
        for card in self.models():
            if card.id == model_id:
                return card
        deployment = self.router.candidates(model_id)[0]
        return ModelCard(id=model_id, owned_by=deployment.account.name)

    async def upstream_models(self, provider: str) -> list[ModelCard]:
        """Ask a provider which models it serves."""
        account = self.accounts.get(provider)
        if account is None:
            raise InvalidRequest(f"unknown provider '{provider}'", param="provider")
        if not isinstance(account.adapter, ModelLister):
            raise InvalidRequest(f"provider '{provider}' cannot list its models", param="provider")
        target = Deployment(account=account, model="").target()
        return await account.adapter.list_models(target)

    def catalogue_model(self, model_id: str) -> ModelInfo | None:
        """The catalogue's entry for an id (``provider/id`` accepted)."""
        return self.catalogue.get(model_id)

    def health(self) -> dict[str, Any]:
        """Liveness and what is configured."""
        return {
            "status": "ok",
            "providers": {name: account.type for name, account in self.accounts.items()},
            "model_groups": list(self.router.groups),
        }

    # --- building ---------------------------------------------------------------------------------------

    def _chat_request(
        self,
        model: str | ChatRequest,
        messages: Sequence[Mapping[str, Any]] | None,
        params: dict[str, Any],
        *,
        stream: bool,
    ) -> ChatRequest:
        if isinstance(model, ChatRequest):
            return model
        if messages is None:
            raise InvalidRequest("messages are required", param="messages")
        return parse_chat_request({**params, "model": model, "messages": list(messages), "stream": stream})

    def _build_accounts(self, providers: Mapping[str, ProviderSettings]) -> dict[str, ProviderAccount]:
        accounts: dict[str, ProviderAccount] = {}
        default_timeouts = _policy(self.settings.routing.timeouts)
        for name, config in providers.items():
            behaviour = _mock_behaviour(config)
            spec = ProviderSpec(
                name=name,
                type=config.type,
                base_url=config.base_url,
                headers=config.headers,
                api_version=config.api_version,
                options=self._adapter_options(config, behaviour),
            )
            try:
                adapter = build_provider(spec, self._transport)
            except AdapterConfigError as exc:
                raise ConfigError(f"{self.settings.source}: {exc}") from None
            keys = tuple(key.get_secret_value() for key in config.api_keys)
            timeouts = _policy(config.timeouts) if config.timeouts else default_timeouts
            accounts[name] = ProviderAccount(name, config.type, adapter, keys, timeouts)
        return accounts

    def _adapter_options(self, config: ProviderSettings, mock: MockBehaviour | None) -> dict[str, object]:
        options: dict[str, object] = {**config.options, "default_max_tokens": self._default_max_tokens}
        if mock is not None:
            options["mock"] = mock
        return options

    def _default_max_tokens(self, model: str) -> int:
        """The catalogue's output limit for a model (for APIs that require max_tokens), else 4096."""
        info = self.catalogue.lookup(model)
        return info.max_output_tokens if info is not None and info.max_output_tokens else DEFAULT_MAX_TOKENS

    def _build_groups(self) -> dict[str, ModelGroup]:
        groups: dict[str, ModelGroup] = {}
        for group in self.settings.models:
            deployments = []
            for d in group.deployments:
                account = self.accounts.get(d.provider)
                if account is None:
                    raise ConfigError(
                        f"{self.settings.source}: model group '{group.name}': provider "
                        f"'{d.provider}' is not available"
                    )
                prices, context = self._model_facts(d.model, account)
                if d.price is not None:
                    prices = prices.overridden(
                        input=d.price.input_per_mtok,
                        output=d.price.output_per_mtok,
                        cached_input=d.price.cached_input_per_mtok,
                    )
                deployments.append(
                    Deployment(
                        account,
                        d.model,
                        prices,
                        context,
                        d.weight,
                        d.priority,
                        _policy(d.timeouts) if d.timeouts else None,
                    )
                )
            groups[group.name] = ModelGroup(group.name, tuple(deployments), group.fallbacks, group.strategy)
        return groups

    def _model_facts(self, model: str, account: ProviderAccount) -> tuple[Prices, int | None]:
        info = self.catalogue.lookup(model, self._catalogue_name(account))
        prices = Prices.of(info) if info is not None else UNKNOWN
        override = self.settings.model_prices.get(model)
        if override is not None:
            prices = prices.overridden(
                input=override.input_per_mtok,
                output=override.output_per_mtok,
                cached_input=override.cached_input_per_mtok,
            )
        return prices, info.context_length if info is not None else None

    @staticmethod
    def _catalogue_name(account: ProviderAccount) -> str:
        return account.type if account.type != "openai" or account.name == "openai" else account.name

    def _catalogue_provider(self, model: str) -> str | None:
        info = self.catalogue.lookup(model)
        return info.provider if info is not None else None


class ChatStream:
    """A streamed reply. Iterate it; afterwards ``usage`` and ``cost`` hold the totals.

    ``start()`` opens the upstream and waits for its first chunks, so a failure before any content
    surfaces as an exception (the server turns it into a proper HTTP error, not a broken stream).
    ``batches()`` gives the chunks as they arrived together, for callers that write them out in bulk.
    """

    def __init__(
        self, request: ChatRequest, deployment: Deployment, request_id: str, dropped: tuple[str, ...] = ()
    ) -> None:
        self.request = request
        self.deployment = deployment
        self.info = CallInfo(
            request_id, deployment.account.name, deployment.name, deployment.model, dropped_params=dropped
        )
        self.usage: Usage | None = None
        self.cost: float | None = None
        self._upstream = deployment.account.adapter.stream(request, deployment.target())
        self._first: list[ChatChunk] | None = None
        self._started = False
        self._forward_usage = request.wants_usage_chunk

    async def start(self) -> None:
        """Open the upstream and buffer its first batch of chunks."""
        if not self._started:
            self._started = True
            self._first = await anext(self._upstream, None)

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        return self._chunks()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _chunks(self) -> AsyncIterator[ChatChunk]:
        async for batch in self.batches():
            for chunk in batch:
                yield chunk

    async def batches(self) -> AsyncIterator[list[ChatChunk]]:
        """The chunks, in the batches they arrived in (never empty)."""
        await self.start()
        try:
            if self._first is not None:
                first, self._first = self._first, None
                if batch := self._account(first):
                    yield batch
                async for upstream_batch in self._upstream:
                    if batch := self._account(upstream_batch):
                        yield batch
        finally:
            await self.aclose()

    def _account(self, batch: list[ChatChunk]) -> list[ChatChunk]:
        forward = self._forward_usage
        kept: list[ChatChunk] = []
        for chunk in batch:
            usage = chunk.usage
            if usage:
                self.usage = usage
                self.cost = cost_of(usage, self.deployment.prices)
                if not chunk.choices and not forward:
                    continue
            if not forward and usage is not UNSET:
                chunk.usage = UNSET
            kept.append(chunk)
        return kept

    async def aclose(self) -> None:
        """Stop the upstream (cancels the HTTP request when the caller goes away)."""
        await self._upstream.aclose()  # type: ignore[attr-defined]


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


def _honoured(deployment: Deployment, request: ChatRequest) -> tuple[str, ...]:
    """The parameters the deployment will drop; 400 naming those it cannot honour at all."""
    report = deployment.account.adapter.check(request)
    if report.refused:
        names = ", ".join(report.refused)
        raise InvalidRequest(
            f"{deployment.name} cannot honour: {names}", param=report.refused[0], code="unsupported_parameter"
        )
    return report.dropped


def _policy(timeouts: Timeouts) -> TimeoutPolicy:
    return TimeoutPolicy(timeouts.connect, timeouts.first_token, timeouts.idle, timeouts.total)


def _mock_behaviour(config: ProviderSettings) -> MockBehaviour | None:
    if config.type != "mock":
        return None
    mock = config.mock
    if mock is None:
        return MockBehaviour()
    failure = mock.failure
    plan = MockFailurePlan(
        failure.kind, failure.status, failure.retry_after, failure.message, failure.after_chunks
    )
    return MockBehaviour(mock.latency_ms, mock.tokens_per_second, mock.failure_rate, plan, mock.seed)
