"""Azure OpenAI and Azure AI Foundry: OpenAI's wire format at Azure's addresses, proven on the recordings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from llmgate.core.codec import parse_chat_request, parse_embedding_request
from llmgate.providers.azure import DEFAULT_API_VERSION, AzureWire, build, is_foundry
from llmgate.providers.base import ProviderSpec, Target
from llmgate.providers.openai import OpenAIProvider
from llmgate.providers.transport import Transport
from recordings_location import MISSING_REASON, RECORDINGS_DIR

AZURE = sorted(RECORDINGS_DIR.glob("azure*.json")) if RECORDINGS_DIR.is_dir() else []
KEY = "azure-key-0123456789"


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def addressed(path: Path) -> bool:
    return load(path)["request"]["url_path"] is not None


@pytest.mark.skipif(not AZURE, reason=MISSING_REASON)
@pytest.mark.parametrize("path", [p for p in AZURE if addressed(p)], ids=lambda p: p.name)
def test_requests_have_the_recorded_address_and_key_header(path: Path) -> None:
    recording = load(path)
    request = recording["request"]
    wire = AzureWire(
        foundry=is_foundry(f"https://{request['host']}"), api_version=_version(request["url_path"])
    )
    body = request["body"]
    if "embeddings" in request["url_path"]:
        target = Target(body["model"], KEY)
        assert wire.path(target, "embeddings") == request["url_path"]
        parse_embedding_request(body)
        return
    deployment = (
        request["url_path"].split("/")[3] if "/deployments/" in request["url_path"] else body["model"]
    )
    call = wire.chat_call(parse_chat_request(body), Target(deployment, KEY), stream=bool(body.get("stream")))
    assert call.path == request["url_path"]
    assert call.headers["api-key"] == KEY
    assert "Authorization" not in call.headers
    assert json.loads(call.body or b"")["messages"] == body["messages"]


def _version(url_path: str) -> str | None:
    _, _, query = url_path.partition("api-version=")
    return query or None


def test_foundry_detection() -> None:
    assert is_foundry("https://rubyllm.services.ai.azure.com")
    assert is_foundry("https://x.models.ai.azure.com/")
    assert not is_foundry("https://myres.openai.azure.com")


def test_classic_paths_use_the_deployment() -> None:
    wire = AzureWire(foundry=False)
    target = Target("my deployment", KEY)
    assert wire.path(target, "chat/completions") == (
        f"/openai/deployments/my%20deployment/chat/completions?api-version={DEFAULT_API_VERSION}"
    )
    assert wire.path(target, "embeddings").startswith("/openai/deployments/my%20deployment/embeddings?")


async def test_embeddings_go_to_the_azure_path() -> None:
    from aiohttp import web

    seen: list[tuple[str, str | None]] = []

    async def embeddings(request: web.Request) -> web.Response:
        seen.append((request.path_qs, request.headers.get("api-key")))
        return web.json_response({"object": "list", "model": "m", "data": [{"index": 0, "embedding": [0.5]}]})

    app = web.Application()
    app.router.add_post("/openai/deployments/emb/embeddings", embeddings)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    transport = Transport()
    try:
        provider = OpenAIProvider(
            name="az", wire=AzureWire(foundry=False), transport=transport, base_url=f"http://{host}:{port}"
        )
        result = await provider.embed(
            parse_embedding_request({"model": "x", "input": "hi"}), Target("emb", KEY)
        )
    finally:
        await transport.close()
        await runner.cleanup()
    assert result.data[0].embedding == [0.5]
    assert seen == [(f"/openai/deployments/emb/embeddings?api-version={DEFAULT_API_VERSION}", KEY)]


def test_foundry_can_be_declared_for_custom_hosts() -> None:
    transport = Transport()
    proxied = build(
        ProviderSpec("az", "azure", "https://llm.corp.example", options={"foundry": True}), transport
    )
    plain = build(ProviderSpec("az", "azure", "https://llm.corp.example"), transport)
    request = parse_chat_request({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    target = Target("grok", KEY)
    assert proxied.wire.chat_call(request, target, stream=False).path.startswith("/models/chat/completions")
    assert plain.wire.chat_call(request, target, stream=False).path.startswith("/openai/deployments/grok/")
