"""``/api/rate-limits``: a caller's tightest limit, its budget and spend, and each upstream key's limit
and headroom (labels only, never a key)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from llmgate.core.caller import Caller, LimitStatus
from llmgate.policies.guard import Guard
from llmgate.routing.deployments import ApiKey, Deployment
from llmgate.routing.health import HealthBoard
from llmgate.routing.quota import UpstreamQuota
from llmgate.routing.router import Router


class LimitsView:
    """What limits apply, and how much is left, for one gateway."""

    def __init__(
        self,
        router: Router,
        board: HealthBoard,
        *,
        guard: Callable[[], Awaitable[Guard]],
        quota: Callable[[], UpstreamQuota | None],
    ) -> None:
        self._router = router
        self._board = board
        self._guard = guard
        self._quota = quota

    async def status(self, name: str | None, caller: Caller) -> dict[str, Any]:
        """The caller's limit and budget, and every upstream key's (``name``: one provider or deployment)."""
        guard = await self._guard()
        own = await guard.limits.status(caller)
        spent = await guard.budgets.spent(caller)
        budget = None
        if caller.budget_usd is not None:
            budget = {"budget_usd": caller.budget_usd, "period": caller.budget_period, "spent_usd": spent}
        return {"caller": limit_view(own), "budget": budget, "upstream": await self._upstream(name)}

    async def _upstream(self, name: str | None) -> list[dict[str, Any]]:
        rows = []
        seen: set[str] = set()
        for group in self._router.groups.values():
            for deployment in group.deployments:
                if name is not None and name not in (deployment.name, deployment.account.name):
                    continue
                for key in deployment.keys:
                    if key.label not in seen:
                        seen.add(key.label)
                        rows.append(await self._key(deployment, key))
        return rows

    async def _key(self, deployment: Deployment, key: ApiKey) -> dict[str, Any]:
        account = deployment.account
        quota = self._quota()
        used, reset = await quota.key_requests(key.label) if quota is not None else (0.0, 0.0)
        reading = deployment.headroom(key)
        now = self._board.clock()
        return {
            "key": key.label,
            "provider": account.name,
            "limit": account.rpm,
            "remaining": None if account.rpm is None else max(0, int(account.rpm - used)),
            "reset": round(reset, 3),
            "upstream_remaining_fraction": None if reading is None else reading.fraction_left_at(now),
            "usable": self._board.usable(deployment.name, key.label, now),
        }


def limit_view(status: LimitStatus | None) -> dict[str, Any] | None:
    """A limit status as the API shows it."""
    if status is None:
        return None
    return {"limit": status.limit, "remaining": status.remaining, "reset": round(status.reset, 3)}
