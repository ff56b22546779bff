"""The response cache as a stage around routing: which requests it takes, lookup, coalescing, storing.

A call asks ``lookup_for`` (``None``: the cache does not take this request), then ``open``s a ticket:
an answer (a hit, or a coalesced follower served by its leader) or a miss to serve upstream, after
which ``done`` (stored, handed to followers) or ``failed`` (followers go upstream themselves).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from llmgate.core.controls import CacheControl
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatResponse
from llmgate.policies.cache.digest import (
    conversation_text,
    is_deterministic,
    parameters_digest,
    request_digest,
)
from llmgate.policies.cache.flights import Flight, Flights
from llmgate.policies.cache.rules import CacheRules, namespace_of
from llmgate.policies.cache.semantic import Embed, SemanticCache
from llmgate.policies.cache.store import AnswerStore, CachedAnswer
from llmgate.state.ports import CacheKey, CacheStats

HIT = "hit"
SEMANTIC_HIT = "semantic-hit"
MISS = "miss"
SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Lookup:
    """What the cache will do for one request."""

    key: CacheKey
    read: bool
    write: bool
    ttl: float
    bucket: CacheKey | None = None
    """Semantic mode: the namespace, group and parameters digest similar conversations share."""
    text: str = ""
    """Semantic mode: the conversation, to embed."""


@dataclass(slots=True)
class Ticket:
    """One request's passage through the cache: ``answer`` when it is served from it, else ``state``
    (``miss`` or ``skip``) for the response header and the usage record."""

    lookup: Lookup | None
    state: str
    answer: CachedAnswer | None = None
    flight: Flight | None = None
    vector: Sequence[float] | None = None
    """The conversation's embedding (semantic mode), to index the answer under once it is stored."""


NO_CACHE = Ticket(None, SKIP)


