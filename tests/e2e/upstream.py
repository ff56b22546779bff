"""A real OpenAI-compatible upstream for the end-to-end tests, run as its own process.

    python tests/e2e/upstream.py --port 0 [--require-key sk-...]

It prints ``UPSTREAM READY <port>`` once it listens. Replies are derived from the request (the text is
``Echo: <last user message>``, one stream chunk per word), so tests can predict them exactly.

Faults are chosen by the (upstream) model name; several can be joined with ``+``:

- ``fail-<status>`` (400, 401, 404, 429 with ``Retry-After: 7``, 500, ...), ``fail-context`` (400
  ``context_length_exceeded``);
- ``slow-<ms>``: wait before answering;
- ``cut-<n>``: stream ``n`` chunks, then drop the connection without ``[DONE]``;
- ``stall-<n>``: stream ``n`` chunks, then hang;
- ``drip-<ms>``: pause between stream chunks.

A runtime fault switch applies to every following chat request, whatever its model (the model-name
faults still apply once it lets a request through): ``POST /_fault`` with JSON

    {"mode": "ok" | "500" | "429" | "529" | "timeout" | "reset" | "malformed" | "cut" | "stall" | "slow",
     "retry_after": 1, "after_chunks": 0, "times": null, "slow_ms": 500, "share": 1.0, "seed": 0,
     "latency_ms": 0}

- ``500``: HTTP 500; ``429``: HTTP 429 with ``Retry-After: <retry_after>`` (default 7); ``529``: the
  Anthropic "overloaded" status and body;
- ``timeout``: never answer (until the client goes away, at most 60 s);
- ``reset``: close the connection without any response;
- ``malformed``: 200 with an invalid JSON body, or (streams) ``after_chunks`` good events then invalid
  SSE data;
- ``cut``: streams send ``after_chunks`` events then drop the connection without ``[DONE]``; whole
  replies send half the body then drop it;
- ``stall``: the same, then hang (at most 60 s);
- ``slow``: wait ``slow_ms``, then answer normally;
- ``offschema``: a 200 reply (whole or streamed) whose content is the JSON ``{"unexpected": true}``
  (matching no ``json_schema`` that requires a property).

``mix`` (with ``"mode": "mix"``) maps modes to shares, e.g. ``{"500": 0.1, "429": 0.05}``: each request
gets one mode with that chance, or is answered.

``times`` limits the fault to that many requests (then it is back to ``ok``); ``share`` applies it to
that fraction of requests only (random, seeded by ``seed``); ``latency_ms`` delays every request, faulty
or not. ``GET /_fault`` shows the switch.

``GET /_log`` lists every request served (body, headers, whether it completed, how many chunks were
sent, whether the client went away early, which runtime fault it got) and ``counts``: requests in all
and per API key (``by_key``); ``GET /_log?entries=0`` gives the counts only. ``DELETE /_log`` clears
both.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import random
import re
import signal
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

RETRY_AFTER_429 = "7"
EMBEDDING_DIMENSIONS = 8
STALL_LIMIT_S = 60.0
_FAULT = re.compile(r"(fail)-(\d{3}|context)|(slow|cut|stall|drip)-(\d+)")

RUNTIME_MODES = (
    "ok",
    "500",
    "429",
    "529",
    "timeout",
    "reset",
    "malformed",
    "cut",
    "stall",
    "slow",
    "offschema",
)


class ClientGone(Exception):
    """The client closed the connection while we were answering."""


class Dropped(Exception):
    """We closed the connection on purpose, without an answer (the ``reset`` fault)."""


@dataclass
class RuntimeFault:
    """The fault ``POST /_fault`` switched on: what every following chat request gets."""

    mode: str = "ok"
    retry_after: float = float(RETRY_AFTER_429)
    after_chunks: int = 0
    times: int | None = None
    slow_ms: int = 0
    share: float = 1.0
    seed: int = 0
    latency_ms: int = 0
    mix: dict[str, float] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def parse(cls, body: Any) -> RuntimeFault:
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        mode = str(body.get("mode", "ok"))
        if mode not in (*RUNTIME_MODES, "mix"):
            raise ValueError(f"mode must be one of {', '.join(RUNTIME_MODES)} or mix")
        mix = {str(name): float(share) for name, share in dict(body.get("mix") or {}).items()}
        if mode == "mix" and (not mix or set(mix) - set(RUNTIME_MODES) or sum(mix.values()) > 1):
            raise ValueError("mix maps modes to shares that add up to at most 1")
        times = body.get("times")
        fault = cls(
            mode=mode,
            retry_after=float(body.get("retry_after", RETRY_AFTER_429)),
            after_chunks=int(body.get("after_chunks", 0)),
            times=None if times is None else int(times),
            slow_ms=int(body.get("slow_ms", 0)),
            share=float(body.get("share", 1.0)),
            seed=int(body.get("seed", 0)),
            latency_ms=int(body.get("latency_ms", 0)),
            mix=mix,
        )
        fault.rng = random.Random(fault.seed)
        return fault

    def take(self) -> str:
        """The mode this request gets (``ok`` once ``times`` is used up or outside ``share``)."""
        if self.mode == "ok" or self.times == 0:
            return "ok"
        if self.mode == "mix":  # each mode for its share of requests, the rest answered
            draw, reached = self.rng.random(), 0.0
            for mode, share in self.mix.items():
                reached += share
                if draw < reached:
                    return mode
            return "ok"
        if self.share < 1.0 and self.rng.random() >= self.share:
            return "ok"
        if self.times is not None:
            self.times -= 1
        return self.mode

    def view(self) -> dict[str, Any]:
        keys = (
            "mode",
            "retry_after",
            "after_chunks",
            "times",
            "slow_ms",
            "share",
            "seed",
            "latency_ms",
            "mix",
        )
        return {key: getattr(self, key) for key in keys}


LOG_KEY: web.AppKey[list[dict[str, Any]]] = web.AppKey("log", list)
KEY_KEY: web.AppKey[str] = web.AppKey("required_key", str)
FAULT_KEY: web.AppKey[list[RuntimeFault]] = web.AppKey("fault", list)
COUNTS_KEY: web.AppKey[dict[str, Any]] = web.AppKey("counts", dict)


def _fresh_counts() -> dict[str, Any]:
    return {"requests": 0, "by_key": {}}


@dataclass
class Faults:
    """What the model name asks this upstream to do wrong."""

    fail: str | None = None
    slow_ms: int = 0
    cut: int | None = None
    stall: int | None = None
    drip_ms: int = 0
    garbage: int | None = None
    offschema: bool = False

    @classmethod
    def parse(cls, model: str) -> Faults:
        faults = cls()
        for part in model.split("+"):
            match = _FAULT.fullmatch(part)
            if match is None:
                continue
            if match.group(1):
                faults.fail = match.group(2)
            else:
                kind, value = match.group(3), int(match.group(4))
                if kind == "slow":
                    faults.slow_ms = value
                elif kind == "cut":
                    faults.cut = value
                elif kind == "stall":
                    faults.stall = value
                else:
                    faults.drip_ms = value
        return faults


# --- errors ------------------------------------------------------------------------------------------


def _error(status: int, message: str, kind: str, code: str | None, param: str | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    headers = {"Retry-After": RETRY_AFTER_429} if status == 429 else None
    return web.json_response(body, status=status, headers=headers)


def fault_response(fail: str, model: str, auth: str) -> web.Response:
    """The OpenAI-style error a ``fail-*`` model answers with."""
    if fail == "context":
        return _error(
            400,
            "This model's maximum context length is 8192 tokens. However, your messages resulted in "
            "9001 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            "context_length_exceeded",
            "messages",
        )
    status = int(fail)
    if status == 400:
        return _error(
            400,
            "Invalid value for 'temperature': the upstream refuses this request (upstream-400-marker).",
            "invalid_request_error",
            "invalid_value",
            "temperature",
        )
    if status == 401:
        # Like OpenAI, it quotes the key it was given: the gateway must not pass that on.
        key = auth.removeprefix("Bearer ").strip()
        return _error(401, f"Incorrect API key provided: {key}.", "invalid_request_error", "invalid_api_key")
    if status == 404:
        return _error(
            404, f"The model `{model}` does not exist.", "invalid_request_error", "model_not_found", "model"
        )
    if status == 429:
        return _error(429, "Rate limit reached for requests (upstream).", "requests", "rate_limit_exceeded")
    return _error(status, f"The upstream failed with HTTP {status}.", "server_error", None)


# --- replies -----------------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def last_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def example_value(schema: Any, text: str) -> Any:
    """A value satisfying a simple JSON schema: strings are the user's text."""
    if not isinstance(schema, dict):
        return text
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: example_value(sub, text) for name, sub in props.items()}
    if kind == "array":
        return [example_value(schema.get("items"), text)]
    if kind == "integer":
        return len(text)
    if kind == "number":
        return float(len(text))
    if kind == "boolean":
        return True
    return text


