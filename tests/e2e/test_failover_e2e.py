"""Fault injection end to end: ``llmgate serve`` in front of several mock upstream processes (SPEC.md 4, 13).

Every upstream is its own process on 127.0.0.1 and its own provider. Faults are switched on at run time
(``POST /_fault``, see upstream.py) or chosen by the upstream model name; each upstream counts the
requests it received (``/_log``), which is how routing decisions are checked from the outside.

Groups and deployments get model names of their own per test, because the gateway keeps health (breakers,
resting keys) per deployment for the whole module.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import pytest

from .conftest import UPSTREAM_KEY, GatewayProcess, Upstream, wait_until

T = TypeVar("T")
R = TypeVar("R")

DONE = "[DONE]"
BAD_KEY = "sk-e2e-revoked-key-0000"
UPSTREAMS = 5
# Short timeouts so that a hanging upstream costs about a second. `total` is set per provider: it bounds
# one attempt, while the routing-level `total` bounds the whole request (all attempts together).
FAST = {"connect": 1, "first_token": 1, "idle": 1, "total": 1.5}
FAILURES, COOLDOWN, MAX_COOLDOWN = 3, 1, 2  # the breaker: open after 3 failures in a row, for 1 s, then 2 s
BREAKER = {
    "failures": FAILURES,
    "error_rate": 1.0,
    "min_requests": 1000,
    "cooldown": COOLDOWN,
    "max_cooldown": MAX_COOLDOWN,
}
MAX_QUEUE_WAIT = 2
SLOW_MS = 3000
CLIENT_TIMEOUT = 20


@dataclass
class Fleet:
    """The upstream processes and the gateway in front of them."""

    gateway: GatewayProcess
    ups: list[Upstream]
    http: httpx.Client

    def set_fault(self, up: Upstream, mode: str, **options: Any) -> None:
        """Switch the upstream's runtime fault (``ok`` ends it)."""
        self.http.post(f"{up.url}/_fault", json={"mode": mode, **options}).raise_for_status()

    def clear_log(self, up: Upstream) -> None:
        self.http.delete(f"{up.url}/_log").raise_for_status()

    def counts(self, up: Upstream) -> dict[str, Any]:
        """The chat requests the upstream received since the test started: in all, and per API key."""
        found: dict[str, Any] = self.http.get(f"{up.url}/_log", params={"entries": "0"}).json()["counts"]
        return found

    def received(self, up: Upstream) -> int:
        return int(self.counts(up)["requests"])


@dataclass
class Reply:
    """What the client got: status, headers, the assembled text, and for streams every ``data:``."""

    status: int
    headers: httpx.Headers
    text: str = ""
    events: list[str] = field(default_factory=list)
    error: dict[str, Any] | None = None
    elapsed: float = 0.0

    @property
    def deployment(self) -> str | None:
        value: str | None = self.headers.get("x-llmgate-deployment")
        return value

    @property
    def attempts(self) -> int:
        return int(self.headers.get("x-llmgate-attempts", "0"))


# --- the fleet ---------------------------------------------------------------------------------------


def deployment(provider: str, model: str, **options: Any) -> dict[str, Any]:
    return {"provider": provider, "model": model, **options}


