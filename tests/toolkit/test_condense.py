"""Condensing: older turns become one summary; system messages and the latest user turn stay verbatim."""

from __future__ import annotations

import pytest
from tests.toolkit.test_fit import conversation, words

from llmgate.core.errors import ContextLengthExceeded
from llmgate.core.request import Message
from llmgate.toolkit.condense import INSTRUCTIONS, SUMMARY_PREFIX, condense


class Summariser:
    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.calls: list[tuple[list[Message], int]] = []

    async def __call__(self, prompt: list[Message], limit: int) -> str:
        self.calls.append((prompt, limit))
        return self.reply


async def test_older_turns_become_one_summary() -> None:
    messages = conversation(5)
    summariser = Summariser("they talked about u and a")
    condensed = await condense(
        messages, max_tokens=40, count=words, summarise=summariser, max_summary_tokens=500
    )
    assert condensed.summary == "they talked about u and a"
    assert [m.role for m in condensed.messages] == ["system", "system", "user"]
    assert condensed.messages[0] == messages[0]
    assert condensed.messages[1].text() == SUMMARY_PREFIX + "they talked about u and a"
    assert condensed.messages[-1] == messages[-1]
    assert condensed.original_tokens == words(messages)
    assert condensed.condensed_tokens == words(condensed.messages) <= 40
    ((prompt, limit),) = summariser.calls
    assert prompt[0].text() == INSTRUCTIONS
    assert "user: u0" in prompt[1].text() and "assistant: a4" in prompt[1].text()
    assert "the last question" not in prompt[1].text()  # the latest turn is kept, not summarised
    assert limit == 40 - words([messages[0], Message(role="system", content=SUMMARY_PREFIX), messages[-1]])


async def test_a_conversation_that_fits_is_not_summarised() -> None:
    summariser = Summariser("unused")
    messages = conversation(1)
    condensed = await condense(
        messages, max_tokens=1000, count=words, summarise=summariser, max_summary_tokens=50
    )
    assert (condensed.summary, condensed.messages, summariser.calls) == (None, messages, [])
    assert condensed.original_tokens == condensed.condensed_tokens


async def test_a_summary_past_its_limit_is_cut_to_fit() -> None:
    summariser = Summariser(" ".join(["long"] * 200))
    condensed = await condense(
        conversation(5), max_tokens=60, count=words, summarise=summariser, max_summary_tokens=500
    )
    assert condensed.condensed_tokens <= 60
    assert condensed.messages[-1].text() == "the last question"


async def test_nothing_to_summarise_is_a_clear_400() -> None:
    messages = [Message(role="system", content="x " * 30), Message(role="user", content="y " * 30)]
    with pytest.raises(ContextLengthExceeded, match="no summary can make the conversation fit 20"):
        await condense(messages, max_tokens=20, count=words, summarise=Summariser("s"), max_summary_tokens=50)


async def test_the_transcript_is_cut_to_the_summariser_window() -> None:
    summariser = Summariser("short")
    await condense(
        conversation(20),
        max_tokens=40,
        count=words,
        summarise=summariser,
        max_summary_tokens=30,
        transcript_tokens=100,
    )
    ((prompt, _),) = summariser.calls
    assert words(prompt) <= 100
    assert "a19" in prompt[1].text() and "u0 " not in prompt[1].text()  # the newest lines are kept
