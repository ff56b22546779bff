"""Plan: which deployment and key a request tries next, and why nothing can serve it."""

from __future__ import annotations

from collections import Counter

import pytest
from fake_providers import FakeProvider, Rig, chat_via, deployment, group, request

from llmgate.core.errors import ContextLengthExceeded, InvalidRequest
from llmgate.core.headroom import Headroom
from llmgate.providers.base import key_label
from llmgate.routing.plan import Option, Plan

LONG = "word " * 400  # about 500 prompt tokens


def option_names(plan: Plan, now: float) -> str | None:
    option = plan.next(now)
    return None if option is None else option.deployment.name


def test_an_open_circuit_deployment_is_skipped_until_its_cooldown_ends() -> None:
    a, b = deployment(FakeProvider("a")), deployment(FakeProvider("b"))
    rig = Rig(group("g", a, b))
    now = rig.clock()
    rig.board.of(a.name).breaker.trip(now + 30)

    assert option_names(rig.plan(), now) == "b/m"
    assert option_names(rig.plan(), now + 29.9) == "b/m"
    # Half-open: one probe goes to a; while it is out, the next request goes elsewhere.
    assert option_names(rig.plan(), now + 30) == "a/m"
    assert option_names(rig.plan(), now + 30) == "b/m"


def test_a_deployment_whose_window_is_smaller_than_the_prompt_is_skipped() -> None:
    small = deployment(FakeProvider("small"), context_length=100)
    large = deployment(FakeProvider("large"), context_length=100_000)
    rig = Rig(group("g", small, large))

    plan = rig.plan(request(LONG))
    assert plan.prompt_tokens > 100
    assert option_names(plan, rig.clock()) == "large/m"
    assert option_names(rig.plan(request("short")), rig.clock()) == "small/m"


def test_context_fallbacks_are_added_only_when_the_prompt_fits_nowhere_in_the_chain() -> None:
    small = deployment(FakeProvider("small"), context_length=100)
    big = deployment(FakeProvider("big"), context_length=100_000)
    rig = Rig(group("g", small, context_fallbacks=("wide",)), group("wide", big))

    short = rig.plan(request("short"))
    assert option_names(short, rig.clock()) == "small/m"
    assert [g.name for g in short.chain] == ["g"]

    long = rig.plan(request(LONG))
    option = long.next(rig.clock())
    assert option is not None
    assert (option.group.name, option.deployment.name) == ("wide", "big/m")
    assert [g.name for g in long.chain] == ["g", "wide"]


def test_dead_end_is_context_length_exceeded_when_every_window_is_too_small() -> None:
    one = deployment(FakeProvider("one"), context_length=50)
    two = deployment(FakeProvider("two"), context_length=100)
    wider = deployment(FakeProvider("wider"), context_length=200)
    rig = Rig(group("g", one, two, context_fallbacks=("w",)), group("w", wider))

    plan = rig.plan(request(LONG))
    assert plan.next(rig.clock()) is None
    error = plan.dead_end()
    assert isinstance(error, ContextLengthExceeded)
    assert error.code == "context_length_exceeded"
    assert error.param == "messages"
    assert "'g'" in error.message


def test_dead_end_is_unsupported_parameter_when_every_deployment_refuses_it() -> None:
    a = deployment(FakeProvider("a", refuses=("logprobs",)))
    b = deployment(FakeProvider("b", refuses=("logprobs",)))
    rig = Rig(group("g", a, b))

    plan = rig.plan(request(logprobs=True))
    assert plan.next(rig.clock()) is None
    error = plan.dead_end()
    assert type(error) is InvalidRequest
    assert error.code == "unsupported_parameter"
    assert error.param == "logprobs"
    assert "logprobs" in error.message


def test_a_deployment_that_refuses_a_parameter_is_skipped_and_dropped_ones_are_reported() -> None:
    refuses = deployment(FakeProvider("refuses", refuses=("logprobs",)))
    drops = deployment(FakeProvider("drops", drops=("seed",)))
    rig = Rig(group("g", refuses, drops))

    plan = rig.plan(request(logprobs=True, seed=7))
    option = plan.next(rig.clock())
    assert option is not None
    assert option.deployment.name == "drops/m"
    assert option.dropped == ("seed",)
    assert plan.dead_end() is None
    assert option_names(rig.plan(request()), rig.clock()) == "refuses/m"


def test_no_dead_end_while_something_could_serve() -> None:
    ok = deployment(FakeProvider("ok"))
    rig = Rig(group("g", ok))
    plan = rig.plan()
    rig.board.of(ok.name).breaker.trip(rig.clock() + 5)
    assert plan.next(rig.clock(), panic=False) is None
    assert plan.dead_end() is None  # open circuit: not the request's fault
    panic = plan.next(rig.clock())  # and not a reason to refuse it (test_panic.py)
    assert panic is not None and panic.panic


