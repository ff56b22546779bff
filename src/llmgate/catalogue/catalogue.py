"""The model catalogue: context windows, output limits, prices and capabilities, shipped as data."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from llmgate.core.capabilities import Capability


class ModelInfo(msgspec.Struct, frozen=True):
    """One catalogue entry. Prices are USD per 1M tokens; ``None`` means unknown, never free."""

    id: str
    provider: str
    name: str
    mode: str
    context_length: int
    max_output_tokens: int | None
    input_per_mtok: float | None
    output_per_mtok: float | None
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    reasoning_per_mtok: float | None = None
    capabilities: tuple[Capability, ...] = ()
    aliases: tuple[str, ...] = ()
    deprecated: bool = False

    @property
    def supports_chat(self) -> bool:
        """Whether it is a chat model."""
        return self.mode == "chat"

    def has(self, capability: Capability | str) -> bool:
        """Whether the model has a capability."""
        return capability in self.capabilities

    def view(self) -> dict[str, Any]:
        """The entry as the seed's API shows it (costs in USD per 1K tokens)."""
        return {
            "id": self.id,
            "name": self.name,
            "provider": self.provider,
            "supports_chat": self.supports_chat,
            "capabilities": list(self.capabilities),
            "context_length": self.context_length,
            "max_output_tokens": self.max_output_tokens,
            "input_cost": _per_1k(self.input_per_mtok),
            "output_cost": _per_1k(self.output_per_mtok),
            "cached_input_cost": _per_1k(self.cached_input_per_mtok),
            "deprecated": self.deprecated,
        }


def _per_1k(per_mtok: float | None) -> float | None:
    return None if per_mtok is None else per_mtok / 1000


class _File(msgspec.Struct):
    version: int
    models: list[ModelInfo]
    updated: str | None = None


class Catalogue:
    """Lookups over the catalogue's entries by id, alias and provider."""

    def __init__(self, models: Iterable[ModelInfo]) -> None:
        self.models: tuple[ModelInfo, ...] = tuple(models)
        self._by_provider: dict[tuple[str, str], ModelInfo] = {}
        self._by_id: dict[str, list[ModelInfo]] = {}
        for info in self.models:
            for name in (info.id, *info.aliases):
                self._by_provider.setdefault((info.provider, name), info)
                self._by_id.setdefault(name, []).append(info)

    @classmethod
    def load(cls, path: str | Path | None = None) -> Catalogue:
        """The catalogue shipped with llmgate, or one read from ``path``."""
        if path is None:
            raw = resources.files("llmgate.catalogue").joinpath("models.json").read_bytes()
        else:
            raw = Path(path).read_bytes()
        return cls(msgspec.json.decode(raw, type=_File).models)

    def lookup(self, model: str, provider: str | None = None) -> ModelInfo | None:
        """The entry for ``model`` served by ``provider``; else the one entry of that id anywhere."""
        # An entry with the id "*" prices every model of its provider (the mock's models are all free).
        for name in (*_candidate_names(model), "*"):
            if provider is not None and (found := self._by_provider.get((provider, name))):
                return found
            entries = self._by_id.get(name) if name != "*" else None
            if entries and len({entry.provider for entry in entries}) == 1:
                return entries[0]
            if entries and provider is None:
                return entries[0]
        return None

    def get(self, model_id: str) -> ModelInfo | None:
        """Exact id (or ``provider/id`` / ``provider:id``) lookup, for the catalogue API."""
        for separator in ("/", ":"):
            provider, found, rest = model_id.partition(separator)
            if found and (entry := self._by_provider.get((provider, rest))):
                return entry
        entries = self._by_id.get(model_id)
        return entries[0] if entries else None

    def closest(self, model_id: str, *, limit: int = 5) -> list[str]:
        """Ids that look like ``model_id``, for "did you mean" messages."""
        return difflib.get_close_matches(model_id, list(self._by_id), n=limit, cutoff=0.5)

    def search(
        self,
        *,
        query: str | None = None,
        provider: str | None = None,
        supports_chat: bool | None = None,
        capability: str | None = None,
        min_context: int | None = None,
        max_input_cost_per_1k: float | None = None,
    ) -> list[ModelInfo]:
        """Entries matching every given filter (``query`` matches id or name, case-insensitively)."""
        needle = query.lower() if query else None
        results: list[ModelInfo] = []
        for info in self.models:
            if needle and needle not in info.id.lower() and needle not in info.name.lower():
                continue
            if provider and info.provider != provider:
                continue
            if supports_chat is not None and info.supports_chat != supports_chat:
                continue
            if capability and not info.has(capability):
                continue
            if min_context is not None and info.context_length < min_context:
                continue
            if max_input_cost_per_1k is not None and (
                info.input_per_mtok is None or info.input_per_mtok / 1000 > max_input_cost_per_1k
            ):
                continue
            results.append(info)
        return results


def _candidate_names(model: str) -> list[str]:
    # "openai/gpt-4o" (OpenRouter-style namespacing) falls back to "gpt-4o". Dated snapshots do not fall
    # back to their base: they are often priced differently (gpt-4o-2024-05-13), and unknown beats wrong.
    if "/" in model:
        return [model, model.rsplit("/", 1)[1]]
    return [model]
