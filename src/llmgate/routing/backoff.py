"""How long to wait before retrying: exponential backoff with jitter, never shorter than Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff (seconds): ``base * factor ** (attempt - 1)`` capped at ``cap``, then up to
    ``jitter`` of it taken off at random so that retrying clients spread out."""

    base: float = 0.1
    factor: float = 2.0
    cap: float = 5.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("base and cap must be >= 0")
        if self.factor < 1:
            raise ValueError("factor must be >= 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be in [0, 1]")

    def delay(self, attempt: int, *, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt`` (1, 2, 3, ...); at least ``retry_after`` when the
        upstream gave one. Whether a ``retry_after`` is too long to wait is the caller's decision."""
        if attempt < 1:
            raise ValueError(f"attempt counts from 1, got {attempt}")
        try:
            exponential = self.base * self.factor ** (attempt - 1)
        except OverflowError:
            exponential = self.cap
        wait = min(self.cap, exponential) * (1.0 - self.jitter * rng.random())
        if retry_after is not None:
            return max(wait, retry_after)
        return wait
