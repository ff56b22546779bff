"""Which deployment and key to try next for one request.

A ``Plan`` walks the requested group, then its ``fallbacks`` chain (and ``context_fallbacks`` when the
prompt is too long), skipping deployments that are open-circuit, too small for the prompt, unable to
honour a parameter, out of usable keys, or already failed in this round. Among the rest the group's
strategy picks; within the chosen deployment the key with the most upstream headroom is used.

When the only thing standing between the request and every deployment left is their open breakers, the
plan *panics* (as Envoy does below its panic threshold): it tries the least-bad open deployment rather
than refusing the request, since an upstream failing one request in five still serves the other four.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from llmgate.catalogue.pricing import cost_of
from llmgate.core.errors import ContextLengthExceeded, GatewayError, InvalidRequest, Overloaded, RateLimited
from llmgate.core.request import ChatRequest
from llmgate.core.tokens import estimate_prompt_tokens
from llmgate.core.usage import make_usage
from llmgate.routing.breaker import BreakerState
from llmgate.routing.deployments import ApiKey, Deployment, ModelGroup
from llmgate.routing.health import HealthBoard
from llmgate.routing.strategies.base import Candidate, PickContext, Strategy

NEAR_LIMIT = 0.1  # a key with less than this fraction of its upstream limit left is avoided
OUTPUT_GUESS = 256  # output tokens assumed (cost estimate, token reservation) when the request sets no limit


@dataclass(frozen=True, slots=True)
class Option:
    """One attempt's choice: a deployment of a group, and the upstream key to use."""

    group: ModelGroup
    deployment: Deployment
    key: ApiKey
    dropped: tuple[str, ...] = ()
    panic: bool = False
    """Chosen although its breaker is open: nothing else was left (its verdict never moves the breaker)."""


