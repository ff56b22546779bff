"""Every inbound protocol over every backend family, on real recorded traffic (the conformance tests).

The same replay upstreams and ``llmgate serve`` as the provider suite (``test_providers_e2e``); this time
the official ``anthropic`` SDK (``/v1/messages``) and the ``openai`` SDK's Responses (``/v1/responses``)
and legacy completions (``/v1/completions``) drive the gateway. For each recording the request is the
one the recorded native request is the translation of, said in the protocol under test; the check is
field by field on what the client sees: text, tool calls and their arguments, stop reason, usage, and
the provider's own request upstream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from recordings_location import MISSING_REASON, RECORDINGS_DIR

from .conftest import GatewayProcess, start_gateway, stop_process
from .test_providers_e2e import (
    CHAT,
    ERRORS,
    FOLLOWUPS,
    JSON_SCHEMA,
    KEY,
    STREAM,
    TOOLS,
    Expected,
    Replay,
    _cases,
    check_sent,
    load,
    provider_gateway,
    replays,
    scenario,
    sse_data,
    start_replays,
    stop_replays,
    tool_names,
)

__all__ = ["provider_gateway", "replays"]  # the provider suite's fixtures, used here too

pytestmark = pytest.mark.skipif(not RECORDINGS_DIR.is_dir(), reason=MISSING_REASON)

ANTHROPIC_CHOICE = {"auto": "auto", "required": "any", "none": "none"}
ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
RESPONSES_STATUS = {"stop": "completed", "tool_calls": "completed", "length": "incomplete"}
DEFAULT_MAX_TOKENS = 1024  # Messages requires max_tokens; recordings without one get this
# The output limit as each backend spells it: set by the client here even where the recording had none.
MAX_TOKENS_FIELDS = frozenset({"max_tokens", "maxOutputTokens", "num_predict"})


@pytest.fixture(scope="module")
def claude(provider_gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    # An explicit timeout: the SDK refuses large non-streamed max_tokens under its default one.
    with anthropic.Anthropic(
        base_url=provider_gateway.url, api_key="unused", max_retries=0, timeout=30
    ) as client:
        yield client


@pytest.fixture(scope="module")
def oai(provider_gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=provider_gateway.base_url, api_key="unused", max_retries=0) as client:
        yield client


# --- the recorded request, in each protocol ------------------------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [])


def as_messages(chat: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request said as a Messages request."""
    system = [_text(m["content"]) for m in chat["messages"] if m["role"] in ("system", "developer")]
    body: dict[str, Any] = {
        "model": chat["model"],
        "max_tokens": chat.get("max_tokens") or chat.get("max_completion_tokens") or DEFAULT_MAX_TOKENS,
        "messages": [
            {"role": m["role"], "content": _text(m["content"])}
            for m in chat["messages"]
            if m["role"] in ("user", "assistant")
        ],
    }
    if system:
        body["system"] = "\n".join(system)
    # This SDK no longer has sampling parameters in its signature (newer models refuse them): extra_body.
    sampling = {name: chat[name] for name in ("temperature", "top_p") if name in chat}
    if sampling:
        body["extra_body"] = sampling
    if chat.get("tools"):
        body["tools"] = [
            {
                "name": t["function"]["name"],
                "description": t["function"].get("description") or "",
                "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}},
            }
            for t in chat["tools"]
        ]
    choice = chat.get("tool_choice")
    if choice is not None:
        named = isinstance(choice, dict)
        body["tool_choice"] = (
            {"type": "tool", "name": choice["function"]["name"]}
            if named
            else {"type": ANTHROPIC_CHOICE[choice]}
        )
    if chat.get("parallel_tool_calls") is False:
        body.setdefault("tool_choice", {"type": "auto"})["disable_parallel_tool_use"] = True
    return body


