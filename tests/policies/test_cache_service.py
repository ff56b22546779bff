"""The cache stage: which requests it takes, namespaces, controls, coalescing, and a backend in trouble."""

from __future__ import annotations

import asyncio
from typing import Any

from clock import FakeClock
from llmgate.core.codec import parse_chat_request
from llmgate.core.controls import CacheControl
from llmgate.core.response import ChatResponse, Choice, ResponseMessage
from llmgate.policies.cache import AnswerStore, CachedAnswer, CacheRule, CacheRules, ResponseCaching
from llmgate.policies.cache.store import RETRY_AFTER
from llmgate.state.cache.memory import MemoryCache
from llmgate.state.ports import CacheKey, CacheStats, StateUnavailable

ON = CacheRule(enabled=True, ttl=60)
HELLO = {"model": "g", "messages": [{"role": "user", "content": "hello"}]}


def answer(text: str = "hi", cost: float | None = 0.25) -> CachedAnswer:
    response = ChatResponse(
        id="c1", created=1, model="m", choices=[Choice(index=0, message=ResponseMessage(content=text))]
    )
    return CachedAnswer(
        response=response, cost_usd=cost, provider="p", deployment="p/m", upstream_model="m", stored_at=1.0
    )


class Troubled(MemoryCache):
    """A memory cache that can fail, hang, or hand back garbage (so it waits: not in process)."""

    in_process = False

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(max_entries=100, max_bytes=1_000_000, clock=clock)
        self.mode = "ok"

    async def get(self, key: CacheKey) -> bytes | None:
        if self.mode == "down":
            raise StateUnavailable("Redis: connection refused")
        if self.mode == "slow":
            await asyncio.sleep(10)
        if self.mode == "pause":
            await asyncio.sleep(0.1)
        if self.mode == "garbage":
            return b"\x00not json"
        return await super().get(key)


def caching(rule: CacheRule = ON, **store: Any) -> tuple[ResponseCaching, Troubled, FakeClock]:
    clock = FakeClock()
    backend = Troubled(clock)
    options = {"timeout": 0.05, "max_entry_bytes": 100_000, **store}
    return ResponseCaching(CacheRules(rule), AnswerStore(backend, clock=clock, **options)), backend, clock


def lookup(
    cache: ResponseCaching, key_id: str | None = "key_a", control: CacheControl | None = None, **body: Any
) -> Any:
    return cache.lookup_for(parse_chat_request({**HELLO, **body}), key_id, control or CacheControl())


async def test_a_stored_answer_is_found_by_the_same_caller_only() -> None:
    cache, _, _ = caching()
    miss = await cache.open(lookup(cache))
    assert (miss.state, miss.answer) == ("miss", None)
    await cache.done(miss, answer())
    hit = await cache.open(lookup(cache))
    assert hit.state == "hit" and hit.answer is not None and hit.answer.response.text == "hi"
    other = await cache.open(lookup(cache, key_id="key_b"))
    assert other.state == "miss"
    cache.failed(other)
    stats = await cache.stats()
    assert (stats["hits"], stats["misses"], stats["saved_usd"]) == (1, 2, 0.25)


async def test_a_shared_group_shares_between_keys() -> None:
    cache, _, _ = caching(CacheRule(enabled=True, shared=True))
    await cache.done(await cache.open(lookup(cache, key_id="key_a")), answer())
    assert (await cache.open(lookup(cache, key_id="key_b"))).state == "hit"


async def test_off_groups_and_non_deterministic_requests_are_not_cached() -> None:
    off, _, _ = caching(CacheRule(enabled=False))
    assert lookup(off) is None
    strict, _, _ = caching(CacheRule(enabled=True, only_deterministic=True))
    assert lookup(strict) is None
    assert lookup(strict, temperature=0) is not None
    assert lookup(strict, seed=7) is not None


async def test_no_cache_skips_the_lookup_but_stores_and_no_store_does_not_store() -> None:
    cache, backend, _ = caching()
    fresh = await cache.open(lookup(cache, control=CacheControl(lookup=False)))
    assert fresh.state == "skip"
    await cache.done(fresh, answer("stored anyway"))
    assert (await cache.open(lookup(cache))).answer is not None
    private = lookup(cache, control=CacheControl(store=False), temperature=1)
    ticket = await cache.open(private)
    await cache.done(ticket, answer())
    assert (await backend.stats()).entries == 1
    assert lookup(cache, control=CacheControl(lookup=False, store=False)) is None


