"""Panic routing: when only open breakers stand between a request and the deployments left, the plan tries
the least-bad open one instead of refusing everything (Envoy's panic mode), once per round each."""

from __future__ import annotations

import asyncio
import random

import pytest
from fake_providers import FakeProvider, Rig, chat_via, deployment, group, request, waits_for

from llmgate.core.errors import GatewayError, Overloaded, UpstreamError
from llmgate.core.response import ChatResponse
from llmgate.routing.breaker import BreakerPolicy, BreakerState
from llmgate.routing.deployments import Deployment
from llmgate.routing.failover import Served
from llmgate.routing.plan import Plan

LONG = "word " * 400  # about 500 prompt tokens
HELLO = request()


def open_with(rig: Rig, d: Deployment, *, failed: int, of: int = 20, until: float = 30.0) -> None:
    """Give ``d`` a window of ``of`` outcomes, ``failed`` of them failures, and open its breaker."""
    stats = rig.board.of(d.name).stats
    for i in range(of):
        stats.finished(ok=i >= failed, latency=None, now=rig.clock())
    rig.board.of(d.name).breaker.trip(rig.clock() + until)


def fail_everything(rig: Rig, d: Deployment) -> None:
    """``d`` is open and its last ``min_requests`` verdicts were failures."""
    breaker = rig.board.of(d.name).breaker
    breaker.trip(rig.clock() + 30.0)
    for _ in range(breaker.policy.min_requests):
        breaker.record_failure(rig.clock())


def panic_pick(plan: Plan, now: float) -> str | None:
    option = plan.next(now)
    if option is None:
        return None
    assert option.panic
    return option.deployment.name


async def serve(rig: Rig) -> Served[ChatResponse]:
    served = await rig.failover.run(rig.plan(), chat_via(HELLO))
    served.finish(ok=True)
    return served


async def fails(rig: Rig) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await rig.failover.run(rig.plan(), chat_via(HELLO))
    return caught.value


# --- which deployment the plan panics to -----------------------------------------------------------------


def test_with_every_deployment_open_the_plan_panics_to_the_lowest_error_rate() -> None:
    a, b, c = (deployment(FakeProvider(name)) for name in "abc")
    rig = Rig(group("g", a, b, c))
    for d, failed in ((a, 6), (b, 2), (c, 4)):
        open_with(rig, d, failed=failed)

    assert rig.plan().next(rig.clock(), panic=False) is None  # nothing without panic
    assert panic_pick(rig.plan(), rig.clock()) == "b/m"


def test_panic_ties_go_to_the_open_period_that_ends_soonest_then_to_chain_order() -> None:
    a, b, c = (deployment(FakeProvider(name)) for name in "abc")
    rig = Rig(group("g", a, b, c))
    open_with(rig, a, failed=2, until=20.0)
    open_with(rig, b, failed=2, until=5.0)
    open_with(rig, c, failed=2, until=5.0)
    assert panic_pick(rig.plan(), rig.clock()) == "b/m"


def test_panic_skips_what_failed_this_round_then_panics_to_the_next_least_bad() -> None:
    a, b, c = (deployment(FakeProvider(name)) for name in "abc")
    rig = Rig(group("g", a, b, c))
    for d, failed in ((a, 6), (b, 2), (c, 4)):
        open_with(rig, d, failed=failed)
    plan = rig.plan()
    tried = []
    while (name := panic_pick(plan, rig.clock())) is not None:
        tried.append(name)
        plan.failed.add(name)  # what failover does with an attempt that failed
    assert tried == ["b/m", "c/m", "a/m"]  # each once per round, least bad first


