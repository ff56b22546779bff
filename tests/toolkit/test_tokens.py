"""Token counting: exact with the shipped OpenAI encodings, a labelled estimate otherwise."""

from __future__ import annotations

import pytest

from llmgate.core.request import Message
from llmgate.toolkit.encodings import SPECS, load
from llmgate.toolkit.tokens import TokenCounter, encoding_name


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter()


def test_known_token_ids_of_both_encodings() -> None:
    # OpenAI's documented examples (tiktoken README and cookbook).
    assert load("cl100k_base").encode("tiktoken is great!") == [83, 1609, 5963, 374, 2294, 0]
    assert load("o200k_base").encode("tiktoken is great!") == [83, 8251, 2488, 382, 2212, 0]


def test_every_shipped_encoding_matches_its_checksum() -> None:
    for name in SPECS:
        assert load(name).n_vocab > 100_000


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("openai:gpt-4o-mini", "o200k_base"),
        ("azure/gpt-4.1", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("claude-3-5-sonnet-latest", None),
        ("gemini-2.0-flash", None),
        ("mock", None),
    ],
)
def test_encoding_by_model(model: str, encoding: str | None) -> None:
    assert encoding_name(model) == encoding


def test_exact_text_count(counter: TokenCounter) -> None:
    count = counter.text("gpt-4o", "tiktoken is great!")
    assert (count.tokens, count.exact, count.method) == (6, True, "tiktoken:o200k_base")
    assert counter.text("gpt-4", "tiktoken is great!").method == "tiktoken:cl100k_base"


def test_non_openai_models_get_a_labelled_estimate(counter: TokenCounter) -> None:
    count = counter.text("claude-3-5-haiku", "x" * 400)
    assert (count.tokens, count.exact, count.method) == (100, False, "estimate")


def test_message_framing_follows_openai(counter: TokenCounter) -> None:
    messages = [Message(role="system", content="tiktoken is great!"), Message(role="user", content="hi")]
    # 3 per message + role + content, 3 to prime the reply
    encode = load("o200k_base").encode_ordinary
    expected = 3 + sum(3 + len(encode(m.role)) + len(encode(m.text())) for m in messages)
    assert counter.messages("gpt-4o", messages).tokens == expected
    named = [Message(role="user", content="hi", name="ann")]
    assert counter.messages("gpt-4o", named).tokens == 3 + 3 + 1 + 1 + 1 + len(encode("ann"))


def test_encodings_load_once_per_counter() -> None:
    loads: list[str] = []

    def loader(name: str):  # type: ignore[no-untyped-def]
        loads.append(name)
        return load(name)

    counter = TokenCounter(loader=loader)
    counter.text("gpt-4o", "a")
    counter.text("gpt-4o-mini", "b")
    counter.text("claude-3-opus", "c")
    assert loads == ["o200k_base"]
