"""Every provider family end to end on real recorded traffic.

One ``replay.py`` process per family answers with the recorded provider responses; one ``llmgate serve``
has all families configured against them; the official ``openai`` SDK drives the gateway. For each
recording the test builds the OpenAI request that the recorded native request is the translation of
(system prompt, user text, tools, sampling), sends it, and checks

- what the SDK gets: the OpenAI shape with the recorded text, tool calls, mapped finish reason and usage;
- what the gateway sent upstream: the provider's own path, auth header and body shape.

Expected values are read from the recorded responses by the small per-family readers below, written from
the providers' API references, not from the adapters.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from recordings_location import MISSING_REASON, RECORDINGS_DIR

from .conftest import (
    START_TIMEOUT_S,
    GatewayProcess,
    _clean_env,
    _tail,
    start_gateway,
    stop_process,
)
from .replay import last_user_text, split_path

HERE = Path(__file__).resolve().parent
RECORDINGS = RECORDINGS_DIR
REPLAY_SCRIPT = HERE / "replay.py"
LAUNCHER = [sys.executable, str(HERE / "loopback_dns.py")]
KEY = "sk-replay-provider-key"
FOUNDRY_HOST = "e2e-replay.services.ai.azure.com"

pytestmark = pytest.mark.skipif(not RECORDINGS.is_dir(), reason=MISSING_REASON)


# --- reading the recordings (independently of the adapters) ---------------------------------------------------


@dataclass
class Expected:
    """What the OpenAI-shaped answer must say, read from a recorded response."""

    text: str | None = None
    finish: str | None = None
    prompt: int | None = None
    completion: int | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)  # (name, parsed arguments)


def load(name: str) -> dict[str, Any]:
    return json.loads((RECORDINGS / name).read_text())  # type: ignore[no-any-return]


def sse_data(text: str) -> list[str]:
    """The ``data:`` payloads of an SSE body (events end with a blank line; CRLF or LF)."""
    payloads = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        lines = [line[5:].lstrip(" ") for line in block.split("\n") if line.startswith("data:")]
        if lines:
            payloads.append("\n".join(lines))
    return payloads


def _text_parts(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if part.get("type", "text") == "text")


def _args(raw: str) -> Any:
    return json.loads(raw) if raw.strip() else {}


# Anthropic: https://docs.anthropic.com/en/api/messages -- prompt_tokens includes cache reads and writes.
ANTHROPIC_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}


def anthropic_usage(usage: dict[str, Any]) -> tuple[int, int]:
    cache = (usage.get("cache_read_input_tokens") or 0) + (usage.get("cache_creation_input_tokens") or 0)
    return usage["input_tokens"] + cache, usage["output_tokens"]


def anthropic_expected(body: dict[str, Any]) -> Expected:
    prompt, completion = anthropic_usage(body["usage"])
    return Expected(
        text="".join(b["text"] for b in body["content"] if b["type"] == "text") or None,
        finish=ANTHROPIC_FINISH[body["stop_reason"]],
        prompt=prompt,
        completion=completion,
        calls=[(b["name"], b["input"]) for b in body["content"] if b["type"] == "tool_use"],
    )


def anthropic_stream_expected(text: str) -> Expected:
    usage: dict[str, Any] = {}
    parts: list[str] = []
    calls: dict[int, list[Any]] = {}
    stop = None
    for data in sse_data(text):
        event = json.loads(data)
        if event["type"] == "message_start":
            usage.update(event["message"]["usage"])
        elif event["type"] == "content_block_start" and event["content_block"]["type"] == "tool_use":
            calls[event["index"]] = [event["content_block"]["name"], ""]
        elif event["type"] == "content_block_delta":
            delta = event["delta"]
            if delta["type"] == "text_delta":
                parts.append(delta["text"])
            elif delta["type"] == "input_json_delta":
                calls[event["index"]][1] += delta["partial_json"]
        elif event["type"] == "message_delta":
            usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
            stop = event["delta"].get("stop_reason") or stop
    prompt, completion = anthropic_usage(usage)
    return Expected(
        text="".join(parts) or None,
        finish=ANTHROPIC_FINISH[stop] if stop else None,
        prompt=prompt,
        completion=completion,
        calls=[(name, _args(raw)) for _, (name, raw) in sorted(calls.items())],
    )


# Gemini: https://ai.google.dev/api/generate-content -- thoughts are completion (reasoning) tokens.
def gemini_expected_events(events: list[dict[str, Any]]) -> Expected:
    parts: list[str] = []
    calls: list[tuple[str, Any]] = []
    finish = None
    meta: dict[str, Any] = {}
    for event in events:
        candidate = event["candidates"][0]
        for part in (candidate.get("content") or {}).get("parts", []):
            if "functionCall" in part:
                calls.append((part["functionCall"]["name"], part["functionCall"].get("args") or {}))
            elif part.get("text") and not part.get("thought"):
                parts.append(part["text"])
        finish = candidate.get("finishReason") or finish
        meta = event.get("usageMetadata") or meta
    mapped = {"STOP": "tool_calls" if calls else "stop", "MAX_TOKENS": "length"}.get(finish or "", finish)
    return Expected(
        text="".join(parts) or None,
        finish=mapped,
        prompt=meta.get("promptTokenCount", 0) + meta.get("toolUsePromptTokenCount", 0),
        completion=meta.get("candidatesTokenCount", 0) + meta.get("thoughtsTokenCount", 0),
        calls=calls,
    )


# Cohere v2: https://docs.cohere.com/reference/chat -- usage.tokens is what the model read and wrote.
COHERE_FINISH = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}


def cohere_expected(body: dict[str, Any]) -> Expected:
    message = body["message"]
    tokens = body["usage"]["tokens"]
    return Expected(
        text="".join(i["text"] for i in message.get("content") or [] if i["type"] == "text") or None,
        finish=COHERE_FINISH[body["finish_reason"]],
        prompt=tokens["input_tokens"],
        completion=tokens["output_tokens"],
        calls=[
            (c["function"]["name"], _args(c["function"]["arguments"]))
            for c in message.get("tool_calls") or []
        ],
    )


def cohere_stream_expected(text: str) -> Expected:
    parts: list[str] = []
    calls: dict[int, list[Any]] = {}
    expected = Expected()
    for data in sse_data(text):
        if data == "[DONE]":
            continue
        event = json.loads(data)
        message = (event.get("delta") or {}).get("message") or {}
        if event["type"] == "content-delta":
            parts.append(message["content"].get("text", ""))
        elif event["type"] == "tool-call-start":
            function = message["tool_calls"]["function"]
            calls[event["index"]] = [function["name"], function.get("arguments", "")]
        elif event["type"] == "tool-call-delta":
            calls[event["index"]][1] += message["tool_calls"]["function"].get("arguments", "")
        elif event["type"] == "message-end":
            tokens = event["delta"]["usage"]["tokens"]
            expected.finish = COHERE_FINISH[event["delta"]["finish_reason"]]
            expected.prompt, expected.completion = tokens["input_tokens"], tokens["output_tokens"]
    expected.text = "".join(parts) or None
    expected.calls = [(name, _args(raw)) for _, (name, raw) in sorted(calls.items())]
    return expected


# Ollama: https://docs.ollama.com/api -- counts in prompt_eval_count / eval_count of the last line.
def ollama_expected_lines(lines: list[dict[str, Any]]) -> Expected:
    last = lines[-1]
    return Expected(
        text="".join((line.get("message") or {}).get("content", "") for line in lines) or None,
        finish={"stop": "stop", "length": "length"}.get(last.get("done_reason") or "stop"),
        prompt=last.get("prompt_eval_count", 0),
        completion=last.get("eval_count", 0),
    )


# OpenAI-compatible (Azure AI Foundry, HuggingFace router, Mistral): already the target shape.
def openai_expected(body: dict[str, Any]) -> Expected:
    choice = body["choices"][0]
    message = choice["message"]
    return Expected(
        text=message.get("content") or None,
        finish=choice["finish_reason"],
        prompt=body["usage"]["prompt_tokens"],
        completion=body["usage"]["completion_tokens"],
        calls=[
            (c["function"]["name"], _args(c["function"]["arguments"]))
            for c in message.get("tool_calls") or []
        ],
    )


def openai_stream_expected(text: str) -> Expected:
    parts: list[str] = []
    calls: dict[int, list[Any]] = {}
    expected = Expected()
    for data in sse_data(text):
        if data == "[DONE]":
            continue
        chunk = json.loads(data)
        if chunk.get("usage"):
            expected.prompt = chunk["usage"]["prompt_tokens"]
            expected.completion = chunk["usage"]["completion_tokens"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            parts.append(delta.get("content") or "")
            for call in delta.get("tool_calls") or []:
                entry = calls.setdefault(call.get("index", 0), ["", ""])
                entry[0] += (call.get("function") or {}).get("name") or ""
                entry[1] += (call.get("function") or {}).get("arguments") or ""
            expected.finish = choice.get("finish_reason") or expected.finish
    expected.text = "".join(parts) or None
    expected.calls = [(name, _args(raw)) for _, (name, raw) in sorted(calls.items())]
    return expected


# --- the inverse mapping: the OpenAI request a recorded native request is the translation of ----------------


def _openai_tool(name: str, description: str | None, parameters: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "parameters": parameters}
    if description:
        function["description"] = description
    return {"type": "function", "function": function}


def _lower_types(schema: Any) -> Any:
    """Gemini's OpenAPI subset spells JSON-schema types in capitals (``OBJECT``, ``STRING``)."""
    if isinstance(schema, dict):
        return {
            k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_lower_types(item) for item in schema]
    return schema


