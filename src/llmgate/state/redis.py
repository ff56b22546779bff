"""Redis backend (redis.asyncio): counters and breaker trips shared by every replica.

Each counter operation is one Lua script, so it is atomic on the server and costs one round trip. Values
are computed as doubles in Lua and stored with 17 significant digits (an exact round trip), which keeps
the arithmetic identical to the other backends. Expiry is Redis's own (``PX``; ``KEEPTTL`` when the caller
passes no ttl). All keys start with a prefix, so tests and tenants can share a server.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from llmgate.state.ports import StateUnavailable, Taken
from llmgate.state.redis_line import ScriptLine

DEFAULT_PREFIX = "llmgate:"
UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

LUA_HELPERS = """
local function number(key)
    return tonumber(redis.call('GET', key) or '0')
end
local function text(value)
    return string.format('%.17g', value)
end
local function store(key, value, ttl_ms)
    if tonumber(ttl_ms) < 0 then
        redis.call('SET', key, text(value), 'KEEPTTL')
    else
        redis.call('SET', key, text(value), 'PX', ttl_ms)
    end
end
"""
# KEYS[1] bucket; ARGV amount, limit, ttl in ms (-1 keeps the expiry). Returns {allowed, value}.
TAKE = (
    LUA_HELPERS
    + """
local current = number(KEYS[1])
local after = current + tonumber(ARGV[1])
if after > tonumber(ARGV[2]) then
    return {0, text(current)}
end
after = math.max(after, 0)
store(KEYS[1], after, ARGV[3])
return {1, text(after)}
"""
)
# KEYS the buckets in the caller's order; ARGV amount, limit, ttl for each. Returns {allowed, value}.
TAKE_MANY = (
    LUA_HELPERS
    + """
local pending = {}
for i, key in ipairs(KEYS) do
    local after = (pending[key] or number(key)) + tonumber(ARGV[3 * i - 2])
    if after > tonumber(ARGV[3 * i - 1]) then
        return {0, text(number(key))}
    end
    pending[key] = math.max(after, 0)
end
for i, key in ipairs(KEYS) do
    store(key, pending[key], ARGV[3 * i])
end
return {1, text(pending[KEYS[1]])}
"""
)
# KEYS[1] bucket; ARGV delta, ttl in ms. Returns the new value.
ADJUST = (
    LUA_HELPERS
    + """
local after = math.max(number(KEYS[1]) + tonumber(ARGV[1]), 0)
store(KEYS[1], after, ARGV[2])
return text(after)
"""
)


def redis_client(url: str, *, time_limit: float = 2.0) -> redis.asyncio.Redis:
    """A client for ``url`` (no I/O yet): each connect or command bounded by ``time_limit`` s, no retries.

    No retries: a take whose reply was lost may have run, and running it again would count twice.
    """
    return redis.asyncio.Redis.from_url(
        url, socket_timeout=time_limit, socket_connect_timeout=time_limit, retry=Retry(NoBackoff(), 0)
    )


class RedisCounters:
    """``Counters`` in Redis. Open with ``connect``, or wrap a client shared with ``RedisBreakerBoard``."""

    def __init__(
        self, client: redis.asyncio.Redis, *, prefix: str = DEFAULT_PREFIX, time_limit: float = 2.0
    ) -> None:
        self._client = client
        self._prefix = prefix
        # The scripts, every request's call, go down one pipelined connection of their own when the
        # server is plain TCP (redis_line.py: a fraction of redis-py's cost); other commands use redis-py.
        line = ScriptLine.for_client(client, time_limit=time_limit)
        self._take = _script(client, line, TAKE)
        self._take_many = _script(client, line, TAKE_MANY)
        self._adjust = _script(client, line, ADJUST)
        self._line = line

    @classmethod
    async def connect(
        cls, url: str, *, prefix: str = DEFAULT_PREFIX, time_limit: float = 2.0, ping: bool = True
    ) -> RedisCounters:
        """Counters on the server at ``url``, every key starting with ``prefix``.

        With ``ping`` the server must answer now (else ``StateUnavailable``); without, the first call
        connects.
        """
        counters = cls(redis_client(url, time_limit=time_limit), prefix=prefix, time_limit=time_limit)
        if ping:
            await answers(counters._client)
        return counters

    @property
    def client(self) -> redis.asyncio.Redis:
        """The underlying client, to share with a ``RedisBreakerBoard``."""
        return self._client

    async def take(self, bucket: str, amount: float, *, limit: float, ttl: float | None) -> Taken:
        """Add ``amount`` only if value + amount <= limit (one script)."""
        with reachable():
            reply = await self._take(keys=[self._counter(bucket)], args=[amount, limit, _milliseconds(ttl)])
        return _taken(reply)

    async def adjust(self, bucket: str, delta: float, *, ttl: float | None) -> float:
        """Add delta unconditionally, flooring at 0 (one script)."""
        with reachable():
            reply = await self._adjust(keys=[self._counter(bucket)], args=[delta, _milliseconds(ttl)])
        return float(reply)

    async def value(self, bucket: str) -> float:
        """The current value (0 when missing or expired)."""
        with reachable():
            reply = await self._client.get(self._counter(bucket))
        return 0.0 if reply is None else float(reply)

    async def take_many(self, takes: Sequence[tuple[str, float, float, float | None]]) -> Taken:
        """All-or-nothing take over several buckets (one script)."""
        if not takes:
            return Taken(True, 0.0)
        keys = [self._counter(bucket) for bucket, _, _, _ in takes]
        args = [arg for _, amount, limit, ttl in takes for arg in (amount, limit, _milliseconds(ttl))]
        with reachable():
            reply = await self._take_many(keys=keys, args=args)
        return _taken(reply)

    async def next_turn(self, name: str) -> int:
        """0, 1, 2, ... per name, shared by every replica (INCR)."""
        with reachable():
            return int(await self._client.incr(f"{self._prefix}turn:{name}")) - 1

    async def close(self) -> None:
        """Close the client's connections."""
        if self._line is not None:
            await self._line.close()
        await self._client.aclose()

    def _counter(self, bucket: str) -> str:
        return f"{self._prefix}counter:{bucket}"