class ResponseCaching:
    """The cache of one gateway: its rules, its store (``None`` when no group is cached) and flights."""

    def __init__(
        self, rules: CacheRules, store: AnswerStore | None, semantic: SemanticCache | None = None
    ) -> None:
        self.rules = rules
        self.store = store
        self.semantic = semantic
        self.flights = Flights()

    def lookup_for(self, request: ChatRequest, key_id: str | None, control: CacheControl) -> Lookup | None:
        """How the cache treats this request (``None``: not at all)."""
        if self.store is None:
            return None
        rule = self.rules.of(request.model)
        if not rule.enabled or not (control.lookup or control.store):
            return None
        if rule.only_deterministic and not is_deterministic(request):
            return None
        namespace = namespace_of(key_id, rule)
        key = CacheKey(namespace, request.model, request_digest(request, request.model))
        ttl = control.ttl or rule.ttl
        if rule.mode == "semantic" and self.semantic is not None:
            text = conversation_text(request)
            if text:
                bucket = CacheKey(namespace, request.model, parameters_digest(request, request.model))
                return Lookup(key, control.lookup, control.store, ttl, bucket, text)
        return Lookup(key, control.lookup, control.store, ttl)

    async def open(self, lookup: Lookup | None, embed: Embed | None = None) -> Ticket:
        """Look the request up (exactly, then semantically with ``embed``); on a miss, join the flight of
        identical requests in progress."""
        store = self.store
        if lookup is None or store is None:
            return NO_CACHE
        counts = store.counts
        if not lookup.read:
            counts.skips += 1
            return Ticket(lookup, SKIP)
        # Join the flight before looking: a request that arrives while another is between its lookup
        # and its answer then waits for that answer instead of making a second upstream call.
        flight = self.flights.join(lookup.key)
        if not flight.leader:
            answer = await flight.answer()
            if answer is not None:
                counts.coalesced += 1
                return self._served(lookup, answer)
            counts.misses += 1  # the leader failed: this request goes upstream itself, on its own
            return Ticket(lookup, MISS)
        try:
            found = await store.get(lookup.key)
        except BaseException:  # cancelled while looking: nobody may wait for this flight forever
            self.flights.land(flight, None)
            raise
        if found is not None:
            self.flights.land(flight, found)
            return self._served(lookup, found)
        vector = None
        if lookup.bucket is not None and embed is not None and store.available:
            try:
                similar, vector = await self._similar(lookup, lookup.bucket, embed)
            except BaseException:
                self.flights.land(flight, None)
                raise
            if similar is not None:
                self.flights.land(flight, similar)
                counts.semantic_hits += 1
                counts.saved_usd += similar.cost_usd or 0.0
                return Ticket(lookup, SEMANTIC_HIT, similar)
        if not store.available:
            self.flights.land(flight, None)
            counts.skips += 1
            return Ticket(lookup, SKIP)
        counts.misses += 1
        return Ticket(lookup, MISS, flight=flight, vector=vector)

    async def _similar(
        self, lookup: Lookup, bucket: CacheKey, embed: Embed
    ) -> tuple[CachedAnswer | None, Sequence[float] | None]:
        semantic = self.semantic
        vector = await embed(lookup.text)
        if semantic is None or vector is None:
            return None, None
        return await semantic.find(bucket, vector), vector

    async def done(self, ticket: Ticket, answer: CachedAnswer) -> None:
        """A miss was served: followers get the answer, and it is stored unless the caller said not to."""
        if ticket.flight is not None:
            self.flights.land(ticket.flight, answer)
        lookup = ticket.lookup
        if lookup is not None and lookup.write and self.store is not None:
            stored = await self.store.put(lookup.key, answer, ttl=lookup.ttl)
            semantic, bucket, vector = self.semantic, lookup.bucket, ticket.vector
            if stored and semantic is not None and bucket is not None and vector is not None:
                await semantic.index(bucket, lookup.key.digest, vector, answer, ttl=lookup.ttl)

    def failed(self, ticket: Ticket) -> None:
        """A miss failed (or its caller left): followers go upstream themselves; nothing is stored."""
        if ticket.flight is not None:
            self.flights.land(ticket.flight, None)

    async def clear(self, *, namespace: str | None = None, group: str | None = None) -> int:
        """Remove entries (all, or of a namespace and/or group)."""
        if self.store is None:
            return 0
        if self.semantic is not None:
            await self.semantic.vectors.clear(namespace=namespace, group=group)
        return await self.store.backend.clear(namespace=namespace, group=group)

    async def stats(self) -> dict[str, object]:
        """Backend, entries, bytes, hits, misses, hit rate, semantic hits, coalesced, saved cost."""
        store = self.store
        if store is None:
            return {"enabled": False}
        counts = store.counts
        held = await _held(store)
        served = counts.hits + counts.semantic_hits  # coalesced followers are hits too
        looked = served + counts.misses
        return {
            "enabled": True,
            "backend": store.backend.name,
            "entries": held.entries if held else None,
            "bytes": held.bytes if held else None,
            "exact_figures": held.exact if held else None,
            "hits": counts.hits,
            "semantic_hits": counts.semantic_hits,
            "coalesced": counts.coalesced,
            "misses": counts.misses,
            "skipped": counts.skips,
            "hit_rate": round(served / looked, 4) if looked else 0.0,
            "stored": counts.stored,
            "too_large": counts.too_large,
            "unreadable": counts.unreadable,
            "saved_usd": round(counts.saved_usd, 8),
            "in_flight": len(self.flights),
            "semantic_entries": await self._vector_count(),
            "problem": store.problem(),
        }

    async def _vector_count(self) -> int | None:
        if self.semantic is None:
            return None
        try:
            return await self.semantic.vectors.count()
        except Exception:  # a health report must not fail with the backend
            return None

    def _served(self, lookup: Lookup, answer: CachedAnswer) -> Ticket:
        store = self.store
        assert store is not None
        store.counts.hits += 1
        store.counts.saved_usd += answer.cost_usd or 0.0
        return Ticket(lookup, HIT, answer)


def answer_of(
    response: ChatResponse, *, cost: float | None, provider: str, deployment: str, upstream_model: str
) -> CachedAnswer:
    """What the cache keeps of a served call."""
    return CachedAnswer(
        response=response,
        cost_usd=cost,
        provider=provider,
        deployment=deployment,
        upstream_model=upstream_model,
        stored_at=time.time(),
    )


async def _held(store: AnswerStore) -> CacheStats | None:
    try:
        return await store.backend.stats()
    except Exception:  # a health report must not fail with the backend
        return None
