"""A chat provider reached over HTTP: one wire format + the shared transport + one base URL.

This is "how to reach the vendor"; the wire format is "how to talk to it". Transport failures are
translated here, once, into the core error tree.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

from llmgate.core.errors import (
    GatewayError,
    StreamInterrupted,
    UnexpectedResponse,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeout,
    redact,
)
from llmgate.core.headroom import Headroom, ParamReport
from llmgate.core.request import ChatRequest
from llmgate.core.response import ChatResponse, LastBatch, StreamItem
from llmgate.providers.base import HttpCall, Target, WireFormat, key_label
from llmgate.providers.client import Answer, ClientError, ConnectTimeout, Origin
from llmgate.providers.sse import NDJSONDecoder, SSEDecoder
from llmgate.providers.transport import Transport

MAX_EVENT = 16 << 20  # bytes of one stream event (or NDJSON line) still incomplete: a server gone wrong


class HttpProvider:
    """A ``ChatProvider`` that sends a wire format's requests through the shared transport."""

    def __init__(
        self,
        *,
        name: str,
        wire: WireFormat,
        transport: Transport,
        base_url: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.wire = wire
        self.base_url = base_url.rstrip("/")
        self._origin = Origin.parse(self.base_url)
        self._transport = transport
        self._headers = dict(headers or {})
        self.headroom: dict[str, Headroom] = {}
        """The latest rate-limit reading per API key (by ``key_label``), for routing."""

    def check(self, request: ChatRequest) -> ParamReport:
        """What this vendor's wire format drops or refuses of the request."""
        return self.wire.check(request)

    def observe(self, headers: Mapping[str, str], target: Target) -> None:
        """Record the rate-limit reading a response carried for the key that made the call."""
        reading = self.wire.headroom(headers)
        if reading is not None:
            self.headroom[key_label(target.api_key)] = replace(reading, observed_at=time.monotonic())

    async def chat(self, request: ChatRequest, target: Target) -> ChatResponse:
        """Send one non-streaming call and parse the answer."""
        call = self.wire.chat_call(request, target, stream=False)
        status, headers, body = await self.send(call, target)
        if status >= 300:
            raise self._error(status, headers, body, target)
        try:
            response = self.wire.parse_chat(body)
        except GatewayError as exc:  # e.g. an error object sent with status 200
            raise self._owned(exc, target) from None
        except Exception as exc:  # a body the wire format cannot read is never a success
            raise UnexpectedResponse(f"{self.name}: unreadable response: {exc}", provider=self.name) from exc
        native = request.native
        if native is not None and native.protocol == self.wire.native_protocol:
            response.native = body
        return response

    async def send(self, call: HttpCall, target: Target) -> tuple[int, Mapping[str, str], bytes]:
        """Send a call and read the whole answer, translating transport failures."""
        timeouts = target.timeouts
        deadline = asyncio.get_running_loop().time() + timeouts.total
        with self._translated(f"no answer within {timeouts.total:g}s"):
            async with await self._request(call, timeouts.connect, deadline) as answer:
                self.observe(answer.headers, target)
                return answer.status, answer.headers, await answer.read(deadline)

    async def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[list[StreamItem]]:
        """Send a streaming call and translate its events as they arrive."""
        call = self.wire.chat_call(request, target, stream=True)
        timeouts = target.timeouts
        now = asyncio.get_running_loop().time()
        deadline = now + timeouts.total
        first = min(timeouts.first_token, timeouts.total)
        with self._translated(f"no response within {first:g}s"):
            answer = await self._request(call, timeouts.connect, now + first)
        async with answer:
            self.observe(answer.headers, target)
            if answer.status >= 300:
                raise self._error(answer.status, answer.headers, await self._rest(answer, deadline), target)
            async for batch in self._events(answer, request, target, deadline):
                yield batch

    async def _request(self, call: HttpCall, connect_timeout: float, deadline: float) -> Answer:
        return await self._transport.client.request(
            self._origin,
            call.method,
            call.path,
            self._merge(call),
            call.body,
            connect_timeout=connect_timeout,
            deadline=deadline,
        )

    async def _rest(self, answer: Answer, deadline: float) -> bytes:
        """The body of an error answer to a stream request, within the call's time limit."""
        with self._translated("the error answer did not end in time"):
            return await answer.read(deadline)

    @contextmanager
    def _translated(self, timed_out: str) -> Iterator[None]:
        """Transport failures as the core's errors: the caller's deadline passing is ``UpstreamTimeout``
        (``timed_out`` says which), the client's failures are connection errors."""
        try:
            yield
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{self.name}: {timed_out}", provider=self.name) from exc
        except ClientError as exc:
            raise self._connection_error(exc) from exc

    async def _events(
        self, answer: Answer, request: ChatRequest, target: Target, deadline: float
    ) -> AsyncIterator[list[StreamItem]]:
        timeouts = target.timeouts
        # The wait for the first chunk is bounded by first_token, between chunks by idle, in all by total.
        wait, waiting_for = timeouts.first_token, "first token"
        translator = self.wire.stream_translator(request)
        sse = SSEDecoder() if self.wire.stream_format == "sse" else None
        ndjson = NDJSONDecoder()
        loop = asyncio.get_running_loop()
        while True:
            until = loop.time() + wait
            try:
                data = await answer.chunk(min(until, deadline))  # per read: never across the yield below
            except TimeoutError as exc:
                if until > deadline:
                    message = f"{self.name}: the stream did not end within {timeouts.total:g}s"
                else:
                    message = f"{self.name}: no {waiting_for} within {wait:g}s"
                raise UpstreamTimeout(message, provider=self.name) from exc
            except ClientError as exc:
                raise StreamInterrupted(f"{self.name}: stream broke: {exc}", provider=self.name) from exc
            batch: list[StreamItem] = []
            try:
                for payload in self._payloads(sse, ndjson, data):
                    batch += translator.feed(payload)
            except GatewayError as exc:  # an error event inside the stream
                raise self._owned(exc, target) from None
            if batch:
                wait, waiting_for = timeouts.idle, "stream event"
                yield LastBatch(batch) if translator.finished else batch
            if not data or translator.finished:
                break
        if not translator.finished:
            raise StreamInterrupted(
                f"{self.name}: the stream ended before it was complete", provider=self.name
            )

    def _payloads(self, sse: SSEDecoder | None, ndjson: NDJSONDecoder, data: bytes) -> list[bytes]:
        """The events (SSE data, or NDJSON lines) a read completed; ``data`` empty at the stream's end."""
        if sse is not None:
            payloads = sse.feed_data(data) if data else [event.data for event in sse.close()]
            pending = sse.pending
        else:
            payloads = ndjson.feed(data) if data else ndjson.close()
            pending = ndjson.pending
        if pending > MAX_EVENT:
            raise StreamInterrupted(
                f"{self.name}: a stream event larger than {MAX_EVENT >> 20} MiB", provider=self.name
            )
        return payloads

    async def close(self) -> None:
        """Nothing to release: connections belong to the shared transport."""

    def _merge(self, call: HttpCall) -> Mapping[str, str]:
        if not self._headers:
            return call.headers
        return {**self._headers, **call.headers}

    def _error(self, status: int, headers: Mapping[str, str], body: bytes, target: Target) -> GatewayError:
        if status < 400:
            return self._owned(
                UpstreamError(
                    f"upstream answered HTTP {status} (a redirect: llmgate does not follow them; "
                    "set base_url to the final address)"
                ),
                target,
            )
        return self._owned(self.wire.parse_error(status, headers, body), target)

    def _owned(self, error: GatewayError, target: Target) -> GatewayError:
        """The error, naming this provider and with its key (and anything key-like) removed."""
        error.message = redact(error.message, target.api_key)
        error.args = (error.message,)
        error.provider = self.name
        return error

    def _connection_error(self, exc: ClientError) -> GatewayError:
        if isinstance(exc, ConnectTimeout):
            return UpstreamTimeout(f"{self.name}: {exc}", provider=self.name)
        return UpstreamConnectionError(
            f"{self.name}: connection failed: {type(exc).__name__}: {exc}", provider=self.name
        )
