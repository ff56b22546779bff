"""Resolve the model name a caller used to the deployments that may serve the call.

SPEC.md section 2.2: a configured group name wins; ``provider:model`` (split at the first colon) and
``provider/model`` address a configured provider directly; a catalogue model whose provider is
configured is served by it. A directly addressed model is served as a group of one deployment.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

from llmgate.catalogue.pricing import UNKNOWN, Prices
from llmgate.core.errors import ModelNotFound
from llmgate.routing.deployments import Deployment, ModelGroup, ProviderAccount

ModelFacts = Callable[[str, ProviderAccount], tuple[Prices, int | None]]
"""(upstream model, account) -> its prices and context window, from the catalogue."""

CatalogueProvider = Callable[[str], str | None]
"""model id -> the provider the catalogue lists it under, if any."""

EnableHint = Callable[[str], str]
"""provider type -> how a user makes it available (e.g. "set OPENAI_API_KEY")."""


def _no_facts(model: str, account: ProviderAccount) -> tuple[Prices, int | None]:
    return UNKNOWN, None


class Router:
    """Turns a requested model name into an ordered list of deployments to try."""

    def __init__(
        self,
        *,
        groups: Mapping[str, ModelGroup],
        accounts: Mapping[str, ProviderAccount],
        facts: ModelFacts = _no_facts,
        catalogue_provider: CatalogueProvider | None = None,
        known_providers: frozenset[str] = frozenset(),
        enable_hint: EnableHint | None = None,
    ) -> None:
        self.groups = dict(groups)
        self.accounts = dict(accounts)
        self._facts = facts
        self._catalogue_provider = catalogue_provider
        self._known_providers = known_providers
        self._enable_hint = enable_hint
        self._direct: dict[str, ModelGroup] = {}

    def group(self, model: str) -> ModelGroup:
        """The group serving ``model``; ``ModelNotFound`` with close matches if there is none."""
        group = self.groups.get(model)
        if group is not None:
            return group
        direct = self._direct.get(model)
        if direct is None:
            deployment = self._resolve_direct(model)
            if deployment is None:
                raise self._not_found(model)
            direct = ModelGroup(model, (deployment,))
            if len(self._direct) < 10_000:  # bounded: names come from callers
                self._direct[model] = direct
        return direct

    def describe(self, default_strategy: str) -> list[dict[str, Any]]:
        """The configured groups: deployments (provider, model, context window), fallbacks, strategy,
        context overflow."""
        return [
            {
                "name": group.name,
                "deployments": [
                    {"provider": d.account.name, "model": d.model, "context_length": d.context_length}
                    for d in group.deployments
                ],
                "fallbacks": list(group.fallbacks),
                "strategy": group.strategy or default_strategy,
                "context_overflow": group.context_overflow,
            }
            for group in self.groups.values()
        ]

    def candidates(self, model: str) -> list[Deployment]:
        """Deployments for ``model`` in configured order; ``ModelNotFound`` with close matches if none."""
        return list(self.group(model).deployments)

    def _resolve_direct(self, model: str) -> Deployment | None:
        for separator in (":", "/"):
            prefix, found, rest = model.partition(separator)
            if found and rest and prefix in self.accounts:
                return self._deployment(self.accounts[prefix], rest)
        if self._catalogue_provider is not None:
            provider = self._catalogue_provider(model)
            account = self.accounts.get(provider) if provider else None
            if account is None and provider:
                account = next((a for a in self.accounts.values() if a.type == provider), None)
            if account is not None:
                return self._deployment(account, model)
        return None

    def _deployment(self, account: ProviderAccount, model: str) -> Deployment:
        prices, context = self._facts(model, account)
        return Deployment(account=account, model=model, prices=prices, context_length=context)

    def _not_found(self, model: str) -> ModelNotFound:
        known = [*self.groups, *(f"{name}:<model>" for name in self.accounts)]
        close = tuple(difflib.get_close_matches(model, list(self.groups), n=5, cutoff=0.5))
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        unconfigured = self._unconfigured_provider(model)
        if unconfigured is not None:
            provider, listed = unconfigured
            enable = self._enable_hint(provider) if self._enable_hint is not None else "configure it"
            what = f"a catalogue model of provider '{provider}'" if listed else f"for provider '{provider}'"
            return ModelNotFound(
                f"The model '{model}' is {what}, which is not configured: {enable}. "
                f"(available now: {', '.join(known) or 'none'})",
                param="model",
                suggestions=close,
            )
        return ModelNotFound(
            f"The model '{model}' does not exist: it is neither a model group nor 'provider:model' for a "
            f"configured provider (available: {', '.join(known) or 'none'}).{hint}",
            param="model",
            suggestions=close,
        )

    def _unconfigured_provider(self, model: str) -> tuple[str, bool] | None:
        """(provider type, listed in the catalogue) when ``model`` belongs to a provider llmgate knows
        but this gateway has not configured: ``gpt-4o-mini`` without ``OPENAI_API_KEY``."""
        for separator in (":", "/"):
            prefix, found, rest = model.partition(separator)
            if found and rest and prefix in self._known_providers:
                return prefix, False
        provider = self._catalogue_provider(model) if self._catalogue_provider is not None else None
        if provider is not None and provider not in self.accounts:
            return provider, True
        return None
