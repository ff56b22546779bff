"""The legacy Completions protocol: parse onto chat, render and stream back, driven by the OpenAI SDK too."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import openai
import pytest

from llmgate.core.errors import GatewayError, InvalidRequest, RateLimited, UpstreamError
from llmgate.core.request import CHAT_FIELDS, ChatRequest
from llmgate.core.response import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    ResponseMessage,
    StreamItem,
)
from llmgate.core.usage import make_usage
from llmgate.protocols.base import Inbound, StreamRender
from llmgate.protocols.completions import COMPLETIONS, LEGACY_MAX_TOKENS, completion_id

_encoder = msgspec.json.Encoder()


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "prompt": "Once upon a time", **fields}


def refused(data: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        COMPLETIONS.parse(data)
    return caught.value


def request(**fields: Any) -> ChatRequest:
    return COMPLETIONS.parse(body(**fields))


def response(*choices: Choice, **fields: Any) -> ChatResponse:
    return ChatResponse(
        id=fields.pop("id", "chatcmpl-abc"),
        created=1_700_000_000,
        model="gpt-x",
        choices=list(choices)
        or [Choice(index=0, message=ResponseMessage(content="hi"), finish_reason="stop")],
        **fields,
    )


def chunk(*choices: ChunkChoice, **fields: Any) -> ChatChunk:
    return ChatChunk(id="chatcmpl-abc", created=1_700_000_000, model="gpt-x", choices=list(choices), **fields)


def text_choice(
    content: str | None, finish: str | None = None, index: int = 0, role: str | None = None
) -> ChunkChoice:
    return ChunkChoice(index=index, delta=Delta(role=role, content=content), finish_reason=finish)


def events(frames: bytes) -> list[Any]:
    """The data of each SSE event ("[DONE]" kept as text)."""
    assert frames.endswith(b"\n\n") or frames == b""
    out: list[Any] = []
    for event in frames.split(b"\n\n")[:-1]:
        assert event.startswith(b"data: ")
        data = event[len(b"data: ") :]
        out.append("[DONE]" if data == b"[DONE]" else json.loads(data))
    return out


# --- the contract -------------------------------------------------------------------------------------


def test_singleton_satisfies_the_inbound_contract() -> None:
    inbound: Inbound = COMPLETIONS
    renderer: StreamRender = inbound.stream(request())
    assert renderer.end() == b"data: [DONE]\n\n"


# --- parse: mappings ----------------------------------------------------------------------------------


def test_prompt_string_becomes_one_user_message() -> None:
    parsed = request()
    assert parsed.model == "m"
    assert [(m.role, m.content) for m in parsed.messages] == [("user", "Once upon a time")]
    assert parsed.raw_messages == [{"role": "user", "content": "Once upon a time"}]


def test_prompt_list_of_one_string_is_that_string() -> None:
    assert request(prompt=["only one"]).messages[0].content == "only one"


def test_empty_prompt_string_is_an_empty_message() -> None:
    assert request(prompt="").messages[0].content == ""


def test_max_tokens_defaults_to_the_legacy_16() -> None:
    assert LEGACY_MAX_TOKENS == 16
    assert request().max_tokens == 16
    assert request(max_tokens=None).max_tokens == 16
    assert request(max_tokens=200).max_tokens == 200
    assert request(max_tokens=200).max_completion_tokens is None


def test_shared_fields_map_to_the_same_chat_fields() -> None:
    parsed = request(
        temperature=0.5,
        top_p=0.9,
        n=3,
        stop=["\n", "END"],
        presence_penalty=0.1,
        frequency_penalty=-0.2,
        logit_bias={"50256": -100},
        seed=42,
        user="u-1",
        stream=True,
        stream_options={"include_usage": True},
    )
    assert (parsed.temperature, parsed.top_p, parsed.n, parsed.stop) == (0.5, 0.9, 3, ["\n", "END"])
    assert (parsed.presence_penalty, parsed.frequency_penalty) == (0.1, -0.2)
    assert parsed.logit_bias == {"50256": -100}
    assert (parsed.seed, parsed.user, parsed.stream) == (42, "u-1", True)
    assert parsed.wants_usage_chunk
    assert parsed.extra == {}


def test_stop_string_is_kept() -> None:
    assert request(stop="\n").stop == "\n"


def test_unknown_fields_go_to_extra() -> None:
    assert request(top_k=40, repetition_penalty=1.1).extra == {"top_k": 40, "repetition_penalty": 1.1}


@pytest.mark.parametrize(
    "fields",
    [
        {"suffix": ""},
        {"suffix": None},
        {"echo": False},
        {"echo": None},
        {"best_of": 1},
        {"best_of": 0},
        {"logprobs": None},
    ],
)
def test_neutral_legacy_options_are_accepted_and_dropped(fields: dict[str, Any]) -> None:
    parsed = request(**fields)
    assert parsed.extra == {}
    assert parsed.logprobs is None


# --- parse: refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param", "hint"),
    [
        ({"suffix": "the end."}, "suffix", "prompt"),
        ({"echo": True}, "echo", "prompt"),
        ({"best_of": 3}, "best_of", "'n'"),
        ({"logprobs": 0}, "logprobs", "null"),
        ({"logprobs": 5}, "logprobs", "null"),
        ({"prompt": ["one", "two"]}, "prompt", "one request per prompt"),
        ({"prompt": [1212, 318, 257]}, "prompt", "as a string of text"),
        ({"prompt": [[1212, 318], [257]]}, "prompt", "as a string of text"),
        ({"messages": [{"role": "user", "content": "x"}]}, "messages", "/v1/chat/completions"),
        ({"tools": []}, "tools", "/v1/chat/completions"),
        ({"response_format": {"type": "json_object"}}, "response_format", "/v1/chat/completions"),
        ({"max_completion_tokens": 5}, "max_completion_tokens", "/v1/chat/completions"),
    ],
)
def test_what_chat_cannot_do_is_unsupported(fields: dict[str, Any], param: str, hint: str) -> None:
    error = refused(body(**fields))
    assert (error.status, error.param, error.code) == (400, param, "unsupported_parameter")
    assert hint in error.message


def test_every_chat_only_field_is_refused() -> None:
    shared = {"model", "max_tokens", "temperature", "top_p", "n", "stop", "presence_penalty"}
    shared |= {"frequency_penalty", "logit_bias", "seed", "user", "stream", "stream_options", "logprobs"}
    for name in CHAT_FIELDS - shared:
        assert refused(body(**{name: None})).param == name


@pytest.mark.parametrize("data", [body(prompt=None), {"model": "m"}])
def test_missing_prompt_is_required(data: dict[str, Any]) -> None:
    error = refused(data)
    assert (error.status, error.param, error.code) == (400, "prompt", "missing_required")


@pytest.mark.parametrize("prompt", [[], 5, True, {"text": "x"}, ["a", 1], [True], [None]])
def test_a_prompt_of_another_shape_is_invalid(prompt: Any) -> None:
    error = refused(body(prompt=prompt))
    assert (error.status, error.param, error.code) == (400, "prompt", "invalid_value")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"suffix": 3}, "suffix"),
        ({"echo": "yes"}, "echo"),
        ({"best_of": True}, "best_of"),
        ({"best_of": "2"}, "best_of"),
        ({"best_of": -1}, "best_of"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "16"}, "max_tokens"),
        ({"temperature": 9}, "temperature"),
        ({"n": 0}, "n"),
        ({"stop": [1]}, "stop[0]"),
        ({"stream_options": 1}, "stream_options"),
        ({"model": 7}, "model"),
        ({"model": "a\nb"}, "model"),
    ],
)
def test_wrong_values_are_invalid_and_named(fields: dict[str, Any], param: str) -> None:
    error = refused(body(**fields))
    assert (error.status, error.param) == (400, param)
    assert error.code == "invalid_value"


def test_missing_model_is_named() -> None:
    error = refused({"prompt": "x"})
    assert (error.status, error.param, error.code) == (400, "model", "missing_required")


@pytest.mark.parametrize("data", [None, [], "prompt", 3, [{"model": "m", "prompt": "x"}]])
def test_a_body_that_is_not_an_object_is_a_400(data: Any) -> None:
    error = refused(data)
    assert (error.status, error.code) == (400, "invalid_type")


# --- render -------------------------------------------------------------------------------------------


def test_render_is_a_text_completion() -> None:
    answer = response(
        Choice(index=0, message=ResponseMessage(content="Hello"), finish_reason="length"),
        usage=make_usage(prompt=5, completion=7),
    )
    rendered = json.loads(COMPLETIONS.render(answer, request()))
    assert rendered == {
        "id": "cmpl-abc",
        "object": "text_completion",
        "created": 1_700_000_000,
        "model": "gpt-x",
        "choices": [{"text": "Hello", "index": 0, "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }


def test_render_keeps_every_choice_and_the_fingerprint() -> None:
    answer = response(
        Choice(index=0, message=ResponseMessage(content="a"), finish_reason="stop"),
        Choice(index=1, message=ResponseMessage(content="b"), finish_reason="length"),
        system_fingerprint="fp_1",
    )
    rendered = json.loads(COMPLETIONS.render(answer, request(n=2)))
    assert [(c["index"], c["text"], c["finish_reason"]) for c in rendered["choices"]] == [
        (0, "a", "stop"),
        (1, "b", "length"),
    ]
    assert rendered["system_fingerprint"] == "fp_1"
    assert "usage" not in rendered


def test_render_omits_a_null_fingerprint() -> None:
    assert "system_fingerprint" not in json.loads(
        COMPLETIONS.render(response(system_fingerprint=None), request())
    )


def test_a_choice_without_text_renders_empty_text() -> None:
    answer = response(
        Choice(index=0, message=ResponseMessage(content=None, tool_calls=[]), finish_reason="stop")
    )
    assert json.loads(COMPLETIONS.render(answer, request()))["choices"][0]["text"] == ""


@pytest.mark.parametrize(
    ("chat_id", "expected"),
    [("chatcmpl-xyz", "cmpl-xyz"), ("cmpl-xyz", "cmpl-xyz"), ("msg_01", "cmpl-msg_01")],
)
def test_ids_are_recognisably_completions(chat_id: str, expected: str) -> None:
    assert completion_id(chat_id) == expected
    assert json.loads(COMPLETIONS.render(response(id=chat_id), request()))["id"] == expected


# --- stream -------------------------------------------------------------------------------------------


def stream_frames(*batches: list[StreamItem], error: GatewayError | None = None) -> bytes:
    renderer = COMPLETIONS.stream(request(stream=True))
    frames = b"".join(renderer.frames(batch) for batch in batches)
    return frames + (renderer.error(error) if error is not None else renderer.end())


def test_stream_text_chunks_then_finish_then_done() -> None:
    frames = stream_frames(
        [chunk(text_choice("", role="assistant"))],  # the role announcement: nothing to show
        [chunk(text_choice("Hel")), chunk(text_choice("lo"))],
        [],
        [chunk(text_choice(None, finish="stop"))],
    )
    got = events(frames)
    assert got[-1] == "[DONE]"
    assert [(e["choices"][0]["text"], e["choices"][0]["finish_reason"]) for e in got[:-1]] == [
        ("Hel", None),
        ("lo", None),
        ("", "stop"),
    ]
    first = got[0]
    assert (first["id"], first["object"], first["created"], first["model"]) == (
        "cmpl-abc",
        "text_completion",
        1_700_000_000,
        "gpt-x",
    )
    assert first["choices"][0]["logprobs"] is None
    assert first["choices"][0]["index"] == 0
    assert "usage" not in first


def test_stream_skips_deltas_without_text_and_keeps_choice_indexes() -> None:
    tool_delta = ChunkChoice(index=0, delta=Delta(reasoning_content="thinking"))
    frames = stream_frames([chunk(tool_delta), chunk(text_choice("x", index=1), tool_delta)])
    got = events(frames)
    assert len(got) == 2
    assert got[0]["choices"] == [{"text": "x", "index": 1, "logprobs": None, "finish_reason": None}]


def test_stream_usage_chunk() -> None:
    usage = make_usage(prompt=3, completion=2)
    got = events(stream_frames([chunk(usage=usage)]))
    assert got[0]["choices"] == []
    assert got[0]["usage"] == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_stream_usage_on_the_finishing_chunk_is_kept_with_it() -> None:
    got = events(
        stream_frames([chunk(text_choice("!", finish="stop"), usage=make_usage(prompt=1, completion=1))])
    )
    assert got[0]["choices"][0]["finish_reason"] == "stop"
    assert got[0]["usage"]["total_tokens"] == 2


def test_stream_fingerprint_is_kept() -> None:
    assert (
        events(stream_frames([chunk(text_choice("a"), system_fingerprint="fp_9")]))[0]["system_fingerprint"]
        == "fp_9"
    )


def test_stream_decodes_raw_chat_chunks() -> None:
    raw = _encoder.encode(chunk(text_choice("raw text")))
    assert isinstance(raw, bytes)
    got = events(stream_frames([raw, chunk(text_choice(None, finish="length"))]))
    assert got[0]["choices"][0]["text"] == "raw text"
    assert got[0]["object"] == "text_completion"
    assert got[1]["choices"][0]["finish_reason"] == "length"


def test_a_batch_with_nothing_to_show_is_empty_bytes() -> None:
    renderer = COMPLETIONS.stream(request(stream=True))
    assert renderer.frames([]) == b""
    assert renderer.frames([chunk(text_choice(None, role="assistant"))]) == b""


def test_stream_error_midway_is_an_openai_error_event_without_done() -> None:
    frames = stream_frames([chunk(text_choice("par"))], error=UpstreamError("broke", provider="acme"))
    got = events(frames)
    assert "[DONE]" not in got
    assert got[-1] == {
        "error": {"message": "acme: broke", "type": "upstream_error", "param": None, "code": "upstream_error"}
    }


# --- error --------------------------------------------------------------------------------------------


def test_error_is_openai_shaped_with_its_status() -> None:
    status, payload = COMPLETIONS.error(InvalidRequest("bad", param="prompt", code="unsupported_parameter"))
    assert status == 400
    assert json.loads(payload) == {
        "error": {
            "message": "bad",
            "type": "invalid_request_error",
            "param": "prompt",
            "code": "unsupported_parameter",
        }
    }
    status, payload = COMPLETIONS.error(RateLimited("slow down"))
    assert status == 429
    assert json.loads(payload)["error"]["type"] == "rate_limit_error"


# --- the official SDK, without a server ---------------------------------------------------------------


def sdk(handler: Callable[[httpx.Request], httpx.Response]) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://test/v1",
        api_key="x",
        max_retries=0,
        # The SDK is typed for httpx2 but takes an httpx client as well (it converts it).
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),  # type: ignore[arg-type]
    )


def serving(
    make: Callable[[ChatRequest], httpx.Response], seen: list[ChatRequest]
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(http: httpx.Request) -> httpx.Response:
        assert http.url.path == "/v1/completions"
        parsed = COMPLETIONS.parse(json.loads(http.content))
        seen.append(parsed)
        return make(parsed)

    return handler


def test_sdk_reads_a_whole_completion() -> None:
    seen: list[ChatRequest] = []
    answer = response(
        Choice(index=0, message=ResponseMessage(content="there"), finish_reason="length"),
        usage=make_usage(prompt=4, completion=16),
        system_fingerprint="fp_x",
    )

    def make(parsed: ChatRequest) -> httpx.Response:
        return httpx.Response(
            200, content=COMPLETIONS.render(answer, parsed), headers={"content-type": "application/json"}
        )

    completion = sdk(serving(make, seen)).completions.create(model="gpt-x", prompt="hello", temperature=0.2)
    assert seen[0].messages[0].content == "hello"
    assert (seen[0].max_tokens, seen[0].temperature) == (16, 0.2)
    assert completion.id == "cmpl-abc"
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "there"
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].logprobs is None
    assert completion.usage is not None
    assert (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.total_tokens,
    ) == (4, 16, 20)
    assert completion.system_fingerprint == "fp_x"


def sse(frames: bytes) -> httpx.Response:
    return httpx.Response(200, content=frames, headers={"content-type": "text/event-stream"})


def test_sdk_streams_a_completion_with_usage() -> None:
    seen: list[ChatRequest] = []
    raw = _encoder.encode(chunk(text_choice(" world")))

    def make(parsed: ChatRequest) -> httpx.Response:
        renderer = COMPLETIONS.stream(parsed)
        frames = renderer.frames([chunk(text_choice("", role="assistant")), chunk(text_choice("Hello"))])
        frames += renderer.frames([raw, chunk(text_choice(None, finish="stop"))])
        frames += renderer.frames([chunk(usage=make_usage(prompt=2, completion=2))])
        return sse(frames + renderer.end())

    stream = sdk(serving(make, seen)).completions.create(
        model="gpt-x", prompt="hi", stream=True, stream_options={"include_usage": True}, max_tokens=50
    )
    pieces = list(stream)
    assert seen[0].stream is True
    assert seen[0].wants_usage_chunk
    assert seen[0].max_tokens == 50
    assert "".join(p.choices[0].text for p in pieces if p.choices) == "Hello world"
    assert [p.choices[0].finish_reason for p in pieces if p.choices] == [None, None, "stop"]
    assert pieces[-1].choices == []
    assert pieces[-1].usage is not None
    assert pieces[-1].usage.total_tokens == 4


def test_sdk_raises_on_an_error_mid_stream() -> None:
    def make(parsed: ChatRequest) -> httpx.Response:
        renderer = COMPLETIONS.stream(parsed)
        frames = renderer.frames([chunk(text_choice("partial"))])
        return sse(frames + renderer.error(UpstreamError("connection reset", provider="acme")))

    stream = sdk(serving(make, [])).completions.create(model="gpt-x", prompt="hi", stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError, match="acme: connection reset"):
        for piece in stream:
            received.append(piece.choices[0].text)
    assert received == ["partial"]


def test_sdk_sees_a_refusal_as_its_bad_request_error() -> None:
    def handler(http: httpx.Request) -> httpx.Response:
        try:
            COMPLETIONS.parse(json.loads(http.content))
        except InvalidRequest as exc:
            status, payload = COMPLETIONS.error(exc)
            return httpx.Response(status, content=payload, headers={"content-type": "application/json"})
        raise AssertionError("expected a refusal")

    with pytest.raises(openai.BadRequestError) as caught:
        sdk(handler).completions.create(model="gpt-x", prompt=["a", "b"])
    assert caught.value.param == "prompt"
    assert caught.value.code == "unsupported_parameter"