def test_panic_never_picks_what_is_out_for_a_reason_other_than_its_breaker() -> None:
    small = deployment(FakeProvider("small"), context_length=100)  # the best rate, but too small
    refuses = deployment(FakeProvider("refuses", refuses=("logprobs",)))
    resting = deployment(FakeProvider("resting"))
    worst = deployment(FakeProvider("worst"))
    rig = Rig(group("g", small, refuses, resting, worst))
    for d, failed in ((small, 0), (refuses, 1), (resting, 2), (worst, 10)):
        open_with(rig, d, failed=failed)
    rig.board.slot(resting.name, resting.keys[0].label).cooling_until = rig.clock() + 60.0

    assert panic_pick(rig.plan(request(LONG, logprobs=True)), rig.clock()) == "worst/m"
    assert panic_pick(rig.plan(request("short")), rig.clock()) == "small/m"
    rig.board.slot(worst.name, worst.keys[0].label).cooling_until = rig.clock() + 60.0
    assert rig.plan(request(LONG, logprobs=True)).next(rig.clock()) is None


def test_no_panic_while_any_deployment_of_the_chain_is_closed() -> None:
    a, b = deployment(FakeProvider("a")), deployment(FakeProvider("b"))
    rig = Rig(group("g", a, b))
    open_with(rig, a, failed=0)
    for i in range(20):  # b is closed, though worse by its error rate
        rig.board.of(b.name).stats.finished(ok=i % 2 == 0, latency=None, now=rig.clock())
    option = rig.plan().next(rig.clock())
    assert option is not None
    assert (option.deployment.name, option.panic) == ("b/m", False)

    spare = deployment(FakeProvider("spare"))  # closed in a fallback group: still no panic
    rig = Rig(group("g", a, fallbacks=("f",)), group("f", spare))
    open_with(rig, a, failed=0)
    option = rig.plan().next(rig.clock())
    assert option is not None
    assert (option.group.name, option.deployment.name, option.panic) == ("f", "spare/m", False)


def test_panic_looks_at_the_whole_chain_fallbacks_and_context_fallbacks() -> None:
    a, b = deployment(FakeProvider("a")), deployment(FakeProvider("b"))
    rig = Rig(group("g", a, fallbacks=("f",)), group("f", b))
    open_with(rig, a, failed=6)
    open_with(rig, b, failed=1)
    assert panic_pick(rig.plan(), rig.clock()) == "b/m"

    small = deployment(FakeProvider("small"), context_length=100)
    wide = deployment(FakeProvider("wide"), context_length=100_000)
    rig = Rig(group("g", small, context_fallbacks=("w",)), group("w", wide))
    open_with(rig, wide, failed=3)
    plan = rig.plan(request(LONG))
    option = plan.next(rig.clock())
    assert option is not None
    assert (option.group.name, option.deployment.name, option.panic) == ("w", "wide/m", True)


def test_a_half_open_deployment_with_its_probe_out_is_a_panic_candidate() -> None:
    a = deployment(FakeProvider("a"))
    rig = Rig(group("g", a))
    open_with(rig, a, failed=4, until=0.0)  # its cooldown is over: half-open
    probe = rig.plan().next(rig.clock())
    assert probe is not None and not probe.panic  # the first request takes the probe slot
    assert panic_pick(rig.plan(), rig.clock()) == "a/m"  # the next ones panic to it meanwhile
    assert rig.plan().next(rig.clock(), panic=False) is None


def test_a_deployment_that_fails_everything_is_not_worth_a_panic_attempt() -> None:
    dead, flaky = deployment(FakeProvider("dead")), deployment(FakeProvider("flaky"))
    rig = Rig(group("g", dead, flaky))
    fail_everything(rig, dead)
    open_with(rig, flaky, failed=10)
    assert panic_pick(rig.plan(), rig.clock()) == "flaky/m"  # its window rate is 0: no verdicts there
    fail_everything(rig, flaky)
    assert rig.plan().next(rig.clock()) is None


# --- panic attempts through failover -----------------------------------------------------------------------


async def test_when_nothing_is_worth_a_panic_the_request_is_overloaded_with_retry_after() -> None:
    a, b = FakeProvider("a"), FakeProvider("b")
    rig = Rig(group("g", deployment(a), deployment(b)))
    for d in rig.groups["g"].deployments:
        fail_everything(rig, d)
    rig.board.of("b/m").breaker.trip(rig.clock() + 40.0)  # a reopens first, in 30 s

    error = await fails(rig)

    assert type(error) is Overloaded
    assert "open-circuit" in error.message
    assert error.retry_after == pytest.approx(30.0)
    assert a.calls == b.calls == []


