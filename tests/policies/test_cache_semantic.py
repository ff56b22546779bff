"""The semantic cache: similar conversations above the threshold, in the same namespace and with the same
other parameters, never an answer that called tools; exact first; and through the gateway."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from clock import FakeClock
from llmgate.config import ConfigError, Settings
from llmgate.core.codec import parse_chat_request
from llmgate.core.controls import CacheControl
from llmgate.core.request import FunctionCall, ToolCall
from llmgate.core.response import ChatResponse, Choice, ResponseMessage
from llmgate.gateway import Gateway
from llmgate.policies.cache import (
    AnswerStore,
    CachedAnswer,
    CacheRule,
    CacheRules,
    ResponseCaching,
    SemanticCache,
)
from llmgate.providers.mock import _vector
from llmgate.state.cache.memory import MemoryCache
from llmgate.state.cache.vectors import MemoryVectors

SEMANTIC = CacheRule(enabled=True, mode="semantic", ttl=60)


def cache(threshold: float = 0.8) -> ResponseCaching:
    clock = FakeClock()
    store = AnswerStore(
        MemoryCache(max_entries=100, max_bytes=10**6, clock=clock), timeout=1, max_entry_bytes=10**6
    )
    rules = CacheRules(SEMANTIC, embedding_model="m:mock-embed", threshold=threshold)
    vectors = MemoryVectors(max_entries=100, clock=clock)
    return ResponseCaching(rules, store, SemanticCache(vectors, store, threshold=threshold))


async def embed(text: str) -> Sequence[float]:
    return _vector(text, 256)


def ask(caching: ResponseCaching, text: str, key_id: str = "key_a", **body: Any) -> Any:
    request = parse_chat_request({"model": "g", "messages": [{"role": "user", "content": text}], **body})
    return caching.lookup_for(request, key_id, CacheControl())


def reply(text: str, *, tools: bool = False) -> CachedAnswer:
    calls = [ToolCall(id="c", function=FunctionCall(name="f", arguments="{}"))] if tools else None
    message = ResponseMessage(content=None if tools else text, tool_calls=calls)
    response = ChatResponse(id="x", created=1, model="m", choices=[Choice(index=0, message=message)])
    return CachedAnswer(
        response=response, cost_usd=0.5, provider="p", deployment="p/m", upstream_model="m", stored_at=1.0
    )


async def store(caching: ResponseCaching, text: str, answer: CachedAnswer, **kwargs: Any) -> None:
    ticket = await caching.open(ask(caching, text, **kwargs), embed)
    assert ticket.state == "miss"
    await caching.done(ticket, answer)


async def test_a_paraphrase_gets_the_stored_answer_and_an_unrelated_text_does_not() -> None:
    caching = cache()
    await store(caching, "What is the capital of France?", reply("Paris"))
    similar = await caching.open(ask(caching, "Tell me the capital of France"), embed)
    assert similar.state == "semantic-hit" and similar.answer is not None
    assert similar.answer.response.text == "Paris"
    unrelated = await caching.open(ask(caching, "How do I bake sourdough bread?"), embed)
    assert unrelated.state == "miss"
    caching.failed(unrelated)
    stats = await caching.stats()
    assert (stats["semantic_hits"], stats["saved_usd"]) == (1, 0.5)


async def test_the_threshold_decides() -> None:
    strict = cache(threshold=0.99)
    await store(strict, "Explain quantum computing in simple terms", reply("qubits"))
    near = await strict.open(ask(strict, "Explain quantum computing simply"), embed)  # cosine ~0.67
    assert near.state == "miss"
    loose = cache(threshold=0.6)
    await store(loose, "Explain quantum computing in simple terms", reply("qubits"))
    assert (await loose.open(ask(loose, "Explain quantum computing simply"), embed)).state == "semantic-hit"


async def test_only_requests_with_identical_other_parameters_match() -> None:
    caching = cache()
    await store(caching, "What is the capital of France?", reply("Paris"), temperature=0)
    for other in (
        {"temperature": 1},
        {"max_tokens": 5},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
    ):
        ticket = await caching.open(ask(caching, "the capital of France", **other), embed)
        assert ticket.state == "miss", other
        caching.failed(ticket)
    assert (
        await caching.open(ask(caching, "the capital of France", temperature=0), embed)
    ).state == "semantic-hit"


async def test_another_namespace_never_matches() -> None:
    caching = cache()
    await store(caching, "What is the capital of France?", reply("Paris"))
    other = await caching.open(ask(caching, "the capital of France", key_id="key_b"), embed)
    assert other.state == "miss"


async def test_answers_with_tool_calls_are_never_served_semantically() -> None:
    caching = cache()
    await store(caching, "What is the weather in Paris?", reply("", tools=True))
    assert (await caching.open(ask(caching, "weather in Paris"), embed)).state == "miss"
    exact = await caching.open(ask(caching, "What is the weather in Paris?"), embed)
    assert exact.state == "hit"  # the exact request still gets its own answer


async def test_no_embedding_means_no_semantic_lookup() -> None:
    caching = cache()
    await store(caching, "What is the capital of France?", reply("Paris"))

    async def none(text: str) -> None:
        return None

    assert (await caching.open(ask(caching, "Tell me the capital of France"), none)).state == "miss"


SETTINGS: dict[str, Any] = {
    "server": {"master_key": "sk-master"},
    "storage": {"database": "memory"},
    "providers": {"m": {"type": "mock"}},
    "cache": {"mode": "semantic", "embedding_model": "m:mock-embed", "threshold": 0.8},
}


async def test_through_the_gateway_the_embedding_is_the_callers_own_call() -> None:
    async with Gateway(Settings.model_validate(SETTINGS)) as gateway:
        _, secret = await gateway.keys.create({"name": "k"})
        caller = await gateway.authenticate(secret)
        request = parse_chat_request(
            {"model": "m:mock", "messages": [{"role": "user", "content": "What is the capital of France?"}]}
        )
        first = await gateway.complete(request, caller=caller)
        paraphrase = parse_chat_request(
            {"model": "m:mock", "messages": [{"role": "user", "content": "capital of France"}]}
        )
        second = await gateway.complete(paraphrase, caller=caller)
        assert (first.info.cache, second.info.cache) == ("miss", "semantic-hit")
        assert second.text == first.text and second.cost == 0
        narrow = await gateway.authenticate(
            (await gateway.keys.create({"name": "n", "models": ["m:mock"]}))[1]
        )
        third = await gateway.complete(paraphrase, caller=narrow)  # may not use the embedding model
        assert third.info.cache == "miss"
        state = gateway.state
        assert state is not None
        await state.recorder.flush()
        records = await state.database.records()
        embeds = [r for r in records if r.model_group == "m:mock-embed"]
        assert len(embeds) == 2 and {r.key_id for r in embeds} == {caller.key_id}
        assert all(r.request_id.endswith("-embed") for r in embeds)


def test_an_embedding_model_the_gateway_does_not_serve_is_a_config_error() -> None:
    settings = Settings.model_validate(
        {**SETTINGS, "cache": {**SETTINGS["cache"], "embedding_model": "nope"}}
    )
    with pytest.raises(ConfigError, match="embedding_model"):
        Gateway(settings)
