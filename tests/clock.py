"""The one injected clock of the tests: seconds that move only when a test moves them."""

from __future__ import annotations

UNIX_START = 1_700_000_000.0
"""2023-11-14 22:13:20 UTC: unix-like seconds, for code that reads wall-clock windows."""


class FakeClock:
    """Seconds (monotonic or unix-like: the start says which) that move only when told to."""

    def __init__(self, start: float = UNIX_START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
