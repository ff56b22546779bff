"""Usage accessors and the token estimate."""

from __future__ import annotations

import msgspec

from llmgate.core.codec import parse_chat_request
from llmgate.core.response import ChatChunk
from llmgate.core.tokens import estimate_prompt_tokens, estimate_text_tokens
from llmgate.core.usage import Usage, make_usage


def test_usage_details_from_openai_json() -> None:
    usage = msgspec.json.decode(
        b'{"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150,'
        b' "prompt_tokens_details": {"cached_tokens": 40, "audio_tokens": 0},'
        b' "completion_tokens_details": {"reasoning_tokens": 20}}',
        type=Usage,
    )
    assert (usage.cached_tokens, usage.reasoning_tokens, usage.cache_creation_tokens) == (40, 20, 0)


def test_make_usage_only_adds_details_that_carry_information() -> None:
    plain = make_usage(prompt=3, completion=4)
    assert plain.total_tokens == 7
    assert not plain.prompt_tokens_details
    assert msgspec.to_builtins(plain) == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    rich = make_usage(prompt=10, completion=5, cached=4, reasoning=2, cache_creation=3)
    assert (rich.cached_tokens, rich.reasoning_tokens, rich.cache_creation_tokens) == (4, 2, 3)


def test_zero_counts_are_always_sent_as_openai_sends_them() -> None:
    # An empty reply, or embeddings of "": the SDK reads a missing count as None, not 0.
    for usage in (make_usage(prompt=7, completion=0), make_usage(prompt=0, completion=0), Usage()):
        encoded = msgspec.json.decode(msgspec.json.encode(usage))
        assert set(encoded) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    upstream = b'{"prompt_tokens": 5, "total_tokens": 5, "prompt_tokens_details": null}'
    decoded = msgspec.json.decode(upstream, type=Usage)
    assert (decoded.completion_tokens, decoded.cached_tokens) == (0, 0)
    assert msgspec.json.decode(msgspec.json.encode(decoded))["completion_tokens"] == 0


def test_token_estimate_grows_with_text() -> None:
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("abcd") == 1
    assert estimate_text_tokens("abcde") == 2
    short = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    long = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "hi " * 400}]})
    assert estimate_prompt_tokens(long) > estimate_prompt_tokens(short) + 250


def test_chunk_content_detection() -> None:
    decode = msgspec.json.Decoder(ChatChunk).decode
    role_only = decode(
        b'{"id":"x","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant"}}]}'
    )
    text = decode(b'{"id":"x","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"a"}}]}')
    usage = decode(b'{"id":"x","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1}}')
    assert not role_only.has_content
    assert text.has_content
    assert not usage.has_content
