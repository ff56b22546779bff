"""HealthBoard: per-deployment report rows, bounded tracking, resting keys, hedge budgets."""

from __future__ import annotations

import pytest
from fake_providers import MONOTONIC_START, FakeProvider, Rig, chat_via, deployment, group, request

from clock import FakeClock
from llmgate.core.errors import UpstreamTimeout
from llmgate.routing import health
from llmgate.routing.breaker import BreakerPolicy
from llmgate.routing.health import HEDGE_CREDIT_CAP, HealthBoard, HedgeBudget, KeyState


def board_at(clock: FakeClock, policy: BreakerPolicy | None = None) -> HealthBoard:
    return HealthBoard(policy or BreakerPolicy(), clock=clock)


def row(board: HealthBoard, name: str) -> dict[str, object]:
    rows = {r["deployment"]: r for r in board.report()}
    return rows[name]


def test_configured_deployments_are_reported_healthy_before_any_traffic() -> None:
    board = board_at(FakeClock(MONOTONIC_START))
    rows = board.report([("p/a", "p"), ("q/b", "q")])
    assert [(r["deployment"], r["provider"], r["state"]) for r in rows] == [
        ("p/a", "p", "healthy"),
        ("q/b", "q", "healthy"),
    ]
    first = rows[0]
    assert first["requests"] == 0
    assert first["latency_p50_ms"] is None
    assert first["latency_p95_ms"] is None
    assert first["last_error"] is None
    assert first["open_until_s"] is None


def test_latency_percentiles_are_reported_in_milliseconds() -> None:
    clock = FakeClock(MONOTONIC_START)
    board = board_at(clock)
    stats = board.of("p/a", "p").stats
    for i in range(1, 21):  # 10 ms .. 200 ms
        stats.started()
        stats.finished(ok=True, latency=i / 100, now=clock())
    r = row(board, "p/a")
    assert r["latency_p50_ms"] == pytest.approx(100.0)
    assert r["latency_p95_ms"] == pytest.approx(190.0)
    assert r["requests"] == 20
    assert r["error_rate"] == 0.0
    assert r["state"] == "healthy"


def test_errors_make_a_deployment_degraded_until_they_leave_the_window() -> None:
    clock = FakeClock(MONOTONIC_START)
    board = board_at(clock)
    stats = board.of("p/a", "p").stats
    stats.finished(ok=True, latency=0.1, now=clock())
    stats.finished(ok=False, latency=None, now=clock(), error="Overloaded: busy")
    stats.finished(ok=True, latency=0.1, now=clock())

    r = row(board, "p/a")
    assert r["state"] == "degraded"
    assert r["error_rate"] == pytest.approx(0.3333)
    assert r["last_error"] == "Overloaded: busy"
    assert r["total_errors"] == 1

    clock.advance(61.0)  # past the stats window
    r = row(board, "p/a")
    assert r["state"] == "healthy"
    assert r["requests"] == 0
    assert r["total_errors"] == 1  # totals are kept
    assert r["last_error"] == "Overloaded: busy"


def test_an_open_breaker_is_reported_with_the_time_left_then_half_open() -> None:
    clock = FakeClock(MONOTONIC_START)
    board = board_at(clock, BreakerPolicy(failure_threshold=2, cooldown=30.0))
    breaker = board.of("p/a", "p").breaker
    breaker.record_failure(clock())
    assert row(board, "p/a")["state"] == "healthy"
    breaker.record_failure(clock())

    r = row(board, "p/a")
    assert r["state"] == "open"
    assert r["open_until_s"] == pytest.approx(30.0)
    clock.advance(12.5)
    assert row(board, "p/a")["open_until_s"] == pytest.approx(17.5)
    clock.advance(17.5)
    r = row(board, "p/a")
    assert r["state"] == "half_open"
    assert r["open_until_s"] is None


