"""The built-in mock provider: no network, deterministic replies derived from the request.

It carries demos, tests and load tests: configurable latency, token rate and injected failures
(status with Retry-After, timeout, connection reset, stream cut after N chunks). Every reply says it
is simulated.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from time import time
from typing import Any

import msgspec

from llmgate.core.errors import (
    GatewayError,
    StreamInterrupted,
    UpstreamConnectionError,
    UpstreamTimeout,
)
from llmgate.core.headroom import NOTHING_UNSUPPORTED, ParamReport
from llmgate.core.request import ChatRequest, EmbeddingRequest, FunctionCall, ToolCall
from llmgate.core.response import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    Embedding,
    EmbeddingResponse,
    FunctionCallDelta,
    ModelCard,
    ResponseMessage,
    ToolCallDelta,
)
from llmgate.core.tokens import estimate_prompt_tokens, estimate_text_tokens
from llmgate.core.usage import make_usage
from llmgate.providers.base import Target
from llmgate.providers.openai import error_from_body

FINGERPRINT = "llmgate-mock"
EMBEDDING_DIMENSIONS = 256
OFF_LOOP_VALUES = 65_536  # embedding values above which the mock computes them in a worker thread


@dataclass(frozen=True, slots=True)
class MockFailurePlan:
    """What an injected failure looks like."""

    kind: str = "status"  # status | timeout | reset | stream_cut
    status: int = 500
    retry_after: float | None = None
    message: str = "injected failure"
    after_chunks: int = 3


@dataclass(slots=True)
class MockBehaviour:
    """Latency, pacing and failure injection of one mock provider."""

    latency_ms: float = 0.0
    tokens_per_second: float | None = None
    failure_rate: float = 0.0
    failure: MockFailurePlan = field(default_factory=MockFailurePlan)
    seed: int = 0


class MockProvider:
    """A provider that answers from the request itself."""

    def __init__(self, *, name: str = "mock", behaviour: MockBehaviour | None = None) -> None:
        self.name = name
        self.behaviour = behaviour or MockBehaviour()
        self._random = random.Random(self.behaviour.seed)

    def check(self, request: ChatRequest) -> ParamReport:
        """The mock takes every parameter."""
        return NOTHING_UNSUPPORTED

    async def chat(self, request: ChatRequest, target: Target) -> ChatResponse:
        """A complete simulated reply."""
        failure = self._draw_failure()
        await self._wait_first(target, failure)
        reply = compose_reply(request, target.model)
        if reply.tool_calls:
            message = ResponseMessage(content=None, tool_calls=reply.tool_calls)
        else:
            message = ResponseMessage(content=reply.text)
        if self.behaviour.tokens_per_second:
            await asyncio.sleep(reply.completion_tokens / self.behaviour.tokens_per_second)
        return ChatResponse(
            id=reply.id,
            created=int(time()),
            model=target.model,
            choices=[Choice(index=0, message=message, finish_reason=reply.finish_reason)],
            usage=make_usage(prompt=reply.prompt_tokens, completion=reply.completion_tokens),
            system_fingerprint=FINGERPRINT,
        )

    async def stream(self, request: ChatRequest, target: Target) -> AsyncIterator[list[ChatChunk]]:
        """The same reply, chunk by chunk, paced at ``tokens_per_second`` (unpaced: one batch)."""
        failure = self._draw_failure()
        await self._wait_first(target, failure)
        reply = compose_reply(request, target.model)
        created = int(time())

        def chunk(delta: Delta, finish: str | None = None) -> ChatChunk:
            return ChatChunk(
                id=reply.id,
                created=created,
                model=target.model,
                choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)],
                system_fingerprint=FINGERPRINT,
            )

        pause = 1.0 / self.behaviour.tokens_per_second if self.behaviour.tokens_per_second else 0.0
        batch = [chunk(Delta(role="assistant", content=""))]
        for sent, delta in enumerate(_content_deltas(reply)):
            if failure is not None and failure.kind == "stream_cut" and sent >= failure.after_chunks:
                if batch:
                    yield batch
                raise StreamInterrupted(f"{self.name}: {failure.message} (stream cut)", provider=self.name)
            if pause:
                if batch:
                    yield batch
                    batch = []
                await asyncio.sleep(pause)
            batch.append(chunk(delta))
        batch.append(chunk(Delta(), reply.finish_reason))
        usage = make_usage(prompt=reply.prompt_tokens, completion=reply.completion_tokens)
        yield [
            *batch,
            ChatChunk(
                id=reply.id,
                created=created,
                model=target.model,
                choices=[],
                usage=usage,
                system_fingerprint=FINGERPRINT,
            ),
        ]

    async def embed(self, request: EmbeddingRequest, target: Target) -> EmbeddingResponse:
        """Unit vectors derived from each input's hash: equal texts get equal vectors."""
        failure = self._draw_failure()
        await self._wait_first(target, failure)
        texts = request.texts() or [str(request.input)]
        size = request.dimensions or EMBEDDING_DIMENSIONS
        if len(texts) * size > OFF_LOOP_VALUES:  # a big ask is built in a thread: the loop keeps serving
            vectors = await asyncio.to_thread(_vectors, texts, size)
        else:
            vectors = _vectors(texts, size)
        data = [Embedding(index=i, embedding=vector) for i, vector in enumerate(vectors)]
        tokens = sum(estimate_text_tokens(text) for text in texts)
        return EmbeddingResponse(data=data, model=target.model, usage=make_usage(prompt=tokens, completion=0))

    async def list_models(self, target: Target) -> list[ModelCard]:
        """The mock serves any model name; these are the ones it suggests."""
        return [ModelCard(id=name, owned_by="llmgate-mock") for name in ("mock", "echo", "mock-embed")]

    async def close(self) -> None:
        """Nothing to release."""

    def _draw_failure(self) -> MockFailurePlan | None:
        rate = self.behaviour.failure_rate
        if rate > 0 and self._random.random() < rate:
            return self.behaviour.failure
        return None

    async def _wait_first(self, target: Target, failure: MockFailurePlan | None) -> None:
        if self.behaviour.latency_ms:
            await asyncio.sleep(self.behaviour.latency_ms / 1000)
        if failure is None or failure.kind == "stream_cut":
            return
        if failure.kind == "timeout":
            await asyncio.sleep(target.timeouts.first_token)
            raise UpstreamTimeout(f"{self.name}: {failure.message} (timeout)", provider=self.name)
        if failure.kind == "reset":
            raise UpstreamConnectionError(
                f"{self.name}: {failure.message} (connection reset)", provider=self.name
            )
        raise _status_error(failure, self.name)


