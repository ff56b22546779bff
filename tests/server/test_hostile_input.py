"""Sizes a caller controls are bounded (400 naming the field, before any upstream call, for every
provider); caller text never reaches a header raw; zero usage counts are sent as OpenAI sends them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import openai
import pytest
from starlette.testclient import TestClient

from llmgate.config import Settings
from llmgate.gateway import Gateway
from llmgate.providers import mock
from llmgate.server.app import create_app

HELLO = [{"role": "user", "content": "hello"}]
DEAD = "http://127.0.0.1:1"  # nothing listens on port 1: any upstream call would fail loudly
PROVIDERS = ("openai", "azure", "anthropic", "gemini", "cohere", "ollama", "huggingface", "mock")


def _deep(levels: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(levels - 1):
        child: list[Any] = []
        node.append(child)
        node = child
    return root


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    providers = {
        name: {"type": name, "api_keys": ["sk-test"], **({} if name == "mock" else {"base_url": DEAD})}
        for name in PROVIDERS
    }
    settings = Settings.model_validate(
        {
            "storage": {"database": "memory"},
            "providers": providers,
            "models": [
                {"name": f"g-{name}", "deployments": [{"provider": name, "model": "m"}]} for name in PROVIDERS
            ],
        }
    )
    with TestClient(create_app(Gateway(settings)), raise_server_exceptions=False) as test_client:
        yield test_client


def _tool(name: str, parameters: Any = None) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters or {"type": "object"}}}


TOO_BIG: list[tuple[str, dict[str, Any]]] = [
    ("n", {"n": 129}),
    ("max_tokens", {"max_tokens": 10**12}),
    ("max_completion_tokens", {"max_completion_tokens": 2**64 - 1}),
    ("top_logprobs", {"logprobs": True, "top_logprobs": 21}),
    ("stop", {"stop": [f"s{i}" for i in range(17)]}),
    ("tools", {"tools": [_tool(f"t{i}") for i in range(129)]}),
    ("functions", {"functions": [{"name": f"f{i}"} for i in range(129)]}),
    ("logit_bias", {"logit_bias": {str(i): 1.0 for i in range(1025)}}),
    ("metadata", {"metadata": {f"k{i}": "v" for i in range(17)}}),
    ("seed", {"seed": 2**64}),
    ("tools[0].function.parameters", {"tools": [_tool("t", {"type": "object", "x": _deep(70)})]}),
    (
        "response_format.json_schema.schema",
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "s", "schema": {"x": _deep(70)}},
            }
        },
    ),
    ("vendor_field", {"vendor_field": _deep(70)}),
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(("param", "fields"), TOO_BIG, ids=[param for param, _ in TOO_BIG])
def test_every_caller_chosen_size_is_bounded_for_every_provider(
    client: TestClient, provider: str, param: str, fields: dict[str, Any]
) -> None:
    body = {"model": f"g-{provider}", "messages": HELLO, **fields}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)


def test_nesting_inside_a_message_field_llmgate_does_not_model_is_bounded(client: TestClient) -> None:
    body = {"model": "g-mock", "messages": [{"role": "user", "content": "x", "vendor": _deep(70)}]}
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages[0].vendor"
    shallow = {"model": "g-mock", "messages": [{"role": "user", "content": "x", "vendor": _deep(10)}]}
    assert client.post("/v1/chat/completions", json=shallow).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "a", "dimensions": 81_246_463_774}, "dimensions"),
        ({"input": "a", "dimensions": 4_000_000}, "dimensions"),
        ({"input": ["a"] * 2049}, "input"),
        ({"input": ["a"] * 2048, "dimensions": 4096}, "dimensions"),
        ({"input": "a", "vendor_field": _deep(70)}, "vendor_field"),
    ],
)
def test_embedding_sizes_are_bounded(client: TestClient, body: dict[str, Any], param: str) -> None:
    response = client.post("/v1/embeddings", json={"model": "mock:mock-embed", **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert client.get("/health").status_code == 200


def test_a_large_mock_embedding_is_built_off_the_event_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []
    build = mock._vectors

    def spy(texts: list[str], size: int) -> list[list[float]]:
        threads.append(threading.get_ident())
        return build(texts, size)

    monkeypatch.setattr(mock, "_vectors", spy)
    small = client.post("/v1/embeddings", json={"model": "mock:mock-embed", "input": ["a"], "dimensions": 8})
    big = client.post(
        "/v1/embeddings", json={"model": "mock:mock-embed", "input": ["a"] * 64, "dimensions": 2048}
    )
    assert small.status_code == big.status_code == 200
    assert len(big.json()["data"]) == 64 and len(big.json()["data"][0]["embedding"]) == 2048
    loop_thread, worker = threads
    assert loop_thread != worker


def test_a_model_name_with_non_ascii_letters_is_served_with_an_encoded_header(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json={"model": "mock:café中", "messages": HELLO})
    assert response.status_code == 200, response.text
    header = response.headers["x-llmgate-deployment"]
    assert header.isascii() and unquote(header).endswith("café中")
    streamed = client.post(
        "/v1/chat/completions", json={"model": "mock:café中", "stream": True, "messages": HELLO}
    )
    assert streamed.status_code == 200 and streamed.headers["x-llmgate-deployment"] == header


@pytest.mark.parametrize(
    "name", ["mock:a\r\nx-evil: 1", "mock:a\nb", "mock:a\x00b", "mock:\x7f", "mock:a\u0085b"]
)
def test_a_model_name_with_control_characters_is_400(client: TestClient, name: str) -> None:
    for path, extra in (("/v1/chat/completions", {"messages": HELLO}), ("/v1/embeddings", {"input": "a"})):
        response = client.post(path, json={"model": name, **extra})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "model"
        assert "x-evil" not in response.headers


def test_zero_usage_counts_reach_the_sdk_as_zero(client: TestClient) -> None:
    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)
    empty = sdk.chat.completions.create(model="mock:echo", messages=[{"role": "user", "content": ""}])
    assert empty.usage is not None
    assert empty.usage.completion_tokens == 0 and empty.usage.total_tokens == empty.usage.prompt_tokens
    raw = client.post("/v1/embeddings", json={"model": "mock:mock-embed", "input": ""}).json()
    assert {"prompt_tokens", "total_tokens"} <= set(raw["usage"])
    vectors = sdk.embeddings.create(model="mock:mock-embed", input="")
    assert vectors.usage.prompt_tokens == 0 and vectors.usage.total_tokens == 0


ODD_SCHEMAS: list[Any] = [
    {"enum": 5},
    {"properties": 5},
    {"type": "object", "properties": [1], "required": [{"a": 1}]},
    {"definitions": "x", "allOf": 5, "format": {"a": 1}},
    {"$ref": "#/$defs/missing"},
    {"type": ["string", "null"], "anyOf": 3, "items": "x"},
]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("schema", ODD_SCHEMAS, ids=[str(i) for i in range(len(ODD_SCHEMAS))])
def test_a_schema_of_any_shape_never_breaks_an_adapter(
    client: TestClient, provider: str, schema: Any
) -> None:
    for stream in (False, True):
        for fields in (
            {"tools": [_tool("f", schema)], "tool_choice": "required"},
            {"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}},
        ):
            body = {"model": f"g-{provider}", "messages": HELLO, "stream": stream, **fields}
            response = client.post("/v1/chat/completions", json=body)
            assert response.status_code != 500, (provider, fields, response.text)
            if response.status_code >= 400:
                assert set(response.json()["error"]) == {"message", "type", "param", "code"}
