"""A soak through the library: injected random failures must cost their share of requests, not an outage.

A 10-minute soak found the only deployment of a group opened for 30 s while its upstream was 80% healthy
(at 20% failures, five in a row come about once every 3,000 requests): 19.7% of the requests got 503 for
nothing. Here the built-in mock injects seeded failures, and the gateway's health board runs on an
injected clock moved 25 ms a request (the soak's 40 a second), so that cooldowns and stats windows pass
as they would, without sleeping. The mock does no I/O: ten thousand requests take well under a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clock import FakeClock
from llmgate.config import Settings
from llmgate.core.errors import GatewayError, Overloaded
from llmgate.gateway import Gateway

HELLO = [{"role": "user", "content": "hello"}]
STEP = 0.025  # seconds between requests: 40 a second
REQUESTS = 10_000
MONOTONIC_START = 1000.0


def mock(failure_rate: float, seed: int = 0) -> dict[str, Any]:
    """A mock provider failing ``failure_rate`` of its calls (seeded) with a 500."""
    behaviour = {"failure_rate": failure_rate, "failure": {"kind": "status", "status": 500}, "seed": seed}
    return {"type": "mock", "mock": behaviour}


def gateway(providers: dict[str, dict[str, Any]], **group: Any) -> tuple[Gateway, FakeClock]:
    """A gateway whose group ``g`` has one ``echo`` deployment per provider, no retries, and a fake clock."""
    deployments = [{"provider": name, "model": "echo"} for name in providers]
    settings = Settings.model_validate(
        {
            "storage": {"database": "memory"},
            "providers": providers,
            "models": [{"name": "g", "deployments": deployments, **group}],
            "routing": {"retries": 0},
        }
    )
    gw = Gateway(settings)
    clock = FakeClock(MONOTONIC_START)
    gw.board.clock = clock
    return gw, clock


@dataclass
class Tally:
    """How the requests of a soak ended."""

    served: int = 0
    overloaded: int = 0
    """The gateway's own 503 (the mock fails with 500, which is an ``UpstreamError``)."""
    failed: int = 0

    @property
    def success_rate(self) -> float:
        return self.served / (self.served + self.overloaded + self.failed)


async def soak(gw: Gateway, clock: FakeClock, requests: int, tally: Tally | None = None) -> Tally:
    """Send ``requests`` sequential chat requests to ``g``, ``STEP`` apart."""
    tally = tally or Tally()
    for _ in range(requests):
        clock.advance(STEP)
        try:
            await gw.chat("g", HELLO)
            tally.served += 1
        except Overloaded:
            tally.overloaded += 1
        except GatewayError:
            tally.failed += 1
    return tally


def row(gw: Gateway, deployment: str) -> dict[str, Any]:
    return next(r for r in gw.board.report() if r["deployment"] == deployment)


async def test_a_fifth_of_random_failures_on_the_only_deployment_costs_a_fifth() -> None:
    gw, clock = gateway({"flaky": mock(0.2, seed=1)})
    async with gw:
        tally = await soak(gw, clock, REQUESTS)
        flaky = row(gw, "flaky/echo")

    assert tally.overloaded == 0
    assert 0.75 <= tally.success_rate <= 0.85
    assert flaky["total_requests"] == REQUESTS  # every request reached the upstream
    assert flaky["state"] == "degraded"  # closed: errors in its window, never open


async def test_an_open_breaker_on_the_only_deployment_still_serves_through_panic() -> None:
    gw, clock = gateway({"flaky": mock(0.2, seed=1)})
    async with gw:
        breaker = gw.board.of("flaky/echo").breaker
        breaker.trip(clock() + 30.0)  # opened by a burst, or by another replica
        during = await soak(gw, clock, 1_000)  # 25 s: the whole time within the cooldown
        still_open = row(gw, "flaky/echo")["state"]
        after = await soak(gw, clock, 4_000)  # 100 s more: probes close it
        final = row(gw, "flaky/echo")["state"]

    assert during.overloaded == 0
    assert 0.75 <= during.success_rate <= 0.85
    assert still_open == "open"  # panic answers count in the stats, not as the probe
    assert after.overloaded == 0
    assert 0.75 <= after.success_rate <= 0.85
    assert final == "degraded"  # closed again by a successful probe


async def test_a_dead_deployment_beside_a_healthy_one_is_opened_and_routed_around() -> None:
    gw, clock = gateway({"dead": mock(1.0), "fine": mock(0.0)}, strategy="round_robin")
    async with gw:
        tally = await soak(gw, clock, 2_000)  # 50 s: one probe after the 30 s cooldown
        dead = row(gw, "dead/echo")

    assert tally.served == 2_000  # a request that tries the dead one first fails over within its round
    assert dead["state"] in ("open", "half_open")  # half-open: its cooldown ran out, no turn came since
    assert 5 <= dead["total_requests"] <= 5 + 2  # the breaker's 5 failures, then only probes


async def test_a_dead_deployment_beside_a_flaky_one_gets_no_panic_attempts_once_it_fails_everything() -> None:
    gw, clock = gateway({"dead": mock(1.0), "flaky": mock(0.2, seed=3)}, strategy="round_robin")
    async with gw:
        tally = await soak(gw, clock, REQUESTS)
        dead, flaky = row(gw, "dead/echo"), row(gw, "flaky/echo")

    assert tally.overloaded == 0
    assert 0.75 <= tally.success_rate <= 0.85
    assert flaky["state"] == "degraded"
    assert dead["state"] in ("open", "half_open")
    # Panic attempts after the flaky one failed, until 20 failures in a row (min_requests), then probes.
    assert dead["total_requests"] <= 20 + REQUESTS * STEP / 30
