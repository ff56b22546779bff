"""Fitting a conversation into a context window: the oldest turns go first.

System (and developer) messages and the latest user turn (the last user message and whatever follows
it) are kept verbatim. Older turns leave whole: a user message with the answers, tool calls and tool
results that follow it, so what remains is a conversation every provider accepts. When dropping the
last turn that has to go would free far more than needed, its first message is trimmed from its start
instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmgate.core.errors import ContextLengthExceeded
from llmgate.core.request import Message

KEPT_ROLES = frozenset({"system", "developer"})
MIN_TRIMMED_TOKENS = 16
"""A trimmed turn keeps at least this many tokens, or it is dropped whole."""

Count = Callable[[Sequence[Message]], int]
"""Prompt tokens of a conversation (framing included)."""


@dataclass(frozen=True, slots=True)
class Fitted:
    """A conversation fitted into a budget."""

    messages: list[Message]
    tokens: int
    original_tokens: int
    dropped: int
    """How many messages were left out."""
    trimmed: bool
    """Whether one message was cut short (from its start)."""


def latest_turn_start(messages: Sequence[Message]) -> int:
    """The index of the last user message (the latest turn runs from there to the end); 0 if none."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].role == "user":
            return index
    return 0


def older_turns(messages: Sequence[Message]) -> list[int]:
    """Indexes of the messages that may be dropped or condensed, oldest first."""
    start = latest_turn_start(messages)
    return [i for i in range(start) if messages[i].role not in KEPT_ROLES]


def fit(messages: Sequence[Message], budget: int, count: Count) -> Fitted:
    """The conversation with its oldest turns dropped (or the last one trimmed) until ``count`` of it is
    at most ``budget`` tokens. ``ContextLengthExceeded`` when the kept messages alone are too long.

    ``count`` is taken to be additive (a fixed part plus one part per message, as OpenAI's framing
    is): each message is counted once, so a conversation of thousands of turns costs one pass."""
    kept = list(messages)
    base = count([])
    sizes = [count([message]) - base for message in kept]
    original = current = base + sum(sizes)
    if original <= budget:
        return Fitted(kept, original, original, 0, False)
    dropped: set[int] = set()
    for index in older_turns(kept):
        if index in dropped:
            continue
        group = _with_answers(kept, index)
        after = current - sum(sizes[i] for i in group)
        if after <= budget:
            room = budget - (current - sizes[index])
            shorter = _trimmed(kept[index], room, base, count)
            kept_of_turn = (count([shorter]) - base if shorter else 0) + current - after - sizes[index]
            if shorter is not None and kept_of_turn >= MIN_TRIMMED_TOKENS:
                trimmed = [shorter if i == index else m for i, m in enumerate(kept) if i not in dropped]
                tokens = current - sizes[index] + count([shorter]) - base
                return Fitted(trimmed, tokens, original, len(dropped), True)
            return Fitted(_without(kept, dropped | group), after, original, len(dropped | group), False)
        dropped |= group
        current = after
    raise ContextLengthExceeded(
        f"The system messages and the latest user turn alone take {current} tokens, more than the "
        f"{budget} available.",
        param="messages",
    )


def _with_answers(messages: list[Message], index: int) -> set[int]:
    """The turn that starts at ``index``: the message and what follows it up to the next user message
    (answers, tool calls and their results), so that what remains still starts with a user turn."""
    group = {index}
    following = index + 1
    start = latest_turn_start(messages)
    while following < start and messages[following].role not in ("user", *KEPT_ROLES):
        group.add(following)
        following += 1
    return group


def _without(messages: list[Message], dropped: set[int]) -> list[Message]:
    return [message for i, message in enumerate(messages) if i not in dropped]


def _trimmed(message: Message, room: int, base: int, count: Count) -> Message | None:
    """The message cut from its start (``…`` marks the cut) to the most of its last words that take at
    most ``room`` tokens; ``None`` for a message that is not plain text, or when not one word fits."""
    if not isinstance(message.content, str) or message.tool_calls:
        return None
    words = message.content.split(" ")
    low, high = 1, len(words)  # keep the last ``n`` words: binary search for the most that fit
    best: Message | None = None
    while low <= high:
        middle = (low + high) // 2
        shorter = Message(role=message.role, content="… " + " ".join(words[-middle:]), name=message.name)
        if count([shorter]) - base <= room:
            best, low = shorter, middle + 1
        else:
            high = middle - 1
    return best


def trim_message(messages: list[Message], index: int, budget: int, count: Count) -> list[Message] | None:
    """``messages`` with the text of the one at ``index`` cut from its start so that the whole fits
    ``budget``; ``None`` when not even its last word fits (``count`` additive, as for ``fit``)."""
    base = count([])
    message = messages[index]
    room = budget - (count(messages) - (count([message]) - base))
    plain = Message(role=message.role, content=message.text(), name=message.name)
    shorter = _trimmed(plain, room, base, count)
    return None if shorter is None else [*messages[:index], shorter, *messages[index + 1 :]]