def fleet_config(ups: list[Upstream]) -> dict[str, Any]:
    """p0..p4: one provider per upstream (u0 is the healthy one unless a test says otherwise); q1: the
    upstream of p1 with the routing timeouts (no per-attempt total); keys: two keys, one revoked."""

    def provider(up: Upstream, **options: Any) -> dict[str, Any]:
        return {"type": "openai", "base_url": up.base_url, "api_keys": [UPSTREAM_KEY], **options}

    providers = {f"p{i}": provider(up, timeouts=FAST) for i, up in enumerate(ups)}
    providers["q1"] = provider(ups[1])
    providers["keys"] = provider(ups[4], timeouts=FAST) | {"api_keys": [BAD_KEY, UPSTREAM_KEY]}
    every = [f"p{i}" for i in range(len(ups))]
    models = [
        *(
            {
                "name": f"all-faults-{mix}",
                "strategy": "round_robin",
                "deployments": [deployment(p, f"t1-{mix}") for p in every],
            }
            for mix in range(len(MIXES))
        ),
        *(
            {
                "name": name,
                "strategy": "priority",
                "deployments": [
                    deployment("p2", name, priority=0),
                    deployment("p0", name, priority=1),
                ],
            }
            for name in ("breaker-seq", "breaker-conc")
        ),
        {
            "name": "t6-a",
            "deployments": [deployment("p1", "t6-a"), deployment("p2", "t6-a")],
            "fallbacks": ["t6-b"],
        },
        {"name": "t6-b", "deployments": [deployment("p0", "t6-b")]},
        {
            "name": "t6-bad",
            "deployments": [deployment("p1", "fail-400"), deployment("p2", "fail-400")],
            "fallbacks": ["t6-b"],
        },
        {
            "name": "t7-small",
            "deployments": [deployment("p1", "gpt-3.5-turbo")],  # catalogue: 16,385 tokens
            "context_fallbacks": ["t7-big"],
        },
        {"name": "t7-big", "deployments": [deployment("p2", "gpt-4o-mini")]},  # catalogue: 128,000
        {"name": "t7-alone", "deployments": [deployment("p3", "gpt-3.5-turbo")]},
        {
            "name": "hedged",
            "strategy": "priority",
            "hedge": {"after_ms": 100, "max_share": 1.0},
            "deployments": [
                deployment("q1", f"slow-{SLOW_MS}", priority=0),
                deployment("p0", "t9", priority=1),
            ],
        },
        {
            "name": "hedged-probe",
            "strategy": "priority",
            "hedge": {"after_ms": 100, "max_share": 1.0},
            "deployments": [
                deployment("p3", "probe-a", priority=0),
                deployment("p0", "probe-b", priority=1),
            ],
        },
        {
            "name": "hang-failover",
            "strategy": "priority",
            "deployments": [deployment("q1", "hang", priority=0), deployment("p0", "hang", priority=1)],
        },
    ]
    return {
        "server": {"grace_period": 2},
        "routing": {
            "retries": 1,
            "max_attempts": 10,
            "max_queue_wait": MAX_QUEUE_WAIT,
            "timeouts": {"connect": 1, "first_token": 1, "idle": 1, "total": 10},
            "breaker": BREAKER,
        },
        "providers": providers,
        "models": models,
    }


@pytest.fixture(scope="module")
def fleet(
    upstream_factory: Callable[[int], list[Upstream]],
    config_gateway_factory: Callable[[dict[str, Any]], GatewayProcess],
) -> Iterator[Fleet]:
    ups = upstream_factory(UPSTREAMS)
    gateway = config_gateway_factory(fleet_config(ups))
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with httpx.Client(timeout=CLIENT_TIMEOUT, limits=limits) as http:
        yield Fleet(gateway, ups, http)


@pytest.fixture(autouse=True)
def healthy_fleet(fleet: Fleet) -> Iterator[None]:
    """Every upstream answers normally and has an empty log when a test starts, and again after it."""
    for up in fleet.ups:
        fleet.set_fault(up, "ok")
        fleet.clear_log(up)
    yield
    for up in fleet.ups:
        fleet.set_fault(up, "ok")