@dataclass
class Reply:
    """What the upstream says: text, tool calls or a legacy function call."""

    text: str | None
    tool_calls: list[dict[str, Any]]
    function_call: dict[str, str] | None
    prompt_tokens: int

    @property
    def finish_reason(self) -> str:
        if self.tool_calls:
            return "tool_calls"
        return "function_call" if self.function_call else "stop"

    @property
    def completion_tokens(self) -> int:
        if self.text is not None:
            return max(1, len(self.text.split()))
        calls = [c["function"]["arguments"] for c in self.tool_calls]
        if self.function_call:
            calls.append(self.function_call["arguments"])
        return max(1, sum(len(a) // 4 + 1 for a in calls))

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


def _chosen_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice")
    if not tools:
        return []
    if choice == "required":
        return tools[:1]
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return [t for t in tools if (t.get("function") or {}).get("name") == name]
    return []


def compose_reply(body: dict[str, Any]) -> Reply:
    """The deterministic answer to a chat request."""
    user = last_user_text(body)
    prompt_tokens = sum(len(_text_of(m.get("content")).split()) + 3 for m in body.get("messages") or [])
    digest = hashlib.sha256(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()
    tools = _chosen_tools(body)
    if tools:
        calls = [
            {
                "id": f"call_{digest[i * 8 : (i + 1) * 8]}",
                "type": "function",
                "function": {
                    "name": tool["function"]["name"],
                    "arguments": json.dumps(example_value(tool["function"].get("parameters"), user)),
                },
            }
            for i, tool in enumerate(tools)
        ]
        return Reply(None, calls, None, prompt_tokens)
    forced = body.get("function_call")
    if body.get("functions") and isinstance(forced, dict):
        function = next((f for f in body["functions"] if f.get("name") == forced.get("name")), None)
        if function is not None:
            arguments = json.dumps(example_value(function.get("parameters"), user))
            return Reply(None, [], {"name": function["name"], "arguments": arguments}, prompt_tokens)
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        return Reply(json.dumps({"echo": user}), [], None, prompt_tokens)
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return Reply(json.dumps(example_value(schema or {"type": "object"}, user)), [], None, prompt_tokens)
    return Reply(f"Echo: {user}", [], None, prompt_tokens)


def completion_body(body: dict[str, Any], reply: Reply, completion_id: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = reply.tool_calls
    if reply.function_call:
        message["function_call"] = reply.function_call
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}],
        "usage": reply.usage(),
        "system_fingerprint": "fp_e2e_upstream",
    }


def stream_deltas(reply: Reply) -> list[dict[str, Any]]:
    """The deltas of a streamed reply, after the first (role) chunk."""
    if reply.text is not None:
        words = reply.text.split(" ")
        return [{"content": word if i == 0 else " " + word} for i, word in enumerate(words)]
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(reply.tool_calls):
        head = {"index": index, "id": call["id"], "type": "function"}
        deltas.append(
            {"tool_calls": [{**head, "function": {"name": call["function"]["name"], "arguments": ""}}]}
        )
        args = call["function"]["arguments"]
        third = max(1, len(args) // 3)
        for start in range(0, len(args), third):
            piece = args[start : start + third]
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    if reply.function_call:
        deltas.append({"function_call": {"name": reply.function_call["name"], "arguments": ""}})
        deltas.append({"function_call": {"arguments": reply.function_call["arguments"]}})
    return deltas


# --- handlers ----------------------------------------------------------------------------------------


def _record(request: web.Request, body: Any) -> dict[str, Any]:
    log = request.app[LOG_KEY]
    entry: dict[str, Any] = {
        "seq": len(log),
        "method": request.method,
        "path": request.path,
        "headers": dict(request.headers),
        "body": body,
        "model": body.get("model") if isinstance(body, dict) else None,
        "stream": bool(body.get("stream")) if isinstance(body, dict) else False,
        "status": None,
        "chunks_sent": 0,
        "completed": False,
        "disconnected": False,
        "cut": False,
        "reset": False,
        "runtime_fault": "ok",
        "started_at": time.time(),
        "ended_at": None,
    }
    log.append(entry)
    counts = request.app[COUNTS_KEY]
    counts["requests"] += 1
    key = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    counts["by_key"][key] = counts["by_key"].get(key, 0) + 1
    return entry


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _pause(request: web.Request, ms: float) -> None:
    """Sleep, noticing a client that goes away meanwhile."""
    deadline = time.monotonic() + ms / 1000
    while (left := deadline - time.monotonic()) > 0:
        if _gone(request):
            raise ClientGone
        await asyncio.sleep(min(left, 0.02))


def _check_key(request: web.Request) -> web.Response | None:
    required = request.app[KEY_KEY]
    if not required or request.headers.get("Authorization") == f"Bearer {required}":
        return None
    return _error(
        401, "Missing or wrong API key for the e2e upstream.", "invalid_request_error", "invalid_api_key"
    )


async def _serve(request: web.Request, answer: Any) -> web.StreamResponse:
    """Read the body, record the request, and run ``answer`` noting how it ended."""
    raw = await request.read()
    try:
        body: Any = json.loads(raw) if raw else {}
    except ValueError:
        body = {"_unparsed": raw.decode("utf-8", "replace")}
    entry = _record(request, body)
    try:
        refused = _check_key(request)
        if refused is not None:
            response: web.StreamResponse = refused
        elif not isinstance(body, dict):
            response = _error(400, "The body must be a JSON object.", "invalid_request_error", None)
        else:
            response = await answer(request, body, entry)
        entry["status"] = response.status
        if not entry["disconnected"] and not entry["cut"]:
            entry["completed"] = True
        return response
    except (ClientGone, ConnectionError):
        entry["disconnected"] = True
        raise web.HTTPServiceUnavailable() from None  # nobody reads it; ends the handler
    except Dropped:
        entry["reset"] = True
        raise web.HTTPServiceUnavailable() from None  # the connection is closed: nobody reads it
    except asyncio.CancelledError:
        entry["disconnected"] = True
        raise
    finally:
        entry["ended_at"] = time.time()


async def _runtime_fault(
    request: web.Request, body: dict[str, Any], entry: dict[str, Any], faults: Faults
) -> web.StreamResponse | None:
    """Apply the ``POST /_fault`` switch: a response, or ``None`` to answer (``faults`` may be amended)."""
    fault = request.app[FAULT_KEY][0]
    mode = entry["runtime_fault"] = fault.take()
    if fault.latency_ms:
        await _pause(request, fault.latency_ms)
    stream = bool(body.get("stream"))
    if mode == "500":
        return _error(500, "The upstream failed with HTTP 500 (runtime fault).", "server_error", None)
    if mode == "429":
        headers = {"Retry-After": f"{fault.retry_after:g}"}
        error = {"message": "Rate limit reached (runtime fault).", "type": "requests", "param": None}
        return web.json_response(
            {"error": {**error, "code": "rate_limit_exceeded"}}, status=429, headers=headers
        )
    if mode == "529":  # https://docs.anthropic.com/en/api/errors
        overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return web.json_response(overloaded, status=529)
    if mode == "timeout":
        await _pause(request, STALL_LIMIT_S * 1000)
        return _error(504, "The upstream never answered (runtime fault).", "server_error", None)
    if mode == "reset":
        assert request.transport is not None
        request.transport.close()
        raise Dropped
    if mode == "slow":
        await _pause(request, fault.slow_ms)
    faults.offschema = mode == "offschema"
    if stream:
        if mode == "cut":
            faults.cut = fault.after_chunks
        elif mode == "stall":
            faults.stall = fault.after_chunks
        elif mode == "malformed":
            faults.garbage = fault.after_chunks
        return None
    if mode in ("cut", "stall", "malformed"):
        return await _broken_whole_reply(request, body, entry, mode)
    return None


async def _broken_whole_reply(
    request: web.Request, body: dict[str, Any], entry: dict[str, Any], mode: str
) -> web.StreamResponse:
    """A non-streamed reply that is invalid JSON, or half sent and then dropped or stalled."""
    if mode == "malformed":
        return web.Response(
            body=b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess', content_type="application/json"
        )
    whole = json.dumps(completion_body(body, compose_reply(body), "chatcmpl-up-broken")).encode()
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(whole)
    await response.prepare(request)
    await response.write(whole[: len(whole) // 2])
    if mode == "cut":
        entry["cut"] = True
        assert request.transport is not None
        request.transport.close()
        return response
    await _pause(request, STALL_LIMIT_S * 1000)
    await response.write(whole[len(whole) // 2 :])
    await response.write_eof()
    return response


async def _chat(request: web.Request, body: dict[str, Any], entry: dict[str, Any]) -> web.StreamResponse:
    model = str(body.get("model", ""))
    faults = Faults.parse(model)
    broken = await _runtime_fault(request, body, entry, faults)
    if broken is not None:
        return broken
    if faults.slow_ms:
        await _pause(request, faults.slow_ms)
    if faults.fail:
        return fault_response(faults.fail, model, request.headers.get("Authorization", ""))
    if not body.get("messages"):
        return _error(400, "'messages' is required.", "invalid_request_error", None, "messages")
    reply = compose_reply(body)
    if faults.offschema:
        reply = Reply(json.dumps({"unexpected": True}), [], None, reply.prompt_tokens)
    completion_id = (
        "chatcmpl-up-" + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20]
    )
    if not body.get("stream"):
        return web.json_response(completion_body(body, reply, completion_id))
    return await _stream(request, body, reply=reply, completion_id=completion_id, faults=faults, entry=entry)


async def _stream(
    request: web.Request,
    body: dict[str, Any],
    *,
    reply: Reply,
    completion_id: str,
    faults: Faults,
    entry: dict[str, Any],
) -> web.StreamResponse:
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    created = int(time.time())

    def frame(choices: list[dict[str, Any]], usage: Any = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.get("model"),
            "system_fingerprint": "fp_e2e_upstream",
            "choices": choices,
        }
        if include_usage:
            chunk["usage"] = usage
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    frames = [frame([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    frames += [frame([{"index": 0, "delta": d, "finish_reason": None}]) for d in stream_deltas(reply)]
    frames.append(frame([{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]))
    if include_usage:
        frames.append(frame([], reply.usage()))
    frames.append(b"data: [DONE]\n\n")

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for index, data in enumerate(frames):
        if faults.cut is not None and index >= faults.cut:
            entry["cut"] = True
            assert request.transport is not None
            request.transport.close()  # mid-stream, without [DONE]
            return response
        if faults.stall is not None and index >= faults.stall:
            await _pause(request, STALL_LIMIT_S * 1000)
        if faults.garbage is not None and index >= faults.garbage:
            await response.write(b"data: {not json at all\n\n")  # then end, without [DONE]
            entry["chunks_sent"] = index + 1
            break
        if index and faults.drip_ms:
            await _pause(request, faults.drip_ms)
        if _gone(request):
            raise ClientGone
        await response.write(data)
        entry["chunks_sent"] = index + 1
    await response.write_eof()
    return response


def _vector(text: str, size: int) -> list[float]:
    seed = hashlib.sha256(text.encode()).digest()
    return [round((seed[i % len(seed)] - 127.5) / 127.5, 6) for i in range(size)]


async def _embeddings(
    request: web.Request, body: dict[str, Any], entry: dict[str, Any]
) -> web.StreamResponse:
    model = str(body.get("model", ""))
    faults = Faults.parse(model)
    if faults.slow_ms:
        await _pause(request, faults.slow_ms)
    if faults.fail:
        return fault_response(faults.fail, model, request.headers.get("Authorization", ""))
    given = body.get("input")
    inputs = [given] if isinstance(given, str) else list(given or [])
    if not inputs:
        return _error(400, "'input' is required.", "invalid_request_error", None, "input")
    size = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
    data = []
    for index, item in enumerate(inputs):
        vector = _vector(item if isinstance(item, str) else json.dumps(item), size)
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    tokens = sum(len(str(item).split()) for item in inputs)
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return web.json_response({"object": "list", "data": data, "model": model, "usage": usage})


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _serve(request, _chat)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _serve(request, _embeddings)


async def models(request: web.Request) -> web.StreamResponse:
    refused = _check_key(request)
    if refused is not None:
        return refused
    ids = ["gpt-test", "embed-test", "fail-500", "slow-1000"]
    data = [{"id": i, "object": "model", "created": 1700000000, "owned_by": "e2e-upstream"} for i in ids]
    return web.json_response({"object": "list", "data": data})


async def get_log(request: web.Request) -> web.StreamResponse:
    counts = request.app[COUNTS_KEY]
    if request.query.get("entries") == "0":
        return web.json_response({"counts": counts})
    return web.json_response({"requests": request.app[LOG_KEY], "counts": counts})


async def clear_log(request: web.Request) -> web.StreamResponse:
    request.app[LOG_KEY].clear()
    counts = request.app[COUNTS_KEY]
    counts.clear()
    counts.update(_fresh_counts())
    return web.json_response({"cleared": True})


async def set_fault(request: web.Request) -> web.StreamResponse:
    try:
        fault = RuntimeFault.parse(await request.json())
    except ValueError as exc:
        return _error(400, f"bad fault: {exc}", "invalid_request_error", None)
    request.app[FAULT_KEY][0] = fault
    return web.json_response(fault.view())


async def get_fault(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[FAULT_KEY][0].view())


def build_app(*, required_key: str | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[LOG_KEY] = []
    app[KEY_KEY] = required_key or ""
    app[FAULT_KEY] = [RuntimeFault()]
    app[COUNTS_KEY] = _fresh_counts()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/_log", get_log)
    app.router.add_delete("/_log", clear_log)
    app.router.add_post("/_fault", set_fault)
    app.router.add_get("/_fault", get_fault)
    return app


async def run(host: str, port: int, required_key: str | None) -> None:
    # handler_cancellation: a client that disconnects cancels its handler, which the log records.
    runner = web.AppRunner(build_app(required_key=required_key), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"UPSTREAM READY {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed when ready)")
    parser.add_argument("--require-key", default=None, help="answer 401 unless this Bearer key is sent")
    args = parser.parse_args()
    asyncio.run(run(args.host, args.port, args.require_key))


if __name__ == "__main__":
    main()