def as_responses(chat: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI chat request said as a Responses request."""
    system = [_text(m["content"]) for m in chat["messages"] if m["role"] in ("system", "developer")]
    body: dict[str, Any] = {
        "model": chat["model"],
        "input": [
            {"role": m["role"], "content": _text(m["content"])}
            for m in chat["messages"]
            if m["role"] in ("user", "assistant")
        ],
    }
    if system:
        body["instructions"] = "\n".join(system)
    for name in ("temperature", "top_p"):
        if name in chat:
            body[name] = chat[name]
    if chat.get("max_tokens"):
        body["max_output_tokens"] = chat["max_tokens"]
    if chat.get("tools"):
        body["tools"] = [
            {
                "type": "function",
                "name": t["function"]["name"],
                "description": t["function"].get("description"),
                "parameters": t["function"].get("parameters") or {"type": "object", "properties": {}},
                "strict": False,
            }
            for t in chat["tools"]
        ]
    choice = chat.get("tool_choice")
    if choice is not None:
        body["tool_choice"] = (
            {"type": "function", "name": choice["function"]["name"]} if isinstance(choice, dict) else choice
        )
    if "parallel_tool_calls" in chat:
        body["parallel_tool_calls"] = chat["parallel_tool_calls"]
    return body


# --- what the client sees -------------------------------------------------------------------------------------


def check_message(message: anthropic.types.Message, expected: Expected) -> None:
    text = "".join(block.text for block in message.content if block.type == "text")
    assert (text or None) == expected.text
    calls = [(block.name, block.input) for block in message.content if block.type == "tool_use"]
    assert calls == expected.calls
    assert all(block.id for block in message.content if block.type == "tool_use")
    assert message.stop_reason == ANTHROPIC_STOP[expected.finish or "stop"]
    usage = message.usage
    prompt = (
        usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)
    )
    assert (prompt, usage.output_tokens) == (expected.prompt, expected.completion)


def check_response(response: Any, expected: Expected) -> None:
    assert (response.output_text or None) == expected.text
    calls = [
        (item.name, json.loads(item.arguments)) for item in response.output if item.type == "function_call"
    ]
    assert calls == expected.calls
    assert all(item.call_id for item in response.output if item.type == "function_call")
    assert response.status == RESPONSES_STATUS[expected.finish or "stop"]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        expected.prompt,
        expected.completion,
    )


def _send_messages(claude: anthropic.Anthropic, body: dict[str, Any], *, stream: bool) -> Any:
    if not stream:
        return claude.messages.create(**body)
    with claude.messages.stream(**body) as events:
        return events.get_final_message()


def _send_responses(oai: openai.OpenAI, body: dict[str, Any], *, stream: bool) -> Any:
    if not stream:
        return oai.responses.create(**body)
    with oai.responses.stream(**body) as events:
        # A cut-off answer ends with response.incomplete, as the official API's does: the helper's
        # get_final_response() only knows response.completed.
        ends = [
            event.response for event in events if event.type in ("response.completed", "response.incomplete")
        ]
    assert len(ends) == 1
    return ends[0]


# --- Anthropic Messages in -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "name"), _cases(CHAT) + _cases(STREAM) + _cases(TOOLS))
def test_messages(claude: anthropic.Anthropic, replays: dict[str, Replay], family: str, name: str) -> None:
    case = scenario(family, name)
    streamed = "body_text" in case.response
    body = as_messages(case.request())

    message = _send_messages(claude, body, stream=streamed)

    check_message(message, case.expected())
    sent = check_sent(case, replays, stream=streamed, defaults=MAX_TOKENS_FIELDS)
    assert "native" not in sent["body"], "the caller's Messages body rides only to an Anthropic backend"
    if body.get("tools"):
        assert tool_names(sent["body"]) == tool_names(case.body)
    if family == "anthropic":  # passed through: the body upstream is the caller's, with the model
        assert sent["body"]["messages"] == body["messages"]
        assert sent["body"]["max_tokens"] == body["max_tokens"]


# --- OpenAI Responses in ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "name"), _cases(CHAT) + _cases(STREAM) + _cases(TOOLS))
def test_responses(oai: openai.OpenAI, replays: dict[str, Replay], family: str, name: str) -> None:
    case = scenario(family, name)
    streamed = "body_text" in case.response
    body = as_responses(case.request())

    response = _send_responses(oai, body, stream=streamed)

    check_response(response, case.expected())
    sent = check_sent(case, replays, stream=streamed)
    if body.get("tools"):
        assert tool_names(sent["body"]) == tool_names(case.body)


# --- legacy completions in ---------------------------------------------------------------------------------------


def _no_system(cases: list[Any]) -> list[Any]:
    """The cases whose request has no system prompt (a completions prompt has no system part)."""
    if not RECORDINGS_DIR.is_dir():
        return []  # skipped (pytestmark): nothing to read at collection
    return [
        case
        for case in cases
        if not any(m["role"] == "system" for m in scenario(*case.values).request()["messages"])
    ]


@pytest.mark.parametrize(("family", "name"), _no_system(_cases(CHAT) + _cases(STREAM)))
def test_completions(oai: openai.OpenAI, replays: dict[str, Replay], family: str, name: str) -> None:
    case = scenario(family, name)
    expected = case.expected()
    streamed = "body_text" in case.response
    chat = case.request()
    prompt = _text([m for m in chat["messages"] if m["role"] == "user"][-1]["content"])
    fields = {
        "model": chat["model"],
        "prompt": prompt,
        "max_tokens": chat.get("max_tokens") or DEFAULT_MAX_TOKENS,
    }
    fields.update({name: chat[name] for name in ("temperature", "top_p") if name in chat})

    if streamed:
        chunks = list(oai.completions.create(**fields, stream=True, stream_options={"include_usage": True}))
        text = "".join(choice.text for chunk in chunks for choice in chunk.choices)
        finishes = [
            choice.finish_reason for chunk in chunks for choice in chunk.choices if choice.finish_reason
        ]
        usage = chunks[-1].usage
    else:
        completion = oai.completions.create(**fields)
        text, finishes, usage = (
            completion.choices[0].text,
            [completion.choices[0].finish_reason],
            completion.usage,
        )
    assert text == expected.text
    assert finishes == [expected.finish]
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (
        expected.prompt,
        expected.completion,
    )
    check_sent(case, replays, stream=streamed, defaults=MAX_TOKENS_FIELDS)


# --- a tool round trip: the call, then its result (recorded follow-ups) ----------------------------------------


def _round_trips() -> list[Any]:
    return [
        pytest.param(family, call, followup, id=followup.removesuffix(".json"))
        for family, pairs in FOLLOWUPS.items()
        for call, followup in pairs
    ]


@pytest.mark.parametrize(("family", "call", "followup"), _round_trips())
def test_messages_tool_round_trip(
    claude: anthropic.Anthropic, replays: dict[str, Replay], family: str, call: str, followup: str
) -> None:
    first = as_messages(scenario(family, call).request())
    asked = claude.messages.create(**first)
    uses = [block for block in asked.content if block.type == "tool_use"]
    assert uses and asked.stop_reason == "tool_use"
    results = [{"type": "tool_result", "tool_use_id": use.id, "content": "15 degrees, sunny"} for use in uses]
    turns = [
        *first["messages"],
        {"role": "assistant", "content": asked.content},
        {"role": "user", "content": results},
    ]

    answer = claude.messages.create(**{**first, "messages": turns})

    expected = scenario(family, followup).expected()
    assert "".join(block.text for block in answer.content if block.type == "text") == expected.text
    assert answer.stop_reason == ANTHROPIC_STOP[expected.finish or "stop"]
    sent = replays[family].last_for(followup)["body"]
    assert len(sent.get("messages") or sent.get("contents")) == 3  # question, call, result


@pytest.mark.parametrize(("family", "call", "followup"), _round_trips())
def test_responses_tool_round_trip(
    oai: openai.OpenAI, replays: dict[str, Replay], family: str, call: str, followup: str
) -> None:
    first = as_responses(scenario(family, call).request())
    asked = oai.responses.create(**first)
    calls = [item for item in asked.output if item.type == "function_call"]
    assert calls
    items = [
        *first["input"],
        *(
            {"type": "function_call", "call_id": c.call_id, "name": c.name, "arguments": c.arguments}
            for c in calls
        ),
        *(
            {"type": "function_call_output", "call_id": c.call_id, "output": "15 degrees, sunny"}
            for c in calls
        ),
    ]

    answer = oai.responses.create(**{**first, "input": items})

    expected = scenario(family, followup).expected()
    assert answer.output_text == expected.text
    assert answer.status == RESPONSES_STATUS[expected.finish or "stop"]
    sent = replays[family].last_for(followup)["body"]
    assert len(sent.get("messages") or sent.get("contents")) == 3


@pytest.mark.parametrize(("family", "name"), _cases(JSON_SCHEMA))
def test_responses_json_schema(
    oai: openai.OpenAI, replays: dict[str, Replay], family: str, name: str
) -> None:
    case = scenario(family, name)
    question = _text(case.body["contents"][-1]["parts"])
    schema = {"type": "object", "properties": {"result": {"type": "number"}}, "required": ["result"]}

    raw = oai.responses.with_raw_response.create(
        model=f"{case.provider}:gemini-2.5-flash",
        input=question,
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema}},
    )

    answer = raw.parse()
    assert json.loads(answer.output_text) == json.loads(case.expected().text or "")
    assert raw.headers["x-llmgate-schema"] == "valid"  # checked against the schema, as for chat
    config = replays[family].last_for(name)["body"]["generationConfig"]
    assert config["responseMimeType"] == "application/json"


# --- errors (last: a recorded 429 leaves the provider's key waiting) ------------------------------------


@pytest.mark.parametrize(("family", "name"), _cases(ERRORS))
def test_messages_upstream_error(claude: anthropic.Anthropic, family: str, name: str) -> None:
    case = scenario(family, name)
    status = ERRORS[family][name][1]
    body = as_messages(case.request())

    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(**body)

    assert caught.value.status_code == status
    error = caught.value.response.json()
    assert error["type"] == "error"
    assert error["error"]["message"].startswith(f"{case.provider}: ")
    assert error["error"]["type"] in {"invalid_request_error", "rate_limit_error", "api_error"}


# --- an Anthropic backend: the request and the answer pass through -------------------------------------------

# Recorded Messages exchanges whose requests are themselves what an Anthropic client sends.
NATIVE = [
    "anthropic__thinking_stream__pydantic-ai.json",  # thinking, with its signature
    "anthropic__tool_result_followup__ruby_llm.json",
    "anthropic__tool_result_followup_stream__llm-anthropic.json",
    "anthropic__parallel_tool_calls__pydantic-ai.json",
    "anthropic__json_schema__ruby_llm.json",  # output_config
]


@pytest.fixture(scope="module")
def native(
    e2e_tmp: Path, started_gateways: list[GatewayProcess]
) -> Iterator[tuple[anthropic.Anthropic, Replay]]:
    replay = start_replays(e2e_tmp, {"anthropic-native": NATIVE})["anthropic-native"]
    try:
        config = {
            "routing": {"retries": 0},
            "providers": {"claude": {"type": "anthropic", "base_url": replay.url, "api_keys": [KEY]}},
        }
        gateway = start_gateway(e2e_tmp, config)
        started_gateways.append(gateway)
        try:
            with anthropic.Anthropic(
                base_url=gateway.url, api_key="unused", max_retries=0, timeout=30
            ) as client:
                yield client, replay
        finally:
            stop_process(gateway.proc)
    finally:
        stop_replays([replay.proc])


def assembled(body_text: str) -> list[dict[str, Any]]:
    """The content blocks a recorded Messages stream adds up to (read from Anthropic's event reference)."""
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    for data in sse_data(body_text):
        event = json.loads(data)
        if event["type"] == "content_block_start":
            blocks.append(dict(event["content_block"]))
        elif event["type"] == "content_block_delta":
            block, delta = blocks[event["index"]], event["delta"]
            if delta["type"] == "input_json_delta":
                partial[event["index"]] = partial.get(event["index"], "") + delta["partial_json"]
            else:
                field = {"text_delta": "text", "thinking_delta": "thinking", "signature_delta": "signature"}[
                    delta["type"]
                ]
                block[field] = block.get(field, "") + delta[field]
    for index, text in partial.items():
        blocks[index]["input"] = json.loads(text) if text else {}
    return blocks


def _block_view(block: dict[str, Any]) -> dict[str, Any]:
    keep = {"type", "text", "thinking", "signature", "id", "name", "input"}
    return {key: value for key, value in block.items() if key in keep}


@pytest.mark.parametrize("name", NATIVE)
def test_an_anthropic_backend_gets_the_request_as_sent_and_its_answer_back(
    native: tuple[anthropic.Anthropic, Replay], name: str
) -> None:
    claude, replay = native
    recording = load(name)
    recorded, response = recording["request"]["body"], recording["response"]
    streamed = bool(recorded.get("stream"))
    known = {
        "model",
        "messages",
        "max_tokens",
        "system",
        "tools",
        "tool_choice",
        "thinking",
        "metadata",
        "stop_sequences",
    }
    call = {key: value for key, value in recorded.items() if key in known}
    call["model"] = f"claude:{recorded['model']}"
    extra = {key: value for key, value in recorded.items() if key not in known and key != "stream"}

    if streamed:
        with claude.messages.stream(**call, extra_body=extra) as events:
            message = events.get_final_message()
        got = [_block_view(block.model_dump(exclude_none=True)) for block in message.content]
        assert got == [_block_view(block) for block in assembled(response["body_text"])]
    else:
        raw = claude.messages.with_raw_response.create(**call, extra_body=extra)
        assert json.loads(raw.http_response.content) == response["body"]  # Anthropic's answer, untouched

    sent = replay.last_for(name)["body"]
    unstreamed = {key: value for key, value in recorded.items() if (key, value) != ("stream", False)}
    assert sent == unstreamed, (
        "the upstream got the caller's request as it was sent ('stream': false is the default)"
    )
