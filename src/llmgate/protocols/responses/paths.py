"""Errors that name the offending member in the Responses request's own terms (``input[2].content[0]``).

Two sources: msgspec's validation of one piece of the request (its path is relative to that piece, so
the caller gives the prefix), and the canonical codec's checks of the Chat Completions request built
from it (its path is in Chat Completions terms, translated back here).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, TypeVar

import msgspec

from llmgate.core.errors import InvalidRequest

T = TypeVar("T")

# msgspec's documented message forms: "... - at `$.content[0].type`", "Object missing required field
# `name`" (https://jcristharif.com/msgspec/usage.html#validation-errors).
_AT_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")
_MESSAGE = re.compile(r"^messages\[(?P<index>\d+)\]")
_TOOL = re.compile(r"^tools\[(?P<index>\d+)\]\.function")

# Chat Completions members whose Responses counterpart has another name.
_RENAMED = {
    "max_completion_tokens": "max_output_tokens",
    "reasoning_effort": "reasoning.effort",
    "response_format.json_schema": "text.format",
    "response_format": "text.format",
    "tool_choice.function": "tool_choice",
}


def join(prefix: str, path: str) -> str:
    """``prefix`` + a relative path (``.name`` or ``[0]...``), without a leading dot at the top."""
    joined = f"{prefix}{path}"
    return joined[1:] if joined.startswith(".") else joined


def convert(value: Any, kind: type[T], prefix: str) -> T:
    """``value`` as ``kind``, or an ``InvalidRequest`` whose ``param`` is ``prefix`` + msgspec's path."""
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc), prefix) from None
    except RecursionError:
        raise InvalidRequest(
            "The request is nested too deeply.", param=prefix or None, code="invalid_value"
        ) from None


def _invalid(message: str, prefix: str) -> InvalidRequest:
    located = _AT_PATH.search(message)
    path = located.group("path") if located else ""
    if located is not None:
        message = message[: located.start()]
    missing = _MISSING.search(message)
    if missing is not None:
        field = join(prefix, f"{path}.{missing.group('field')}")
        return InvalidRequest(f"Missing required parameter: '{field}'.", param=field, code="missing_required")
    param = join(prefix, path) or None
    where = f" at '{param}'" if param else ""
    return InvalidRequest(f"Invalid value{where}: {message}", param=param, code="invalid_value")


def responses_param(param: str, origins: Sequence[str]) -> str:
    """A Chat Completions ``param`` of the built request -> the Responses member it came from.

    ``origins[k]`` names where message ``k`` came from (``input[3]``, ``instructions``); a path inside a
    message is cut at the message, as the built message's inner shape is not the caller's.
    """
    message = _MESSAGE.match(param)
    if message is not None:
        index = int(message.group("index"))
        return origins[index] if index < len(origins) else "input"
    if param == "messages":
        return "input"
    tool = _TOOL.match(param)
    if tool is not None:
        return f"tools[{tool.group('index')}]{param[tool.end() :]}"
    for chat, responses in _RENAMED.items():
        if param == chat or param.startswith((f"{chat}.", f"{chat}[")):
            return responses + param[len(chat) :]
    return param


def translated(error: InvalidRequest, origins: Sequence[str]) -> InvalidRequest:
    """The codec's error with its ``param`` (and the quoted param in its message) in Responses terms."""
    if error.param is None:
        return error
    param = responses_param(error.param, origins)
    message = error.message.replace(f"'{error.param}'", f"'{param}'")
    return InvalidRequest(message, param=param, code=error.code)
