"""Fitting a conversation into a window: oldest turns first, system and the latest user turn verbatim."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from llmgate.core.errors import ContextLengthExceeded
from llmgate.core.request import FunctionCall, Message, ToolCall
from llmgate.toolkit.fit import fit, older_turns


def words(messages: Sequence[Message]) -> int:
    """A simple, predictable count: one token per word, two per message."""
    return sum(len(m.text().split()) + 2 for m in messages)


def conversation(turns: int, size: int = 10) -> list[Message]:
    found = [Message(role="system", content="be kind")]
    for i in range(turns):
        found.append(Message(role="user", content=" ".join([f"u{i}"] * size)))
        found.append(Message(role="assistant", content=" ".join([f"a{i}"] * size)))
    found.append(Message(role="user", content="the last question"))
    return found


def test_a_conversation_that_fits_is_untouched() -> None:
    messages = conversation(2)
    fitted = fit(messages, 1000, words)
    assert fitted.messages == messages
    assert (fitted.dropped, fitted.trimmed, fitted.tokens) == (0, False, words(messages))


def test_oldest_turns_go_first_and_system_and_last_user_stay() -> None:
    messages = conversation(4)
    budget = words(messages) - 20  # one turn (user + assistant, 24 tokens) has to go
    fitted = fit(messages, budget, words)
    assert fitted.messages[0] == messages[0]
    assert fitted.messages[-1] == messages[-1]
    assert [m.text().split()[0] for m in fitted.messages[1:-1]] == ["u1", "a1", "u2", "a2", "u3", "a3"]
    assert fitted.dropped == 2
    assert fitted.tokens <= budget
    assert fitted.original_tokens == words(messages)


def test_what_remains_starts_with_a_user_turn() -> None:
    messages = conversation(3)
    fitted = fit(messages, words(messages) - 5, words)
    assert fitted.messages[1].role == "user"


def test_a_lone_old_message_is_trimmed_from_its_start_rather_than_dropped() -> None:
    messages = [
        Message(role="system", content="s"),
        Message(role="user", content=" ".join(str(i) for i in range(100))),
        Message(role="assistant", content="ok"),
        Message(role="user", content="now"),
    ]
    # the first turn is user + assistant: dropping it frees 106; trimming 21 words of the user is enough
    budget = words(messages) - 20
    fitted = fit(messages, budget, words)
    assert (fitted.dropped, fitted.trimmed) == (0, True)
    assert fitted.messages[1].text() == "… " + " ".join(str(i) for i in range(21, 100))
    assert [m.text() for m in fitted.messages[2:]] == ["ok", "now"]
    assert fitted.tokens == budget


def test_tool_calls_leave_with_their_results() -> None:
    call = ToolCall(id="c1", function=FunctionCall(name="f", arguments="{}"))
    messages = [
        Message(role="user", content="one two three four five"),
        Message(role="assistant", tool_calls=[call]),
        Message(role="tool", content="result " * 10, tool_call_id="c1"),
        Message(role="assistant", content="done"),
        Message(role="user", content="next"),
    ]
    fitted = fit(messages, 5, words)
    assert [m.role for m in fitted.messages] == ["user"]
    assert fitted.messages[0].text() == "next"
    assert all(m.role != "tool" for m in fitted.messages)


def test_kept_messages_alone_too_long_is_a_clear_400() -> None:
    messages = [Message(role="system", content="x " * 50), Message(role="user", content="y " * 50)]
    with pytest.raises(ContextLengthExceeded, match="latest user turn alone take 104 tokens"):
        fit(messages, 60, words)


def test_older_turns_never_include_system_or_the_latest_turn() -> None:
    messages = conversation(2)
    assert older_turns(messages) == [1, 2, 3, 4]


def test_each_message_is_counted_once() -> None:
    calls: list[int] = []

    def counting(messages: Sequence[Message]) -> int:
        calls.append(len(messages))
        return words(messages)

    messages = conversation(2_000, size=3)
    fitted = fit(messages, 100, counting)
    assert fitted.tokens <= 100
    assert sum(calls) < 3 * len(messages)  # not once per dropped turn over the whole conversation
