"""The other protocols through the app: the official SDKs (over Starlette's test client), and the same keys,
limits, cache and usage records as ``/v1/chat/completions``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from starlette.testclient import TestClient

from llmgate.config import Settings
from llmgate.gateway import Gateway
from llmgate.server.app import create_app
from recordings_location import MISSING_REASON, RECORDINGS_DIR

MASTER = "sk-test-master-key"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
TIME = {**WEATHER, "name": "get_time", "description": "The time in a city."}
ASK = "Call get_weather and get_time for Paris"


@pytest.fixture
def http() -> Iterator[TestClient]:
    settings = Settings.model_validate(
        {
            "server": {"master_key": MASTER},
            "storage": {"database": "memory"},
            "providers": {"m": {"type": "mock"}},
            "models": [
                {"name": "g", "deployments": [{"provider": "m", "model": "echo"}]},
                {"name": "other", "deployments": [{"provider": "m", "model": "echo"}]},
            ],
            "routing": {"retries": 0},
            "cache": {"mode": "exact"},
        }
    )
    with TestClient(create_app(Gateway(settings))) as client:
        yield client


@pytest.fixture
def oai(http: TestClient) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{http.base_url}/v1", api_key=MASTER, http_client=http, max_retries=0)  # type: ignore[arg-type]


def claude_for(http: TestClient, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=str(http.base_url), api_key=key, http_client=http, max_retries=0)


def new_key(http: TestClient, **fields: Any) -> str:
    response = http.post("/admin/keys", json={"name": "team", **fields}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()["key"]  # type: ignore[no-any-return]


# --- the Responses SDK ------------------------------------------------------------------------------------------


def test_responses_whole_and_streamed_agree(oai: openai.OpenAI) -> None:
    whole = oai.responses.create(model="g", instructions="Be brief.", input="Say hi", max_output_tokens=50)
    assert whole.status == "completed" and whole.output_text == "Say hi"
    assert whole.usage is not None and whole.usage.input_tokens > 0 and whole.usage.output_tokens > 0
    with oai.responses.stream(model="g", input="Say hi", max_output_tokens=50) as events:
        deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
        final = events.get_final_response()
    assert "".join(deltas) == final.output_text == "Say hi"
    assert final.usage is not None and final.usage.output_tokens == whole.usage.output_tokens


def test_responses_function_call_round_trip_with_parallel_calls(oai: openai.OpenAI) -> None:
    asked = oai.responses.create(model="g", input=ASK, tools=[WEATHER, TIME])  # type: ignore[list-item]
    calls = [item for item in asked.output if item.type == "function_call"]
    assert [call.name for call in calls] == ["get_weather", "get_time"]
    assert all("city" in json.loads(call.arguments) for call in calls)
    with oai.responses.stream(model="g", input=ASK, tools=[WEATHER, TIME]) as events:  # type: ignore[list-item]
        streamed = [item for item in events.get_final_response().output if item.type == "function_call"]
    assert [(c.name, c.arguments) for c in streamed] == [(c.name, c.arguments) for c in calls]
    follow: list[Any] = [{"role": "user", "content": ASK}]
    follow += [
        {"type": "function_call", "call_id": c.call_id, "name": c.name, "arguments": c.arguments}
        for c in calls
    ]
    follow += [{"type": "function_call_output", "call_id": c.call_id, "output": "fine"} for c in calls]
    answer = oai.responses.create(model="g", input=follow, tools=[WEATHER, TIME])  # type: ignore[list-item]
    assert answer.output_text.startswith("[simulated] The tool returned: fine")


def test_responses_json_schema_output_is_checked(oai: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    raw = oai.responses.with_raw_response.create(
        model="g",
        input="Name a city",
        text={"format": {"type": "json_schema", "name": "c", "schema": schema}},
    )
    assert raw.headers["x-llmgate-schema"] == "valid"
    assert set(json.loads(raw.parse().output_text)) == {"city"}


def test_responses_stateful_fields_are_refused_clearly(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model="g", input="again", previous_response_id="resp_123")
    assert caught.value.code == "unsupported_parameter" and caught.value.param == "previous_response_id"
    assert "not stored" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="no-such-model", input="x")


# --- the legacy completions SDK ---------------------------------------------------------------------------------


def test_completions_whole_and_streamed(oai: openai.OpenAI) -> None:
    whole = oai.completions.create(model="g", prompt="Say hi", max_tokens=20)
    assert whole.object == "text_completion" and whole.choices[0].text == "Say hi"
    assert whole.choices[0].finish_reason == "stop" and whole.usage is not None
    chunks = list(
        oai.completions.create(
            model="g", prompt="Say hi", max_tokens=20, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(choice.text for chunk in chunks for choice in chunk.choices) == "Say hi"
    assert (
        chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    )


# --- the same policies as chat ----------------------------------------------------------------------------------


def test_a_virtual_keys_limits_and_models_bind_every_protocol(http: TestClient) -> None:
    key = new_key(http, rpm=1, models=["g"])
    claude = claude_for(http, key)
    claude.messages.create(model="g", max_tokens=10, messages=[{"role": "user", "content": "one"}])
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(model="g", max_tokens=10, messages=[{"role": "user", "content": "two"}])
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert limited.value.response.headers["retry-after"]
    other = claude_for(http, new_key(http, models=["g"]))
    with pytest.raises(anthropic.PermissionDeniedError):
        other.messages.create(model="other", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.PermissionDeniedError):  # a count names the model's family: as for a call
        other.messages.count_tokens(model="other", messages=[{"role": "user", "content": "x"}])
    assert (
        other.messages.count_tokens(model="g", messages=[{"role": "user", "content": "x"}]).input_tokens > 0
    )
    responses = openai.OpenAI(base_url=f"{http.base_url}/v1", api_key=key, http_client=http, max_retries=0)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError):
        responses.responses.create(model="g", input="three")


def test_the_cache_serves_a_repeated_messages_call(http: TestClient) -> None:
    body = {"model": "g", "max_tokens": 10, "messages": [{"role": "user", "content": "cache me"}]}
    first = http.post("/v1/messages", json=body, headers=ADMIN)
    second = http.post("/v1/messages", json=body, headers=ADMIN)
    assert (first.headers["x-llmgate-cache"], second.headers["x-llmgate-cache"]) == ("miss", "hit")
    assert second.json()["content"] == first.json()["content"]
    assert second.headers["x-llmgate-cost-usd"] == "0"


def test_every_protocol_leaves_a_usage_record(http: TestClient) -> None:
    claude_for(http, MASTER).messages.create(
        model="g", max_tokens=10, messages=[{"role": "user", "content": "a"}]
    )
    http.post("/v1/responses", json={"model": "g", "input": "b"}, headers=ADMIN)
    http.post("/v1/completions", json={"model": "g", "prompt": "c"}, headers=ADMIN)
    http.post("/v1/messages", json={"model": "g", "messages": []}, headers=ADMIN)  # refused: still recorded
    rows = http.get("/api/usage", params={"group_by": "group"}, headers=ADMIN).json()["rows"]
    by_group = {row["group"]: row for row in rows}
    assert (by_group["g"]["requests"], by_group["g"]["errors"]) == (3, 0)
    assert by_group["g"]["prompt_tokens"] > 0 and by_group["g"]["completion_tokens"] > 0
    assert (by_group["-"]["requests"], by_group["-"]["errors"]) == (1, 1)  # a body that names no call


@pytest.mark.skipif(not RECORDINGS_DIR.is_dir(), reason=MISSING_REASON)
def test_a_recorded_clients_responses_request_is_served(http: TestClient) -> None:
    """ruby_llm's own request to OpenAI's /v1/responses (recorded), sent as it was: it is served."""
    recorded = json.loads((RECORDINGS_DIR / "openai__error_401__ruby_llm.json").read_text())["request"]
    assert recorded["url_path"] == "/v1/responses"
    body = {**recorded["body"], "model": "g"}
    answer = http.post("/v1/responses", json=body, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.json()["object"] == "response" and answer.json()["output"][0]["type"] == "message"
