"""What happens around one streamed call's chunks: the cache's part (a hit replayed as a stream, a miss
added up and stored) and the interaction log's (the whole exchange, once it ended).

A streamed miss is stored only once its upstream ended normally; an interrupted, failed or abandoned
stream is never stored (and identical requests waiting for it go upstream themselves).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from llmgate.core.accumulate import StreamAccumulator
from llmgate.core.errors import GatewayError
from llmgate.core.response import ChatResponse, StreamItem
from llmgate.core.results import CallInfo
from llmgate.policies.cache import CachedAnswer, ResponseCaching, Ticket, answer_of
from llmgate.policies.guard import Pass

Exchanged = Callable[[ChatResponse | None, CallInfo, GatewayError | None], None]
"""Told of a streamed call's whole exchange once it ended (the interaction log)."""


class StreamCache:
    """Opens the stream's cache ticket, watches a miss's chunks, and stores the whole reply at its end."""

    def __init__(
        self,
        caching: ResponseCaching,
        ticket: Callable[[], Awaitable[Ticket]],
        admit_free: Callable[[], Awaitable[Pass]],
        exchange: Exchanged | None = None,
    ) -> None:
        self._caching = caching
        self._open_ticket = ticket
        self.admit_free = admit_free
        self.ticket: Ticket | None = None
        self._sum: StreamAccumulator | None = StreamAccumulator() if exchange is not None else None
        self._exchange = exchange

    async def open(self) -> Ticket:
        """Look the request up (a follower waits here for its leader)."""
        ticket = self.ticket = await self._open_ticket()
        if ticket.answer is None and ticket.lookup is not None and self._sum is None:
            self._sum = StreamAccumulator()
        return ticket

    @property
    def state(self) -> str:
        """``hit``, ``miss`` or ``skip``."""
        return self.ticket.state if self.ticket is not None else "skip"

    def watch(self, item: StreamItem) -> None:
        """One chunk of a miss (it decodes raw chunks: only when the reply will be stored)."""
        if self._sum is not None:
            self._sum.add(item)

    async def finished(self, info: CallInfo, cost: float | None) -> None:
        """The upstream ended normally: store the reply and hand it to the requests waiting for it."""
        ticket, total = self.ticket, self._sum
        if total is None:
            return
        self._sum = None
        response = total.response()
        self._tell(response, info, None)
        if ticket is None or ticket.lookup is None:
            return
        answer = answer_of(
            response,
            cost=cost,
            provider=info.provider,
            deployment=info.deployment,
            upstream_model=info.upstream_model,
        )
        await self._caching.done(ticket, answer)

    def failed(self, info: CallInfo | None = None, error: GatewayError | None = None) -> None:
        """No whole reply: nothing is stored, and waiting requests go upstream themselves."""
        if self._sum is not None and info is not None:
            self._tell(None, info, error)
        self._sum = None
        if self.ticket is not None:
            self._caching.failed(self.ticket)

    def replayed(self, answer: CachedAnswer, info: CallInfo) -> None:
        """A hit was served: the interaction log has it too."""
        self._tell(answer.response, info, None)
        self._sum = None

    def _tell(self, response: ChatResponse | None, info: CallInfo, error: GatewayError | None) -> None:
        if self._exchange is not None:
            self._exchange(response, info, error)
            self._exchange = None  # once per call


def cache_info(
    answer: CachedAnswer, request_id: str, gate: Pass, latency_ms: float, state: str = "hit"
) -> CallInfo:
    """How an answer from the cache was served: by no upstream call, saving what it cost then."""
    return CallInfo(
        request_id,
        answer.provider,
        answer.deployment,
        answer.upstream_model,
        0,
        latency_ms,
        limit=gate.limit,
        cache=state,
        saved_usd=answer.cost_usd,
    )
