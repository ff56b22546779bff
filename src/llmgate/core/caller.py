"""Who is calling: the identity the policies enforce limits, budgets and model access for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BudgetPeriod = Literal["day", "month", "total"]


@dataclass(frozen=True, slots=True)
class Caller:
    """A caller of the gateway. ``key_id`` is ``None`` for the master key, the open mode and the library.

    Limits are per minute; ``None`` means the key sets none (the gateway's ``default_key`` applies).
    """

    key_id: str | None = None
    name: str = "anonymous"
    models: tuple[str, ...] = ()
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_usd: float | None = None
    budget_period: BudgetPeriod = "total"
    admin: bool = False
    batch_id: str | None = None
    """The batch job the call belongs to (its usage record is tagged with it)."""
    limit_share: float = 1.0
    """The share of each rate limit this caller may fill: a batch job leaves the rest to interactive
    calls (``batch.limit_share``)."""

    def may_use(self, model: str) -> bool:
        """Whether the caller's key allows this model (an empty list allows every model)."""
        return not self.models or model in self.models


ANONYMOUS = Caller()
MASTER = Caller(name="master", admin=True)


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """The tightest request limit that applies to a caller: for the ``X-RateLimit-*`` headers."""

    limit: int
    remaining: int
    reset: float
    """Seconds until the window resets."""
