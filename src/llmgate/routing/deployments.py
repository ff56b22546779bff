"""Model groups and their deployments: the things routing chooses between."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from llmgate.catalogue.pricing import UNKNOWN, Prices
from llmgate.core.headroom import Headroom
from llmgate.providers.base import ChatProvider, HeadroomReporter, Target, TimeoutPolicy, key_label


@dataclass(frozen=True, slots=True)
class ProviderAccount:
    """A configured provider: its adapter, its API keys, its per-key limits and its defaults.

    ``rpm`` / ``tpm`` are the limits of each of its API keys (the upstream key level).
    """

    name: str
    type: str
    adapter: ChatProvider
    api_keys: tuple[str, ...] = ()
    timeouts: TimeoutPolicy = field(default_factory=TimeoutPolicy)
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One upstream API key of a deployment, tracked on its own (key rotation)."""

    secret: str | None
    label: str
    """``provider:key-xxxxxxxx`` — safe to show in health, limits and logs."""
    fingerprint: str
    """``key-xxxxxxxx``: the name the adapter files this key's rate-limit readings under."""


@dataclass(frozen=True, slots=True)
class Hedge:
    """Hedging of a group: a second request after ``after`` seconds without a first token."""

    after: float
    max_share: float = 0.1


@dataclass(frozen=True, slots=True)
class Deployment:
    """One way to serve a group: a provider account, the upstream model name, and how to reach it.

    ``adapter`` and ``api_keys`` replace the account's when the deployment has its own base URL or keys.
    ``rpm`` / ``tpm`` limit the deployment across all its keys.
    """

    account: ProviderAccount
    model: str
    prices: Prices = UNKNOWN
    context_length: int | None = None
    weight: float = 1.0
    priority: int = 0
    timeouts: TimeoutPolicy | None = None
    adapter_override: ChatProvider | None = None
    api_keys: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    name: str = ""
    """``provider/model``: how the deployment is named in headers, logs and health."""
    keys: tuple[ApiKey, ...] = ()
    reporter: HeadroomReporter | None = None
    limited: bool = False
    """Whether any rpm/tpm limit (its own or its keys') applies: the hot path skips counting when not."""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", f"{self.account.name}/{self.model}")
        secrets = self.api_keys if self.api_keys is not None else self.account.api_keys
        keys = tuple(ApiKey(s, f"{self.account.name}:{key_label(s)}", key_label(s)) for s in secrets)
        none = ApiKey(None, f"{self.account.name}:{key_label(None)}", key_label(None))
        object.__setattr__(self, "keys", keys or (none,))
        adapter = self.adapter
        object.__setattr__(self, "reporter", adapter if isinstance(adapter, HeadroomReporter) else None)
        limits = (self.rpm, self.tpm, self.account.rpm, self.account.tpm)
        object.__setattr__(self, "limited", any(limits))

    @property
    def adapter(self) -> ChatProvider:
        """The adapter that serves this deployment."""
        return self.adapter_override or self.account.adapter

    def target(self, key: ApiKey | None = None, *, total: float | None = None) -> Target:
        """Where a call goes: this model, with the given key (default: the first), within ``total`` s."""
        timeouts = self.timeouts or self.account.timeouts
        if total is not None and total < timeouts.total - 1.0:
            # Whole tenths of a second: few distinct policies, which adapters may cache.
            total = max(0.1, math.floor(total * 10) / 10)
            timeouts = TimeoutPolicy(
                min(timeouts.connect, total), min(timeouts.first_token, total), timeouts.idle, total
            )
        return Target(self.model, (key or self.keys[0]).secret, timeouts)

    def headroom(self, key: ApiKey) -> Headroom | None:
        """The latest upstream rate-limit reading for one of this deployment's keys."""
        if self.reporter is None:
            return None
        return self.reporter.headroom.get(key.fingerprint)


@dataclass(frozen=True, slots=True)
class ModelGroup:
    """A name callers use and the deployments that serve it."""

    name: str
    deployments: tuple[Deployment, ...]
    fallbacks: tuple[str, ...] = ()
    strategy: str | None = None
    context_fallbacks: tuple[str, ...] = ()
    hedge: Hedge | None = None
    context_overflow: str = "error"
    """A prompt longer than every window: ``error`` (400), ``truncate`` or ``condense``."""
