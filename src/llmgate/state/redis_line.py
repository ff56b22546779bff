"""One pipelined Redis connection for the counter scripts: the one Redis call on a rate-limited request.

redis-py's asyncio client spends about a fifth of such a request's CPU on that call (its retry wrapper,
the connection pool's checkout and return, command packing, a timeout task): the profile's biggest cost
of the shared-limits row. Here the scripts go down one connection: the commands of one turn of the
event loop go out in one write, and replies are matched to callers in order (Redis answers a
connection's commands in order), read with hiredis. A caller that leaves keeps its place (its reply is
read and dropped); a reply that does not come within the time limit breaks the connection (replies
could no longer be matched), and the next call opens a new one. One timer per connection watches the
oldest reply due (a timeout per call cost more than the rest of the call). Failures are redis-py's own
exception types, so callers treat both paths alike.

Only plain TCP servers are spoken to this way; ``for_client`` gives ``None`` for TLS or Unix sockets,
which stay on redis-py.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
import redis.asyncio
import redis.exceptions

Arg = str | bytes | int | float


def pack(args: Sequence[Arg]) -> bytes:
    """A command in RESP: an array of bulk strings (numbers as redis-py writes them), packed by hiredis."""
    # hiredis's stub types the tuple as having one element; it takes any number.
    packed: bytes = hiredis.pack_command(tuple(args))  # type: ignore[arg-type]
    return packed


class _Connection(asyncio.Protocol):
    """The socket: replies, in order, to the callers waiting for them, each due within ``time_limit``."""

    def __init__(self, time_limit: float) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        """Each caller's future and when its reply is due (loop time), in the order sent."""
        self._reader = hiredis.Reader()
        self.lost = False
        self._outgoing: list[bytes] = []
        self._time_limit = time_limit
        self._watch: asyncio.TimerHandle | None = None

    def send(self, command: bytes) -> asyncio.Future[Any]:
        """Queue a command; the future its reply will complete. The commands of one turn of the event
        loop go out in one write (the requests a read of the server's sockets started reach their limits
        in the same turn)."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        due = loop.time() + self._time_limit
        self.waiting.append((waiter, due))
        if self._watch is None:
            self._watch = loop.call_at(due, self._check)
        if not self._outgoing:
            loop.call_soon(self._write)
        self._outgoing.append(command)
        return waiter

    def _write(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self.transport is not None and not self.lost:
            self.transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    def _check(self) -> None:
        """The oldest reply is overdue: break the connection (replies could no longer be matched)."""
        self._watch = None
        if not self.waiting or self.lost:
            return
        loop = asyncio.get_running_loop()
        due = self.waiting[0][1]
        if due > loop.time():
            self._watch = loop.call_at(due, self._check)
            return
        self._fail(redis.exceptions.TimeoutError(f"Redis did not answer within {self._time_limit:g} s"))
        self.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            waiter = self.waiting.popleft()[0]
            if waiter.done():  # its caller left: the reply keeps the order, and is dropped
                continue
            if isinstance(reply, hiredis.ReplyError):
                waiter.set_exception(_reply_error(str(reply)))
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(redis.exceptions.ConnectionError("the Redis connection was lost"))

    def _fail(self, error: redis.exceptions.RedisError) -> None:
        self.lost = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        while self.waiting:
            waiter = self.waiting.popleft()[0]
            if not waiter.done():
                waiter.set_exception(error)

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


class ScriptLine:
    """``EVALSHA`` over one pipelined connection, each call answered within ``time_limit`` seconds."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        time_limit: float = 2.0,
    ) -> None:
        self._address = (host, port)
        self._login = [arg for arg in (username, password) if arg is not None]
        self._db = db
        self._time_limit = time_limit
        self._connection: _Connection | None = None
        self._opening: asyncio.Lock | None = None

    @classmethod
    def for_client(cls, client: redis.asyncio.Redis, *, time_limit: float) -> ScriptLine | None:
        """A line to the server a redis-py client speaks to, or ``None`` when it is not plain TCP."""
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        if pool.connection_class is not redis.asyncio.Connection or "host" not in kwargs:
            return None
        return cls(
            kwargs["host"],
            int(kwargs.get("port", 6379)),
            db=int(kwargs.get("db", 0) or 0),
            username=kwargs.get("username"),
            password=kwargs.get("password"),
            time_limit=time_limit,
        )

    async def evalsha(self, sha: str, source: str, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run a script by its SHA1, loading ``source`` first if the server does not know it."""
        command: list[Arg] = ["EVALSHA", sha, len(keys), *keys, *args]
        try:
            return await self.call(command)
        except redis.exceptions.NoScriptError:
            await self.call(["SCRIPT", "LOAD", source])
            return await self.call(command)

    async def call(self, command: Sequence[Arg]) -> Any:
        """One command's reply."""
        connection = self._connection
        if connection is None or connection.lost:
            connection = await self._connected()
        return await connection.send(pack(command))

    async def close(self) -> None:
        """Close the connection (a later call opens another)."""
        if self._connection is not None:
            self._break(self._connection)

    async def _connected(self) -> _Connection:
        """A new connection for everyone waiting."""
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._connection is not None and not self._connection.lost:
                return self._connection
            self._connection = await self._open()
            return self._connection

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._time_limit):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self._time_limit), *self._address
                )
        except (OSError, TimeoutError) as error:
            raise redis.exceptions.ConnectionError(
                f"Redis at {self._address[0]}:{self._address[1]}: {error}"
            ) from None
        # Log in and pick the database before anyone else's command can be written on the connection.
        setup: list[list[Arg]] = [["AUTH", *self._login]] if self._login else []
        if self._db:
            setup.append(["SELECT", self._db])
        for waiter in [connection.send(pack(command)) for command in setup]:
            await waiter
        return connection

    def _break(self, connection: _Connection) -> None:
        connection.close()
        if self._connection is connection:
            self._connection = None


def _reply_error(message: str) -> redis.exceptions.RedisError:
    if message.startswith("NOSCRIPT"):
        return redis.exceptions.NoScriptError(message)
    return redis.exceptions.ResponseError(message)