def health_row(fleet: Fleet, name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = fleet.http.get(f"{fleet.gateway.url}/health/providers").json()["deployments"]
    return next(row for row in rows if row["deployment"] == name)


# --- the client --------------------------------------------------------------------------------------


def call(
    fleet: Fleet, model: str, text: str, *, stream: bool = False, headers: dict[str, str] | None = None
) -> Reply:
    """One chat completion through the gateway, whole or streamed, with the reply assembled."""
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    url = f"{fleet.gateway.base_url}/chat/completions"
    started = time.monotonic()
    if not stream:
        response = fleet.http.post(url, json=body, headers=headers)
        reply = Reply(response.status_code, response.headers)
        payload = response.json()
        if response.status_code == 200:
            reply.text = payload["choices"][0]["message"]["content"]
        else:
            reply.error = payload["error"]
        reply.elapsed = time.monotonic() - started
        return reply
    with fleet.http.stream("POST", url, json=body, headers=headers) as response:
        reply = Reply(response.status_code, response.headers)
        if response.status_code != 200:
            response.read()
            reply.error = response.json()["error"]
        else:
            reply.events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    reply.elapsed = time.monotonic() - started
    for raw in reply.events:
        if raw == DONE:
            continue
        event = json.loads(raw)
        if "error" in event:
            reply.error = event["error"]
            continue
        reply.text += "".join(choice["delta"].get("content") or "" for choice in event["choices"])
    return reply


def run_all(work: Callable[[T], R], items: Iterable[T], *, workers: int) -> list[R]:
    """``work`` over ``items`` on ``workers`` threads, results in order."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(work, items))


def describe(replies: list[Reply]) -> str:
    bad = [(r.status, r.error, r.events[-1:] if r.events else None) for r in replies if r.status != 200]
    return f"{len(bad)} of {len(replies)} failed, e.g. {bad[:3]}"


def assert_served(reply: Reply, text: str, *, stream: bool) -> None:
    """A complete, correct answer: 200, the echo text, and for a stream a clean end with [DONE]."""
    assert reply.status == 200, (reply.status, reply.error)
    assert reply.error is None, reply.error
    assert reply.text == f"Echo: {text}"
    if stream:
        assert reply.events[-1] == DONE
        assert reply.events.count(DONE) == 1


# --- 1. one healthy deployment hides every fault -----------------------------------------------------

MIXES: list[dict[str, dict[str, Any]]] = [
    {"500": {}, "429": {"retry_after": 1}, "timeout": {}, "cut": {"after_chunks": 1}},
    {"529": {}, "reset": {}, "malformed": {}, "stall": {"after_chunks": 1}},
]
REQUESTS_PER_KIND = 40
CONCURRENCY = 8


@pytest.mark.parametrize("mix", range(len(MIXES)), ids=["-".join(mix) for mix in MIXES])
def test_one_healthy_deployment_among_broken_ones_serves_every_request(
    fleet: Fleet, mix: int, marker: str
) -> None:
    # cut / stall after one event: the role chunk has no content, so failing over is still invisible.
    broken = fleet.ups[1:]
    for up, (mode, options) in zip(broken, MIXES[mix].items(), strict=True):
        fleet.set_fault(up, mode, **options)
    jobs = [(f"{marker} n{i}", stream) for i in range(REQUESTS_PER_KIND) for stream in (False, True)]

    replies = run_all(
        lambda job: call(fleet, f"all-faults-{mix}", job[0], stream=job[1]), jobs, workers=CONCURRENCY
    )

    assert all(reply.status == 200 for reply in replies), describe(replies)
    for (text, stream), reply in zip(jobs, replies, strict=True):
        assert_served(reply, text, stream=stream)
    assert {reply.deployment for reply in replies} == {f"p0/t1-{mix}"}
    assert sum(reply.attempts > 1 for reply in replies) > 0  # failover happened, invisibly
    for up, mode in zip(broken, MIXES[mix], strict=True):
        assert fleet.received(up) > 0, f"the {mode} upstream was never tried"


# --- 2. a stream broken after its first content never ends with [DONE] ------------------------------

BROKEN_STREAMS = 12


@pytest.mark.parametrize(("mode", "code"), [("cut", "stream_interrupted"), ("stall", "upstream_timeout")])
def test_streams_broken_after_content_end_with_an_error_event_never_done(
    fleet: Fleet, mode: str, code: str, marker: str
) -> None:
    up = fleet.ups[1]
    fleet.set_fault(up, mode, after_chunks=3)  # the role chunk, "Echo:", " <marker>", then the fault
    text = f"{marker} a b c d e f"

    # One deployment each (direct `provider:model`), so that no breaker opens half-way through the count.
    replies = run_all(
        lambda i: call(fleet, f"p1:t2-{mode}-{i}", text, stream=True),
        range(BROKEN_STREAMS),
        workers=BROKEN_STREAMS,
    )

    assert sum(DONE in reply.events for reply in replies) == 0
    for reply in replies:
        assert reply.status == 200
        assert reply.text == f"Echo: {marker}"  # what arrived before the break reached the client
        assert reply.error is not None
        assert reply.error["code"] == code
        assert "error" in json.loads(reply.events[-1])
    assert fleet.received(up) == BROKEN_STREAMS  # no failover after content: one attempt each


# --- 3. the circuit breaker --------------------------------------------------------------------------


def test_breaker_stops_traffic_to_a_dead_deployment_then_lets_it_back(fleet: Fleet) -> None:
    dead, dead_name = fleet.ups[2], "p2/breaker-seq"  # priority 0: every request tries it first
    fleet.set_fault(dead, "500")

    replies = [call(fleet, "breaker-seq", f"seq {i}") for i in range(10)]

    assert all(reply.status == 200 for reply in replies), describe(replies)
    assert {reply.deployment for reply in replies} == {"p0/breaker-seq"}
    assert FAILURES <= fleet.received(dead) <= FAILURES + 1  # +1: a half-open probe if the cooldown ran out
    row = health_row(fleet, dead_name)
    assert row["state"] in ("open", "half_open")  # half_open only if the box stalled for the cooldown
    assert row["last_error"]

    # Recovery: once it answers again and the cooldown is over, live traffic probes it and it is back.
    fleet.set_fault(dead, "ok")

    def served_by_the_dead_one() -> bool:
        reply = call(fleet, "breaker-seq", "probe")
        assert reply.status == 200, reply.error
        return reply.deployment == dead_name

    wait_until(served_by_the_dead_one, timeout=MAX_COOLDOWN + 3, interval=0.1)
    assert health_row(fleet, dead_name)["state"] in ("healthy", "degraded")  # closed again
    after = [call(fleet, "breaker-seq", f"after {i}") for i in range(5)]
    assert [reply.deployment for reply in after] == [dead_name] * 5


def test_breaker_bounds_traffic_to_a_dead_deployment_under_concurrency(fleet: Fleet) -> None:
    dead = fleet.ups[2]
    fleet.set_fault(dead, "500")
    workers = 8

    replies = run_all(lambda i: call(fleet, "breaker-conc", f"conc {i}"), range(32), workers=workers)

    assert all(reply.status == 200 for reply in replies), describe(replies)
    # At most `failures`, plus what was already in flight when the breaker opened, plus one probe.
    assert fleet.received(dead) <= FAILURES + workers
    assert health_row(fleet, "p2/breaker-conc")["state"] in ("open", "half_open")


# --- 4. Retry-After ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_short_retry_after_is_waited_out(fleet: Fleet, stream: bool, marker: str) -> None:
    up = fleet.ups[3]
    fleet.set_fault(up, "429", retry_after=1, times=1)

    reply = call(fleet, f"p3:t4-short-{stream}", marker, stream=stream)

    assert_served(reply, marker, stream=stream)
    assert reply.attempts >= 2
    assert reply.elapsed >= 0.9  # it waited for the Retry-After before trying again
    assert fleet.received(up) == 2


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_retry_after_longer_than_max_queue_wait_is_passed_on(
    fleet: Fleet, stream: bool, marker: str
) -> None:
    up = fleet.ups[3]
    fleet.set_fault(up, "429", retry_after=30, times=1)

    reply = call(fleet, f"p3:t4-long-{stream}", marker, stream=stream)

    assert reply.status == 429, reply.error
    assert MAX_QUEUE_WAIT < int(reply.headers["retry-after"]) <= 30
    assert reply.elapsed < MAX_QUEUE_WAIT  # it did not queue
    assert fleet.received(up) == 1


# --- 5. key rotation ---------------------------------------------------------------------------------


def test_a_revoked_upstream_key_is_rotated_out(fleet: Fleet, marker: str) -> None:
    up = fleet.ups[4]  # it accepts UPSTREAM_KEY only; the provider `keys` also has BAD_KEY
    total = 30

    replies = [call(fleet, "keys:t5", f"{marker} {i}", stream=i % 2 == 1) for i in range(total)]

    for i, reply in enumerate(replies):
        assert_served(reply, f"{marker} {i}", stream=i % 2 == 1)
        assert BAD_KEY not in str(reply.headers) and BAD_KEY not in reply.text
    by_key = fleet.counts(up)["by_key"]
    assert by_key.get(UPSTREAM_KEY) == total
    # Picked at random between the two keys until it is rejected once; then it rests. (That it is never
    # picked in 30 requests has a probability of 2**-30.)
    assert by_key.get(BAD_KEY) == 1
    health = fleet.http.get(f"{fleet.gateway.url}/health/providers").text
    assert BAD_KEY not in health
    resting = [row for row in json.loads(health)["keys"] if row["deployment"] == "keys/t5"]
    assert len(resting) == 1  # the revoked key, by its label
    assert resting[0]["free_in_s"] > 0


# --- 6. fallbacks and non-retryable errors -----------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_failing_group_falls_back_to_the_next_group(fleet: Fleet, stream: bool, marker: str) -> None:
    fleet.set_fault(fleet.ups[1], "500")
    fleet.set_fault(fleet.ups[2], "500")

    reply = call(fleet, "t6-a", marker, stream=stream)

    assert_served(reply, marker, stream=stream)
    assert reply.deployment == "p0/t6-b"
    assert reply.attempts == 3
    assert fleet.received(fleet.ups[1]) == 1
    assert fleet.received(fleet.ups[2]) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_an_upstream_400_is_returned_at_once_not_retried(fleet: Fleet, stream: bool, marker: str) -> None:
    reply = call(fleet, "t6-bad", marker, stream=stream)

    assert reply.status == 400
    assert reply.error is not None
    assert "upstream-400-marker" in reply.error["message"]
    # One upstream call: neither the group's other deployment nor the fallback group was tried.
    assert sum(fleet.received(up) for up in fleet.ups[:3]) == 1


# --- 7. context windows ------------------------------------------------------------------------------


def long_prompt(marker: str) -> str:
    """About 24,000 tokens, by the gateway's estimate (36,000) and exactly: over 16,385, under 128,000.
    (``"lorem " * 16_000`` would not do: 96,000 characters, but 16,000 tokens, and the window check
    counts exactly once the estimate comes near a window.)"""
    return f"{marker} " + "lorem ipsum dolor " * 8_000


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_prompt_too_long_for_the_window_goes_to_the_context_fallback(
    fleet: Fleet, stream: bool, marker: str
) -> None:
    prompt = long_prompt(marker)

    reply = call(fleet, "t7-small", prompt, stream=stream)
    short = call(fleet, "t7-small", marker, stream=stream)

    assert_served(reply, prompt, stream=stream)
    assert reply.deployment == "p2/gpt-4o-mini"
    assert_served(short, marker, stream=stream)
    assert short.deployment == "p1/gpt-3.5-turbo"  # the small window serves what fits
    assert fleet.received(fleet.ups[1]) == 1  # the short one only
    assert fleet.received(fleet.ups[2]) == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_prompt_too_long_for_every_window_is_refused_without_calling_upstream(
    fleet: Fleet, stream: bool, marker: str
) -> None:
    reply = call(fleet, "t7-alone", long_prompt(marker), stream=stream)

    assert reply.status == 400
    assert reply.error is not None
    assert reply.error["code"] == "context_length_exceeded"
    assert fleet.received(fleet.ups[3]) == 0


# --- 8. x-llmgate-timeout ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_x_llmgate_timeout_bounds_a_slow_call(fleet: Fleet, stream: bool, marker: str) -> None:
    up = fleet.ups[1]

    reply = call(fleet, f"q1:slow-{SLOW_MS}+t8", marker, stream=stream, headers={"x-llmgate-timeout": "0.5"})

    assert reply.status == 504, reply.error
    assert reply.error is not None
    assert reply.error["type"] == "timeout_error"
    assert reply.elapsed < SLOW_MS / 1000 / 2
    entry = up.wait_for(marker, lambda e: e["disconnected"], timeout=SLOW_MS / 1000)
    assert not entry["completed"]  # the gateway hung up on it


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1e9", ""])
def test_an_invalid_x_llmgate_timeout_is_a_400(fleet: Fleet, value: str, marker: str) -> None:
    reply = call(fleet, "t6-b", marker, headers={"x-llmgate-timeout": value})

    assert reply.status == 400
    assert reply.error is not None
    assert reply.error["param"] == "x-llmgate-timeout"
    assert fleet.received(fleet.ups[0]) == 0


# --- 9. hedging --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_hedging_answers_from_the_fast_deployment_and_cancels_the_slow_one(
    fleet: Fleet, stream: bool, marker: str
) -> None:
    slow, fast = fleet.ups[1], fleet.ups[0]  # the group tries the slow one first (priority 0)

    reply = call(fleet, "hedged", marker, stream=stream)

    assert_served(reply, marker, stream=stream)
    assert reply.deployment == "p0/t9"
    assert reply.elapsed < SLOW_MS / 1000 / 2  # loose: the hedge goes out after 100 ms
    entry = slow.wait_for(marker, lambda e: e["disconnected"], timeout=SLOW_MS / 1000)
    assert not entry["completed"]  # the loser was cancelled
    assert fleet.received(fast) == 1


# --- regressions --------------------------------------------------------------------------------------


def test_a_half_open_probe_that_loses_a_hedge_does_not_lock_the_deployment_out(fleet: Fleet) -> None:
    up, name = fleet.ups[3], "p3/probe-a"  # priority 0 in a hedged group
    fleet.set_fault(up, "500")
    for i in range(FAILURES):
        assert call(fleet, "hedged-probe", f"open {i}").status == 200
    assert health_row(fleet, name)["state"] == "open"
    fleet.set_fault(up, "slow", slow_ms=400)  # healthy again, but slower than the hedge delay
    wait_until(lambda: health_row(fleet, name)["state"] == "half_open", timeout=COOLDOWN + 2)

    probe = call(fleet, "hedged-probe", "probe")  # the probe goes to probe-a, the hedge wins
    assert probe.deployment == "p0/probe-b"
    fleet.set_fault(up, "ok")

    def served_by_the_recovered_one() -> bool:
        return call(fleet, "hedged-probe", "after").deployment == name

    wait_until(served_by_the_recovered_one, timeout=MAX_COOLDOWN + 1, interval=0.1)


EARLY_TIMER_REQUESTS = 48


def test_a_retry_after_wait_is_not_lost_to_an_early_timer(
    fleet: Fleet, config_gateway_factory: Callable[[dict[str, Any]], GatewayProcess]
) -> None:
    config = copy.deepcopy(fleet.gateway.settings)
    config["routing"]["retries"] = 1  # one wait for the Retry-After is all it takes
    tight = Fleet(config_gateway_factory(config), fleet.ups, fleet.http)
    up = fleet.ups[3]
    fleet.set_fault(up, "429", retry_after=1, times=EARLY_TIMER_REQUESTS)  # every first attempt

    # Each request on a deployment of its own (direct `provider:model`): each waits for its own key.
    replies = run_all(
        lambda i: call(tight, f"p3:early-{i}", f"early {i}"),
        range(EARLY_TIMER_REQUESTS),
        workers=EARLY_TIMER_REQUESTS,
    )

    assert [reply.status for reply in replies] == [200] * EARLY_TIMER_REQUESTS, describe(replies)
    assert fleet.received(up) == 2 * EARLY_TIMER_REQUESTS
