"""Probing the configured providers cheaply: is each reachable, is its key accepted, how fast.

A provider with a model listing is asked for it (free); with ``call``, a provider without one gets a
one-token chat call to its first deployment (it costs a token). Each probe has its own time limit and
runs concurrently with the others; no secret appears in what is reported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from llmgate.core.errors import GatewayError, ProviderAuthError, redact
from llmgate.core.request import ChatRequest, Message
from llmgate.providers.base import ModelLister
from llmgate.routing.deployments import Deployment, ModelGroup, ProviderAccount

PROBE_TIMEOUT = 10.0
Call = Callable[[ChatRequest], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one provider's probe found."""

    provider: str
    type: str
    method: str
    """``list`` (its model listing), ``call`` (a one-token call) or ``none`` (not probed)."""
    reachable: bool | None
    key_accepted: bool | None
    latency_ms: float | None
    models: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Neither unreachable nor refused (an unprobed provider is not a failure)."""
        return self.reachable is not False and self.key_accepted is not False

    def as_dict(self) -> dict[str, object]:
        """The result as JSON-ready fields."""
        return {
            "provider": self.provider,
            "type": self.type,
            "method": self.method,
            "reachable": self.reachable,
            "key_accepted": self.key_accepted,
            "latency_ms": self.latency_ms,
            "models": self.models,
            "error": self.error,
            "ok": self.ok,
        }


async def probe_all(
    accounts: Mapping[str, ProviderAccount],
    groups: Mapping[str, ModelGroup],
    *,
    call: Call | None = None,
    limit: float = PROBE_TIMEOUT,
) -> list[ProbeResult]:
    """Every provider probed at once (each within ``limit`` seconds), in the config's order."""
    firsts: dict[str, str] = {}
    for group in groups.values():
        for deployment in group.deployments:
            firsts.setdefault(deployment.account.name, f"{deployment.account.name}:{deployment.model}")
    jobs = [_probe(account, firsts.get(name), call, limit) for name, account in accounts.items()]
    return list(await asyncio.gather(*jobs))


async def _probe(account: ProviderAccount, model: str | None, call: Call | None, limit: float) -> ProbeResult:
    adapter = account.adapter
    if isinstance(adapter, ModelLister):
        target = Deployment(account=account, model="").target()
        return await _timed(account, "list", adapter.list_models(target), limit)
    if call is not None and model is not None:
        request = ChatRequest(model=model, messages=[Message(role="user", content="ping")], max_tokens=1)
        return await _timed(account, "call", call(request), limit)
    return ProbeResult(account.name, account.type, "none", None, None, None, None)


async def _timed(account: ProviderAccount, method: str, work: Awaitable[object], limit: float) -> ProbeResult:
    name, kind = account.name, account.type
    started = time.perf_counter()
    try:
        async with asyncio.timeout(limit):
            found = await work
    except TimeoutError:
        return ProbeResult(name, kind, method, False, None, None, None, f"no answer in {limit:g} s")
    except ProviderAuthError as refused:
        latency = (time.perf_counter() - started) * 1000
        return ProbeResult(name, kind, method, True, False, latency, None, redact(refused.message)[:300])
    except GatewayError as failed:
        reached = failed.code not in ("upstream_connection_error", "upstream_timeout")
        return ProbeResult(name, kind, method, reached, None, None, None, redact(failed.message)[:300])
    latency = (time.perf_counter() - started) * 1000
    models = len(found) if isinstance(found, list) else None
    return ProbeResult(name, kind, method, True, True, latency, models)
