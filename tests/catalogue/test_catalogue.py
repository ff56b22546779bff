"""The shipped catalogue and pricing."""

from __future__ import annotations

import pytest

from llmgate.catalogue import UNKNOWN, Catalogue, ModelInfo, Prices, cost_of
from llmgate.core.usage import make_usage


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


def test_shipped_catalogue_covers_the_major_providers(catalogue: Catalogue) -> None:
    providers = {info.provider for info in catalogue.models}
    assert {
        "openai",
        "anthropic",
        "gemini",
        "cohere",
        "mistral",
        "ollama",
        "huggingface",
        "mock",
    } <= providers
    for info in catalogue.models:
        assert info.context_length > 0, info.id
        if info.mode == "chat":
            assert info.supports_chat
        if info.input_per_mtok is not None:
            assert info.input_per_mtok >= 0


def test_lookup_by_provider_alias_and_namespace(catalogue: Catalogue) -> None:
    gpt = catalogue.lookup("gpt-4o", "openai")
    assert gpt is not None
    assert gpt.context_length == 128000
    assert catalogue.lookup("gpt-4o-2024-08-06", "openai") == gpt  # an alias
    assert catalogue.lookup("openai/gpt-4o") == gpt  # OpenRouter-style namespace
    haiku = catalogue.lookup("claude-3-5-haiku-20241022")
    assert haiku is not None
    assert haiku.provider == "anthropic"


def test_unknown_models_are_not_guessed(catalogue: Catalogue) -> None:
    assert catalogue.lookup("gpt-4o-2099-01-01", "openai") is None
    assert catalogue.lookup("no-such-model") is None


def test_every_mock_model_is_free(catalogue: Catalogue) -> None:
    info = catalogue.lookup("anything-at-all", "mock")
    assert info is not None
    assert cost_of(make_usage(prompt=1000, completion=1000), Prices.of(info)) == 0.0


def test_search_filters(catalogue: Catalogue) -> None:
    found = catalogue.search(query="claude", supports_chat=True, min_context=100_000)
    assert found
    assert all("claude" in m.id and m.context_length >= 100_000 for m in found)
    embeddings = catalogue.search(capability="embeddings", supports_chat=False)
    assert embeddings
    assert all(not m.supports_chat for m in embeddings)
    cheap = catalogue.search(provider="openai", max_input_cost_per_1k=0.0005)
    assert cheap
    assert all(m.input_per_mtok is not None and m.input_per_mtok <= 0.5 for m in cheap)


def test_get_and_closest(catalogue: Catalogue) -> None:
    assert catalogue.get("openai/gpt-4o-mini") is not None
    assert catalogue.get("gpt-4o-mini") is not None
    assert catalogue.get("gpt-4") is None
    assert "gpt-4o" in catalogue.closest("gpt-4")


def info(**prices: float | None) -> ModelInfo:
    return ModelInfo(
        id="m",
        provider="p",
        name="m",
        mode="chat",
        context_length=1000,
        max_output_tokens=100,
        input_per_mtok=prices.get("input", 2.0),
        output_per_mtok=prices.get("output", 8.0),
        cached_input_per_mtok=prices.get("cached"),
        cache_write_per_mtok=prices.get("write"),
        reasoning_per_mtok=prices.get("reasoning"),
    )


def test_cost_plain() -> None:
    cost = cost_of(make_usage(prompt=1_000_000, completion=500_000), Prices.of(info()))
    assert cost == pytest.approx(2.0 + 4.0)


def test_cost_bills_cached_and_cache_writes_at_their_prices() -> None:
    usage = make_usage(prompt=1_000_000, completion=0, cached=400_000, cache_creation=100_000)
    cost = cost_of(usage, Prices.of(info(cached=0.5, write=2.5)))
    assert cost == pytest.approx(0.5 * 2.0 + 0.4 * 0.5 + 0.1 * 2.5)


def test_cached_tokens_without_a_cached_price_cost_the_input_price() -> None:
    usage = make_usage(prompt=1_000_000, completion=0, cached=1_000_000)
    assert cost_of(usage, Prices.of(info())) == pytest.approx(2.0)


def test_reasoning_tokens_priced_separately_when_listed() -> None:
    usage = make_usage(prompt=0, completion=1_000_000, reasoning=250_000)
    assert cost_of(usage, Prices.of(info(reasoning=20.0))) == pytest.approx(0.75 * 8.0 + 0.25 * 20.0)
    assert cost_of(usage, Prices.of(info())) == pytest.approx(8.0)


def test_unknown_price_is_unknown_never_zero() -> None:
    assert cost_of(make_usage(prompt=10, completion=10), UNKNOWN) is None
    assert cost_of(make_usage(prompt=10, completion=10), Prices.of(info(output=None))) is None


def test_override_replaces_only_given_prices() -> None:
    base = Prices.of(info(cached=1.0))
    changed = base.overridden(input=3.0, output=None, cached_input=None)
    assert (changed.input, changed.output, changed.cached_input) == (3.0, 8.0, 1.0)
