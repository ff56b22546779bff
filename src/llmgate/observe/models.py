"""What callers can ask for: model groups and catalogue models of the configured providers, a provider's
own model list, the groups' shape, and cheap probes of the providers (``llmgate models``, ``check``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from llmgate.catalogue import Catalogue
from llmgate.core.errors import InvalidRequest
from llmgate.core.response import ModelCard
from llmgate.observe.probe import Call, probe_all
from llmgate.providers.base import ModelLister
from llmgate.routing.deployments import Deployment, ProviderAccount
from llmgate.routing.router import Router


class ModelDirectory:
    """The models of one gateway, as callers and operators see them."""

    def __init__(
        self,
        router: Router,
        accounts: Mapping[str, ProviderAccount],
        catalogue: Catalogue,
        *,
        catalogue_name: Callable[[ProviderAccount], str],
        default_strategy: str,
    ) -> None:
        self.router = router
        self.accounts = accounts
        self.catalogue = catalogue
        self._catalogue_name = catalogue_name
        self._default_strategy = default_strategy

    def cards(self) -> list[ModelCard]:
        """Model groups, then catalogue models of configured providers (``provider:id``)."""
        cards = [ModelCard(id=name, owned_by="llmgate") for name in self.router.groups]
        for account in self.accounts.values():
            for info in self.catalogue.search(provider=self._catalogue_name(account)):
                cards.append(ModelCard(id=f"{account.name}:{info.id}", owned_by=account.name))
        return cards

    def card(self, model_id: str) -> ModelCard:
        """One model callers can ask for (``ModelNotFound`` with close matches otherwise)."""
        for card in self.cards():
            if card.id == model_id:
                return card
        deployment = self.router.candidates(model_id)[0]
        return ModelCard(id=model_id, owned_by=deployment.account.name)

    async def upstream(self, provider: str) -> list[ModelCard]:
        """The provider's own model list."""
        account = self.accounts.get(provider)
        if account is None:
            raise InvalidRequest(f"unknown provider '{provider}'", param="provider")
        if not isinstance(account.adapter, ModelLister):
            raise InvalidRequest(f"provider '{provider}' cannot list its models", param="provider")
        target = Deployment(account=account, model="").target()
        return await account.adapter.list_models(target)

    def groups(self) -> list[dict[str, Any]]:
        """The configured groups: deployments, fallbacks, strategy, context overflow."""
        return self.router.describe(self._default_strategy)

    async def probe(self, call: Call | None) -> list[dict[str, Any]]:
        """Each provider probed cheaply (see ``observe.probe``)."""
        found = await probe_all(self.accounts, self.router.groups, call=call)
        return [result.as_dict() for result in found]
