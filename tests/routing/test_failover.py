"""Failover.run: retries, key rotation, rate-limit rests, fallbacks, breakers, deadlines and hedging.

Time is an injected clock that only the fake sleep (and scripted calls) move; hedging races use real
asyncio with event-gated fakes and a 10 ms hedge delay.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from fake_providers import (
    Call,
    FakeClock,
    FakeProvider,
    Rig,
    chat_via,
    deployment,
    group,
    names,
    request,
    takes,
    waits_for,
    within,
)

from llmgate.core.errors import (
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    ProviderAuthError,
    RateLimited,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeout,
)
from llmgate.core.response import ChatResponse
from llmgate.routing.breaker import BreakerPolicy, BreakerState
from llmgate.routing.deployments import Hedge
from llmgate.routing.failover import Served
from llmgate.routing.health import HealthBoard, HedgeBudget
from llmgate.routing.plan import Option

HELLO = request()


async def serve(rig: Rig, *, deadline: float | None = None) -> Served[ChatResponse]:
    served = await rig.failover.run(rig.plan(), chat_via(HELLO), deadline=deadline)
    served.finish(ok=True)
    return served


async def fails(rig: Rig, *, deadline: float | None = None) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await rig.failover.run(rig.plan(), chat_via(HELLO), deadline=deadline)
    return caught.value


def text(served: Served[ChatResponse]) -> str:
    return served.value.text


# --- retryable and non-retryable errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        Overloaded("503"),
        UpstreamTimeout("slow"),
        UpstreamConnectionError("reset"),
        UpstreamError("500"),
        RateLimited("429", retry_after=1.0),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_retryable_error_moves_to_the_next_deployment(error: GatewayError) -> None:
    a, b = FakeProvider("a", then=error), FakeProvider("b")
    rig = Rig(group("g", deployment(a), deployment(b)))

    served = await serve(rig)

    assert text(served) == "from b"
    assert served.attempts == 2
    assert names(a.calls + b.calls) == ["a", "b"]
    stats = rig.board.of("a/m").stats
    assert (stats.total_requests, stats.in_flight) == (1, 0)
    # Only failures that blame the deployment count as its errors; a 429 is one key's limit.
    assert stats.total_errors == (0 if isinstance(error, RateLimited) else 1)
    assert rig.sleep.delays == []  # another deployment was free: no waiting


@pytest.mark.parametrize(
    "error",
    [InvalidRequest("bad field", param="temperature"), ModelNotFound("no such model")],
    ids=lambda e: type(e).__name__,
)
async def test_a_non_retryable_error_is_raised_at_once(error: GatewayError) -> None:
    a, b = FakeProvider("a", then=error), FakeProvider("b")
    rig = Rig(group("g", deployment(a), deployment(b)), retries=3)

    assert await fails(rig) is error
    assert len(a.calls) == 1
    assert b.calls == []
    assert rig.sleep.delays == []
    assert rig.board.of("a/m").breaker.consecutive_failures == 0


async def test_a_rejected_key_is_rested_and_the_same_deployment_tries_its_other_key() -> None:
    rotated = 0
    for seed in range(8):
        a, b = FakeProvider("a", rejects={"sk-revoked-key"}), FakeProvider("b")
        d = deployment(a, keys=("sk-revoked-key", "sk-good-key"))
        rig = Rig(group("g", d, deployment(b)), seed=seed)

        served = await serve(rig)

        keys = [call.api_key for call in a.calls]
        assert keys in (["sk-good-key"], ["sk-revoked-key", "sk-good-key"])
        assert b.calls == []
        assert served.attempts == len(keys)
        assert rig.board.of("a/m").breaker.consecutive_failures == 0  # one key's fault, not the deployment's
        if len(keys) == 2:
            rotated += 1
            assert not rig.board.usable(d.name, d.keys[0].label, rig.clock())
            for _ in range(5):  # the rejected key rests: later requests do not use it
                await serve(rig)
            assert [call.api_key for call in a.calls[2:]] == ["sk-good-key"] * 5
    assert rotated > 0  # some seed picked the revoked key first


async def test_keys_rejected_by_an_earlier_request_are_retried_once_each_then_recover() -> None:
    a = FakeProvider("a", rejects={"sk-first-key", "sk-second-key"})
    rig = Rig(group("g", deployment(a, keys=("sk-first-key", "sk-second-key"))), retries=3)

    first = await fails(rig)
    assert isinstance(first, ProviderAuthError)
    assert sorted(call.api_key or "" for call in a.calls) == ["sk-first-key", "sk-second-key"]

    second = await fails(rig)  # both keys rest on the board: each gets one last-resort try
    assert isinstance(second, ProviderAuthError)
    assert len(a.calls) == 4
    assert rig.sleep.delays == []

    a.rejects.clear()  # the operator fixed the keys
    served = await serve(rig)
    assert text(served) == "from a"


# --- rate limits -----------------------------------------------------------------------------------------


async def test_a_short_retry_after_is_waited_out_and_the_key_is_used_again() -> None:
    a = FakeProvider("a", script=[RateLimited("429", retry_after=2.0)])
    rig = Rig(group("g", deployment(a)), retries=1, max_queue_wait=5.0)

    served = await serve(rig)

    assert text(served) == "from a"
    assert served.attempts == 2
    assert len(rig.sleep.delays) == 1
    assert rig.sleep.delays[0] >= 2.0


async def test_a_long_retry_after_gives_rate_limited_with_the_soonest_retry_after() -> None:
    a = FakeProvider("a", then=RateLimited("429 a", retry_after=30.0))
    b = FakeProvider("b", then=RateLimited("429 b", retry_after=12.0))
    rig = Rig(group("g", deployment(a), deployment(b)), retries=3, max_queue_wait=5.0)

    error = await fails(rig)

    assert type(error) is RateLimited
    assert error.retry_after == pytest.approx(12.0)
    assert len(a.calls) == len(b.calls) == 1
    assert rig.sleep.delays == []


async def test_a_request_that_finds_every_key_resting_gets_rate_limited_without_a_call() -> None:
    a = FakeProvider("a")
    d = deployment(a)
    rig = Rig(group("g", d), max_queue_wait=1.0)
    rig.board.slot(d.name, d.keys[0].label).cooling_until = rig.clock() + 20

    error = await fails(rig)

    assert type(error) is RateLimited
    assert error.retry_after == pytest.approx(20.0)
    assert a.calls == []


async def test_a_rate_limit_does_not_count_against_the_breaker() -> None:
    a = FakeProvider("a", then=RateLimited("429", retry_after=60.0))
    rig = Rig(group("g", deployment(a)), breaker=BreakerPolicy(failure_threshold=1))
    await fails(rig)
    assert rig.board.of("a/m").breaker.state(rig.clock()) is BreakerState.CLOSED


# --- when everything fails ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        ([Overloaded("busy a"), Overloaded("busy b")], Overloaded),
        ([UpstreamTimeout("slow a"), UpstreamTimeout("slow b")], UpstreamTimeout),
        ([Overloaded("busy a"), UpstreamTimeout("slow b")], UpstreamError),
        ([UpstreamConnectionError("reset a"), RateLimited("429 b", retry_after=60)], UpstreamError),
    ],
    ids=["overloaded", "timeouts", "mixed", "mixed-with-429"],
)
async def test_all_failing_gives_one_error_naming_the_deployments(
    errors: list[GatewayError], expected: type[GatewayError]
) -> None:
    secrets = ("sk-live-secret-aaaaaaaaaaaa", "sk-live-secret-bbbbbbbbbbbb")
    a, b = FakeProvider("a", then=errors[0]), FakeProvider("b", then=errors[1])
    rig = Rig(group("g", deployment(a, keys=secrets[:1]), deployment(b, keys=secrets[1:])))

    error = await fails(rig)

    assert type(error) is expected
    assert "a/m" in error.message
    assert "b/m" in error.message
    assert errors[0].message in error.message
    assert errors[1].message in error.message
    assert "'g'" in error.message
    for secret in secrets:
        assert secret not in error.message
        assert secret not in repr(error.args)


async def test_a_single_failure_is_passed_through_as_it_is() -> None:
    original = Overloaded("busy", retry_after=4.0, provider="a")
    rig = Rig(group("g", deployment(FakeProvider("a", then=original))))
    assert await fails(rig) is original


async def test_retries_bound_the_rounds_with_backoff_between_them() -> None:
    a = FakeProvider("a", then=UpstreamError("500"))
    b = FakeProvider("b", then=UpstreamError("500"))
    rig = Rig(group("g", deployment(a), deployment(b)), retries=2, max_attempts=50)

    error = await fails(rig)

    assert type(error) is UpstreamError
    assert names(a.calls + b.calls).count("a") == 3  # one round, then two retries
    assert names(a.calls + b.calls).count("b") == 3
    assert len(rig.sleep.delays) == 2
    assert all(0 < delay <= 1.0 for delay in rig.sleep.delays)
    assert "all 6 attempts" in error.message


async def test_max_attempts_bounds_the_calls() -> None:
    adapters = [FakeProvider(name, then=Overloaded("busy")) for name in "abcde"]
    rig = Rig(group("g", *(deployment(a) for a in adapters)), retries=5, max_attempts=3)

    error = await fails(rig)

    assert sum(len(a.calls) for a in adapters) == 3
    assert type(error) is Overloaded
    assert "all 3 attempts" in error.message


async def test_max_attempts_also_bounds_retry_rounds() -> None:
    a = FakeProvider("a", then=Overloaded("busy"))
    rig = Rig(group("g", deployment(a)), retries=10, max_attempts=4)
    await fails(rig)
    assert len(a.calls) == 4


async def test_the_deadline_bounds_each_call_and_ends_the_request_with_a_timeout() -> None:
    a, b = FakeProvider("a"), FakeProvider("b")
    rig = Rig(group("g", deployment(a), deployment(b)))
    a.then = takes(rig.clock, 5.0, UpstreamError("500 after 5 s"))

    error = await fails(rig, deadline=rig.clock() + 4.0)

    assert type(error) is UpstreamTimeout
    assert "a/m" in error.message
    assert a.calls[0].total == pytest.approx(4.0)  # the call got only the time left
    assert b.calls == []


async def test_no_retry_round_is_started_that_would_end_after_the_deadline() -> None:
    a = FakeProvider("a", then=UpstreamError("500"))
    rig = Rig(group("g", deployment(a)), retries=3)
    await fails(rig, deadline=rig.clock() + 0.01)
    assert len(a.calls) == 1
    assert rig.sleep.delays == []


# --- circuit breaker -------------------------------------------------------------------------------------


async def test_the_breaker_opens_after_consecutive_failures_and_a_probe_closes_it() -> None:
    a, b = FakeProvider("a", then=UpstreamError("500")), FakeProvider("b")
    policy = BreakerPolicy(failure_threshold=2, cooldown=10.0)
    rig = Rig(group("g", deployment(a), deployment(b)), breaker=policy)

    for _ in range(2):
        assert text(await serve(rig)) == "from b"
    assert len(a.calls) == 2
    assert rig.board.of("a/m").breaker.state(rig.clock()) is BreakerState.OPEN

    for _ in range(5):
        assert text(await serve(rig)) == "from b"
        rig.clock.advance(1.0)
    assert len(a.calls) == 2  # open: no calls during the cooldown

    rig.clock.advance(5.0)  # cooldown over: half-open, live traffic probes
    a.then = None
    probe = await serve(rig)
    assert text(probe) == "from a"
    assert rig.board.of("a/m").breaker.state(rig.clock()) is BreakerState.CLOSED
    assert text(await serve(rig)) == "from a"


async def test_a_failed_probe_reopens_the_breaker_for_longer() -> None:
    a, b = FakeProvider("a", then=UpstreamTimeout("slow")), FakeProvider("b")
    policy = BreakerPolicy(failure_threshold=1, cooldown=10.0)
    rig = Rig(group("g", deployment(a), deployment(b)), breaker=policy)

    await serve(rig)
    breaker = rig.board.of("a/m").breaker
    assert breaker.opened_until == pytest.approx(rig.clock() + 10.0)
    rig.clock.advance(10.0)
    await serve(rig)  # the probe fails
    assert len(a.calls) == 2
    assert breaker.opened_until == pytest.approx(rig.clock() + 20.0)


async def test_when_every_deployment_is_open_and_fails_everything_the_request_is_overloaded() -> None:
    a, b = FakeProvider("a"), FakeProvider("b")
    rig = Rig(group("g", deployment(a), deployment(b)))
    now = rig.clock()
    for name, until in (("a/m", now + 7.0), ("b/m", now + 3.0)):
        breaker = rig.board.of(name).breaker
        breaker.trip(until)
        for _ in range(breaker.policy.min_requests):  # no success lately: not worth a panic attempt
            breaker.record_failure(now)

    error = await fails(rig)

    assert type(error) is Overloaded
    assert error.retry_after == pytest.approx(3.0)
    assert a.calls == b.calls == []


async def test_client_errors_do_not_open_the_breaker() -> None:
    a = FakeProvider("a", then=InvalidRequest("bad"))
    rig = Rig(group("g", deployment(a)), breaker=BreakerPolicy(failure_threshold=1))
    for _ in range(3):
        await fails(rig)
    assert rig.board.of("a/m").breaker.state(rig.clock()) is BreakerState.CLOSED


async def test_client_errors_do_not_feed_the_breakers_error_rate() -> None:
    a = FakeProvider("a", then=InvalidRequest("bad"))
    policy = BreakerPolicy(failure_threshold=5, error_rate_threshold=0.5, min_requests=4)
    rig = Rig(group("g", deployment(a)), breaker=policy)
    for _ in range(4):
        await fails(rig)  # the caller's fault, four times
    a.then = Overloaded("one 503")
    await fails(rig)
    assert rig.board.of("a/m").breaker.state(rig.clock()) is BreakerState.CLOSED


# --- context window --------------------------------------------------------------------------------------


async def test_an_upstream_context_error_goes_to_the_context_fallbacks_group() -> None:
    a = FakeProvider("a", then=ContextLengthExceeded("too long for a"))
    wide = FakeProvider("wide")
    rig = Rig(group("g", deployment(a), context_fallbacks=("w",)), group("w", deployment(wide)), retries=2)

    served = await serve(rig)

    assert text(served) == "from wide"
    assert served.option.group.name == "w"
    assert len(a.calls) == 1
    assert rig.board.of("a/m").breaker.consecutive_failures == 0
    assert rig.board.of("a/m").stats.error_rate == 0.0  # the prompt's size, not the deployment's health


async def test_an_upstream_context_error_without_context_fallbacks_is_a_400() -> None:
    error = ContextLengthExceeded("maximum context length is 8192 tokens", param="messages")
    a = FakeProvider("a", then=error)
    rig = Rig(group("g", deployment(a)), retries=3)

    assert await fails(rig) is error
    assert len(a.calls) == 1
    assert rig.sleep.delays == []


async def test_a_prompt_too_long_for_every_window_is_a_400_without_any_call() -> None:
    a = FakeProvider("a")
    rig = Rig(group("g", deployment(a, context_length=10)), retries=3)
    with pytest.raises(ContextLengthExceeded):
        await rig.failover.run(rig.plan(request("word " * 100)), chat_via(HELLO))
    assert a.calls == []


async def test_context_fallbacks_are_reached_even_when_a_plain_fallback_is_also_too_small() -> None:
    rig = Rig(
        group(
            "g",
            deployment(FakeProvider("a", then=ContextLengthExceeded("a"))),
            fallbacks=("f",),
            context_fallbacks=("w",),
        ),
        group("f", deployment(FakeProvider("f", then=ContextLengthExceeded("f")))),
        group("w", deployment(FakeProvider("wide"))),
    )
    served = await serve(rig)
    assert text(served) == "from wide"


async def test_fallback_groups_serve_when_the_group_fails() -> None:
    a, b = FakeProvider("a", then=Overloaded("busy")), FakeProvider("b")
    rig = Rig(group("g", deployment(a), fallbacks=("h",)), group("h", deployment(b)))
    served = await serve(rig)
    assert (served.option.group.name, text(served)) == ("h", "from b")


# --- admission (upstream-side limits) --------------------------------------------------------------------


class DenyFirst:
    """Admission that refuses one deployment for a while and admits the rest."""

    def __init__(self, refused: str, wait: float) -> None:
        self.refused = refused
        self.wait = wait
        self.released: list[str] = []

    async def admit(self, option: Option, tokens: int) -> float | None:
        return self.wait if option.deployment.name == self.refused else None

    async def release(self, option: Option, tokens: int, used: int | None) -> None:
        self.released.append(option.deployment.name)


async def test_a_deployment_at_its_configured_limit_is_passed_over_without_a_call() -> None:
    a, b = FakeProvider("a"), FakeProvider("b")
    rig = Rig(group("g", deployment(a, rpm=10), deployment(b, rpm=10)), admission=DenyFirst("a/m", 30.0))

    served = await serve(rig)

    assert text(served) == "from b"
    assert served.attempts == 1  # a refused admission is not an attempt
    assert a.calls == []
    d = rig.groups["g"].deployments[0]
    assert rig.board.slot(d.name, d.keys[0].label).cooling_until == pytest.approx(rig.clock() + 30.0)


async def test_a_deployment_without_limits_is_not_counted() -> None:
    a = FakeProvider("a")
    rig = Rig(group("g", deployment(a)), admission=DenyFirst("a/m", 30.0))

    assert text(await serve(rig)) == "from a"  # no rpm/tpm anywhere: admission is never asked


# --- hedging ---------------------------------------------------------------------------------------------

FAST_HEDGE = Hedge(after=0.01, max_share=1.0)


def hedged_rig(*adapters: FakeProvider, hedge: Hedge = FAST_HEDGE) -> Rig:
    return Rig(group("g", *(deployment(a) for a in adapters), hedge=hedge))


async def test_a_slow_first_attempt_is_hedged_and_the_faster_second_wins() -> None:
    never = asyncio.Event()
    slow, fast = FakeProvider("slow", then=waits_for(never)), FakeProvider("fast")
    rig = hedged_rig(slow, fast)

    served = await within(serve(rig))

    assert text(served) == "from fast"
    assert served.attempts == 2
    assert slow.cancelled == 1
    assert rig.board.of("slow/m").stats.in_flight == 0


async def test_an_answer_before_the_hedge_delay_starts_no_second_request() -> None:
    first, second = FakeProvider("first"), FakeProvider("second")
    rig = hedged_rig(first, second, hedge=Hedge(after=5.0, max_share=1.0))
    served = await serve(rig)
    assert text(served) == "from first"
    assert second.calls == []
    assert served.attempts == 1


class WatchedBudget(HedgeBudget):
    """A hedge budget that says when a hedge was decided (spend() is asked once the delay is over)."""

    def __init__(self) -> None:
        super().__init__()
        self.decisions: list[bool] = []
        self.decided = asyncio.Event()

    def spend(self) -> bool:
        allowed = super().spend()
        self.decisions.append(allowed)
        self.decided.set()
        return allowed


class WatchedBoard(HealthBoard):
    def __init__(self, budget: WatchedBudget, *, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.budget = budget

    def hedge_budget(self, group: str) -> HedgeBudget:
        return self.budget


async def test_the_hedge_budget_caps_the_share_of_hedged_requests() -> None:
    release = asyncio.Event()
    slow, spare = FakeProvider("slow", then=waits_for(release)), FakeProvider("spare")
    rig = hedged_rig(slow, spare, hedge=Hedge(after=0.01, max_share=0.5))
    budget = WatchedBudget()
    rig.failover.board = WatchedBoard(budget, clock=rig.clock)

    winners = []
    for i in range(6):
        task = asyncio.ensure_future(rig.failover.run(rig.plan(), chat_via(HELLO)))
        decided = asyncio.ensure_future(budget.decided.wait())
        await asyncio.wait({task, decided}, return_when=asyncio.FIRST_COMPLETED)
        decided.cancel()
        assert len(budget.decisions) == i + 1, "the budget was not asked before hedging"
        budget.decided.clear()
        if not budget.decisions[-1]:
            release.set()  # not hedged: let the slow deployment answer
        winners.append(text(await within(task)))
        release.clear()

    assert budget.decisions == [False, True, False, True, False, True]
    assert winners == ["from slow", "from spare"] * 3
    assert len(spare.calls) == 3


async def test_a_loser_that_answers_together_with_the_winner_is_discarded() -> None:
    go = asyncio.Event()
    second_called = asyncio.Event()

    async def second_step(call: Call) -> GatewayError | None:
        second_called.set()
        await go.wait()
        return None

    first, second = FakeProvider("first", then=waits_for(go)), FakeProvider("second", then=second_step)
    rig = hedged_rig(first, second)
    discarded: list[ChatResponse] = []

    async def discard(value: ChatResponse) -> None:
        discarded.append(value)

    task = asyncio.ensure_future(rig.failover.run(rig.plan(), chat_via(HELLO), discard=discard))
    await within(second_called.wait())
    go.set()  # both answer in the same turn of the loop
    served = await within(task)

    assert len(discarded) == 1
    assert {text(served), discarded[0].text} == {"from first", "from second"}


async def test_a_loser_that_finishes_despite_its_cancellation_is_discarded() -> None:
    never = asyncio.Event()

    async def stubborn(call: Call) -> GatewayError | None:
        with contextlib.suppress(asyncio.CancelledError):  # an upstream that finishes its answer anyway
            await never.wait()
        return None

    first, second = FakeProvider("first", then=stubborn), FakeProvider("second")
    rig = hedged_rig(first, second)
    discarded: list[ChatResponse] = []

    async def discard(value: ChatResponse) -> None:
        discarded.append(value)

    served = await within(rig.failover.run(rig.plan(), chat_via(HELLO), discard=discard))

    assert text(served) == "from second"
    assert [value.text for value in discarded] == ["from first"]


async def test_a_discarded_loser_leaves_nothing_in_flight() -> None:
    go = asyncio.Event()
    second_called = asyncio.Event()

    async def second_step(call: Call) -> GatewayError | None:
        second_called.set()
        await go.wait()
        return None

    first, second = FakeProvider("first", then=waits_for(go)), FakeProvider("second", then=second_step)
    rig = hedged_rig(first, second)
    task = asyncio.ensure_future(rig.failover.run(rig.plan(), chat_via(HELLO)))
    await within(second_called.wait())
    go.set()
    served = await within(task)
    served.finish(ok=True)
    assert rig.board.of("first/m").stats.in_flight == 0
    assert rig.board.of("second/m").stats.in_flight == 0


async def test_a_non_retryable_error_of_one_racer_is_raised_and_the_other_cancelled() -> None:
    never = asyncio.Event()
    slow = FakeProvider("slow", then=waits_for(never))
    refuses = FakeProvider("refuses", then=InvalidRequest("bad request", param="messages"))
    rig = hedged_rig(slow, refuses)

    error = await within(fails(rig))

    assert type(error) is InvalidRequest
    assert slow.cancelled == 1


async def test_when_both_racers_fail_the_request_moves_on() -> None:
    gate = asyncio.Event()

    async def hedge_fails(call: Call) -> GatewayError | None:
        gate.set()  # the first attempt fails only once the hedge has failed too
        return Overloaded("busy too")

    one = FakeProvider("one", then=waits_for(gate, Overloaded("busy")))
    two, three = FakeProvider("two", then=hedge_fails), FakeProvider("three")
    rig = hedged_rig(one, two, three)

    served = await within(serve(rig))

    assert text(served) == "from three"
    assert served.attempts == 3
    assert names(one.calls + two.calls + three.calls) == ["one", "two", "three"]


async def test_a_cancelled_request_cancels_its_upstream_call_during_the_hedge_delay() -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def step(call: Call) -> GatewayError | None:
        started.set()
        await release.wait()
        return None

    first = FakeProvider("first", then=step)
    rig = hedged_rig(first, FakeProvider("second"), hedge=Hedge(after=30.0, max_share=1.0))
    task = asyncio.ensure_future(rig.failover.run(rig.plan(), chat_via(HELLO)))
    await within(started.wait())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(5):
        await asyncio.sleep(0)
    cancelled = first.cancelled
    release.set()  # let an orphaned call finish before the loop closes
    for _ in range(5):
        await asyncio.sleep(0)
    assert cancelled == 1


async def test_a_probe_slot_taken_by_a_refused_admission_is_given_back() -> None:
    # Half-open: picking the deployment takes its one probe slot; when the call never goes out, the
    # next request may probe at once instead of waiting out probe_timeout.
    a, b = FakeProvider("a", then=UpstreamError("500")), FakeProvider("b")
    policy = BreakerPolicy(failure_threshold=1, cooldown=10.0)
    admission = DenyFirst("a/m", 1.0)
    rig = Rig(group("g", deployment(a, rpm=10), deployment(b)), breaker=policy, admission=admission)
    admission.refused = ""
    await serve(rig)  # a fails: open
    rig.clock.advance(10.0)  # half-open
    admission.refused = "a/m"
    assert text(await serve(rig)) == "from b"  # a picked, refused by its limit: no call
    breaker = rig.board.of("a/m").breaker
    assert breaker.allow(rig.clock())  # the probe slot is free


async def test_giving_up_on_max_attempts_takes_no_probe_slot() -> None:
    a, b = FakeProvider("a", then=UpstreamError("500")), FakeProvider("b")
    rig = Rig(group("g", deployment(a), deployment(b)), max_attempts=1)
    b_breaker = rig.board.of("b/m").breaker
    b_breaker.trip(rig.clock() + 1.0)
    rig.clock.advance(1.0)  # b is half-open; a comes first and fails
    with pytest.raises(UpstreamError):
        await serve(rig)
    assert b.calls == []
    assert b_breaker.allow(rig.clock())  # nobody took b's probe slot without calling it
