"""The toolkit end to end: condensing, context overflow, validated structured output, prompts and
``llmgate chat --url``, through a real ``llmgate serve`` before a real upstream process."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pexpect
import pytest

from .conftest import GatewayProcess, Upstream, gateway_config

MASTER = "sk-e2e-toolkit-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


@pytest.fixture(scope="module")
def own_upstream(upstream_factory: Callable[[int], list[Upstream]]) -> Upstream:
    return upstream_factory(1)[0]


@pytest.fixture(scope="module")
def served(
    own_upstream: Upstream, config_gateway_factory: Callable[[dict[str, Any]], GatewayProcess]
) -> GatewayProcess:
    config = gateway_config(own_upstream, master_key=MASTER)
    config["storage"] = {"database": "memory"}
    narrow = {"provider": "up", "model": "gpt-test", "context_length": 400}
    config["models"] += [
        {"name": "narrow", "deployments": [narrow]},
        {"name": "narrow-condense", "deployments": [narrow], "context_overflow": "condense"},
        {"name": "narrow-truncate", "deployments": [narrow], "context_overflow": "truncate"},
    ]
    config["condense"] = {"model": "gpt-test", "max_summary_tokens": 64}
    config["prompts"] = {
        "review": {
            "system": "You review {{ language }} code.",
            "template": "Review this:\n{{ code }}",
            "variables": {"code": "string", "language": {"type": "string", "default": "Python"}},
        }
    }
    return config_gateway_factory(config)


@pytest.fixture
def fault(own_upstream: Upstream) -> Iterator[Callable[..., None]]:
    def switch(mode: str, **options: Any) -> None:
        httpx.post(f"{own_upstream.url}/_fault", json={"mode": mode, **options}, timeout=5).raise_for_status()

    yield switch
    switch("ok")


def long_conversation(marker: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "be kind"}]
    for i in range(10):
        messages.append({"role": "user", "content": f"question {i} {marker} " + "word " * 40})
        messages.append({"role": "assistant", "content": f"answer {i} " + "word " * 40})
    messages.append({"role": "user", "content": f"the final question {marker}"})
    return messages


def post(gateway: GatewayProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", json=body, headers=ADMIN, timeout=20)


def test_condense_endpoint(served: GatewayProcess, own_upstream: Upstream, marker: str) -> None:
    messages = long_conversation(marker)
    reply = post(served, "/api/condense", {"messages": messages, "max_tokens": 200, "model": "gpt-test"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert set(body) == {"summary", "messages", "original_tokens", "condensed_tokens"}
    assert body["condensed_tokens"] <= 200 < body["original_tokens"]
    assert body["messages"][0] == messages[0] and body["messages"][-1] == messages[-1]
    summary = body["messages"][1]["content"]
    assert body["summary"] and body["summary"] in summary  # the upstream wrote it (cut to fit: it echoes)
    summariser_call = own_upstream.request_with(f"question 0 {marker}")["body"]
    assert summariser_call["max_tokens"] <= 64
    bad = post(served, "/api/condense", {"messages": messages, "max_tokens": -1})
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "max_tokens")
    assert post(served, "/api/condense", {"messages": "x", "max_tokens": 5}).status_code == 400


def test_a_too_long_conversation_is_condensed_instead_of_refused(served: GatewayProcess, marker: str) -> None:
    messages = long_conversation(marker)
    refused = post(served, "/v1/chat/completions", {"model": "narrow", "messages": messages})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "context_length_exceeded"
    condensed = post(served, "/v1/chat/completions", {"model": "narrow-condense", "messages": messages})
    assert condensed.status_code == 200, condensed.text
    assert condensed.headers["x-llmgate-context"] == "condensed"
    assert condensed.json()["choices"][0]["message"]["content"] == f"Echo: the final question {marker}"
    truncated = post(served, "/v1/chat/completions", {"model": "narrow-truncate", "messages": messages})
    assert truncated.status_code == 200
    assert truncated.headers["x-llmgate-context"] == "truncated"
    streamed = post(
        served, "/v1/chat/completions", {"model": "narrow-condense", "messages": messages, "stream": True}
    )
    assert streamed.status_code == 200
    assert streamed.headers["x-llmgate-context"] == "condensed"
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert marker in streamed.text  # the latest turn, echoed word by word


def test_a_schema_invalid_reply_is_retried_then_fails_clearly(
    served: GatewayProcess, own_upstream: Upstream, fault: Callable[..., None], marker: str
) -> None:
    schema = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": marker}], "response_format": schema}
    fault("offschema", times=1)  # the first reply is off-schema, the retry is good
    recovered = post(served, "/v1/chat/completions", body)
    assert recovered.status_code == 200, recovered.text
    assert recovered.headers["x-llmgate-schema"] == "valid"
    assert len(own_upstream.requests_with(marker)) == 2

    fault("offschema")  # every reply off-schema: one retry (the default), then a clear failure
    body["messages"] = [{"role": "user", "content": f"again {marker}"}]
    failed = post(served, "/v1/chat/completions", body)
    assert failed.status_code == 502
    error = failed.json()["error"]
    assert error["code"] == "schema_violation"
    assert 'after 2 attempts: at $: "age" is a required property' in error["message"] or (
        "after 2 attempts" in error["message"] and "required" in error["message"]
    )
    assert len(own_upstream.requests_with(f"again {marker}")) == 2

    streamed = post(served, "/v1/chat/completions", {**body, "stream": True})
    assert streamed.status_code == 200  # the stream had begun: it ends with an error event, no [DONE]
    assert "data: [DONE]" not in streamed.text
    last = json.loads(streamed.text.strip().split("\n\n")[-1].removeprefix("data: "))
    assert last["error"]["code"] == "schema_violation"

    invalid_schema = {**schema, "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}
    refused = post(served, "/v1/chat/completions", {**body, "response_format": invalid_schema})
    assert (refused.status_code, refused.json()["error"]["param"]) == (
        400,
        "response_format.json_schema.schema",
    )


def test_prompt_templates_over_http(served: GatewayProcess, own_upstream: Upstream, marker: str) -> None:
    listed = httpx.get(f"{served.url}/api/prompts", headers=ADMIN, timeout=5).json()
    assert listed["count"] == 1 and listed["prompts"][0]["name"] == "review"
    assert [v["name"] for v in listed["prompts"][0]["variables"]] == ["code", "language"]
    prompt = {"name": "review", "variables": {"code": f"x = 1  # {marker}"}}
    reply = post(served, "/v1/chat/completions", {"model": "gpt-test", "prompt": prompt})
    assert reply.status_code == 200, reply.text
    sent = own_upstream.request_with(marker)["body"]["messages"]
    assert sent == [
        {"role": "system", "content": "You review Python code."},
        {"role": "user", "content": f"Review this:\nx = 1  # {marker}"},
    ]
    missing = post(served, "/v1/chat/completions", {"model": "gpt-test", "prompt": {"name": "review"}})
    assert (missing.status_code, missing.json()["error"]["param"]) == (400, "prompt.variables.code")
    unknown = post(served, "/v1/chat/completions", {"model": "gpt-test", "prompt": {"name": "nope"}})
    assert unknown.status_code == 404


def test_token_counting_endpoint(served: GatewayProcess) -> None:
    counted = post(served, "/api/tokens", {"model": "gpt-4o", "text": "tiktoken is great!"}).json()
    assert counted == {"tokens": 6, "exact": True, "method": "tiktoken:o200k_base"}
    estimate = post(served, "/api/tokens", {"model": "claude-3-5-haiku", "text": "x" * 40}).json()
    assert estimate == {"tokens": 10, "exact": False, "method": "estimate"}


def test_chat_against_a_running_gateway(served: GatewayProcess, tmp_path: Path, marker: str) -> None:
    llmgate = str(Path(sys.executable).with_name("llmgate"))
    env = {**os.environ, "LLMGATE_DATA_DIR": str(tmp_path), "TERM": "xterm"}
    args = ["chat", "--url", served.base_url, "--key", MASTER, "--no-history", "gpt-test"]
    child = pexpect.spawn(llmgate, args, env=env, encoding="utf-8", timeout=20, dimensions=(40, 200))
    try:
        child.expect("gpt-test>")
        child.sendline(f"hello {marker}")
        child.expect(f"Echo: hello {marker}")
        child.expect("gpt-test>")
        child.sendline("/model nowhere")
        child.expect("nowhere>")
        child.sendline("hi")
        child.expect("error: HTTP 404")
        child.expect("nowhere>")
        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