def _status_error(failure: MockFailurePlan, provider: str) -> GatewayError:
    error = error_from_body(
        {"error": {"message": failure.message}}, status=failure.status, retry_after=failure.retry_after
    )
    error.provider = provider
    return error


@dataclass(frozen=True, slots=True)
class MockReply:
    """What the mock will say to a request."""

    id: str
    text: str
    tool_calls: list[ToolCall] | None
    prompt_tokens: int
    completion_tokens: int

    @property
    def finish_reason(self) -> str:
        """``tool_calls`` when it calls tools, else ``stop``."""
        return "tool_calls" if self.tool_calls else "stop"


def compose_reply(request: ChatRequest, model: str) -> MockReply:
    """The deterministic reply: the same request always gets the same answer."""
    digest = hashlib.sha256(msgspec.json.encode(request.messages)).hexdigest()
    last_user = next((m.text() for m in reversed(request.messages) if m.role == "user"), "")
    tool_calls = _tool_calls(request, last_user, digest)
    if tool_calls:
        text = ""
    elif request.messages[-1].role == "tool":
        text = f"[simulated] The tool returned: {request.messages[-1].text()[:500]}"
    elif request.response_format is not None and request.response_format.type != "text":
        schema = request.response_format.json_schema.schema if request.response_format.json_schema else None
        text = msgspec.json.encode(_example(schema or {"type": "object"}, last_user)).decode()
    elif model.rsplit(":", maxsplit=1)[-1] == "echo" or model == "echo":
        text = last_user
    else:
        text = f"[simulated reply from llmgate's mock provider, model {model}] You said: {last_user[:1000]}"
    limit = request.output_limit
    completion = estimate_text_tokens(text) + sum(
        estimate_text_tokens(c.function.arguments) for c in tool_calls or ()
    )
    if limit is not None and not tool_calls and completion > limit:
        text = text[: limit * 4]
        completion = limit
    return MockReply(
        f"chatcmpl-mock-{digest[:24]}", text, tool_calls, estimate_prompt_tokens(request), completion
    )