class RedisBreakerBoard:
    """``BreakerBoard`` in one Redis sorted set: deployment -> end of its trip."""

    def __init__(self, client: redis.asyncio.Redis, *, prefix: str = DEFAULT_PREFIX) -> None:
        self._client = client
        self._key = f"{prefix}breakers"

    @classmethod
    async def connect(
        cls, url: str, *, prefix: str = DEFAULT_PREFIX, time_limit: float = 2.0, ping: bool = True
    ) -> RedisBreakerBoard:
        """A board on the server at ``url`` (see ``RedisCounters.connect``)."""
        board = cls(redis_client(url, time_limit=time_limit), prefix=prefix)
        if ping:
            await answers(board._client)
        return board

    async def trip(self, deployment: str, until: float) -> None:
        """Open a deployment until a time, keeping the later end (ZADD GT)."""
        with reachable():
            await self._client.zadd(self._key, {deployment: until}, gt=True)

    async def tripped(self, now: float) -> dict[str, float]:
        """Deployments still open at ``now``; ended trips are removed."""
        with reachable():
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.zremrangebyscore(self._key, "-inf", now)
                pipe.zrangebyscore(self._key, f"({now!r}", "+inf", withscores=True)
                _, members = await pipe.execute()
        return {member.decode(): float(score) for member, score in members}

    async def close(self) -> None:
        """Close the client's connections."""
        await self._client.aclose()


Script = Callable[..., Awaitable[Any]]
"""A script to call as ``await script(keys=[...], args=[...])``."""


def _script(client: redis.asyncio.Redis, line: ScriptLine | None, source: str) -> Script:
    if line is None:
        return client.register_script(source)
    return functools.partial(line.evalsha, hashlib.sha1(source.encode()).hexdigest(), source)


def _milliseconds(ttl: float | None) -> int:
    """A ttl for the scripts: whole milliseconds, at least 1; -1 keeps the current expiry."""
    return -1 if ttl is None else max(1, round(ttl * 1000))


def _taken(reply: Sequence[Any]) -> Taken:
    allowed, value = reply
    return Taken(allowed == 1, float(value))


@contextmanager
def reachable() -> Iterator[None]:
    """Turn the client's connectivity errors into ``StateUnavailable``."""
    try:
        yield
    except UNREACHABLE as error:
        raise StateUnavailable(f"Redis: {type(error).__name__}: {error}") from error


async def answers(client: redis.asyncio.Redis) -> None:
    """``StateUnavailable`` (and the client closed) unless the server answers a ping now."""
    try:
        with reachable():
            await client.ping()
    except StateUnavailable:
        await client.aclose()
        raise
