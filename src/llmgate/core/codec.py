"""Turn untrusted JSON into canonical requests, with errors that name the offending field."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import msgspec

from llmgate.core.errors import InvalidRequest
from llmgate.core.request import CHAT_FIELDS, EMBEDDING_FIELDS, ChatRequest, EmbeddingRequest

T = TypeVar("T", ChatRequest, EmbeddingRequest)

# msgspec reports the location as "... - at `$.messages[0].role`" and a missing field as
# "Object missing required field `model`"; both formats are documented by msgspec.
_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")

_json_decoder = msgspec.json.Decoder()


def decode_json(body: bytes) -> Any:
    """Parse a request body; anything that is not JSON is an ``InvalidRequest``."""
    try:
        return _json_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}", code="invalid_json") from exc
    except RecursionError:
        raise InvalidRequest("The request body is nested too deeply.", code="invalid_json") from None


def parse_chat_request(data: Any) -> ChatRequest:
    """Validate a decoded Chat Completions body. Unknown top-level fields go to ``extra``."""
    request = _convert(data, ChatRequest, CHAT_FIELDS)
    # Validated above, so the raw list is well-formed; keep it for untouched pass-through.
    return msgspec.structs.replace(request, raw_messages=data["messages"])


def parse_embedding_request(data: Any) -> EmbeddingRequest:
    """Validate a decoded embeddings body."""
    return _convert(data, EmbeddingRequest, EMBEDDING_FIELDS)


def _convert(data: Any, target: type[T], known: frozenset[str]) -> T:
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    fields: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in data.items():
        if key in known:
            fields[key] = value
        else:
            extra[key] = value
    if extra:
        fields["extra"] = extra
    try:
        return msgspec.convert(fields, target)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from exc
    except RecursionError:
        raise InvalidRequest("The request is nested too deeply.", code="invalid_value") from None


def _invalid(message: str) -> InvalidRequest:
    param: str | None = None
    located = _AT_PATH.search(message)
    if located is not None:
        param = located.group("path") or None
        message = message[: located.start()]
    missing = _MISSING.search(message)
    if missing is not None:
        field = missing.group("field")
        param = f"{param}.{field}" if param else field
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required")
    where = f" at '{param}'" if param else ""
    return InvalidRequest(f"Invalid value{where}: {message}", param=param, code="invalid_value")
