"""The Messages API wire format and the provider built on it."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import msgspec

from llmgate.core.errors import GatewayError
from llmgate.core.headroom import Headroom, ParamReport
from llmgate.core.request import ANTHROPIC_MESSAGES, ChatRequest
from llmgate.core.response import ChatResponse
from llmgate.providers.anthropic.errors import parse_error
from llmgate.providers.anthropic.ratelimit import anthropic_headroom
from llmgate.providers.anthropic.request import messages_body, plan
from llmgate.providers.anthropic.response import parse_message
from llmgate.providers.anthropic.stream import AnthropicStream
from llmgate.providers.base import HttpCall, ProviderSpec, Target
from llmgate.providers.http import HttpProvider
from llmgate.providers.transport import Transport

DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"  # https://docs.anthropic.com/en/api/versioning
FALLBACK_MAX_TOKENS = 4096

_encoder = msgspec.json.Encoder()


class AnthropicWire:
    """Anthropic's Messages API (``POST /v1/messages``), spoken from and to the canonical types.

    ``default_max_tokens(model)`` supplies ``max_tokens`` (which Anthropic requires) when the caller gave
    none; the gateway passes the catalogue's output limit. ``structured_outputs`` says the models behind
    this provider accept ``output_config.format`` and strict tools; without it JSON answers go through a
    forced tool, which every tool-capable Claude model supports.
    """

    stream_format = "sse"
    native_protocol: str | None = ANTHROPIC_MESSAGES

    def __init__(
        self,
        *,
        api_version: str = DEFAULT_VERSION,
        default_max_tokens: Callable[[str], int] | None = None,
        structured_outputs: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._api_version = api_version
        self._default_max_tokens = default_max_tokens
        self._structured_outputs = structured_outputs
        self._clock = clock

    def check(self, request: ChatRequest) -> ParamReport:
        """Parameters Anthropic would not get (dropped) or cannot honour (refused); see request.py. A
        request in Anthropic's own protocol is sent as it is: nothing is dropped."""
        if _native(request) is not None:
            return ParamReport()
        decided = plan(request, max_tokens=request.output_limit, structured_outputs=self._structured_outputs)
        return decided.report

    def headroom(self, headers: Mapping[str, str]) -> Headroom | None:
        """``anthropic-ratelimit-*`` and ``retry-after`` readings."""
        return anthropic_headroom(headers)

    def headers(self, target: Target) -> dict[str, str]:
        """Authentication, API version and content type."""
        headers = {"anthropic-version": self._api_version, "content-type": "application/json"}
        if target.api_key:
            headers["x-api-key"] = target.api_key
        return headers

    def max_tokens(self, request: ChatRequest, model: str) -> int:
        """The caller's output limit, else the model's, else ``FALLBACK_MAX_TOKENS``."""
        if request.output_limit is not None:
            return request.output_limit
        if self._default_max_tokens is not None:
            return self._default_max_tokens(model)
        return FALLBACK_MAX_TOKENS

    def chat_call(self, request: ChatRequest, target: Target, *, stream: bool) -> HttpCall:
        """``POST /v1/messages`` for the deployment's upstream model: the caller's own Messages request
        when it came in as one (with the deployment's model), else the translated canonical request."""
        native = _native(request)
        if native is not None:
            sent = {**native, "model": target.model, **({"stream": True} if stream else {})}
            return HttpCall("POST", "/v1/messages", self.headers(target), _encoder.encode(sent))
        body = messages_body(
            request,
            target.model,
            max_tokens=self.max_tokens(request, target.model),
            structured_outputs=self._structured_outputs,
            stream=stream,
        )
        return HttpCall("POST", "/v1/messages", self.headers(target), _encoder.encode(body))

    def parse_chat(self, body: bytes) -> ChatResponse:
        """A complete answer -> the canonical response."""
        return parse_message(body, clock=self._clock)

    def stream_translator(self, request: ChatRequest) -> AnthropicStream:
        """A translator for one stream."""
        return AnthropicStream(clock=self._clock)

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> GatewayError:
        """An error response -> the core error tree."""
        return parse_error(status, headers, body)


def _native(request: ChatRequest) -> dict[str, object] | None:
    native = request.native
    return native.body if native is not None and native.protocol == ANTHROPIC_MESSAGES else None


def build(
    spec: ProviderSpec, transport: Transport, *, default_max_tokens: Callable[[str], int] | None = None
) -> HttpProvider:
    """The Anthropic provider for a spec: base URL, ``api_version`` and extra headers from the config.

    ``spec.options["structured_outputs"]`` (bool) turns on Anthropic's native structured outputs.
    """
    wire = AnthropicWire(
        api_version=spec.api_version or DEFAULT_VERSION,
        default_max_tokens=default_max_tokens,
        structured_outputs=spec.options.get("structured_outputs") is True,
    )
    return HttpProvider(
        name=spec.name,
        wire=wire,
        transport=transport,
        base_url=spec.base_url or DEFAULT_BASE_URL,
        headers=spec.headers,
    )
