"""The stateless half of the composition root: ``Settings`` -> adapters, accounts, model groups.

Like ``gateway.py`` (the library API) and ``wiring.py`` (the stateful parts), this module may name
concrete classes: it is where config becomes objects.
"""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, get_args

from llmgate.calls import ChatCalls
from llmgate.calls.chat import Embedder
from llmgate.calls.context import ContextStage
from llmgate.catalogue import UNKNOWN, Catalogue, Prices
from llmgate.config import ConfigError, ProviderSettings, Settings, how_to_enable
from llmgate.config.settings import DeploymentSettings, ModelGroupSettings, ProviderType, Timeouts
from llmgate.core.errors import ModelNotFound
from llmgate.observe.models import ModelDirectory
from llmgate.observe.observers import Observers
from llmgate.policies.cache import CacheRule, CacheRules, ResponseCaching
from llmgate.policies.guard import Guard
from llmgate.policies.structured import StructuredOutput
from llmgate.providers.base import AdapterConfigError, ChatProvider, ProviderSpec, TimeoutPolicy
from llmgate.providers.mock import MockBehaviour, MockFailurePlan
from llmgate.providers.registry import build_provider
from llmgate.providers.transport import Transport
from llmgate.routing.backoff import Backoff
from llmgate.routing.breaker import BreakerPolicy
from llmgate.routing.deployments import Deployment, Hedge, ModelGroup, ProviderAccount
from llmgate.routing.failover import Failover, RetryPolicy
from llmgate.routing.health import HealthBoard
from llmgate.routing.router import Router
from llmgate.routing.strategies.base import Strategy
from llmgate.toolkit import Toolkit

if TYPE_CHECKING:
    from llmgate.observe.tracing import Tracing

DEFAULT_MAX_TOKENS = 4096
GuardSource = Callable[[], Awaitable[Guard]]