async def test_report_rows_come_from_live_traffic_through_failover() -> None:
    flaky, steady = FakeProvider("flaky", then=UpstreamTimeout("no answer in 30 s")), FakeProvider("steady")
    rig = Rig(group("g", deployment(flaky), deployment(steady)))
    served = await rig.failover.run(rig.plan(), chat_via(request()))
    rig.clock.advance(0.25)
    served.finish(ok=True)

    rows = {r["deployment"]: r for r in rig.board.report()}
    assert rows["flaky/m"]["state"] == "degraded"
    assert rows["flaky/m"]["last_error"] == "UpstreamTimeout: no answer in 30 s"
    assert rows["flaky/m"]["provider"] == "flaky"
    assert rows["steady/m"]["state"] == "healthy"
    assert rows["steady/m"]["latency_p50_ms"] == pytest.approx(250.0)
    assert rows["steady/m"]["in_flight"] == 0


def test_the_board_stays_bounded_and_keeps_deployments_with_requests_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(health, "MAX_TRACKED", 4)
    board = board_at(FakeClock(MONOTONIC_START))
    board.of("busy").stats.started()  # the oldest entry, but a request is in flight on it
    for i in range(20):
        board.of(f"direct/model-{i}")
        assert len(list(board.known())) <= 4
    known = [name for name, _ in board.known()]
    assert "busy" in known
    assert "direct/model-19" in known


def test_the_key_table_stays_bounded_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every plan creates a key entry and a deployment|key slot; direct names come from callers."""
    monkeypatch.setattr(health, "MAX_TRACKED", 8)
    adapter = FakeProvider("p")
    rig = Rig(group("g", deployment(adapter)))
    for i in range(50):  # as caller-chosen `p:model-<i>` direct addressing would produce
        direct = group(f"p:model-{i}", deployment(adapter, f"model-{i}"))
        rig.groups[direct.name] = direct
        assert rig.plan(name=direct.name).next(rig.clock()) is not None
    assert len(list(rig.board.known())) <= 8
    assert len(rig.board.keys_report()) <= 2 * 8


def test_keys_report_shows_resting_keys_by_label_with_time_left() -> None:
    secret = "sk-live-do-not-show-0123456789"
    d = deployment(FakeProvider("p"), keys=(secret,))
    rig = Rig(group("g", d))
    clock = rig.clock
    label = d.keys[0].label
    slot = rig.board.slot(d.name, label)
    slot.cooling_until = clock() + 8.0
    slot.last_error = "RateLimited: slow down"

    assert rig.board.keys_report() == [
        {"key": label, "deployment": d.name, "free_in_s": 8.0, "last_error": "RateLimited: slow down"}
    ]
    assert secret not in repr(rig.board.keys_report())
    assert label.startswith("p:key-")

    clock.advance(8.0)
    assert rig.board.keys_report() == []  # rested: no longer listed


def test_a_key_rejected_everywhere_blocks_all_deployments_a_slot_only_one() -> None:
    board = board_at(FakeClock(0.0))
    board.slot("p/a", "p:key-1").cooling_until = 10.0
    assert not board.usable("p/a", "p:key-1", 5.0)
    assert board.usable("p/b", "p:key-1", 5.0)
    assert board.free_at("p/a", "p:key-1") == 10.0

    board.key("p:key-1").bad_until = 20.0
    assert not board.usable("p/b", "p:key-1", 15.0)
    assert board.free_at("p/a", "p:key-1") == 20.0
    assert board.usable("p/a", "p:key-1", 20.0)


def test_key_state() -> None:
    state = KeyState(bad_until=5.0, cooling_until=9.0)
    assert state.free_at() == 9.0
    assert not state.usable(8.9)
    assert state.usable(9.0)


def test_hedge_budget_allows_one_hedge_per_share_of_requests() -> None:
    budget = HedgeBudget()
    allowed = []
    for _ in range(20):
        budget.earn(0.25)
        allowed.append(budget.spend())
    assert allowed == [False, False, False, True] * 5


def test_hedge_budget_credit_is_capped() -> None:
    budget = HedgeBudget()
    for _ in range(100):
        budget.earn(1.0)
    spent = 0
    while budget.spend():
        spent += 1
    assert spent == int(HEDGE_CREDIT_CAP)


def test_each_group_has_its_own_hedge_budget() -> None:
    board = board_at(FakeClock(MONOTONIC_START))
    assert board.hedge_budget("a") is board.hedge_budget("a")
    board.hedge_budget("a").earn(1.0)
    assert not board.hedge_budget("b").spend()
    assert board.hedge_budget("a").spend()
