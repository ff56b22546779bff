"""The HTTP surface in-process: routes, headers, the error table and bad input (SPEC.md section 13)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from llmgate.config import load_settings
from llmgate.server.app import create_app

CONFIG = """
server: {max_body_bytes: 2000}
providers:
  mock: {type: mock}
  limited: {type: mock, mock: {failure_rate: 1, failure: {kind: status, status: 429, retry_after: 7}}}
  overloaded: {type: mock, mock: {failure_rate: 1, failure: {kind: status, status: 529}}}
  broken: {type: mock, mock: {failure_rate: 1, failure: {kind: status, status: 500, message: boom}}}
  refused: {type: mock, mock: {failure_rate: 1, failure: {kind: status, status: 401, message: 'bad key sk-abcdefghijkl'}}}
  hanging: {type: mock, timeouts: {first_token: 0.01}, mock: {failure_rate: 1, failure: {kind: timeout}}}
  cut: {type: mock, mock: {failure_rate: 1, failure: {kind: stream_cut, after_chunks: 2}}}
  picky: {type: mock, mock: {failure_rate: 1, failure: {kind: status, status: 400, message: 'temperature is wrong'}}}
models:
  - name: chat
    deployments: [{provider: mock, model: echo}]
"""


def client_for(tmp_path: Path, text: str = CONFIG) -> Iterator[TestClient]:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with TestClient(create_app(settings=load_settings(path, environ={}))) as client:
        yield client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    yield from client_for(tmp_path)


def chat(client: TestClient, model: str = "chat", **fields: object):  # type: ignore[no-untyped-def]
    body = {"model": model, "messages": [{"role": "user", "content": "hi there"}], **fields}
    return client.post("/v1/chat/completions", json=body)


def error_of(response) -> dict[str, object]:  # type: ignore[no-untyped-def]
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]  # type: ignore[no-any-return]


def test_health(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["providers"]["mock"] == "mock"


def test_chat_with_headers(client: TestClient) -> None:
    response = chat(client)
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hi there", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] > 0
    assert response.headers["x-llmgate-provider"] == "mock"
    assert response.headers["x-llmgate-deployment"] == "mock/echo"
    assert response.headers["x-llmgate-attempts"] == "1"
    assert float(response.headers["x-llmgate-cost-usd"]) == 0.0
    assert response.headers["x-request-id"].startswith("req_")


def test_callers_request_id_is_kept_when_sane(client: TestClient) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    kept = client.post("/v1/chat/completions", json=body, headers={"x-request-id": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"
    replaced = client.post("/v1/chat/completions", json=body, headers={"x-request-id": "bad id\t<script>"})
    assert replaced.headers["x-request-id"].startswith("req_")


def sse_events(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


def test_stream_is_openai_sse(client: TestClient) -> None:
    response = chat(client, stream=True, stream_options={"include_usage": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "hi there"
    )
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] > 0


def test_stream_without_include_usage_has_no_usage_chunk(client: TestClient) -> None:
    events = sse_events(chat(client, stream=True).text)
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(chunk["choices"] for chunk in chunks)
    assert all("usage" not in chunk for chunk in chunks)


def test_stream_broken_after_first_byte_ends_with_error_and_no_done(client: TestClient) -> None:
    response = chat(client, "cut:x", stream=True)
    assert response.status_code == 200
    events = sse_events(response.text)
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert error["code"] == "stream_interrupted"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "chat"}, "messages"),
        ({"model": "chat", "messages": "hello"}, "messages"),
        (
            {"model": "chat", "messages": [{"role": "user", "content": "x"}], "temperature": "warm"},
            "temperature",
        ),
        ({"model": ["chat"], "messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
def test_bad_fields_are_400_naming_the_param(client: TestClient, body: dict[str, object], param: str) -> None:
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"text"', b"\x00\x01"])
def test_malformed_bodies_are_400(client: TestClient, raw: bytes) -> None:
    response = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["type"] == "invalid_request_error"


def test_oversize_body_is_413(client: TestClient) -> None:
    big = {"model": "chat", "messages": [{"role": "user", "content": "x" * 5000}]}
    assert client.post("/v1/chat/completions", json=big).status_code == 413

    def chunked() -> Iterator[bytes]:  # no content-length: the limit is enforced while reading
        yield b'{"model": "chat", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}]}'

    response = client.post("/v1/chat/completions", content=chunked())
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_a_body_sent_in_pieces_is_read_whole(client: TestClient) -> None:
    def pieces() -> Iterator[bytes]:  # no content-length: several ASGI messages
        yield b'{"model": "chat", "messages": [{"role": "user", '
        yield b'"content": "in pieces"}]}'

    response = client.post("/v1/chat/completions", content=pieces())
    assert response.status_code == 200
    assert "in pieces" in response.json()["choices"][0]["message"]["content"]


def test_unknown_model_is_404_with_close_matches(client: TestClient) -> None:
    response = chat(client, "chta")
    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "model_not_found"
    assert "chat" in str(error["message"])


@pytest.mark.parametrize(
    ("model", "status", "error_type", "retry_after"),
    [
        ("limited:x", 429, "rate_limit_error", "7"),
        ("overloaded:x", 503, "overloaded_error", "1"),
        ("broken:x", 502, "upstream_error", None),
        ("refused:x", 502, "upstream_error", None),
        ("hanging:x", 504, "timeout_error", None),
        ("picky:x", 400, "invalid_request_error", None),
    ],
)
def test_upstream_failures_map_to_the_table(
    client: TestClient, model: str, status: int, error_type: str, retry_after: str | None
) -> None:
    for stream in (False, True):
        response = chat(client, model, stream=stream)
        assert response.status_code == status, (stream, response.text)
        error = error_of(response)
        assert error["type"] == error_type
        assert response.headers.get("retry-after") == retry_after
        assert model.split(":", maxsplit=1)[0] in str(error["message"])
        assert "sk-abcdefghijkl" not in response.text


def test_unknown_route_and_method_are_json_errors(client: TestClient) -> None:
    missing = client.get("/v2/nothing")
    assert missing.status_code == 404
    assert error_of(missing)["type"] == "not_found_error"
    wrong = client.get("/v1/chat/completions")
    assert wrong.status_code == 405
    error_of(wrong)


def test_embeddings(client: TestClient) -> None:
    response = client.post("/v1/embeddings", json={"model": "mock:mock-embed", "input": ["a", "b"]})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert [item["index"] for item in body["data"]] == [0, 1]
    bad = client.post("/v1/embeddings", json={"model": "mock:mock-embed", "input": 5})
    assert bad.status_code == 400
    assert error_of(bad)["param"] == "input"


def test_v1_models(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    ids = [card["id"] for card in body["data"]]
    assert ids[0] == "chat"
    assert client.get("/v1/models/chat").json() == {
        "id": "chat",
        "object": "model",
        "created": 0,
        "owned_by": "llmgate",
    }
    assert client.get("/v1/models/mock:anything").json()["owned_by"] == "mock"
    assert client.get("/v1/models/nope").status_code == 404


def test_api_models_catalogue(client: TestClient) -> None:
    body = client.get("/api/models").json()
    assert body["count"] == len(body["models"]) > 50
    gpt = next(m for m in body["models"] if m["id"] == "gpt-4o-mini")
    assert set(gpt) >= {
        "id",
        "name",
        "provider",
        "supports_chat",
        "capabilities",
        "context_length",
        "max_output_tokens",
        "input_cost",
        "output_cost",
    }
    assert gpt["input_cost"] == pytest.approx(0.00015)  # USD per 1K tokens


def test_api_models_search_and_get(client: TestClient) -> None:
    found = client.get("/api/models/search", params={"q": "claude", "min_context": 100000}).json()
    assert found["count"] > 0
    assert all("claude" in m["id"] for m in found["models"])
    embeddings = client.get(
        "/api/models/search", params={"capability": "embeddings", "supports_chat": "false"}
    )
    assert all(not m["supports_chat"] for m in embeddings.json()["models"])
    bad = client.get("/api/models/search", params={"min_context": "lots"})
    assert bad.status_code == 400
    assert error_of(bad)["param"] == "min_context"
    assert client.get("/api/models/gpt-4o").json()["model"]["provider"] == "openai"
    assert client.get("/api/models/meta-llama/Llama-3.1-8B-Instruct").status_code == 200
    missing = client.get("/api/models/gpt-4")
    assert missing.status_code == 404
    assert "gpt-4o" in str(error_of(missing)["message"])


def test_master_key_guards_the_api(tmp_path: Path) -> None:
    for client in client_for(tmp_path, "server: {master_key: sekrit}\n"):
        body = {"model": "mock:echo", "messages": [{"role": "user", "content": "x"}]}
        missing = client.post("/v1/chat/completions", json=body)
        assert missing.status_code == 401
        assert error_of(missing)["type"] == "authentication_error"
        wrong = client.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer sekrit"})
        assert right.status_code == 200
        assert (
            client.post("/v1/chat/completions", json=body, headers={"x-api-key": "sekrit"}).status_code == 200
        )
        assert client.get("/api/models").status_code == 401
        assert client.get("/health").status_code == 200


def test_the_chat_fast_path_answers_like_every_other_route(client: TestClient) -> None:
    # /v1/chat/completions skips Starlette's middleware: errors must still get the app's handlers.
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/chat/completions", json=body).status_code == 200
    gateway = client.app.state.gateway  # type: ignore[attr-defined]

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    gateway.complete = broken
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 500
    assert error_of(response)["type"] == "api_error"
    assert "a bug" not in response.text  # logged, not shown