def keys_chosen(rig: Rig, draws: int = 60) -> Counter[str]:
    chosen: Counter[str] = Counter()
    for _ in range(draws):
        option = rig.plan().next(rig.clock())
        assert option is not None
        assert option.key.secret is not None
        chosen[option.key.secret] += 1
    return chosen


def two_key_rig() -> tuple[Rig, FakeProvider]:
    adapter = FakeProvider("p")
    rig = Rig(group("g", deployment(adapter, keys=("sk-key-low", "sk-key-roomy"))))
    return rig, adapter


def test_both_keys_are_used_when_nothing_is_known_about_them() -> None:
    rig, _ = two_key_rig()
    assert set(keys_chosen(rig)) == {"sk-key-low", "sk-key-roomy"}


def test_a_key_near_its_upstream_limit_is_avoided() -> None:
    rig, adapter = two_key_rig()
    now = rig.clock()
    adapter.headroom[key_label("sk-key-low")] = Headroom(
        requests_limit=1000, requests_remaining=50, requests_reset=30.0, observed_at=now
    )
    adapter.headroom[key_label("sk-key-roomy")] = Headroom(
        requests_limit=1000, requests_remaining=900, requests_reset=30.0, observed_at=now
    )
    assert keys_chosen(rig) == {"sk-key-roomy": 60}


def test_when_every_key_is_near_its_limit_any_of_them_is_used() -> None:
    rig, adapter = two_key_rig()
    now = rig.clock()
    for secret in ("sk-key-low", "sk-key-roomy"):
        adapter.headroom[key_label(secret)] = Headroom(
            tokens_limit=1000, tokens_remaining=1, tokens_reset=30.0, observed_at=now
        )
    assert set(keys_chosen(rig)) == {"sk-key-low", "sk-key-roomy"}


def test_a_reading_whose_window_has_reset_no_longer_steers_the_choice() -> None:
    rig, adapter = two_key_rig()
    adapter.headroom[key_label("sk-key-low")] = Headroom(
        requests_limit=1000, requests_remaining=0, requests_reset=10.0, observed_at=rig.clock()
    )
    rig.clock.advance(10.5)
    assert set(keys_chosen(rig)) == {"sk-key-low", "sk-key-roomy"}


@pytest.mark.parametrize("rest", ["cooling_until", "bad_until"])
def test_a_resting_key_is_not_used(rest: str) -> None:
    rig, _ = two_key_rig()
    d = rig.groups["g"].deployments[0]
    low = next(key for key in d.keys if key.secret == "sk-key-low")
    setattr(rig.board.slot(d.name, low.label), rest, rig.clock() + 10)
    assert keys_chosen(rig) == {"sk-key-roomy": 60}
    rig.clock.advance(10)
    assert set(keys_chosen(rig)) == {"sk-key-low", "sk-key-roomy"}


def test_a_rate_limited_key_of_one_deployment_still_serves_another() -> None:
    shared = ("sk-shared-key",)
    a = deployment(FakeProvider("p"), "model-a", keys=shared)
    b = deployment(FakeProvider("p"), "model-b", keys=shared)
    rig = Rig(group("g", a, b))
    rig.board.slot(a.name, a.keys[0].label).cooling_until = rig.clock() + 10
    assert option_names(rig.plan(), rig.clock()) == "p/model-b"


def test_keys_all_rejected_earlier_are_tried_again_once_each_as_a_last_resort() -> None:
    rig, _ = two_key_rig()
    d = rig.groups["g"].deployments[0]
    now = rig.clock()
    for key in d.keys:  # a previous request saw 401 on both keys
        rig.board.slot(d.name, key.label).bad_until = now + 300

    plan = rig.plan()
    tried: list[str | None] = []
    while (option := plan.next(now)) is not None:
        tried.append(option.key.secret)
        plan.rejected.add((d.name, option.key.label))  # rejected again
        assert len(tried) <= 2
    assert len(tried) == 2
    assert set(tried) == {"sk-key-low", "sk-key-roomy"}


def test_a_rate_limited_key_is_no_last_resort() -> None:
    rig, _ = two_key_rig()
    d = rig.groups["g"].deployments[0]
    for key in d.keys:
        rig.board.slot(d.name, key.label).cooling_until = rig.clock() + 3
    plan = rig.plan()
    assert plan.next(rig.clock()) is None
    assert plan.soonest_key(rig.clock()) == pytest.approx(rig.clock() + 3)


