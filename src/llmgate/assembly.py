"""The stateless half of the composition root: ``Settings`` -> adapters, accounts, model groups.

Like ``gateway.py`` (the library API) and ``wiring.py`` (the stateful parts), this module may name
concrete classes: it is where config becomes objects.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmgate.catalogue import UNKNOWN, Catalogue, Prices
from llmgate.config import ConfigError, ProviderSettings, Settings
from llmgate.config.settings import DeploymentSettings, ModelGroupSettings, Timeouts
from llmgate.policies.cache import CacheRule, CacheRules
from llmgate.providers.base import AdapterConfigError, ChatProvider, ProviderSpec, TimeoutPolicy
from llmgate.providers.mock import MockBehaviour, MockFailurePlan
from llmgate.providers.registry import build_provider
from llmgate.providers.transport import Transport
from llmgate.routing.deployments import Deployment, Hedge, ModelGroup, ProviderAccount

DEFAULT_MAX_TOKENS = 4096


class Assembly:
    """Builds the gateway's providers and groups from settings, and answers catalogue facts about them."""

    def __init__(self, settings: Settings, catalogue: Catalogue, transport: Transport) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self._transport = transport
        self.extra_adapters: list[ChatProvider] = []
        """Adapters of deployments with their own base URL (closed with the gateway)."""
        self.accounts = self.build_accounts(settings.providers)

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