async def test_a_panic_answer_serves_and_counts_in_the_stats_but_leaves_the_breaker_open() -> None:
    a = FakeProvider("a")
    rig = Rig(group("g", deployment(a)))
    rig.board.of("a/m").breaker.trip(rig.clock() + 30.0)

    served = await serve(rig)

    assert served.option.panic
    assert served.value.text == "from a"
    health = rig.board.of("a/m")
    assert (health.stats.total_requests, health.stats.total_errors) == (1, 0)
    assert health.breaker.state(rig.clock()) is BreakerState.OPEN  # only its probe closes it


async def test_each_open_deployment_is_tried_once_per_round() -> None:
    a, b = FakeProvider("a", then=UpstreamError("500 a")), FakeProvider("b", then=UpstreamError("500 b"))
    rig = Rig(group("g", deployment(a), deployment(b)), retries=1)
    for d in rig.groups["g"].deployments:
        rig.board.of(d.name).breaker.trip(rig.clock() + 30.0)

    error = await fails(rig)

    assert type(error) is UpstreamError  # what the upstreams said, not a 503 from the gateway
    assert (len(a.calls), len(b.calls)) == (2, 2)  # two rounds, each open deployment once a round
    assert error.tried == ("a/m", "b/m", "a/m", "b/m")
    assert rig.board.of("a/m").stats.total_errors == 2


async def test_a_panic_failure_while_half_open_leaves_the_decision_to_the_probe() -> None:
    a = FakeProvider("a", then=UpstreamError("500"))
    rig = Rig(group("g", deployment(a)), breaker=BreakerPolicy(failure_threshold=1, cooldown=10.0))
    await fails(rig)  # opens it for 10 s
    rig.clock.advance(10.0)
    breaker = rig.board.of("a/m").breaker
    assert breaker.allow(rig.clock())  # the probe goes out (its request still running)

    await fails(rig)  # meanwhile a panic attempt fails

    assert len(a.calls) == 2
    assert breaker.state(rig.clock()) is BreakerState.HALF_OPEN  # not reopened, cooldown not doubled
    assert breaker.cooldown == pytest.approx(10.0)
    breaker.record_success(rig.clock())  # the probe's verdict
    assert breaker.state(rig.clock()) is BreakerState.CLOSED


async def test_a_cancelled_panic_attempt_does_not_free_the_probe_slot() -> None:
    gate = asyncio.Event()
    a = FakeProvider("a", then=waits_for(gate))
    rig = Rig(group("g", deployment(a)))
    breaker = rig.board.of("a/m").breaker
    breaker.trip(rig.clock())  # half-open at once
    assert breaker.allow(rig.clock())  # the probe is out
    task = asyncio.ensure_future(rig.failover.run(rig.plan(), chat_via(HELLO)))
    for _ in range(10):  # a few loop turns get the attempt to the upstream (bounded: never hang)
        await asyncio.sleep(0)
    assert len(a.calls) == 1

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert a.cancelled == 1
    assert not breaker.allow(rig.clock())  # the probe still holds its slot


async def test_a_burst_that_opens_the_only_deployment_does_not_stop_its_traffic() -> None:
    # A hair-trigger breaker (one failure) on a deployment failing a fifth of its calls at random: it is
    # open most of the time, and panic still serves about four requests in five.
    rng = random.Random(11)
    script = [UpstreamError("500") if rng.random() < 0.2 else None for _ in range(2_000)]
    a = FakeProvider("a", script=script)
    policy = BreakerPolicy(failure_threshold=1, min_requests=1_000)  # the run rule alone, tripping at once
    rig = Rig(group("g", deployment(a)), breaker=policy)
    served = overloaded = while_open = 0
    breaker = rig.board.of("a/m").breaker
    for _ in script:
        rig.clock.advance(0.025)
        while_open += breaker.state(rig.clock()) is BreakerState.OPEN
        try:
            await serve(rig)
            served += 1
        except Overloaded:
            overloaded += 1
        except UpstreamError:
            pass
    assert while_open > len(script) // 2
    assert overloaded == 0
    assert len(a.calls) == len(script)
    assert served == script.count(None)