def test_fallbacks_chain_is_breadth_first_without_duplicates_and_extra_groups_first() -> None:
    d = deployment(FakeProvider("p"))
    rig = Rig(
        group("a", d, fallbacks=("b", "c")),
        group("b", d, fallbacks=("d", "a")),
        group("c", d, fallbacks=("d", "e")),
        group("d", d, fallbacks=("f",)),
        group("e", d),
        group("f", d),
        group("x", d, fallbacks=("y",)),
        group("y", d),
    )
    assert [g.name for g in rig.plan(name="a").chain] == ["a", "b", "c", "d", "e", "f"]
    extra = rig.plan(name="a", extra=("x", "c")).chain
    assert [g.name for g in extra] == ["a", "x", "c", "b", "y", "d", "e", "f"]


def test_failed_deployments_are_skipped_for_the_rest_of_the_round() -> None:
    a, b = deployment(FakeProvider("a")), deployment(FakeProvider("b"))
    rig = Rig(group("g", a, fallbacks=("h",)), group("h", b))
    plan = rig.plan()
    assert option_names(plan, rig.clock()) == "a/m"
    plan.failed.add(a.name)
    option = plan.next(rig.clock())
    assert isinstance(option, Option)
    assert (option.group.name, option.deployment.name) == ("h", "b/m")
    plan.failed.add(b.name)
    assert plan.next(rig.clock()) is None


def test_round_robin_takes_the_group_turn() -> None:
    adapters = [FakeProvider(name) for name in "abc"]
    rig = Rig(group("g", *(deployment(a) for a in adapters), strategy="round_robin"))
    plan = rig.plan()
    picked = []
    for turn in range(6):
        option = plan.next(rig.clock(), {"g": turn})
        assert option is not None
        picked.append(option.deployment.name)
    assert picked == ["a/m", "b/m", "c/m", "a/m", "b/m", "c/m"]


async def test_round_robin_turns_advance_across_requests() -> None:
    adapters = [FakeProvider(name) for name in "abc"]
    rig = Rig(group("g", *(deployment(a) for a in adapters), strategy="round_robin"))
    served = []
    for _ in range(4):
        result = await rig.failover.run(rig.plan(), chat_via(request()))
        result.finish(ok=True)
        served.append(result.option.deployment.name)
    assert served == ["a/m", "b/m", "c/m", "a/m"]


# --- a key's model list bounds every group the plan may reach (issue: fallbacks bypassed it) -----------


def test_fallback_groups_outside_the_callers_models_are_left_out_of_the_chain() -> None:
    a, b, c = (deployment(FakeProvider(n)) for n in ("a", "b", "c"))
    rig = Rig(group("gA", a, fallbacks=("gB",)), group("gB", b, fallbacks=("gC",)), group("gC", c))

    everyone = rig.plan(name="gA")
    assert [g.name for g in everyone.chain] == ["gA", "gB", "gC"]
    # gB is not the caller's: it is skipped, but the walk goes on through it to gC, which is.
    scoped = rig.plan(name="gA", allowed={"gA", "gC"}.__contains__)
    assert [g.name for g in scoped.chain] == ["gA", "gC"]
    only_a = rig.plan(name="gA", extra=("gB",), allowed={"gA"}.__contains__)
    assert [g.name for g in only_a.chain] == ["gA"]


def test_context_fallbacks_outside_the_callers_models_are_never_added() -> None:
    small = deployment(FakeProvider("small"), context_length=100)
    big = deployment(FakeProvider("big"), context_length=100_000)
    huge = deployment(FakeProvider("huge"), context_length=1_000_000)
    rig = Rig(
        group("g", small, context_fallbacks=("wide",)),
        group("wide", big, context_fallbacks=("widest",)),
        group("widest", huge),
    )

    denied = rig.plan(request(LONG), name="g", allowed={"g"}.__contains__)
    assert denied.next(rig.clock()) is None
    assert [g.name for g in denied.chain] == ["g"]
    assert isinstance(denied.dead_end(), ContextLengthExceeded)
    assert [g.name for g in denied.reachable()] == ["g"]

    through = rig.plan(request(LONG), name="g", allowed={"g", "widest"}.__contains__)
    assert [g.name for g in through.reachable()] == ["g", "widest"]
    option = through.next(rig.clock())
    assert option is not None and option.group.name == "widest"


def test_reachable_lists_the_context_fallbacks_a_plan_could_add_later() -> None:
    small = deployment(FakeProvider("small"), context_length=100)
    big = deployment(FakeProvider("big"), context_length=100_000)
    rig = Rig(group("g", small, context_fallbacks=("wide",)), group("wide", big))

    plan = rig.plan(request("short"), name="g")
    assert [g.name for g in plan.chain] == ["g"]
    assert [g.name for g in plan.reachable()] == ["g", "wide"]
