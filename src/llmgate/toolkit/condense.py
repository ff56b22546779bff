"""Condensing a conversation: the older turns become one summary written by an LLM call.

System (and developer) messages and the latest user turn are kept verbatim; everything between them is
replaced by a system message holding the summary, so the conversation fits ``max_tokens``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from llmgate.core.errors import ContextLengthExceeded
from llmgate.core.request import Message
from llmgate.toolkit.fit import KEPT_ROLES, Count, latest_turn_start, trim_message

SUMMARY_PREFIX = "Summary of the earlier conversation: "
INSTRUCTIONS = (
    "You condense conversations. Summarise the conversation below in the fewest words that keep every "
    "fact, name, number, decision, open question and instruction a continuation would need. Write plain "
    "prose in the conversation's language, in the third person, with no preamble."
)
MIN_SUMMARY_TOKENS = 16

Summarise = Callable[[list[Message], int], Awaitable[str]]
"""Writes the summary: (the summariser's prompt, the most tokens it may write) -> the summary text."""


@dataclass(frozen=True, slots=True)
class Condensed:
    """A condensed conversation (``summary`` is ``None`` when it already fitted)."""

    summary: str | None
    messages: list[Message]
    original_tokens: int
    condensed_tokens: int

    def as_dict(self) -> dict[str, Any]:
        """``POST /api/condense``'s answer."""
        return {
            "summary": self.summary,
            "messages": msgspec.to_builtins(self.messages),
            "original_tokens": self.original_tokens,
            "condensed_tokens": self.condensed_tokens,
        }


def transcript(messages: Sequence[Message]) -> str:
    """The turns as ``role: text`` lines (tool calls and results named as such)."""
    lines = []
    for message in messages:
        text = message.text()
        for call in message.tool_calls or ():
            text += f" [called {call.function.name}({call.function.arguments})]"
        role = "tool result" if message.role in ("tool", "function") else message.role
        lines.append(f"{role}: {text.strip()}")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Brief:
    """What the summariser is asked, and where its answer goes."""

    prompt: list[Message]
    limit: int
    kept: list[Message]
    latest: list[Message]


async def condense(
    messages: Sequence[Message],
    *,
    max_tokens: int,
    count: Count,
    summarise: Summarise,
    max_summary_tokens: int,
    transcript_tokens: int | None = None,
) -> Condensed:
    """``messages`` condensed to at most ``max_tokens`` (counted by ``count``, in a worker thread: exact
    counts of long conversations take milliseconds). ``transcript_tokens`` bounds what the summariser is
    shown (its own window): the oldest lines are cut first. ``ContextLengthExceeded`` when even the kept
    messages plus a short summary cannot fit."""
    original = await asyncio.to_thread(count, messages)
    if original <= max_tokens:
        return Condensed(None, list(messages), original, original)
    brief = await asyncio.to_thread(
        _brief, messages, max_tokens, count, max_summary_tokens, transcript_tokens
    )
    summary = (await summarise(brief.prompt, brief.limit)).strip()
    return await asyncio.to_thread(_assemble, brief, summary, original, max_tokens, count)


def _brief(
    messages: Sequence[Message],
    max_tokens: int,
    count: Count,
    max_summary: int,
    transcript_tokens: int | None,
) -> _Brief:
    start = latest_turn_start(messages)
    head, latest = list(messages[:start]), list(messages[start:])
    kept = [m for m in head if m.role in KEPT_ROLES]
    older = [m for m in head if m.role not in KEPT_ROLES]
    placeholder = Message(role="system", content=SUMMARY_PREFIX)
    room = max_tokens - count([*kept, placeholder, *latest])
    if not older or room < MIN_SUMMARY_TOKENS:
        needed = count([*kept, *latest])
        raise ContextLengthExceeded(
            f"The system messages and the latest user turn take {needed} tokens: no summary can make "
            f"the conversation fit {max_tokens}.",
            param="messages",
        )
    prompt = [Message(role="system", content=INSTRUCTIONS), Message(role="user", content=transcript(older))]
    if transcript_tokens is not None and count(prompt) > transcript_tokens:
        prompt = trim_message(prompt, 1, transcript_tokens, count) or prompt
    return _Brief(prompt, min(max_summary, room), kept, latest)


def _assemble(brief: _Brief, summary: str, original: int, max_tokens: int, count: Count) -> Condensed:
    kept = brief.kept
    condensed = [*kept, Message(role="system", content=SUMMARY_PREFIX + summary), *brief.latest]
    tokens = count(condensed)
    if tokens > max_tokens:  # the summariser wrote past its limit: cut the summary, not the kept turns
        trimmed = trim_message(condensed, len(kept), max_tokens, count)
        if trimmed is None:
            raise ContextLengthExceeded(
                f"The summary could not be made short enough to fit {max_tokens} tokens.", param="messages"
            )
        condensed, tokens = trimmed, count(trimmed)
        summary = condensed[len(kept)].text().removeprefix("… ")
    return Condensed(summary, condensed, original, tokens)
