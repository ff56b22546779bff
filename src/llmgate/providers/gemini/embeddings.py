"""Gemini embeddings: ``embedContent`` for one text, ``batchEmbedContents`` for a list.

https://ai.google.dev/api/embeddings. Neither endpoint reports token usage, so the usage llmgate returns
is an estimate (``core.tokens``, about 4 characters per token) that keeps budgets and rate limits counting;
it is not Google's count.
"""

from __future__ import annotations

import msgspec

from llmgate.core.errors import InvalidRequest, UnexpectedResponse
from llmgate.core.request import EmbeddingRequest
from llmgate.core.response import Embedding, EmbeddingResponse, encode_vector
from llmgate.core.tokens import estimate_text_tokens
from llmgate.core.usage import make_usage
from llmgate.providers.gemini.schema import JSONObject

BATCH_LIMIT = 100
"""Requests per ``batchEmbedContents`` call that Gemini accepts; longer lists are sent in slices."""

# Gemini-native embedding options a caller may send as extra fields.
NATIVE_FIELDS = {"task_type": "taskType", "taskType": "taskType", "title": "title"}


class _Values(msgspec.Struct):
    values: list[float]


class _Single(msgspec.Struct):
    embedding: _Values


class _Batch(msgspec.Struct):
    embeddings: list[_Values]


_single = msgspec.json.Decoder(_Single)
_batch = msgspec.json.Decoder(_Batch)


def texts_of(request: EmbeddingRequest) -> list[str]:
    """The texts to embed; Gemini takes text only, not token ids."""
    texts = request.texts()
    if isinstance(request.input, list) and len(texts) != len(request.input):
        raise InvalidRequest("Gemini embeds text, not token ids.", param="input")
    return texts


def _options(request: EmbeddingRequest) -> JSONObject:
    options: JSONObject = {NATIVE_FIELDS[k]: v for k, v in request.extra.items() if k in NATIVE_FIELDS}
    if request.dimensions is not None:
        options["outputDimensionality"] = request.dimensions
    return options


def single_body(text: str, request: EmbeddingRequest) -> JSONObject:
    """``embedContent`` body."""
    return {"content": {"parts": [{"text": text}]}, **_options(request)}


def batch_body(texts: list[str], request: EmbeddingRequest, resource: str) -> JSONObject:
    """``batchEmbedContents`` body; every request repeats the model resource (``models/...``)."""
    options = _options(request)
    return {
        "requests": [{"model": resource, "content": {"parts": [{"text": text}]}, **options} for text in texts]
    }


def parse_single(raw: bytes) -> list[list[float]]:
    """The vector of an ``embedContent`` answer."""
    try:
        return [_single.decode(raw).embedding.values]
    except msgspec.DecodeError as exc:
        raise UnexpectedResponse(f"gemini: unreadable embedding: {raw[:200]!r}") from exc


def parse_batch(raw: bytes, expected: int) -> list[list[float]]:
    """The vectors of a ``batchEmbedContents`` answer, which must be one per text."""
    try:
        vectors = [item.values for item in _batch.decode(raw).embeddings]
    except msgspec.DecodeError as exc:
        raise UnexpectedResponse(f"gemini: unreadable embeddings: {raw[:200]!r}") from exc
    if len(vectors) != expected:
        raise UnexpectedResponse(f"gemini: {len(vectors)} embeddings for {expected} texts")
    return vectors


def to_response(
    vectors: list[list[float]], texts: list[str], request: EmbeddingRequest, model: str
) -> EmbeddingResponse:
    """The OpenAI-shaped result, base64 (little-endian float32, as OpenAI encodes it) when asked."""
    data = [
        Embedding(index=index, embedding=encode_vector(vector, request.encoding_format))
        for index, vector in enumerate(vectors)
    ]
    tokens = sum(estimate_text_tokens(text) for text in texts)
    return EmbeddingResponse(data=data, model=model, usage=make_usage(prompt=tokens, completion=0))