class Assembly:
    """Builds the gateway's providers and groups from settings, and answers catalogue facts about them."""

    def __init__(self, settings: Settings, catalogue: Catalogue, transport: Transport) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self._transport = transport
        self.extra_adapters: list[ChatProvider] = []
        """Adapters of deployments with their own base URL (closed with the gateway)."""
        self.accounts = self.build_accounts(settings.providers)

    def build_router(self) -> Router:
        """Names -> model groups and direct ``provider:model`` deployments."""
        return Router(
            groups=self.build_groups(),
            accounts=self.accounts,
            facts=self.model_facts,
            catalogue_provider=self.catalogue_provider,
            known_providers=frozenset(get_args(ProviderType)),
            enable_hint=how_to_enable,
        )

    def build_board(self) -> HealthBoard:
        """Live health per deployment and key, with the configured breaker."""
        breaker = self.settings.routing.breaker
        return HealthBoard(
            BreakerPolicy(
                failure_threshold=breaker.failures,
                error_rate_threshold=breaker.error_rate,
                min_requests=breaker.min_requests,
                cooldown=breaker.cooldown,
                max_cooldown=breaker.max_cooldown,
            )
        )

    def build_failover(
        self,
        board: HealthBoard,
        strategy_of: Callable[[ModelGroup], Strategy],
        resolve: Callable[[str], ModelGroup],
    ) -> Failover:
        """Retries and failover with the configured policy."""
        routing = self.settings.routing
        return Failover(
            board=board,
            strategy_of=strategy_of,
            resolve=resolve,
            policy=RetryPolicy(routing.retries, routing.max_attempts, routing.max_queue_wait, Backoff()),
            rng=random.Random(os.urandom(16)),
            output_reserve=self.settings.limits.reserve_output_tokens,
        )

    def build_calls(
        self,
        router: Router,
        failover: Failover,
        caching: ResponseCaching,
        guard: GuardSource,
        embed: Embedder,
    ) -> ChatCalls:
        """The chat calls: cache, guard, routing, the books."""
        return ChatCalls(
            router=router,
            failover=failover,
            caching=caching,
            guard=guard,
            total_timeout=self.settings.routing.timeouts.total,
            default_max_tokens=self.default_max_tokens,
            embed=embed,
        )

    def build_directory(self, router: Router) -> ModelDirectory:
        """The models callers can ask for, and the providers' probes."""
        return ModelDirectory(
            router,
            self.accounts,
            self.catalogue,
            catalogue_name=self.catalogue_name,
            default_strategy=self.settings.routing.strategy,
        )

    def build_stages(self, toolkit: Toolkit) -> tuple[ContextStage, StructuredOutput]:
        """The context stage (exact counts near a window, overflow fitting) and the structured-output
        stage of the chat calls."""
        settings = self.settings
        context = ContextStage(
            toolkit.counter,
            summariser=toolkit.summariser_for,
            max_summary_tokens=settings.condense.max_summary_tokens,
            output_reserve=settings.limits.reserve_output_tokens,
        )
        wanted = settings.structured_output
        return context, StructuredOutput(retries=wanted.retries, enabled=wanted.validate_replies)

    def build_observers(self, router: Router, board: HealthBoard) -> Observers:
        """Metrics, request lines and the interaction log, as the config asks."""
        log = self.settings.log
        files = log.interactions
        return Observers(
            router,
            board,
            request_lines=log.requests,
            interactions=(files.path, files.max_bytes, files.backups) if files is not None else None,
            metrics_dir=self.settings.server.metrics_dir,
            metrics=self.settings.server.metrics,
        )

    def check_embedding_model(self, rules: CacheRules, router: Router) -> None:
        """The semantic cache's embedding model must be one the gateway serves."""
        if rules.any_semantic and rules.embedding_model is not None:
            try:
                router.group(rules.embedding_model)
            except ModelNotFound as missing:
                raise ConfigError(
                    f"{self.settings.source}: cache.embedding_model: {missing.message}"
                ) from None

    def tracing(self) -> Tracing | None:
        """OpenTelemetry tracing when ``tracing.endpoint`` is set (the SDK loads only then)."""
        wanted = self.settings.tracing
        if wanted.endpoint is None:
            return None
        try:
            from llmgate.observe.tracing import Tracing  # OpenTelemetry loads only when wanted
        except ImportError as missing:
            raise ConfigError(
                f"{self.settings.source}: tracing.endpoint is set, but OpenTelemetry is not installed: "
                "pip install 'llmgate[otel]'"
            ) from missing
        return Tracing.otlp(wanted.endpoint, service_name=wanted.service_name)

    def build_accounts(self, providers: Mapping[str, ProviderSettings]) -> dict[str, ProviderAccount]:
        """One account per configured provider, each with its adapter."""
        accounts: dict[str, ProviderAccount] = {}
        default_timeouts = _policy(self.settings.routing.timeouts)
        for name, config in providers.items():
            adapter = self._adapter(name, config, base_url=config.base_url)
            keys = tuple(key.get_secret_value() for key in config.api_keys)
            timeouts = _policy(config.timeouts) if config.timeouts else default_timeouts
            accounts[name] = ProviderAccount(
                name, config.type, adapter, keys, timeouts, config.rpm, config.tpm
            )
        return accounts

    def _adapter(self, name: str, config: ProviderSettings, *, base_url: str | None) -> ChatProvider:
        spec = ProviderSpec(
            name=name,
            type=config.type,
            base_url=base_url,
            headers=config.headers,
            api_version=config.api_version,
            options=self._adapter_options(config, _mock_behaviour(config)),
        )
        try:
            return build_provider(spec, self._transport)
        except AdapterConfigError as exc:
            raise ConfigError(f"{self.settings.source}: {exc}") from None

    def _adapter_options(self, config: ProviderSettings, mock: MockBehaviour | None) -> dict[str, object]:
        options: dict[str, object] = {**config.options, "default_max_tokens": self.default_max_tokens}
        if mock is not None:
            options["mock"] = mock
        return options

    def default_max_tokens(self, model: str) -> int:
        """The catalogue's output limit for a model (for APIs that require max_tokens), else 4096."""
        info = self.catalogue.lookup(model)
        return info.max_output_tokens if info is not None and info.max_output_tokens else DEFAULT_MAX_TOKENS

    def build_groups(self) -> dict[str, ModelGroup]:
        """The configured model groups, their deployments priced from the catalogue."""
        groups: dict[str, ModelGroup] = {}
        for group in self.settings.models:
            deployments = tuple(self._build_deployment(group, d) for d in group.deployments)
            hedge = Hedge(group.hedge.after_ms / 1000, group.hedge.max_share) if group.hedge else None
            groups[group.name] = ModelGroup(
                group.name,
                deployments,
                group.fallbacks,
                group.strategy,
                group.context_fallbacks,
                hedge,
                group.context_overflow,
            )
        return groups

    def _build_deployment(self, group: ModelGroupSettings, d: DeploymentSettings) -> Deployment:
        account = self.accounts.get(d.provider)
        if account is None:
            raise ConfigError(
                f"{self.settings.source}: model group '{group.name}': "
                f"provider '{d.provider}' is not available"
            )
        prices, context = self.model_facts(d.model, account)
        if d.context_length is not None:
            context = d.context_length
        if d.price is not None:
            prices = prices.overridden(
                input=d.price.input_per_mtok,
                output=d.price.output_per_mtok,
                cached_input=d.price.cached_input_per_mtok,
            )
        adapter, suffix = None, ""
        if d.base_url is not None and d.base_url != self.settings.providers[d.provider].base_url:
            adapter = self._adapter(d.provider, self.settings.providers[d.provider], base_url=d.base_url)
            self.extra_adapters.append(adapter)
            suffix = "@" + d.base_url.split("://", 1)[-1]
        keys = tuple(k.get_secret_value() for k in d.api_keys) if d.api_keys is not None else None
        return Deployment(
            account,
            d.model,
            prices,
            context,
            d.weight,
            d.priority,
            _policy(d.timeouts) if d.timeouts else None,
            adapter_override=adapter,
            api_keys=keys,
            rpm=d.rpm,
            tpm=d.tpm,
            name=f"{account.name}/{d.model}{suffix}",
        )

    def model_facts(self, model: str, account: ProviderAccount) -> tuple[Prices, int | None]:
        """A model's prices (config overrides applied) and context window, from the catalogue."""
        info = self.catalogue.lookup(model, self.catalogue_name(account))
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
    def catalogue_name(account: ProviderAccount) -> str:
        """The provider name the catalogue lists an account's models under."""
        return account.type if account.type != "openai" or account.name == "openai" else account.name

    def cache_rules(self) -> CacheRules:
        """The response cache's rules: the global ``cache`` block, and each group's own."""
        cache = self.settings.cache
        default = CacheRule(
            enabled=cache.mode != "off",
            mode="semantic" if cache.mode == "semantic" else "exact",
            ttl=cache.ttl,
            only_deterministic=cache.only_deterministic,
            shared=cache.namespace == "shared",
        )
        groups = {}
        for group in self.settings.models:
            own = group.cache
            if own is None:
                continue
            groups[group.name] = CacheRule(
                enabled=own.enabled if own.enabled is not None else default.enabled or own.mode is not None,
                mode=own.mode or default.mode,
                ttl=own.ttl or default.ttl,
                only_deterministic=_either(own.only_deterministic, default.only_deterministic),
                shared=(own.namespace or cache.namespace) == "shared",
            )
        return CacheRules(default, groups, cache.max_entry_bytes, cache.embedding_model, cache.threshold)

    def catalogue_provider(self, model: str) -> str | None:
        """The provider the catalogue lists a model under."""
        info = self.catalogue.lookup(model)
        return info.provider if info is not None else None


def _either(own: bool | None, default: bool) -> bool:
    return default if own is None else own


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
