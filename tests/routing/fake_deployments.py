"""Deployments and candidates for routing tests (a mock adapter; nothing is ever called)."""

from __future__ import annotations

from llmgate.catalogue.pricing import UNKNOWN, Prices
from llmgate.providers.mock import MockProvider
from llmgate.routing.deployments import Deployment, ProviderAccount
from llmgate.routing.stats import DeploymentStats
from llmgate.routing.strategies import Candidate


def deployment(
    provider: str, model: str = "m", *, weight: float = 1.0, priority: int = 0, prices: Prices = UNKNOWN
) -> Deployment:
    """A deployment named ``provider/model``."""
    account = ProviderAccount(provider, "mock", MockProvider(name=provider), api_keys=("sk-test",))
    return Deployment(account, model, prices=prices, weight=weight, priority=priority)


def candidate(provider: str, **snapshot: object) -> Candidate:
    """A candidate on a fresh deployment; ``weight``/``priority`` go to the deployment, the rest to the
    snapshot."""
    weight = snapshot.pop("weight", 1.0)
    priority = snapshot.pop("priority", 0)
    assert isinstance(weight, float | int) and isinstance(priority, int)
    return Candidate(deployment(provider, weight=weight, priority=priority), **snapshot)  # type: ignore[arg-type]


def from_stats(target: Deployment, stats: DeploymentStats, *, stream: bool = False) -> Candidate:
    """The snapshot the executor would build from live stats."""
    return Candidate(
        target, in_flight=stats.in_flight, latency=stats.latency(stream=stream), error_rate=stats.error_rate
    )
