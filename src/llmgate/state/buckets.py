"""Counter arithmetic shared by the backends that compute in Python (memory, SQLite, PostgreSQL's take_many).

The Redis Lua scripts (``llmgate.state.redis``) implement the same rules; the conformance suite holds
them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from llmgate.state.ports import Taken

Take = tuple[str, float, float, float | None]
"""One entry of ``Counters.take_many``: bucket, amount, limit, ttl."""


@dataclass(frozen=True, slots=True)
class Bucket:
    """A counter's stored value and expiry (unix or clock seconds; ``None`` = never)."""

    value: float = 0.0
    expires_at: float | None = None


EMPTY = Bucket()


def expired(bucket: Bucket, now: float) -> bool:
    """Whether the bucket's expiry has passed at ``now``."""
    return bucket.expires_at is not None and bucket.expires_at <= now


def live(bucket: Bucket | None, now: float) -> Bucket:
    """The bucket as it counts at ``now``: a missing or expired bucket is an empty one."""
    if bucket is None or expired(bucket, now):
        return EMPTY
    return bucket


def added(bucket: Bucket, delta: float, ttl: float | None, now: float) -> Bucket:
    """The live bucket after adding delta (floored at 0); a ttl restarts its expiry, ``None`` keeps it."""
    expires_at = bucket.expires_at if ttl is None else now + ttl
    return Bucket(max(bucket.value + delta, 0.0), expires_at)


def plan_take(bucket: Bucket, amount: float, limit: float, ttl: float | None, now: float) -> Bucket | None:
    """The live bucket after a take, or ``None`` when the take is refused."""
    if bucket.value + amount > limit:
        return None
    return added(bucket, amount, ttl, now)


def plan_take_many(
    takes: Sequence[Take], stored: Mapping[str, Bucket], now: float
) -> tuple[Taken, dict[str, Bucket]]:
    """The outcome of an all-or-nothing take over ``stored`` (live buckets), and the buckets to write.

    Nothing is to be written when any bucket refuses.
    """
    pending: dict[str, Bucket] = {}
    for bucket_name, amount, limit, ttl in takes:
        current = pending[bucket_name] if bucket_name in pending else live(stored.get(bucket_name), now)
        after = plan_take(current, amount, limit, ttl, now)
        if after is None:
            return Taken(False, live(stored.get(bucket_name), now).value), {}
        pending[bucket_name] = after
    if not takes:
        return Taken(True, 0.0), {}
    return Taken(True, pending[takes[0][0]].value), pending