def anthropic_request(body: dict[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if body.get("system"):
        messages.append({"role": "system", "content": _text_parts(body["system"])})
    messages += [{"role": m["role"], "content": _text_parts(m["content"])} for m in body["messages"]]
    request: dict[str, Any] = {"model": body["model"], "messages": messages, "max_tokens": body["max_tokens"]}
    if "temperature" in body:
        request["temperature"] = body["temperature"]
    if body.get("tools"):
        request["tools"] = [
            _openai_tool(t["name"], t.get("description"), t["input_schema"]) for t in body["tools"]
        ]
    choice = body.get("tool_choice") or {}
    if choice.get("type") in ("auto", "none"):
        request["tool_choice"] = choice["type"]
    elif choice.get("type") == "any":
        request["tool_choice"] = "required"
    elif choice.get("type") == "tool":
        request["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    return request


def gemini_request(body: dict[str, Any], path: str) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    if body.get("systemInstruction"):
        messages.append({"role": "system", "content": _text_parts(body["systemInstruction"]["parts"])})
    for content in body["contents"]:
        role = "assistant" if content.get("role") == "model" else "user"
        messages.append({"role": role, "content": _text_parts(content["parts"])})
    request: dict[str, Any] = {"model": gemini_model(path), "messages": messages}
    config = body.get("generationConfig") or {}
    if "temperature" in config:
        request["temperature"] = config["temperature"]
    if "maxOutputTokens" in config:
        request["max_tokens"] = config["maxOutputTokens"]
    if "topP" in config:
        request["top_p"] = config["topP"]
    declarations = [d for tool in body.get("tools") or [] for d in tool.get("functionDeclarations", [])]
    if declarations:
        request["tools"] = [
            _openai_tool(d["name"], d.get("description"), _gemini_parameters(d)) for d in declarations
        ]
    return request


def _gemini_parameters(declaration: dict[str, Any]) -> Any:
    """A declaration's schema: OpenAPI-subset ``parameters``, or plain JSON schema (``parametersJsonSchema``)."""
    for key in ("parametersJsonSchema", "parameters_json_schema"):
        if key in declaration:
            return declaration[key]
    return _lower_types(declaration.get("parameters", {"type": "object", "properties": {}}))


def gemini_model(path: str) -> str:
    return path.split("/models/", 1)[1].split(":", 1)[0]


def cohere_request(body: dict[str, Any]) -> dict[str, Any]:
    messages = [{"role": m["role"], "content": _text_parts(m["content"])} for m in body["messages"]]
    request: dict[str, Any] = {"model": body["model"], "messages": messages}
    if "temperature" in body:
        request["temperature"] = body["temperature"]
    if body.get("tools"):
        request["tools"] = body["tools"]  # Cohere v2 tools are OpenAI's shape
    return request


def ollama_request(body: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": body["model"],
        "messages": [{"role": m["role"], "content": m["content"]} for m in body["messages"]],
    }
    options = body.get("options") or {}
    if "temperature" in options:
        request["temperature"] = options["temperature"]
    if "num_predict" in options:
        request["max_tokens"] = options["num_predict"]
    return request


def openai_request(body: dict[str, Any]) -> dict[str, Any]:
    messages = [{k: v for k, v in m.items() if v is not None} for m in body["messages"]]
    request: dict[str, Any] = {"model": body["model"], "messages": messages}
    for key in ("temperature", "max_tokens", "tools"):
        if body.get(key) not in (None, []):
            request[key] = body[key]
    return request


# --- families --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    name: str
    provider_type: str
    auth: tuple[str, str] | None  # (header, value) the upstream must receive
    to_openai: Callable[[dict[str, Any], str], dict[str, Any]]
    expected: Callable[[dict[str, Any]], Expected]
    stream_expected: Callable[[str], Expected]
    native_keys: frozenset[str]  # body keys of the native chat request
    foreign_keys: frozenset[str] = frozenset({"stream_options", "n"})


def _ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


FAMILIES = {
    "anthropic": Family(
        "anthropic",
        "anthropic",
        ("x-api-key", KEY),
        lambda body, _: anthropic_request(body),
        anthropic_expected,
        anthropic_stream_expected,
        frozenset({"model", "messages", "max_tokens"}),
    ),
    "gemini": Family(
        "gemini",
        "gemini",
        ("x-goog-api-key", KEY),
        gemini_request,
        lambda body: gemini_expected_events([body]),
        lambda text: gemini_expected_events([json.loads(d) for d in sse_data(text)]),
        frozenset({"contents"}),
        frozenset({"messages", "model", "stream", "stream_options"}),
    ),
    "cohere": Family(
        "cohere",
        "cohere",
        ("authorization", f"Bearer {KEY}"),
        lambda body, _: cohere_request(body),
        cohere_expected,
        cohere_stream_expected,
        frozenset({"model", "messages", "stream"}),
    ),
    "ollama": Family(
        "ollama",
        "ollama",
        None,
        lambda body, _: ollama_request(body),
        lambda body: ollama_expected_lines([body]),
        lambda text: ollama_expected_lines(_ndjson(text)),
        frozenset({"model", "messages", "stream"}),
        frozenset({"stream_options", "temperature", "max_tokens"}),  # sampling lives in "options"
    ),
    "azure": Family(
        "azure",
        "azure",
        ("api-key", KEY),
        lambda body, _: openai_request(body),
        openai_expected,
        openai_stream_expected,
        frozenset({"model", "messages"}),
        frozenset(),
    ),
    "huggingface": Family(
        "huggingface",
        "huggingface",
        ("authorization", f"Bearer {KEY}"),
        lambda body, _: openai_request(body),
        openai_expected,
        openai_stream_expected,
        frozenset({"model", "messages"}),
        frozenset(),
    ),
    "mistral": Family(
        "mistral",
        "openai",
        ("authorization", f"Bearer {KEY}"),
        lambda body, _: openai_request(body),
        openai_expected,
        openai_stream_expected,
        frozenset({"model", "messages"}),
        frozenset(),
    ),
}

# The recordings replayed per family, by scenario.
CHAT = {
    "anthropic": ["anthropic__chat_basic__langchaingo.json", "anthropic__chat_system_prompt__ruby_llm.json"],
    "gemini": ["gemini__chat_basic__ruby_llm.json", "gemini__chat_system_prompt__pydantic-ai.json"],
    "cohere": [
        "cohere_v2__chat_basic__langchain-cohere.json",
        "cohere_v2__chat_system_prompt__ruby_llm.json",
    ],
    "ollama": ["ollama__chat_basic_nonstream__foobara-ollama-api.json"],
    "azure": ["azure_ai_foundry__chat_basic__ruby_llm.json"],
    "huggingface": ["huggingface__chat_basic__pydantic-ai.json", "huggingface__chat_basic__langchaingo.json"],
    "mistral": ["mistral__chat_basic__ruby_llm.json"],
}
STREAM = {
    "anthropic": [
        "anthropic__chat_stream__ruby_llm.json",
        "anthropic__chat_stream__llm-anthropic.json",
        "anthropic__chat_stream__langchaingo.json",
    ],
    "gemini": ["gemini__chat_stream_sse__ruby_llm.json", "gemini__chat_stream_sse__pydantic-ai.json"],
    "cohere": ["cohere_v2__chat_stream__langchain-cohere.json", "cohere_v2__chat_stream__ruby_llm.json"],
    "ollama": ["ollama__chat_stream__langchaingo.json", "ollama__chat_stream_default__langchaingo.json"],
    "azure": ["azure_ai_foundry__chat_stream__ruby_llm.json"],
    "huggingface": ["huggingface__chat_stream__pydantic-ai.json"],
    "mistral": ["mistral__chat_stream__ruby_llm.json"],
}
TOOLS = {
    "anthropic": [
        "anthropic__tool_call__ruby_llm.json",
        "anthropic__tool_call_stream__llm-anthropic.json",
        "anthropic__parallel_tool_calls__pydantic-ai.json",  # text + four calls; ?beta=true
    ],
    "gemini": [
        "gemini__tool_call__ruby_llm.json",
        "gemini__tool_call_stream_sse__ruby_llm.json",
        "gemini__tool_call_stream_sse__pydantic-ai.json",
    ],
    "cohere": ["cohere_v2__tool_call__ruby_llm.json", "cohere_v2__tool_call_stream__langchain-cohere.json"],
    "azure": ["azure_ai_foundry__tool_call__ruby_llm.json"],
    "mistral": ["mistral__tool_call__ruby_llm.json", "mistral__tool_call_stream__ruby_llm.json"],
}
# recording -> (SDK error class, HTTP status, error code or None, Retry-After or None)
ERRORS: dict[str, dict[str, tuple[type[openai.APIStatusError], int, str | None, str | None]]] = {
    "anthropic": {
        "anthropic__error_401__ruby_llm.json": (
            openai.InternalServerError,
            502,
            "upstream_authentication_error",
            None,
        ),
        "anthropic__error_400_context_length__ruby_llm.json": (
            openai.BadRequestError,
            400,
            "context_length_exceeded",
            None,
        ),
    },
    "gemini": {
        # An invalid key is a 400 INVALID_ARGUMENT with reason API_KEY_INVALID: still the gateway's key.
        "gemini__error_400_invalid_key__ruby_llm.json": (
            openai.InternalServerError,
            502,
            "upstream_authentication_error",
            None,
        ),
        "gemini__error_403__langchaingo.json": (
            openai.InternalServerError,
            502,
            "upstream_authentication_error",
            None,
        ),
        # No Retry-After header: the wait is RetryInfo.retryDelay "48s" in the body.
        "gemini__error_429__ruby_llm.json": (openai.RateLimitError, 429, "rate_limit_exceeded", "48"),
    },
    "cohere": {
        "cohere_v2__error_401__ruby_llm.json": (
            openai.InternalServerError,
            502,
            "upstream_authentication_error",
            None,
        ),
        "cohere_v2__error_400_context_length__ruby_llm.json": (
            openai.BadRequestError,
            400,
            "context_length_exceeded",
            None,
        ),
    },
    "azure": {
        "azure_ai_foundry__error_401__ruby_llm.json": (
            openai.InternalServerError,
            502,
            "upstream_authentication_error",
            None,
        ),
        "azure_ai_foundry__error_429__ruby_llm.json": (
            openai.RateLimitError,
            429,
            "rate_limit_exceeded",
            "1",
        ),
    },
    "mistral": {
        "mistral__error_401__ruby_llm.json": (
            openai.InternalServerError,
            502,
            "upstream_authentication_error",
            None,
        ),
    },
}
# A tool call and the recorded follow-up that answers its result (the same question, one source): the
# protocol suite (test_protocols_e2e) plays both turns of the round trip.
FOLLOWUPS = {
    "anthropic": [("anthropic__tool_call__ruby_llm.json", "anthropic__tool_result_followup__ruby_llm.json")],
    "gemini": [("gemini__tool_call__ruby_llm.json", "gemini__tool_result_followup__ruby_llm.json")],
    "cohere": [("cohere_v2__tool_call__ruby_llm.json", "cohere_v2__tool_result_followup__ruby_llm.json")],
    "azure": [
        (
            "azure_ai_foundry__tool_call__ruby_llm.json",
            "azure_ai_foundry__tool_result_followup__ruby_llm.json",
        )
    ],
    "mistral": [("mistral__tool_call__ruby_llm.json", "mistral__tool_result_followup__ruby_llm.json")],
}
# Structured output recordings, replayed for the protocol suite's JSON-schema answers.
JSON_SCHEMA = {"gemini": ["gemini__json_schema__ruby_llm.json"]}
EMBEDDINGS = {
    "gemini": ["gemini__embeddings__llm-gemini.json"],
    "cohere": ["cohere_v2__embeddings__ruby_llm.json"],
    "ollama": ["ollama__embeddings__langchaingo.json"],
    "azure": ["azure_ai_foundry__embeddings__ruby_llm.json"],
}


def _cases(table: dict[str, Any]) -> list[Any]:
    return [
        pytest.param(family, name, id=name.removesuffix(".json"))
        for family, names in table.items()
        for name in names
    ]


def family_recordings(family: str) -> list[str]:
    names: list[str] = []
    for table in (CHAT, STREAM, TOOLS, ERRORS, EMBEDDINGS):
        names += list(table.get(family, []))
    names += [followup for _, followup in FOLLOWUPS.get(family, [])] + JSON_SCHEMA.get(family, [])
    return names


def provider_for(family: str, recording: dict[str, Any]) -> str:
    """The configured provider that serves a recording (the HF router has one base URL per backend)."""
    if family == "huggingface":
        return "hf-" + recording["request"]["url_path"].strip("/").split("/", 1)[0]
    return family


# --- processes -------------------------------------------------------------------------------------------------


@dataclass
class Replay:
    proc: subprocess.Popen[str]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/_log", timeout=5).json()["requests"]  # type: ignore[no-any-return]

    def last_for(self, recording: str) -> dict[str, Any]:
        """The latest request the replay answered with ``recording``."""
        log = self.log()
        found = [entry for entry in log if entry["recording"] == recording]
        assert found, (
            f"the replay never answered with {recording}; it saw: {[(e['path'], e['error']) for e in log[-3:]]}"
        )
        return found[-1]


def start_replays(tmp: Path, recordings: dict[str, list[str]]) -> dict[str, Replay]:
    """One replay process per entry (name -> recording files), started together, each ready within the
    bound."""
    started: dict[str, tuple[subprocess.Popen[str], Path]] = {}
    replays: dict[str, Replay] = {}
    try:
        for name, names in recordings.items():
            log_path = tmp / f"replay-{name}.log"
            files = [str(RECORDINGS / recording) for recording in names]
            with log_path.open("w") as stderr:
                proc = subprocess.Popen(
                    [sys.executable, str(REPLAY_SCRIPT), "--port", "0", "--recordings", *files],
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                    env=_clean_env(),
                )
            started[name] = (proc, log_path)
        deadline = time.monotonic() + START_TIMEOUT_S
        for name, (proc, log_path) in started.items():
            assert proc.stdout is not None
            line = ""
            while (left := deadline - time.monotonic()) > 0 and proc.poll() is None:
                if select.select([proc.stdout], [], [], left)[0]:
                    line = proc.stdout.readline()
                    break
            if not line.startswith("REPLAY READY"):
                raise RuntimeError(f"the {name} replay did not start: {_tail(log_path)}")
            replays[name] = Replay(proc, int(line.split()[-1]))
    except BaseException:
        stop_replays(proc for proc, _ in started.values())
        raise
    return replays


def stop_replays(procs: Any) -> None:
    for proc in procs:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture(scope="session")
def replays(e2e_tmp: Path) -> Iterator[dict[str, Replay]]:
    started = start_replays(e2e_tmp, {family: family_recordings(family) for family in FAMILIES})
    try:
        yield started
    finally:
        stop_replays(replay.proc for replay in started.values())


def providers_config(replays: dict[str, Replay]) -> dict[str, Any]:
    keys = {"api_keys": [KEY]}
    return {
        "anthropic": {"type": "anthropic", "base_url": replays["anthropic"].url, **keys},
        "gemini": {"type": "gemini", "base_url": replays["gemini"].url, **keys},
        "cohere": {"type": "cohere", "base_url": replays["cohere"].url, **keys},
        "ollama": {"type": "ollama", "base_url": replays["ollama"].url},
        # A Foundry host name (resolved to loopback by the launcher): the adapter picks Foundry by host.
        "azure": {"type": "azure", "base_url": f"http://{FOUNDRY_HOST}:{replays['azure'].port}", **keys},
        "hf-together": {
            "type": "huggingface",
            "base_url": f"{replays['huggingface'].url}/together/v1",
            **keys,
        },
        "hf-hyperbolic": {
            "type": "huggingface",
            "base_url": f"{replays['huggingface'].url}/hyperbolic/v1",
            **keys,
        },
        "mistral": {"type": "openai", "base_url": f"{replays['mistral'].url}/v1", **keys},
    }


@pytest.fixture(scope="session")
def provider_gateway(
    e2e_tmp: Path, replays: dict[str, Replay], started_gateways: list[GatewayProcess]
) -> Iterator[GatewayProcess]:
    config = {
        "server": {"grace_period": 5},
        "routing": {"retries": 0},
        "providers": providers_config(replays),
    }
    gateway = start_gateway(e2e_tmp, config, launcher=LAUNCHER)
    started_gateways.append(gateway)  # checked for tracebacks after every test
    try:
        yield gateway
    finally:
        stop_process(gateway.proc)


@pytest.fixture(scope="session")
def sdk(provider_gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with provider_gateway.client() as client:
        yield client


# --- helpers for the tests -------------------------------------------------------------------------------------

ALLOWED_TOP = {"id", "object", "created", "model", "choices", "usage", "system_fingerprint", "service_tier"}
ALLOWED_CHOICE = {"index", "message", "finish_reason", "logprobs"}
ALLOWED_MESSAGE = {
    "role",
    "content",
    "tool_calls",
    "refusal",
    "reasoning_content",
    "annotations",
    "audio",
    "function_call",
}
ALLOWED_CHUNK = {"id", "object", "created", "model", "choices", "usage", "system_fingerprint", "service_tier"}
ALLOWED_DELTA = {"role", "content", "tool_calls", "refusal", "reasoning_content", "function_call"}


@dataclass
class Scenario:
    family: Family
    name: str
    recording: dict[str, Any]
    provider: str
    path: str
    query: str

    @property
    def body(self) -> dict[str, Any]:
        return self.recording["request"]["body"]  # type: ignore[no-any-return]

    @property
    def response(self) -> dict[str, Any]:
        return self.recording["response"]  # type: ignore[no-any-return]

    def request(self) -> dict[str, Any]:
        """The OpenAI request for this recording, with the model addressed as ``provider:model``."""
        request = self.family.to_openai(self.body, self.path)
        request["model"] = f"{self.provider}:{request['model']}"
        return request

    def expected(self) -> Expected:
        if "body_text" in self.response:
            return self.family.stream_expected(self.response["body_text"])
        return self.family.expected(self.response["body"])


def scenario(family: str, name: str) -> Scenario:
    recording = load(name)
    path, query = split_path(recording["request"]["url_path"])
    return Scenario(FAMILIES[family], name, recording, provider_for(family, recording), path, query)


def check_sent(
    case: Scenario, replays: dict[str, Replay], *, stream: bool, defaults: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The gateway sent the provider's native request: path, auth header, body shape and content.

    ``defaults``: sampling fields the client's protocol always sets (Messages' required ``max_tokens``),
    not compared when the recorded request has none."""
    sent = replays[case.family.name].last_for(case.name)
    family, recorded = case.family, case.body
    assert sent["path"] == case.path
    if family.name == "azure":  # Foundry's api-version rides in the query
        assert sent["query"] == case.query
    if family.name == "gemini" and stream:
        assert sent["query"] == "alt=sse"
    headers = {k.lower(): v for k, v in sent["headers"].items()}
    if family.auth is not None:
        name, value = family.auth
        assert headers.get(name) == value, f"auth header {name} missing or wrong: {sorted(headers)}"
    if family.name == "anthropic":
        assert headers.get("anthropic-version")
    if family.auth is None or family.auth[0] != "authorization":
        assert "authorization" not in headers
    body = sent["body"]
    assert isinstance(body, dict)
    if "messages" in recorded or "contents" in recorded:
        assert family.native_keys <= set(body), f"native keys missing: {family.native_keys - set(body)}"
        assert not (family.foreign_keys & set(body)), f"foreign keys sent: {family.foreign_keys & set(body)}"
        view, recorded_view = native_view(family.name, body), native_view(family.name, recorded)
        for name in defaults - set(recorded_view.get("sampling", ())):
            view.get("sampling", {}).pop(name, None)
        assert view == recorded_view
        if family.name == "anthropic" and "tool_choice" in recorded:
            assert body["tool_choice"] == recorded["tool_choice"]
        if family.name in ("anthropic", "cohere"):
            assert body.get("stream", False) is stream
        if family.name == "ollama":
            assert body["stream"] is stream  # explicit: Ollama streams when it is left out
    return sent


def _schema_view(schema: Any) -> Any:
    """A Gemini parameter schema, ignoring what its OpenAPI subset cannot say (``additionalProperties``) and
    with a parameterless object the same as no schema."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and not schema.get("properties"):
            return None
        return {k: _schema_view(v) for k, v in schema.items() if k != "additionalProperties"}
    if isinstance(schema, list):
        return [_schema_view(item) for item in schema]
    return schema


def native_view(family: str, body: dict[str, Any]) -> dict[str, Any]:
    """What a native chat request asks, with spelling differences that mean the same thing evened out
    (text as a string or as text parts, absent vs empty description, Gemini's capitalised schema types)."""
    if family == "gemini":
        config = body.get("generationConfig") or {}
        declarations = [d for tool in body.get("tools") or [] for d in tool.get("functionDeclarations", [])]
        return {
            "system": _text_parts((body.get("systemInstruction") or {}).get("parts")),
            "turns": [(c.get("role", "user"), _text_parts(c["parts"])) for c in body["contents"]],
            "sampling": {k: config[k] for k in ("temperature", "maxOutputTokens", "topP") if k in config},
            "tools": [
                (d["name"], d.get("description") or "", _schema_view(_gemini_parameters(d)))
                for d in declarations
            ],
        }
    view: dict[str, Any] = {
        "model": body.get("model"),
        "turns": [(m["role"], _text_parts(m.get("content"))) for m in body["messages"]],
    }
    if family == "anthropic":
        view["system"] = _text_parts(body.get("system") or "")
        view["sampling"] = {k: body[k] for k in ("max_tokens", "temperature", "top_p") if k in body}
        view["tools"] = [
            (t["name"], t.get("description") or "", t["input_schema"]) for t in body.get("tools") or []
        ]
    elif family == "ollama":
        view["sampling"] = body.get("options") or {}
    else:  # Cohere v2 and the OpenAI-compatible ones
        view["sampling"] = {k: body[k] for k in ("temperature", "max_tokens", "top_p", "p") if k in body}
        if "max_completion_tokens" in body:  # OpenAI's newer name of the same limit
            view["sampling"]["max_tokens"] = body["max_completion_tokens"]
        view["tools"] = [
            (t["function"]["name"], t["function"].get("description") or "", t["function"].get("parameters"))
            for t in body.get("tools") or []
        ]
    return view


def tool_names(body: dict[str, Any]) -> list[str]:
    """Tool names in any native request shape."""
    names = []
    for tool in body.get("tools") or []:
        if "functionDeclarations" in tool:
            names += [d["name"] for d in tool["functionDeclarations"]]
        elif "function" in tool:
            names.append(tool["function"]["name"])
        else:
            names.append(tool["name"])
    return names


def assert_usage(usage: Any, expected: Expected) -> None:
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (expected.prompt, expected.completion)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def assert_openai_shape(raw: dict[str, Any]) -> None:
    assert raw["object"] == "chat.completion"
    assert set(raw) <= ALLOWED_TOP, f"non-OpenAI fields: {set(raw) - ALLOWED_TOP}"
    for choice in raw["choices"]:
        assert set(choice) <= ALLOWED_CHOICE, f"non-OpenAI choice fields: {set(choice) - ALLOWED_CHOICE}"
        assert set(choice["message"]) <= ALLOWED_MESSAGE
        assert choice["message"]["role"] == "assistant"
        assert choice["message"].get("content") is None or isinstance(choice["message"]["content"], str)


def collect_stream(chunks: list[Any]) -> tuple[str, list[str], dict[int, dict[str, str]]]:
    """Text, finish reasons and tool calls (by index) of a streamed answer."""
    text: list[str] = []
    finishes: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        assert chunk.object == "chat.completion.chunk"
        for choice in chunk.choices:
            text.append(choice.delta.content or "")
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                if call.function is not None:
                    entry["name"] += call.function.name or ""
                    entry["arguments"] += call.function.arguments or ""
    return "".join(text), finishes, calls


def assert_usage_chunk(name: str, chunks: list[Any], expected: Expected) -> None:
    """With include_usage the last chunk has no choices and the usage; no other chunk has usage."""
    final = chunks[-1]
    assert final.choices == [], name  # also where the upstream put usage on its last content chunk
    assert_usage(final.usage, expected)
    assert all(chunk.usage is None for chunk in chunks[:-1]), "usage must come once, in the last chunk"


def stream_via_sdk(sdk: openai.OpenAI, request: dict[str, Any]) -> tuple[Any, list[Any]]:
    with sdk.chat.completions.with_streaming_response.create(
        **request, stream=True, stream_options={"include_usage": True}
    ) as response:
        return response.headers, list(response.parse())


# --- the tests -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "name"), _cases(CHAT))
def test_chat(sdk: openai.OpenAI, replays: dict[str, Replay], family: str, name: str) -> None:
    case = scenario(family, name)
    expected = case.expected()

    raw = sdk.chat.completions.with_raw_response.create(**case.request())

    assert raw.headers["x-llmgate-provider"] == case.provider
    assert_openai_shape(json.loads(raw.http_response.content))
    reply = raw.parse()
    assert reply.choices[0].message.content == expected.text
    assert not reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == expected.finish
    assert_usage(reply.usage, expected)
    sent = check_sent(case, replays, stream=False)
    if case.body.get("system") or case.body.get("systemInstruction"):  # the system prompt went native
        native = sent["body"].get("system") or sent["body"]["systemInstruction"]["parts"]
        recorded = case.body.get("system") or case.body["systemInstruction"]["parts"]
        assert _text_parts(native) == _text_parts(recorded)


@pytest.mark.parametrize(("family", "name"), _cases(STREAM))
def test_stream(
    sdk: openai.OpenAI, provider_gateway: GatewayProcess, replays: dict[str, Replay], family: str, name: str
) -> None:
    case = scenario(family, name)
    expected = case.expected()
    request = case.request()

    headers, chunks = stream_via_sdk(sdk, request)

    assert headers["x-llmgate-provider"] == case.provider
    text, finishes, calls = collect_stream(chunks)
    assert text == expected.text
    assert not calls
    assert finishes == [expected.finish]
    assert_usage_chunk(name, chunks, expected)
    check_sent(case, replays, stream=True)

    # The wire itself: SSE events of OpenAI chunks, closed by [DONE].
    with httpx.stream(
        "POST", f"{provider_gateway.base_url}/chat/completions", json={**request, "stream": True}, timeout=15
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read().decode()
    events = sse_data(body)
    assert events[-1] == "[DONE]"
    # Translated chunks have the canonical keys only; an OpenAI-compatible upstream's chunks after the
    # first content are forwarded exactly as it sent them (with its own extra keys, e.g. Mistral's "p").
    as_sent = set(sse_data(case.response.get("body_text", "")))
    assert all(set(json.loads(event)) <= ALLOWED_CHUNK or event in as_sent for event in events[:-1])
    assert (
        "".join(
            (choice["delta"].get("content") or "")
            for event in events[:-1]
            for choice in json.loads(event)["choices"]
        )
        == expected.text
    )


@pytest.mark.parametrize(("family", "name"), _cases(TOOLS))
def test_tool_call(sdk: openai.OpenAI, replays: dict[str, Replay], family: str, name: str) -> None:
    case = scenario(family, name)
    expected = case.expected()
    streamed = "body_text" in case.response
    request = case.request()
    assert request.get("tools"), "a tool-call recording offers tools"
    assert expected.calls, "a tool-call recording answers with a call"

    if streamed:
        headers, chunks = stream_via_sdk(sdk, request)
        text, finishes, by_index = collect_stream(chunks)
        calls = [by_index[index] for index in sorted(by_index)]
        assert (text or None) == expected.text
        assert finishes == ["tool_calls"]
        assert_usage_chunk(name, chunks, expected)
    else:
        raw = sdk.chat.completions.with_raw_response.create(**request)
        headers = raw.headers
        assert_openai_shape(json.loads(raw.http_response.content))
        reply = raw.parse()
        assert reply.choices[0].finish_reason == "tool_calls"
        assert (reply.choices[0].message.content or None) == expected.text
        calls = [
            {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
            for c in reply.choices[0].message.tool_calls or []
        ]
        assert all(c.type == "function" for c in reply.choices[0].message.tool_calls or [])
        assert_usage(reply.usage, expected)

    assert headers["x-llmgate-provider"] == case.provider
    assert [(c["name"], json.loads(c["arguments"])) for c in calls] == expected.calls
    assert all(c["id"] for c in calls), "every tool call needs an id to be answered"
    assert len({c["id"] for c in calls}) == len(calls)
    sent = check_sent(case, replays, stream=streamed)
    assert tool_names(sent["body"]) == tool_names(case.body)


@pytest.mark.parametrize(("family", "name"), _cases(ERRORS))
def test_upstream_error(sdk: openai.OpenAI, replays: dict[str, Replay], family: str, name: str) -> None:
    case = scenario(family, name)
    error_class, status, code, retry_after = ERRORS[family][name]
    assert case.response["status"] >= 400

    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(**case.request())

    error = caught.value
    assert type(error) is error_class, f"{type(error).__name__}: {error}"
    assert error.status_code == status
    assert (
        error.code == code
    )  # never the upstream's own code (e.g. invalid_api_key: the caller's key is fine)
    assert error.response.json()["error"]["message"].startswith(f"{case.provider}: ")  # names who failed
    if retry_after is not None:
        assert error.response.headers["retry-after"] == retry_after
    assert KEY not in error.response.text
    check_sent(case, replays, stream=False)


def embedding_request(family: str, case: Scenario) -> dict[str, Any]:
    """The OpenAI embeddings request a recorded native one is the translation of."""
    body = case.body
    if family == "gemini":
        first = body["requests"][0]
        request: dict[str, Any] = {
            "model": first["model"].removeprefix("models/"),
            "input": [_text_parts(item["content"]["parts"]) for item in body["requests"]],
        }
        if "outputDimensionality" in first:
            request["dimensions"] = first["outputDimensionality"]
        return request
    if family == "cohere":
        return {"model": body["model"], "input": body["texts"]}
    return {"model": body["model"], "input": body["input"]}  # Ollama, Azure (OpenAI's shape)


def recorded_vectors(family: str, body: dict[str, Any]) -> list[list[float]]:
    if family == "gemini":
        return [item["values"] for item in body["embeddings"]]
    if family == "cohere":
        return body["embeddings"]["float"]  # type: ignore[no-any-return]
    if family == "ollama":
        return body["embeddings"]  # type: ignore[no-any-return]
    return [item["embedding"] for item in body["data"]]


# The SDK asks for base64 (and decodes it) unless told "float".
@pytest.mark.parametrize("encoding_format", ["float", None], ids=["float", "sdk-default-base64"])
@pytest.mark.parametrize(("family", "name"), _cases(EMBEDDINGS))
def test_embeddings(
    sdk: openai.OpenAI, replays: dict[str, Replay], family: str, name: str, encoding_format: str | None
) -> None:
    case = scenario(family, name)
    request = embedding_request(family, case)
    request["model"] = f"{case.provider}:{request['model']}"
    if encoding_format is not None:
        request["encoding_format"] = encoding_format
    vectors = recorded_vectors(family, case.response["body"])

    raw = sdk.embeddings.with_raw_response.create(**request)

    assert raw.headers["x-llmgate-provider"] == case.provider
    reply = raw.parse()
    assert [len(item.embedding) for item in reply.data] == [len(vector) for vector in vectors]
    assert [item.index for item in reply.data] == list(range(len(vectors)))
    for got, want in zip(reply.data, vectors, strict=True):  # float32 on the base64 path
        assert got.embedding == pytest.approx(want, rel=1e-6, abs=1e-7)
    sent = replays[family].last_for(name)
    assert sent["path"] == case.path
    assert last_user_text(sent["body"]) == last_user_text(case.body)
    if case.family.auth is not None:
        header, value = case.family.auth
        assert {k.lower(): v for k, v in sent["headers"].items()}.get(header) == value
