"""Shared pieces of the policy tests: an injected clock and in-memory counters that follow it."""

from __future__ import annotations

import pytest

from clock import FakeClock
from llmgate.state.memory import MemoryCounters

MINUTE_START = 1_699_999_980.0
"""2023-11-14 22:13:00 UTC, the start of a minute window."""
START = MINUTE_START + 20


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def counters(clock: FakeClock) -> MemoryCounters:
    return MemoryCounters(clock=clock)
