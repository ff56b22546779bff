"""A request in its caller's own protocol (``ChatRequest.native``): it reaches only that vendor's adapter,
never another wire's body, a cache key's end-user part or the interaction log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from llmgate.core.results import CallInfo
from llmgate.observe.interactions import InteractionLog
from llmgate.policies.cache.digest import parameters_digest, request_digest
from llmgate.protocols.anthropic import MESSAGES
from llmgate.providers.anthropic.response import parse_message
from llmgate.providers.openai import chat_body

BODY: dict[str, Any] = {
    "model": "g",
    "max_tokens": 50,
    "top_k": 5,
    "metadata": {"user_id": "end-user-1"},
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}
    ],
}


def test_an_openai_wire_body_never_carries_the_native_request() -> None:
    request = MESSAGES.parse(BODY)
    assert request.native is not None
    for kept in (request, msgspec.structs.replace(request, raw_messages=None)):  # both of chat_body's ways
        body = chat_body(kept, "gpt-up", stream=False)
        assert "native" not in body and body["model"] == "gpt-up"
        assert body["messages"][0]["role"] == "user"


def test_cache_keys_leave_out_the_end_user_and_the_native_conversation() -> None:
    one = MESSAGES.parse(BODY)
    other_user = MESSAGES.parse({**BODY, "metadata": {"user_id": "end-user-2"}})
    assert request_digest(one, "g") == request_digest(other_user, "g")
    other_text = MESSAGES.parse({**BODY, "messages": [{"role": "user", "content": "something else"}]})
    assert request_digest(one, "g") != request_digest(other_text, "g")
    assert parameters_digest(one, "g") == parameters_digest(other_text, "g")  # semantic matches stay possible


def test_the_interaction_log_keeps_no_native_bytes(tmp_path: Path) -> None:
    request = MESSAGES.parse(BODY)
    answer = json.dumps(
        {
            "type": "message",
            "id": "msg_1",
            "model": "claude",
            "content": [{"type": "text", "text": "hello"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 3, "output_tokens": 1},
        }
    ).encode()
    response = parse_message(answer, clock=lambda: 0.0)
    response.native = answer
    log = InteractionLog(str(tmp_path / "i.jsonl"), max_bytes=10**6, backups=1)
    log.write(request, response, CallInfo("req-1", "claude", "claude/claude", ""))
    log.close()
    entry = json.loads((tmp_path / "i.jsonl").read_text())
    assert "native" not in entry["response"] and "native" not in entry["request"]
    assert entry["response"]["choices"][0]["message"]["content"] == "hello"