class Plan:
    """The candidates of one request, in the order routing will try them."""

    def __init__(
        self,
        request: ChatRequest,
        chain: list[ModelGroup],
        *,
        board: HealthBoard,
        strategy_of: Callable[[ModelGroup], Strategy],
        resolve: Callable[[str], ModelGroup],
        rng: random.Random,
        output_reserve: int = OUTPUT_GUESS,
        allowed: Callable[[str], bool] | None = None,
    ) -> None:
        self.request = request
        self.chain = chain
        self._allowed = allowed
        self._board = board
        self._strategy_of = strategy_of
        self._resolve = resolve
        self._rng = rng
        self._output_reserve = output_reserve
        self.failed: set[str] = set()
        """Deployments that failed in this round (each is tried once per round)."""
        self.rejected: set[tuple[str, str]] = set()
        """(deployment, key label) pairs the provider rejected (401/403) during this request."""
        self._prompt_tokens: int | None = None
        self._estimated: int | None = None
        self._counts: dict[str, int] = {}
        self._reserved: int | None = None
        self._refused: dict[str, tuple[str, ...]] = {}
        self._too_small: set[str] = set()

    @property
    def prompt_tokens(self) -> int:
        """The prompt's size in tokens: the estimate, or once exact counts are in (``counted``), the
        largest size any deployment of the chain would see (what a reservation must cover)."""
        if self._prompt_tokens is None:
            self._prompt_tokens = self._estimate()
        return self._prompt_tokens

    @property
    def counts(self) -> dict[str, int]:
        """Exact prompt counts by upstream model (empty: the estimate stands for every deployment)."""
        return self._counts

    def counted(self, counts: Mapping[str, int]) -> None:
        """Use exact counts of the prompt for these upstream models (before any option is chosen); the
        other deployments keep the estimate."""
        estimate = self._estimate()
        self._counts = dict(counts)
        models = {d.model for group in self.chain for d in group.deployments}
        self._prompt_tokens = (
            max(self._counts.get(model, estimate) for model in models) if models else estimate
        )
        self._reserved = None

    def size_for(self, deployment: Deployment) -> int:
        """The prompt's size for one deployment: its model's exact count, else the estimate."""
        found = self._counts.get(deployment.model)
        return found if found is not None else self._estimate()

    def _estimate(self) -> int:
        if self._estimated is None:
            self._estimated = estimate_prompt_tokens(self.request)
        return self._estimated

    def windows(self) -> list[tuple[str, int]]:
        """(upstream model, context window) of every deployment of the chain whose window is known."""
        return [
            (d.model, d.context_length)
            for group in self.chain
            for d in group.deployments
            if d.context_length is not None
        ]

    @property
    def reserved_tokens(self) -> int:
        """Tokens to reserve against token limits: the prompt plus the output limit (or a guess)."""
        if self._reserved is None:
            self._reserved = self.prompt_tokens + (self.request.output_limit or self._output_reserve)
        return self._reserved

    def next(self, now: float, turn: Mapping[str, int] | None = None, *, panic: bool = True) -> Option | None:
        """The next option to try, or ``None`` when every candidate is used up for this round. With
        ``panic``, an open-circuit deployment is chosen when nothing else is left (see ``_panic``)."""
        for group in self.chain:
            option = self._from_group(group, now, (turn or {}).get(group.name, 0))
            if option is not None:
                return option
        if self._too_small and self.extend_for_context():
            return self.next(now, turn, panic=panic)
        return self._panic(now) if panic else None

    def _panic(self, now: float) -> Option | None:
        """The least-bad deployment of the chain that only its breaker keeps out (open, or half-open with
        the probe out): the lowest window error rate, then the soonest end of its open period, then chain
        order. Those that failed this round, do not fit, refuse a parameter or have no usable key stay out,
        and so does one that fails everything (a fast 503 then beats a sure failure)."""
        best: tuple[float, float] | None = None
        chosen: tuple[ModelGroup, Deployment, list[ApiKey], tuple[str, ...]] | None = None
        for group in self.chain:
            for deployment in group.deployments:
                found = self._eligible(deployment, now, open_ok=True)
                if found is None:
                    continue
                health = self._board.of(deployment.name, deployment.account.name)
                if health.breaker.fails_everything:
                    continue
                rank = (health.stats.error_rate, health.breaker.opened_until or now)
                if best is None or rank < best:
                    best, chosen = rank, (group, deployment, *found)
        if chosen is None:
            return None
        group, deployment, keys, dropped = chosen
        return Option(group, deployment, self._key(deployment, keys, now), dropped, panic=True)

    def too_small(self, deployment: str) -> None:
        """The upstream said the prompt does not fit this deployment: skip it from now on."""
        self._too_small.add(deployment)

    def extend_for_context(self) -> bool:
        """Add the ``context_fallbacks`` groups of the chain not in it yet (those the caller may use);
        whether there were any."""
        added = self._context_groups(self.chain)
        self.chain.extend(added)
        return bool(added)

    def reachable(self) -> list[ModelGroup]:
        """Every group this plan may ever try: the chain, then the ``context_fallbacks`` it could add
        (for reservations made before routing: a budget must cover the dearest of them)."""
        groups = list(self.chain)
        while added := self._context_groups(groups):
            groups.extend(added)
        return groups

    def _context_groups(self, groups: list[ModelGroup]) -> list[ModelGroup]:
        """The next ``context_fallbacks`` of ``groups`` the caller may use (walking through ones it may
        not use to their own context fallbacks)."""
        allowed = self._allowed
        known = {group.name for group in groups}
        frontier, found = list(groups), list[ModelGroup]()
        while frontier:
            names = [name for group in frontier for name in group.context_fallbacks if name not in known]
            frontier = []
            for name in dict.fromkeys(names):
                known.add(name)
                group = self._resolve(name)
                (found if allowed is None or allowed(name) else frontier).append(group)
        return found

    def dead_end(self) -> InvalidRequest | None:
        """Why nothing can serve the request at all (400), if that is the reason no option is left."""
        names = [d.name for group in self.chain for d in group.deployments]
        if names and all(name in self._too_small for name in names):
            return ContextLengthExceeded(
                f"The prompt (about {self.prompt_tokens} tokens) is longer than the context window of every "
                f"deployment of '{self.chain[0].name}'.",
                param="messages",
            )
        if names and all(name in self._refused or name in self._too_small for name in names):
            refused = next(iter(self._refused.values()))
            return InvalidRequest(
                f"no deployment of '{self.chain[0].name}' can honour: {', '.join(refused)}",
                param=refused[0],
                code="unsupported_parameter",
            )
        return None

    def _from_group(self, group: ModelGroup, now: float, turn: int) -> Option | None:
        if len(group.deployments) == 1:  # the common case, without the bookkeeping of a choice
            only = group.deployments[0]
            found = self._eligible(only, now)
            if found is None or not self._board.of(only.name).breaker.allow(now):
                return None
            return Option(group, only, self._key(only, found[0], now), found[1])
        usable: dict[str, tuple[list[ApiKey], tuple[str, ...]]] = {}
        for deployment in group.deployments:
            found = self._eligible(deployment, now)
            if found is not None:
                usable[deployment.name] = found
        candidates = [d for d in group.deployments if d.name in usable]
        while candidates:
            deployment = self._pick(group, candidates, now, turn)
            keys, dropped = usable[deployment.name]
            key = self._key(deployment, keys, now)
            if self._board.of(deployment.name).breaker.allow(now):
                return Option(group, deployment, key, dropped)
            candidates.remove(deployment)  # a half-open probe is already out
        return None

    def _eligible(
        self, deployment: Deployment, now: float, *, open_ok: bool = False
    ) -> tuple[list[ApiKey], tuple[str, ...]] | None:
        """The deployment's usable keys and the parameters it would drop, or ``None`` to skip it
        (``open_ok``: whatever its breaker says)."""
        name = deployment.name
        if name in self.failed or name in self._too_small or name in self._refused:
            return None
        window = deployment.context_length
        if window is not None and self.size_for(deployment) > window:
            self._too_small.add(name)
            return None
        report = deployment.adapter.check(self.request)
        if report.refused:
            self._refused[name] = report.refused
            return None
        health = self._board.of(name, deployment.account.name)
        if not open_ok and health.breaker.state(now) is BreakerState.OPEN:
            return None
        keys = self._keys(deployment, now)
        return (keys, report.dropped) if keys else None

    def _pick(self, group: ModelGroup, candidates: list[Deployment], now: float, turn: int) -> Deployment:
        if len(candidates) == 1:
            return candidates[0]
        strategy = self._strategy_of(group)
        views = [self._candidate(d, now) for d in candidates]
        return strategy.pick(views, PickContext(self._rng, turn)).deployment

    def _candidate(self, deployment: Deployment, now: float) -> Candidate:
        health = self._board.of(deployment.name, deployment.account.name)
        stats = health.stats
        return Candidate(
            deployment,
            in_flight=stats.in_flight,
            latency=stats.latency(stream=bool(self.request.stream)),
            error_rate=stats.error_rate,
            healthy=health.breaker.state(now) is BreakerState.CLOSED,
            headroom=self._headroom(deployment, now),
            cost=self._cost(deployment),
        )

    def _headroom(self, deployment: Deployment, now: float) -> float | None:
        fractions = [self._key_headroom(deployment, key, now) for key in deployment.keys]
        known = [f for f in fractions if f is not None]
        return max(known) if known and len(known) == len(fractions) else None

    @staticmethod
    def _key_headroom(deployment: Deployment, key: ApiKey, now: float) -> float | None:
        reading = deployment.headroom(key)
        return reading.fraction_left_at(now) if reading is not None else None

    def _cost(self, deployment: Deployment) -> float | None:
        output = self.request.output_limit or self._output_reserve
        return cost_of(make_usage(prompt=self.prompt_tokens, completion=output), deployment.prices)

    def _key(self, deployment: Deployment, keys: list[ApiKey], now: float) -> ApiKey:
        """Of the usable keys, one with room left under its upstream limit (at random among those)."""
        if len(keys) == 1:
            return keys[0]
        scored = [(self._key_headroom(deployment, key, now), key) for key in keys]
        roomy = [key for fraction, key in scored if fraction is None or fraction >= NEAR_LIMIT]
        pool = roomy or keys
        return pool[self._rng.randrange(len(pool))]

    def _keys(self, deployment: Deployment, now: float) -> list[ApiKey]:
        """The keys that may serve the deployment now. Keys the provider rejected earlier are rested, but
        when every key of the deployment was rejected they are tried again (the operator may have fixed
        them), each at most once per request."""
        name = deployment.name
        board = self._board
        if board.calm:
            return list(deployment.keys)
        usable = [key for key in deployment.keys if board.usable(name, key.label, now)]
        if usable:
            return usable
        return [
            key
            for key in deployment.keys
            if (name, key.label) not in self.rejected and board.cooling_until(name, key.label) <= now
        ]

    def soonest_key(self, now: float) -> float | None:
        """When the first resting key of the chain's untried deployments becomes usable again."""
        times = [
            self._board.free_at(deployment.name, key.label)
            for group in self.chain
            for deployment in group.deployments
            if deployment.name not in self.failed
            for key in deployment.keys
        ]
        future = [t for t in times if t > now]
        return min(future) if future else None

    def unavailable(self, now: float) -> GatewayError:
        """Why not even one attempt could be made: every key of the chain resting (429, until the first
        frees up), or every deployment open-circuit with none worth a panic attempt (503, until the first
        open period ends)."""
        soonest = self.soonest_key(now)
        if soonest is not None:
            return RateLimited(
                f"every upstream key of '{self.chain[0].name}' is at its rate limit",
                retry_after=soonest - now,
            )
        reopen = [
            until
            for group in self.chain
            for d in group.deployments
            if (until := self._board.of(d.name).breaker.opened_until) is not None and until > now
        ]
        return Overloaded(
            f"every deployment of '{self.chain[0].name}' is open-circuit after repeated failures",
            retry_after=(min(reopen) - now) if reopen else None,
        )
