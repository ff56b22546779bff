"""Which requests the cache takes, per model group (built by the composition root from the config)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

SHARED = "shared"
OPERATOR = "-"  # the namespace of the open mode, the master key and the library (the operator's own)


@dataclass(frozen=True, slots=True)
class CacheRule:
    """How one group is cached."""

    enabled: bool = False
    mode: Literal["exact", "semantic"] = "exact"
    ttl: float = 3600.0
    only_deterministic: bool = False
    shared: bool = False
    """Callers share entries (an explicit choice); otherwise each virtual key has its own."""


@dataclass(frozen=True, slots=True)
class CacheRules:
    """The rule of every configured group, and the default for the rest (``provider:model`` names)."""

    default: CacheRule = CacheRule()
    groups: Mapping[str, CacheRule] = field(default_factory=dict)
    max_entry_bytes: int = 1024 * 1024
    embedding_model: str | None = None
    """Semantic mode: the model (a group or ``provider:model``) conversations are embedded with."""
    threshold: float = 0.92
    """Semantic mode: the cosine similarity a stored conversation must reach."""

    def of(self, group: str) -> CacheRule:
        """The rule for a group (or a directly addressed model)."""
        return self.groups.get(group, self.default)

    @property
    def any_semantic(self) -> bool:
        """Whether any group is cached semantically (else no vector index is opened)."""
        rules = [self.default, *self.groups.values()]
        return self.embedding_model is not None and any(r.enabled and r.mode == "semantic" for r in rules)

    @property
    def any_enabled(self) -> bool:
        """Whether the cache serves any group at all (else no backend is opened)."""
        return self.default.enabled or any(rule.enabled for rule in self.groups.values())


def namespace_of(key_id: str | None, rule: CacheRule) -> str:
    """The namespace a caller's entries live in: its key, or the shared one when the group shares."""
    if rule.shared:
        return SHARED
    return key_id if key_id is not None else OPERATOR
