"""A complete response replayed as the OpenAI stream it would have been (for answers from the cache).

The chunks follow OpenAI's sequence: a role chunk, content (or tool-call) chunks, a finish chunk per
choice, and the usage chunk when the caller asked for it. ``StreamAccumulator`` adds them up to the
same response again.
"""

from __future__ import annotations

import re

from msgspec import UNSET

from llmgate.core.response import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    ToolCallDelta,
)

PIECE = re.compile(r"\S*\s*|\s+", re.DOTALL)  # a word with the space after it
WORDS_PER_CHUNK = 4


def replay_chunks(response: ChatResponse, *, include_usage: bool) -> list[ChatChunk]:
    """The stream of chunks a client would have received for ``response``."""
    fingerprint = response.system_fingerprint

    def chunk(index: int, delta: Delta, finish: str | None = None) -> ChatChunk:
        return ChatChunk(
            id=response.id,
            created=response.created,
            model=response.model,
            choices=[ChunkChoice(index=index, delta=delta, finish_reason=finish)],
            system_fingerprint=fingerprint,
        )

    chunks: list[ChatChunk] = []
    for choice in response.choices:
        chunks.append(chunk(choice.index, Delta(role="assistant", content="")))
        chunks.extend(chunk(choice.index, delta) for delta in _deltas(choice))
        chunks.append(chunk(choice.index, Delta(), choice.finish_reason or "stop"))
    if include_usage and response.usage is not None:
        chunks.append(
            ChatChunk(
                id=response.id,
                created=response.created,
                model=response.model,
                choices=[],
                usage=response.usage,
                system_fingerprint=fingerprint,
            )
        )
    return chunks


def _deltas(choice: Choice) -> list[Delta]:
    message = choice.message
    deltas: list[Delta] = []
    reasoning = message.reasoning_text
    if reasoning:
        if isinstance(message.reasoning, str) and message.reasoning:  # keep the name the upstream used
            deltas.extend(Delta(reasoning=piece) for piece in _pieces(reasoning))
        else:
            deltas.extend(Delta(reasoning_content=piece) for piece in _pieces(reasoning))
    if message.content:
        deltas.extend(Delta(content=piece) for piece in _pieces(message.content))
    if isinstance(message.refusal, str) and message.refusal:
        deltas.append(Delta(refusal=message.refusal))
    calls = message.tool_calls if message.tool_calls is not UNSET else None
    for index, call in enumerate(calls or ()):
        function = FunctionCallDelta(name=call.function.name, arguments=call.function.arguments)
        deltas.append(
            Delta(tool_calls=[ToolCallDelta(index=index, id=call.id, type="function", function=function)])
        )
    legacy = message.function_call
    if legacy is not UNSET and legacy is not None:
        deltas.append(Delta(function_call=FunctionCallDelta(name=legacy.name, arguments=legacy.arguments)))
    return deltas


def _pieces(text: str) -> list[str]:
    words = [word for word in PIECE.findall(text) if word]
    return ["".join(words[i : i + WORDS_PER_CHUNK]) for i in range(0, len(words), WORDS_PER_CHUNK)]
