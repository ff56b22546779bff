"""``BreakerBoard`` conformance: memory and Redis behave the same."""

from __future__ import annotations

from typing import Any

from .conftest import Backend

NOW = 1_700_000_000.0


async def test_trip_keeps_the_later_end(board: Backend[Any]) -> None:
    b = await board.client()
    await b.trip("openai-main", NOW + 30.5)
    await b.trip("openai-main", NOW + 10)
    assert await b.tripped(NOW) == {"openai-main": NOW + 30.5}
    await b.trip("openai-main", NOW + 60.25)
    assert await b.tripped(NOW) == {"openai-main": NOW + 60.25}


async def test_tripped_lists_only_trips_lasting_past_now(board: Backend[Any]) -> None:
    b = await board.client()
    await b.trip("a", NOW + 10)
    await b.trip("b", NOW + 20)
    assert await b.tripped(NOW) == {"a": NOW + 10, "b": NOW + 20}
    assert await b.tripped(NOW + 10) == {"b": NOW + 20}
    assert await b.tripped(NOW + 25) == {}
    await b.trip("a", NOW + 40)  # an ended trip does not hold a later one back
    assert await b.tripped(NOW + 30) == {"a": NOW + 40}


async def test_trips_are_shared_by_clients(board: Backend[Any]) -> None:
    first, second = await board.client(), await board.client()
    await first.trip("azure-eu", NOW + 5)
    assert await second.tripped(NOW) == {"azure-eu": NOW + 5}
