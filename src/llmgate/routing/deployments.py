"""Model groups and their deployments: the things routing chooses between."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmgate.catalogue.pricing import UNKNOWN, Prices
from llmgate.providers.base import ChatProvider, Target, TimeoutPolicy


@dataclass(frozen=True, slots=True)
class ProviderAccount:
    """A configured provider: its adapter, its API keys and its defaults."""

    name: str
    type: str
    adapter: ChatProvider
    api_keys: tuple[str, ...] = ()
    timeouts: TimeoutPolicy = field(default_factory=TimeoutPolicy)


@dataclass(frozen=True, slots=True)
class Deployment:
    """One way to serve a group: a provider account and the upstream model name."""

    account: ProviderAccount
    model: str
    prices: Prices = UNKNOWN
    context_length: int | None = None
    weight: float = 1.0
    priority: int = 0
    timeouts: TimeoutPolicy | None = None

    @property
    def name(self) -> str:
        """``provider/model``: how the deployment is named in headers, logs and health."""
        return f"{self.account.name}/{self.model}"

    def target(self, key_index: int = 0) -> Target:
        """Where a call goes: this model, with the given API key of the account."""
        keys = self.account.api_keys
        key = keys[key_index % len(keys)] if keys else None
        return Target(self.model, key, self.timeouts or self.account.timeouts)


@dataclass(frozen=True, slots=True)
class ModelGroup:
    """A name callers use and the deployments that serve it."""

    name: str
    deployments: tuple[Deployment, ...]
    fallbacks: tuple[str, ...] = ()
    strategy: str | None = None