async def test_the_ttl_of_the_request_wins_over_the_groups() -> None:
    cache, _, clock = caching()
    short = lookup(cache, control=CacheControl(ttl=5))
    assert short.ttl == 5
    await cache.done(await cache.open(short), answer())
    clock.advance(4.9)
    assert (await cache.open(lookup(cache))).state == "hit"
    clock.advance(0.2)
    assert (await cache.open(lookup(cache))).state == "miss"


async def test_identical_misses_make_one_call_and_the_others_get_its_answer() -> None:
    cache, _, _ = caching()
    leader = await cache.open(lookup(cache))
    followers = [asyncio.ensure_future(cache.open(lookup(cache))) for _ in range(5)]
    await asyncio.sleep(0)
    assert not any(f.done() for f in followers)
    await cache.done(leader, answer("once"))
    served = await asyncio.gather(*followers)
    assert all(t.state == "hit" and t.answer is not None and t.answer.response.text == "once" for t in served)
    assert (await cache.stats())["coalesced"] == 5


async def test_when_the_leader_fails_its_followers_go_upstream_themselves() -> None:
    cache, _, _ = caching()
    leader = await cache.open(lookup(cache))
    followers = [asyncio.ensure_future(cache.open(lookup(cache))) for _ in range(3)]
    await asyncio.sleep(0)
    cache.failed(leader)
    tickets = await asyncio.gather(*followers)
    assert all(t.state == "miss" and t.answer is None and t.flight is None for t in tickets)
    assert len(cache.flights) == 0


async def test_a_backend_that_is_down_is_bypassed_and_comes_back_by_itself() -> None:
    cache, backend, clock = caching()
    await cache.done(await cache.open(lookup(cache)), answer())
    backend.mode = "down"
    ticket = await cache.open(lookup(cache))
    assert ticket.state == "skip" and ticket.answer is None
    problem = (await cache.stats())["problem"]
    assert isinstance(problem, str) and "connection refused" in problem
    backend.mode = "ok"
    assert (await cache.open(lookup(cache))).state == "skip"  # still bypassed for a while
    clock.advance(RETRY_AFTER)
    assert (await cache.open(lookup(cache))).state == "hit"
    assert (await cache.stats())["problem"] is None


async def test_a_slow_backend_is_bypassed_after_its_timeout() -> None:
    cache, backend, _ = caching()
    backend.mode = "slow"
    ticket = await asyncio.wait_for(cache.open(lookup(cache)), 2)
    assert ticket.state == "skip"
    assert "TimeoutError" in str((await cache.stats())["problem"])


async def test_an_in_process_backend_is_called_without_a_time_bound() -> None:
    cache, backend, _ = caching()  # timeout 0.05 s
    backend.in_process = True
    backend.mode = "pause"  # 0.1 s: past the bound, which an in-process backend is not given
    ticket = await cache.open(lookup(cache))
    assert ticket.state == "miss"
    assert (await cache.stats())["problem"] is None


async def test_an_unreadable_entry_is_a_miss() -> None:
    cache, backend, _ = caching()
    backend.mode = "garbage"
    ticket = await cache.open(lookup(cache))
    assert ticket.state == "miss"
    assert (await cache.stats())["unreadable"] == 1


async def test_an_answer_over_the_size_bound_is_not_stored() -> None:
    cache, backend, _ = caching(max_entry_bytes=300)
    await cache.done(await cache.open(lookup(cache)), answer("x" * 1000))
    assert (await backend.stats()) == CacheStats(0, 0)
    assert (await cache.stats())["too_large"] == 1


async def test_clear_by_namespace_and_group() -> None:
    cache, backend, _ = caching()
    for key_id in ("key_a", "key_b"):
        await cache.done(await cache.open(lookup(cache, key_id=key_id)), answer())
    assert await cache.clear(namespace="key_a") == 1
    assert await cache.clear(group="g") == 1
    assert (await backend.stats()).entries == 0


async def test_a_leader_cancelled_while_looking_leaves_no_one_waiting() -> None:
    cache, backend, _ = caching()
    backend.mode = "slow"
    leader = asyncio.ensure_future(cache.open(lookup(cache)))
    await asyncio.sleep(0)
    follower = asyncio.ensure_future(cache.open(lookup(cache)))
    await asyncio.sleep(0)
    leader.cancel()
    backend.mode = "ok"
    ticket = await asyncio.wait_for(follower, 2)
    assert ticket.state == "miss" and len(cache.flights) == 0
