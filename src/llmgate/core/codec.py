"""Turn untrusted JSON into canonical requests, with errors that name the offending field."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from llmgate.core.errors import InvalidRequest
from llmgate.core.request import (
    CHAT_FIELDS,
    EMBEDDING_FIELDS,
    MAX_DEPTH,
    MAX_EMBEDDING_VALUES,
    ChatRequest,
    EmbeddingRequest,
)

T = TypeVar("T", ChatRequest, EmbeddingRequest)
S = TypeVar("S")

# msgspec reports the location as "... - at `$.messages[0].role`" and a missing field as
# "Object missing required field `model`"; both formats are documented by msgspec.
_AT_PATH = re.compile(r" - at (?P<key>`key` in )?`\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")

_json_decoder = msgspec.json.Decoder()
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Message fields whose values are plain text or typed (so shallow by construction); content parts are
# typed too, and tool calls.
_SHALLOW_MESSAGE_FIELDS = frozenset(
    ("role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal")
)


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
    _check_model_name(request.model)
    _check_free_form(request, data["messages"])
    # Validated above, so the raw list is well-formed; keep it for untouched pass-through.
    return msgspec.structs.replace(request, raw_messages=data["messages"])


def chat_request_of(
    model: str | ChatRequest,
    messages: Sequence[Mapping[str, Any]] | None,
    params: Mapping[str, Any],
    *,
    stream: bool,
) -> ChatRequest:
    """A validated request from the library's ``chat(model, messages, **params)`` (a request as it is)."""
    if isinstance(model, ChatRequest):
        return model
    if messages is None:
        raise InvalidRequest("messages are required", param="messages")
    return parse_chat_request({**params, "model": model, "messages": list(messages), "stream": stream})


def parse_embedding_request(data: Any) -> EmbeddingRequest:
    """Validate a decoded embeddings body."""
    request = _convert(data, EmbeddingRequest, EMBEDDING_FIELDS)
    _check_model_name(request.model)
    check_nesting(request.extra.items(), "")
    if request.dimensions is not None and not isinstance(request.input, str):
        values = len(request.input) * request.dimensions
        if values > MAX_EMBEDDING_VALUES:
            raise InvalidRequest(
                f"{len(request.input)} inputs x {request.dimensions} dimensions is {values} values; the "
                f"limit is {MAX_EMBEDDING_VALUES} per request: send fewer inputs or fewer dimensions.",
                param="dimensions",
                code="invalid_value",
            )
    return request


def _check_model_name(model: str) -> None:
    """A model name is text a caller chose: control characters (CR, LF, NUL...) cannot name a model, and
    must never reach a header or a log line."""
    if _CONTROL.search(model):
        raise InvalidRequest(
            "The model name must not contain control characters (such as CR, LF or NUL).",
            param="model",
            code="invalid_value",
        )


def _check_free_form(request: ChatRequest, raw_messages: list[Any]) -> None:
    """Free-form JSON (tool schemas, pass-through fields) is bounded in depth: code that walks it (schema
    translation, the mock's example values) must never recurse without limit."""
    check_nesting(request.extra.items(), "")
    for index, tool in enumerate(request.tools or ()):
        check_nesting([("parameters", tool.function.parameters)], f"tools[{index}].function.")
    for index, function in enumerate(request.functions or ()):
        check_nesting([("parameters", function.parameters)], f"functions[{index}].")
    response_format = request.response_format
    if response_format is not None and response_format.json_schema is not None:
        check_nesting([("schema", response_format.json_schema.schema)], "response_format.json_schema.")
    for index, message in enumerate(raw_messages):
        if len(message) > 2:  # role and content need no look: only fields llmgate does not model nest
            extra = [(key, value) for key, value in message.items() if key not in _SHALLOW_MESSAGE_FIELDS]
            check_nesting(extra, f"messages[{index}].")


def check_nesting(fields: Iterable[tuple[str, Any]], prefix: str) -> None:
    """400 for a field whose JSON nests deeper than ``MAX_DEPTH`` (named ``prefix`` + its name)."""
    for name, value in fields:
        if isinstance(value, dict | list) and _deeper_than(value, MAX_DEPTH):
            raise InvalidRequest(
                f"'{prefix}{name}' is nested more than {MAX_DEPTH} levels deep.",
                param=f"{prefix}{name}",
                code="invalid_value",
            )


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether a JSON value nests deeper than ``limit`` (iterative: no recursion on hostile input)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _joined(prefix: str, path: str) -> str:
    if not prefix or not path:
        return prefix or path
    return f"{prefix}{path}" if path.startswith("[") else f"{prefix}.{path}"


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
    return convert_as(fields, target)


def convert_as(data: Any, target: type[S]) -> S:
    """Decoded JSON checked against a struct type (an inbound protocol's body), with the same errors as
    the canonical requests: ``InvalidRequest`` naming the field's path."""
    if not isinstance(data, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_type")
    return converted(data, target)


def converted(value: Any, target: type[S], *, prefix: str = "") -> S:
    """Any piece of decoded JSON as ``target``; an error's ``param`` is ``prefix`` (where the piece sits
    in the request, ``input[2]``) followed by the path inside it."""
    try:
        return msgspec.convert(value, target)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), prefix) from exc
    except RecursionError:
        raise InvalidRequest(
            "The request is nested too deeply.", param=prefix or None, code="invalid_value"
        ) from None


def _invalid(message: str, prefix: str = "") -> InvalidRequest:
    param: str | None = prefix or None
    located = _AT_PATH.search(message)
    if located is not None:
        param = _joined(prefix, located.group("path")) or None
        message = message[: located.start()]
    missing = _MISSING.search(message)
    if missing is not None:
        field = missing.group("field")
        param = f"{param}.{field}" if param else field
        return InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required")
    where = f" at '{param}'" if param else ""
    if located is not None and located.group("key"):
        where = f" in a key of '{param}'"
    return InvalidRequest(f"Invalid value{where}: {message}", param=param, code="invalid_value")
