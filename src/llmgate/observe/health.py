"""The gateway's health, as ``/health``, ``/health/providers`` and the library report it.

Everything here is read from live traffic (the routing health board) and from the state's own view of
its backends; nothing probes a provider. Problems are named, so ``degraded`` always says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llmgate.core.errors import NotFound
from llmgate.policies.usage import UsageRecorder
from llmgate.routing.breaker import BreakerState
from llmgate.routing.deployments import Deployment, ProviderAccount
from llmgate.routing.health import HealthBoard
from llmgate.routing.router import Router

ERROR_TEXT = 160  # characters of a deployment's last error quoted in a problem line


class Health:
    """Health reports over one gateway's router, health board and state."""

    def __init__(
        self,
        router: Router,
        board: HealthBoard,
        *,
        state_problems: Callable[[], list[str]],
        recorder: Callable[[], UsageRecorder | None],
    ) -> None:
        self._router = router
        self._board = board
        self._state_problems = state_problems
        self._recorder = recorder

    def report(self) -> dict[str, Any]:
        """Overall status, the problems behind it, and the state of every provider and deployment."""
        rows = self.deployments()
        problems = [*self._state_problems(), *_deployment_problems(rows)]
        return {
            "status": "degraded" if problems else "ok",
            "problems": problems,
            "providers": {name: account.type for name, account in self._router.accounts.items()},
            "model_groups": list(self._router.groups),
            "deployments": rows,
            "usage_records": self.recorder_status(),
        }

    def status(self) -> str:
        """``ok`` or ``degraded``: all a caller without a key is told (load balancers need no more)."""
        return str(self.report()["status"])

    def recorder_status(self) -> dict[str, Any] | None:
        """How far the usage-record writer is behind: what a crash would lose now."""
        recorder = self._recorder()
        return recorder.status() if recorder is not None else None

    def deployments(self) -> list[dict[str, Any]]:
        """Per deployment: state, error rate, latency p50/p95, last error (no secrets)."""
        configured = [
            (d.name, d.account.name) for group in self._router.groups.values() for d in group.deployments
        ]
        return self._board.report(configured)

    def metrics(self, name: str) -> dict[str, Any]:
        """Live figures of a provider (all its deployments) or of one deployment, by name."""
        rows = [row for row in self.deployments() if name in (row["provider"], row["deployment"])]
        if not rows and name not in self._router.accounts:
            raise NotFound(f"no provider or deployment named '{name}'", param="name")
        requests = sum(row["requests"] for row in rows)
        errors = sum(round(row["error_rate"] * row["requests"]) for row in rows)
        return {
            "name": name,
            "requests": requests,
            "errors": errors,
            "error_rate": errors / requests if requests else 0.0,
            "in_flight": sum(row["in_flight"] for row in rows),
            "total_requests": sum(row["total_requests"] for row in rows),
            "total_errors": sum(row["total_errors"] for row in rows),
            "deployments": rows,
        }

    def is_available(self, name: str) -> bool:
        """Whether a provider, deployment or model group has a deployment that could take a call now."""
        router, now = self._router, self._board.clock()
        groups = router.groups.values()
        if name in router.groups or name in router.accounts:
            deployments = [d for g in groups for d in g.deployments if name in (g.name, d.account.name)]
            if not deployments and name in router.accounts:
                return self._account_ready(router.accounts[name], now)
        else:
            deployments = [d for g in groups for d in g.deployments if d.name == name]
            if not deployments:
                raise NotFound(f"no provider, deployment or model group named '{name}'", param="name")
        return any(self._ready(d, now) for d in deployments)

    def _ready(self, deployment: Deployment, now: float) -> bool:
        board = self._board
        breaker = board.of(deployment.name, deployment.account.name).breaker
        if breaker.state(now) is BreakerState.OPEN and breaker.fails_everything:
            return False  # open and failing everything: no panic attempt would go to it either
        return any(board.usable(deployment.name, key.label, now) for key in deployment.keys)

    def _account_ready(self, account: ProviderAccount, now: float) -> bool:
        probe = Deployment(account, "")
        return any(self._board.key(key.label).usable(now) for key in probe.keys)


def _deployment_problems(rows: list[dict[str, Any]]) -> list[str]:
    """One line per deployment that is not healthy, naming it and why."""
    problems = []
    for row in rows:
        state, name = row["state"], f"deployment '{row['deployment']}' ({row['provider']})"
        last = f": {str(row['last_error'])[:ERROR_TEXT]}" if row["last_error"] else ""
        if state == "open":
            problems.append(f"{name} is open-circuit for {row['open_until_s']} s more{last}")
        elif state == "half_open":
            problems.append(f"{name} is half-open: a live request is probing it{last}")
        elif state == "degraded":
            problems.append(f"{name} has errors: {row['error_rate']:.0%} of its recent requests failed{last}")
    return problems
