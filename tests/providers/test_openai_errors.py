"""Translating OpenAI-style errors: Retry-After, status and phrasing -> the core error tree, redaction."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from multidict import CIMultiDict

from llmgate.core.errors import (
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    ProviderAuthError,
    RateLimited,
    StreamInterrupted,
    UnexpectedResponse,
    UpstreamError,
    UpstreamTimeout,
    redact,
)
from llmgate.core.response import ChatChunk
from llmgate.providers.openai import OpenAIStream, OpenAIWire, error_from_body
from llmgate.providers.ratelimit import retry_after_seconds


def _parse(status: int, body: bytes, headers: dict[str, str] | None = None) -> GatewayError:
    return OpenAIWire().parse_error(status, headers or {}, body)


def _openai_error(message: str, *, code: str | None = None, param: str | None = None) -> dict[str, object]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


# --- Retry-After -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        # Azure AI Foundry's recorded 429 carries both; a zero millisecond hint is no hint.
        ({"retry-after-ms": "0", "retry-after": "1"}, 1.0),
        ({"retry-after-ms": "soon", "retry-after": "3"}, 3.0),
        ({"retry-after-ms": "0"}, None),
        ({}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "Tue, 99 Foo 2024 99:99:99 GMT"}, None),
    ],
)
def test_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_seconds(headers) == expected


def test_retry_after_http_date_in_the_future() -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    seconds = retry_after_seconds({"retry-after": format_datetime(when, usegmt=True)})
    assert seconds is not None
    assert 110 < seconds <= 120  # HTTP dates have whole seconds


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


def test_retry_after_reads_case_insensitive_response_headers() -> None:
    # The client hands over lower-case names; a case-insensitive mapping (a CIMultiDict) is read as well.
    assert retry_after_seconds(CIMultiDict({"Retry-After": "4"})) == 4.0
    assert retry_after_seconds(CIMultiDict({"Retry-After-Ms": "40"})) == 0.04


def test_rate_limit_carries_retry_after_from_headers() -> None:
    body = json.dumps(_openai_error("Rate limit reached", code="rate_limit_exceeded")).encode()
    error = _parse(429, body, {"retry-after": "20"})
    assert type(error) is RateLimited
    assert error.retry_after == 20.0
    assert error.retryable


def test_overloaded_carries_retry_after_from_headers() -> None:
    error = _parse(503, b'{"error": {"message": "busy"}}', {"retry-after": "2"})
    assert type(error) is Overloaded
    assert error.retry_after == 2.0


# --- context length --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        # OpenAI (also sends code context_length_exceeded) and vLLM
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
        "(4000 in the messages, 1000 in the completion). Please reduce the length of the messages.",
        # Mistral
        "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum context length",
        # Anthropic-style wording via an OpenAI-compatible proxy
        "prompt is too long: 3333404 tokens > 200000 maximum",
        # Cohere-style wording via an OpenAI-compatible proxy
        "too many tokens: size limit exceeded by 25836 tokens. Try using shorter or fewer inputs.",
        "The input exceeds the maximum number of tokens for this model",
        "Input is longer than the model's context window",
        "requested 9000 tokens, context_length is 8192",
    ],
)
def test_context_length_phrasings(message: str) -> None:
    error = _parse(400, json.dumps(_openai_error(message)).encode())
    assert type(error) is ContextLengthExceeded
    assert error.message == message
    assert error.param == "messages"
    assert error.code == "context_length_exceeded"


def test_context_length_by_code_whatever_the_message() -> None:
    body = _openai_error("Please reduce the length of the messages.", code="context_length_exceeded")
    error = _parse(400, json.dumps(body).encode())
    assert type(error) is ContextLengthExceeded
    assert error.message == "Please reduce the length of the messages."


@pytest.mark.parametrize("status", [413, 422])
def test_context_length_on_other_client_statuses(status: int) -> None:
    error = _parse(status, json.dumps(_openai_error("maximum context length is 2048 tokens")).encode())
    assert type(error) is ContextLengthExceeded


def test_context_length_keeps_the_provider_param() -> None:
    body = _openai_error("maximum context length exceeded", param="messages[3].content")
    error = _parse(400, json.dumps(body).encode())
    assert isinstance(error, ContextLengthExceeded)
    assert error.param == "messages[3].content"


def test_other_bad_requests_stay_invalid_request() -> None:
    body = _openai_error(
        "Unsupported value: 'messages[0].role' does not support 'system' with this model.",
        code="unsupported_value",
        param="messages[0].role",
    )
    error = _parse(400, json.dumps(body).encode())
    assert type(error) is InvalidRequest
    assert error.code == "unsupported_value"
    assert error.param == "messages[0].role"
    assert not error.retryable


def test_bad_request_without_code_gets_the_default_code() -> None:
    error = _parse(400, b'{"error": {"message": "bad", "code": null}}')
    assert type(error) is InvalidRequest
    assert error.code == "invalid_request"
    assert error.param is None


# --- status classes --------------------------------------------------------------------------------------


def test_insufficient_quota_is_a_rate_limit_with_its_code() -> None:
    body = _openai_error(
        "You exceeded your current quota, please check your plan and billing details.",
        code="insufficient_quota",
    )
    error = _parse(429, json.dumps(body).encode(), {"retry-after": "1"})
    assert type(error) is RateLimited
    assert error.code == "insufficient_quota"
    assert error.message.startswith("You exceeded your current quota")
    assert error.retryable  # another key or deployment may still have quota


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, ProviderAuthError),
        (403, ProviderAuthError),
        (404, ModelNotFound),
        (408, UpstreamTimeout),
        (500, UpstreamError),
        (502, UpstreamError),
        (503, Overloaded),
        (504, UpstreamTimeout),
        (520, UpstreamError),
        (529, Overloaded),
    ],
)
def test_status_classes(status: int, cls: type[GatewayError]) -> None:
    error = _parse(status, b'{"error": {"message": "upstream said no"}}')
    assert type(error) is cls
    assert error.message == "upstream said no"


@pytest.mark.parametrize("status", [500, 502, 503, 504, 529])
def test_server_errors_are_retryable(status: int) -> None:
    assert _parse(status, b"").retryable


def test_model_not_found_has_its_code() -> None:
    body = _openai_error("The model `nonexistent` does not exist", code="model_not_found")
    error = _parse(404, json.dumps(body).encode())
    assert type(error) is ModelNotFound
    assert error.code == "model_not_found"


def test_unlisted_client_status_is_an_upstream_error_naming_the_status() -> None:
    error = _parse(409, b'{"error": {"message": "conflict"}}')
    assert type(error) is UpstreamError
    assert error.message == "HTTP 409: conflict"


# --- body shapes -----------------------------------------------------------------------------------------


def test_non_json_error_body_is_the_message() -> None:
    error = _parse(502, b"<html><body>502 Bad Gateway</body></html>")
    assert type(error) is UpstreamError
    assert error.message == "<html><body>502 Bad Gateway</body></html>"


def test_long_non_json_error_body_is_cut() -> None:
    error = _parse(500, b"x" * 5000)
    assert error.message == "x" * 500


def test_non_utf8_error_body_does_not_crash() -> None:
    error = _parse(500, b"\xff\xfe broken")
    assert type(error) is UpstreamError
    assert "broken" in error.message


def test_empty_error_body_names_the_status() -> None:
    assert _parse(503, b"").message == "upstream answered HTTP 503"


def test_error_as_a_plain_string() -> None:
    error = _parse(401, b'{"error": "Invalid API key"}')
    assert type(error) is ProviderAuthError
    assert error.message == "Invalid API key"


def test_error_as_detail() -> None:
    # Mistral's 401 (recorded): {"detail": "Invalid API Key"}
    assert _parse(401, b'{"detail": "Invalid API Key"}').message == "Invalid API Key"


def test_error_as_top_level_message() -> None:
    assert _parse(400, b'{"message": "bad field", "code": "bad_field"}').message == "bad field"


def test_numeric_error_code_is_ignored() -> None:
    # OpenRouter (recorded) sends "code": 429 as a number.
    error = _parse(429, b'{"error": {"message": "Rate limit exceeded", "code": 429}}')
    assert type(error) is RateLimited
    assert error.code == "rate_limit_exceeded"


def test_json_that_is_not_an_object() -> None:
    assert _parse(500, b"[1, 2]").message == "upstream answered HTTP 500"
    assert _parse(500, b'"just a string"').message == "just a string"


def test_error_from_body_directly() -> None:
    error = error_from_body({"error": {"message": "slow down"}}, status=429, retry_after=3.0)
    assert type(error) is RateLimited
    assert error.retry_after == 3.0
    assert type(error_from_body(None, status=500)) is UpstreamError


# --- errors inside 200 responses and streams -------------------------------------------------------------


def test_error_object_with_status_200_is_not_a_success() -> None:
    with pytest.raises(UpstreamError) as caught:
        OpenAIWire().parse_chat(b'{"error": {"message": "The server had an error", "type": "server_error"}}')
    assert caught.value.message == "The server had an error"


def test_unreadable_200_body_is_an_unexpected_response() -> None:
    with pytest.raises(UnexpectedResponse):
        OpenAIWire().parse_chat(b"<html>oops</html>")


def test_in_band_stream_error_event_raises() -> None:
    stream = OpenAIStream()
    event = b'{"error": {"message": "The model is overloaded", "type": "server_error", "code": null}}'
    with pytest.raises(UpstreamError) as caught:
        stream.feed(event)
    assert caught.value.message == "The model is overloaded"
    assert not stream.finished


def test_unreadable_stream_event_raises() -> None:
    with pytest.raises(UnexpectedResponse) as caught:
        OpenAIStream().feed(b"{not json")
    assert "{not json" in caught.value.message


def test_done_ends_the_stream() -> None:
    stream = OpenAIStream()
    chunk = b'{"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": []}'
    assert len(stream.feed(chunk)) == 1
    assert stream.feed(b"[DONE]") == []
    assert stream.finished


def test_done_before_any_chunk_is_an_interrupted_stream() -> None:
    with pytest.raises(StreamInterrupted):
        OpenAIStream().feed(b"[DONE]")


def test_azure_prompt_filter_report_is_skipped() -> None:
    # The first event of every Azure OpenAI stream (recorded in azure_openai__chat_stream_usage__langchain).
    report = (
        b'{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":'
        b'[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}'
    )
    stream = OpenAIStream()
    assert stream.feed(report) == []
    assert not stream.finished


def test_non_chunk_without_filter_report_still_raises() -> None:
    with pytest.raises(UnexpectedResponse):
        OpenAIStream().feed(b'{"choices":[],"created":0,"id":"","model":"","object":""}')


# --- chunks passed on as sent --------------------------------------------------------------------------

ROLE = b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}'
TEXT = b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null,"obfuscation":"x1"}'
MORE = b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" there"},"finish_reason":null}],"obfuscation":"x2"}'
USAGE = b'{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}'


def started() -> OpenAIStream:
    stream = OpenAIStream()
    assert all(isinstance(item, ChatChunk) for item in stream.feed(ROLE))  # routing must see these
    assert all(isinstance(item, ChatChunk) for item in stream.feed(TEXT))
    return stream


def test_after_the_first_content_plain_chunks_pass_as_sent() -> None:
    stream = started()
    assert stream.feed(MORE) == [MORE]  # unknown fields and all: never decoded and re-encoded
    [usage] = stream.feed(USAGE)
    assert isinstance(usage, ChatChunk) and usage.usage is not None  # usage is always read
    assert usage.usage.total_tokens == 5
    assert stream.feed(b"[DONE]") == []
    assert stream.finished


def test_a_role_only_chunk_does_not_start_passing() -> None:
    stream = OpenAIStream()
    stream.feed(ROLE)
    [again] = stream.feed(ROLE)
    assert isinstance(again, ChatChunk)


def test_an_error_event_after_content_still_raises() -> None:
    stream = started()
    with pytest.raises(UpstreamError) as caught:
        stream.feed(b'{"error": {"message": "The model is overloaded", "type": "server_error"}}')
    assert caught.value.message == "The model is overloaded"


def test_an_unreadable_event_after_content_still_raises() -> None:
    stream = started()
    with pytest.raises(UnexpectedResponse):
        stream.feed(MORE[:-5])


def test_usage_on_a_content_chunk_after_content_still_moves_to_its_own_chunk() -> None:
    stream = started()
    last = MORE.replace(
        b'"obfuscation":"x2"', b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}'
    )
    [chunk] = stream.feed(last)
    assert isinstance(chunk, ChatChunk) and chunk.usage is None and chunk.choices
    [usage] = stream.feed(b"[DONE]")
    assert isinstance(usage, ChatChunk) and usage.choices == [] and usage.usage is not None


# --- redaction -------------------------------------------------------------------------------------------


def test_redact_removes_the_key() -> None:
    key = "my-very-own-secret"
    assert redact(f"Incorrect API key provided: {key}. Check it.", key) == (
        "Incorrect API key provided: <redacted>. Check it."
    )


@pytest.mark.parametrize(
    "secret",
    [
        "sk-proj-AbCdEf1234567890",
        "sk-ant-api03-AbCdEf1234567890",
        "hf_AbCdEfGhIjKlMnOpQr",
        "AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv",
        "key-1234567890abcdef",
    ],
)
def test_redact_removes_key_like_strings(secret: str) -> None:
    redacted = redact(f"upstream said: invalid key {secret}, sorry", None)
    assert secret not in redacted
    assert redacted == "upstream said: invalid key <redacted>, sorry"


def test_redact_keeps_ordinary_text() -> None:
    text = "The model `gpt-4o` does not exist; see https://platform.openai.com/docs/models (skip-it)."
    assert redact(text, None) == text
