"""One embeddings call: the caller's limits and budget, the deployment's adapter, the usage record."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from time import perf_counter

from llmgate.calls.chat import close_failed
from llmgate.catalogue.pricing import cost_of
from llmgate.core.caller import Caller
from llmgate.core.errors import InvalidRequest
from llmgate.core.request import EmbeddingRequest
from llmgate.core.results import CallInfo, EmbeddingResult
from llmgate.core.usage import make_usage
from llmgate.policies.guard import Call, Guard
from llmgate.providers.base import EmbeddingProvider
from llmgate.routing.router import Router


class EmbeddingCalls:
    """Embeddings calls of one gateway (the caller's own, and the semantic cache's on its behalf)."""

    def __init__(self, *, router: Router, guard: Callable[[], Awaitable[Guard]]) -> None:
        self.router = router
        self._guard = guard

    async def embed(self, request: EmbeddingRequest, request_id: str, caller: Caller) -> EmbeddingResult:
        """Serve a validated embeddings request (limits, budget and usage record as for chat)."""
        guard = await self._guard()
        deployment = self.router.candidates(request.model)[0]
        adapter = deployment.adapter
        if not isinstance(adapter, EmbeddingProvider):
            raise InvalidRequest(f"provider '{deployment.account.name}' has no embeddings API", param="model")
        tokens = sum(len(text) for text in request.texts()) // 4 + 1
        worst = cost_of(make_usage(prompt=tokens * 2, completion=0), deployment.prices)
        gate = await guard.open(caller, Call(request.model, tokens, worst, request_id=request_id))
        started = perf_counter()
        try:
            response = await adapter.embed(request, deployment.target())
        except BaseException as exc:
            await close_failed(gate, request_id, exc)
            raise
        info = CallInfo(
            request_id,
            deployment.account.name,
            deployment.name,
            deployment.model,
            1,
            (perf_counter() - started) * 1000,
            limit=gate.limit,
        )
        cost = cost_of(response.usage, deployment.prices) if response.usage is not None else None
        await gate.close(info=info, usage=response.usage, cost=cost)
        return EmbeddingResult(response, info, cost)
