"""Virtual-key administration (``/admin/keys``, ``llmgate keys``, the library): admin fields checked and
turned into keys; a key's models must be names the gateway serves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from llmgate.core.errors import InvalidRequest
from llmgate.policies.keys import KeyChanges, KeyFields, KeyService, fields_from, key_view


class KeyAdmin:
    """Create, list, read, change and revoke keys; ``serves(name)`` says whether a model name is served,
    ``groups()`` lists the configured groups (for the error that names them)."""

    def __init__(
        self,
        keys: Callable[[], Awaitable[KeyService]],
        *,
        serves: Callable[[str], bool],
        groups: Callable[[], Sequence[str]],
    ) -> None:
        self._keys = keys
        self._serves = serves
        self._groups = groups

    async def create(self, fields: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        """A new key from admin fields (``name``, ``models``, ``rpm``, ...); the secret only here."""
        checked = fields_from(fields, KeyFields)
        self._check_models(checked.models)
        key, secret = await (await self._keys()).create(checked)
        return dict(key_view(key)), secret

    async def list(self) -> list[dict[str, Any]]:
        """Every key (never the secret)."""
        return [dict(key_view(key)) for key in await (await self._keys()).list()]

    async def unserved(self) -> tuple[str, ...]:
        """Active keys whose ``models`` name a model the gateway no longer serves, one line each."""
        keys = await (await self._keys()).list()
        return tuple(
            f"key {key.id} ({key.name}): models not served: {', '.join(missing)}"
            for key in keys
            if not key.revoked and (missing := [name for name in key.models if not self._serves(name)])
        )

    async def get(self, key_id: str) -> dict[str, Any]:
        """One key (``NotFound`` when unknown)."""
        return dict(key_view(await (await self._keys()).get(key_id)))

    async def update(self, key_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change some fields of a key."""
        checked = fields_from(changes, KeyChanges)
        if isinstance(checked.models, list):
            self._check_models(checked.models)
        return dict(key_view(await (await self._keys()).update(key_id, checked)))

    async def revoke(self, key_id: str) -> dict[str, Any]:
        """Revoke a key: it stops working."""
        return dict(key_view(await (await self._keys()).revoke(key_id)))

    def _check_models(self, models: Sequence[str] | None) -> None:
        """A typo in a key's models would lock the key out silently: refuse it, naming the groups."""
        unknown = [name for name in models or () if not self._serves(name)]
        if unknown:
            groups = ", ".join(self._groups()) or "none"
            raise InvalidRequest(
                f"unknown model '{unknown[0][:256]}' in the key's models: it is neither a model group nor "
                f"'provider:model' of a configured provider (groups: {groups})",
                param="models",
            )
