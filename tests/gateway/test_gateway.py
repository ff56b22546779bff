"""The library API: addressing, groups, prices, streams and the sync form."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmgate import ChatResult, ConfigError, Gateway, ModelNotFound, SyncGateway, load_settings
from llmgate.config import Settings

HELLO = [{"role": "user", "content": "hello"}]


def settings_from(tmp_path: Path, text: str) -> Settings:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return load_settings(path, environ={})


GROUPS = """
providers:
  sim: {type: mock}
  priced: {type: mock}
models:
  - name: fast
    deployments: [{provider: sim, model: echo}]
  - name: billed
    deployments: [{provider: priced, model: custom, price: {input_per_mtok: 1000000, output_per_mtok: 2000000}}]
"""


async def test_zero_config_gateway_serves_the_mock() -> None:
    async with Gateway() as gw:
        reply = await gw.chat("mock:echo", HELLO)
    assert isinstance(reply, ChatResult)
    assert reply.text == "hello"
    assert reply.choices[0].message.content == "hello"
    assert reply.cost == 0.0
    assert reply.info.provider == "mock"
    assert reply.info.deployment == "mock/echo"
    assert reply.info.request_id.startswith("req_")


async def test_provider_slash_model_addressing() -> None:
    async with Gateway() as gw:
        assert (await gw.chat("mock/echo", HELLO)).text == "hello"


async def test_ollama_style_names_split_at_the_first_colon(tmp_path: Path) -> None:
    async with Gateway(settings_from(tmp_path, "providers: {ollama: {type: mock}}\n")) as gw:
        reply = await gw.chat("ollama:llama3.1:8b", HELLO)
    assert reply.info.upstream_model == "llama3.1:8b"


async def test_groups_and_price_overrides(tmp_path: Path) -> None:
    async with Gateway(settings_from(tmp_path, GROUPS)) as gw:
        fast = await gw.chat("fast", HELLO)
        billed = await gw.chat("billed", HELLO)
    assert fast.text == "hello"
    assert fast.info.deployment == "sim/echo"
    assert billed.usage is not None
    expected = billed.usage.prompt_tokens * 1.0 + billed.usage.completion_tokens * 2.0
    assert billed.cost == pytest.approx(expected)


async def test_unknown_price_is_none(tmp_path: Path) -> None:
    text = "providers: {up: {type: openai, base_url: 'http://127.0.0.1:9/v1'}}\n"
    async with Gateway(settings_from(tmp_path, text)) as gw:
        deployment = gw.router.candidates("up:some-private-model")[0]
    assert deployment.prices.input is None


async def test_unknown_model_suggests_close_groups(tmp_path: Path) -> None:
    async with Gateway(settings_from(tmp_path, GROUPS)) as gw:
        with pytest.raises(ModelNotFound) as caught:
            await gw.chat("fsat", HELLO)
    assert "fast" in caught.value.suggestions
    assert caught.value.param == "model"


async def test_catalogue_models_of_configured_providers_resolve_without_prefix(tmp_path: Path) -> None:
    text = "providers: {openai: {type: openai, api_keys: [sk-x], base_url: 'http://127.0.0.1:9/v1'}}\n"
    async with Gateway(settings_from(tmp_path, text)) as gw:
        deployment = gw.router.candidates("gpt-4o-mini")[0]
        assert deployment.account.name == "openai"
        assert deployment.prices.input is not None
        with pytest.raises(ModelNotFound):
            gw.router.candidates("claude-3-5-haiku-latest")  # anthropic is not configured


async def test_a_catalogue_model_of_an_unconfigured_provider_says_how_to_enable_it() -> None:
    async with Gateway.from_config(None, environ={"LLMGATE_DATABASE": "memory"}) as gw:
        for name in ("gpt-4o-mini", "openai:gpt-4o-mini"):
            with pytest.raises(ModelNotFound) as caught:
                gw.router.candidates(name)
            message = caught.value.message
            assert "provider 'openai'" in message and "not configured" in message
            assert "OPENAI_API_KEY" in message
        with pytest.raises(ModelNotFound) as claude:
            gw.router.candidates("claude-3-5-haiku-latest")
        assert "ANTHROPIC_API_KEY" in claude.value.message
        with pytest.raises(ModelNotFound) as unknown:
            gw.router.candidates("no-such-model-anywhere")
        assert "does not exist" in unknown.value.message


async def test_v1_models_lists_the_mock_models_the_readme_uses() -> None:
    async with Gateway.from_config(None, environ={"LLMGATE_DATABASE": "memory"}) as gw:
        ids = {card.id for card in gw.models()}
    assert {"mock:mock", "mock:echo", "mock:mock-embed"} <= ids


async def test_stream_hides_usage_unless_asked() -> None:
    async with Gateway() as gw:
        plain = [chunk async for chunk in gw.stream("mock:echo", HELLO)]
        asked = gw.stream("mock:echo", HELLO, stream_options={"include_usage": True})
        with_usage = [chunk async for chunk in asked]
    assert all(chunk.choices for chunk in plain)
    assert all("usage" not in str(chunk.usage) for chunk in plain)
    assert with_usage[-1].choices == []
    assert with_usage[-1].usage
    assert asked.usage == with_usage[-1].usage
    assert asked.cost == 0.0


async def test_embed() -> None:
    async with Gateway() as gw:
        result = await gw.embed("mock:mock-embed", ["a", "b"])
    assert len(result.vectors) == 2
    assert result.cost == 0.0


async def test_models_lists_groups_then_catalogue_models(tmp_path: Path) -> None:
    async with Gateway(settings_from(tmp_path, GROUPS)) as gw:
        ids = [card.id for card in gw.models()]
        assert ids[:2] == ["fast", "billed"]
        assert gw.model("fast").owned_by == "llmgate"
        with pytest.raises(ModelNotFound):
            gw.model("nothing")


def test_every_provider_type_has_an_adapter(tmp_path: Path) -> None:
    text = """
providers:
  a: {type: anthropic, api_keys: [k]}
  g: {type: gemini, api_keys: [k]}
  c: {type: cohere, api_keys: [k]}
  o: {type: ollama}
  z: {type: azure, api_keys: [k], base_url: 'https://r.openai.azure.com'}
  h: {type: huggingface, api_keys: [k]}
"""
    gw = Gateway(settings_from(tmp_path, text))
    assert {name: account.type for name, account in gw.accounts.items()} == {
        "a": "anthropic",
        "g": "gemini",
        "c": "cohere",
        "o": "ollama",
        "z": "azure",
        "h": "huggingface",
    }


def test_azure_without_base_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="azure needs base_url"):
        Gateway(settings_from(tmp_path, "providers: {z: {type: azure, api_keys: [k]}}\n"))


def test_two_gateways_do_not_share_state(tmp_path: Path) -> None:
    one = Gateway(settings_from(tmp_path, GROUPS))
    two = Gateway()
    assert "fast" in one.router.groups
    assert "fast" not in two.router.groups


def test_sync_gateway() -> None:
    with SyncGateway() as gw:
        assert gw.chat("mock:echo", HELLO).text == "hello"
        pieces = [chunk.choices[0].delta.content or "" for chunk in gw.stream("mock:echo", HELLO)]
        assert "".join(pieces) == "hello"
        assert len(gw.embed("mock:e", "x").vectors) == 1