def _tool_calls(request: ChatRequest, last_user: str, digest: str) -> list[ToolCall] | None:
    tools = request.tools or []
    choice = request.tool_choice
    if not tools or choice == "none" or request.messages[-1].role == "tool":
        return None
    if choice is not None and not isinstance(choice, str):
        chosen = [t for t in tools if t.function.name == choice.function.name]
    elif choice == "required":
        chosen = tools[:1]
    else:  # auto: call every tool the user names
        chosen = [t for t in tools if t.function.name in last_user]
    if not chosen:
        return None
    return [
        ToolCall(
            id=f"call_{digest[i * 8 : (i + 1) * 8]}",
            function=FunctionCall(
                name=tool.function.name,
                arguments=msgspec.json.encode(_example(tool.function.parameters or {}, last_user)).decode(),
            ),
        )
        for i, tool in enumerate(chosen)
    ]


def _content_deltas(reply: MockReply) -> list[Delta]:
    if reply.tool_calls:
        deltas: list[Delta] = []
        for index, call in enumerate(reply.tool_calls):
            args = call.function.arguments
            half = len(args) // 2
            deltas.append(
                Delta(
                    tool_calls=[
                        ToolCallDelta(
                            index=index,
                            id=call.id,
                            type="function",
                            function=FunctionCallDelta(name=call.function.name, arguments=args[:half]),
                        )
                    ]
                )
            )
            deltas.append(
                Delta(
                    tool_calls=[ToolCallDelta(index=index, function=FunctionCallDelta(arguments=args[half:]))]
                )
            )
        return deltas
    words = reply.text.split(" ")
    return [Delta(content=word if i == 0 else " " + word) for i, word in enumerate(words) if word or i == 0]


def _example(schema: dict[str, Any], text: str) -> Any:
    """A value that satisfies a (simple) JSON schema: required properties filled by type."""
    kind = schema.get("type")  # the schema is the caller's: any member may have any shape
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    if kind == "object" or "properties" in schema:
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {
            str(name): _example(sub if isinstance(sub, dict) else {}, text) for name, sub in props.items()
        }
    if kind == "array":
        items = schema.get("items")
        return [_example(items, text)] if isinstance(items, dict) else []
    if kind == "integer":
        return len(text)
    if kind == "number":
        return float(len(text))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return text[:100] or "example"


def _vectors(texts: list[str], size: int) -> list[list[float]]:
    return [_vector(text, size) for text in texts]


def _vector(text: str, size: int) -> list[float]:
    """A bag of words, hashed into ``size`` dimensions (the "hashing trick"): texts that share their
    words point the same way, unrelated ones nearly at right angles, so semantic caching can be tried
    and tested offline. A text without words gets a vector of its own from its hash."""
    values = [0.0] * size
    words = [word for word in _WORD.findall(text.lower()) if word not in _STOPWORDS]
    for word in words:
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        values[int.from_bytes(digest[:4], "little") % size] += 1.0 if digest[4] & 1 else -1.0
    if not any(values):
        seed = hashlib.sha256(text.encode()).digest()
        values = [(seed[i % len(seed)] - 127.5) / 127.5 + i * 1e-3 for i in range(size)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "could",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "please",
        "say",
        "tell",
        "that",
        "the",
        "this",
        "to",
        "was",
        "what",
        "whats",
        "which",
        "who",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)
