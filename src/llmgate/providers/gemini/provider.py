"""The Gemini wire format (Google AI ``generateContent``) and the provider that adds embeddings to it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from urllib.parse import quote

import msgspec

from llmgate.core.errors import GatewayError
from llmgate.core.headroom import Headroom, ParamReport
from llmgate.core.request import ChatRequest, EmbeddingRequest
from llmgate.core.response import ChatResponse, EmbeddingResponse
from llmgate.providers.base import HttpCall, ProviderSpec, Target
from llmgate.providers.gemini import embeddings
from llmgate.providers.gemini.errors import parse_error
from llmgate.providers.gemini.request import chat_body, check_request
from llmgate.providers.gemini.response import GeminiStream, parse_response
from llmgate.providers.http import HttpProvider
from llmgate.providers.ratelimit import retry_after_seconds
from llmgate.providers.transport import Transport

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_API_VERSION = "v1beta"

_encoder = msgspec.json.Encoder()


def model_resource(model: str) -> str:
    """``gemini-2.5-flash`` -> ``models/gemini-2.5-flash``; ``models/...``, ``tunedModels/...`` as given."""
    return model if "/" in model else f"models/{model}"


class GeminiWire:
    """Google AI Gemini over REST: ``models/{model}:generateContent``, ``:streamGenerateContent?alt=sse``.

    The adapter always asks for SSE (``alt=sse``); without it Gemini streams one JSON array, which the
    shared decoder does not read.
    """

    stream_format = "sse"
    native_protocol: str | None = None

    def __init__(
        self,
        *,
        extra_headers: Mapping[str, str] | None = None,
        api_version: str = DEFAULT_API_VERSION,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._extra_headers = dict(extra_headers or {})
        self.api_version = api_version
        self._clock = clock

    def check(self, request: ChatRequest) -> ParamReport:
        """What Gemini drops or cannot honour of an OpenAI request (see ``request.check_request``)."""
        return check_request(request)

    def headroom(self, headers: Mapping[str, str]) -> Headroom | None:
        """Gemini sends no rate-limit headers; only a ``Retry-After``, when present, is a reading."""
        retry_after = retry_after_seconds(headers)
        return Headroom(retry_after=retry_after) if retry_after is not None else None

    def headers(self, target: Target) -> dict[str, str]:
        """Content type and the API key in ``x-goog-api-key`` (https://ai.google.dev/api#authentication)."""
        headers = {"Content-Type": "application/json", **self._extra_headers}
        if target.api_key:
            headers["x-goog-api-key"] = target.api_key
        return headers

    def path(self, model: str, method: str) -> str:
        """``/{version}/models/{model}:{method}`` below the API root."""
        return f"/{self.api_version}/{quote(model_resource(model), safe='/')}:{method}"

    def chat_call(self, request: ChatRequest, target: Target, *, stream: bool) -> HttpCall:
        """POST ``:generateContent``, or ``:streamGenerateContent?alt=sse`` for a stream."""
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        body = _encoder.encode(chat_body(request, target.model))
        return HttpCall("POST", self.path(target.model, method), self.headers(target), body)

    def parse_chat(self, body: bytes) -> ChatResponse:
        """A complete answer -> ``ChatResponse`` (an error object in a 200 body raises)."""
        return parse_response(body, created=int(self._clock()), model="gemini")

    def stream_translator(self, request: ChatRequest) -> GeminiStream:
        """A translator for one SSE stream; ``n`` candidates must finish before the stream is complete."""
        return GeminiStream(
            created=int(self._clock()), model=request.model, expected_candidates=request.n or 1
        )

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """Google's error envelope -> the core error tree."""
        return parse_error(status, headers, body)


class GeminiProvider(HttpProvider):
    """Gemini chat and streaming (through ``HttpProvider``) plus embeddings."""

    async def embed(self, request: EmbeddingRequest, target: Target) -> EmbeddingResponse:
        """One text -> ``:embedContent``; a list -> ``:batchEmbedContents``, in slices Gemini accepts."""
        wire = self._gemini_wire
        texts = embeddings.texts_of(request)
        headers = wire.headers(target)
        if isinstance(request.input, str):
            body = _encoder.encode(embeddings.single_body(texts[0], request))
            raw = await self._post(
                HttpCall("POST", wire.path(target.model, "embedContent"), headers, body), target
            )
            vectors = embeddings.parse_single(raw)
        else:
            vectors = []
            path = wire.path(target.model, "batchEmbedContents")
            for start in range(0, len(texts), embeddings.BATCH_LIMIT):
                part = texts[start : start + embeddings.BATCH_LIMIT]
                body = _encoder.encode(embeddings.batch_body(part, request, model_resource(target.model)))
                raw = await self._post(HttpCall("POST", path, headers, body), target)
                vectors += embeddings.parse_batch(raw, len(part))
        return embeddings.to_response(vectors, texts, request, target.model)

    async def _post(self, call: HttpCall, target: Target) -> bytes:
        status, headers, raw = await self.send(call, target)
        if status >= 400:
            raise self._error(status, headers, raw, target)
        return raw

    @property
    def _gemini_wire(self) -> GeminiWire:
        assert isinstance(self.wire, GeminiWire)
        return self.wire


def build(spec: ProviderSpec, transport: Transport) -> GeminiProvider:
    """A Gemini provider from its settings: ``base_url`` is the API root (default Google's),
    ``api_version`` the path version (default ``v1beta``)."""
    wire = GeminiWire(extra_headers=spec.headers, api_version=spec.api_version or DEFAULT_API_VERSION)
    return GeminiProvider(
        name=spec.name, wire=wire, transport=transport, base_url=spec.base_url or DEFAULT_BASE_URL
    )
