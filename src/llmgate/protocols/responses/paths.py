"""Errors that name the offending member in the Responses request's own terms (``input[2].content[0]``).

Two sources: the validation of one piece of the request (``core.codec.converted``, given where the piece
sits), and the canonical codec's checks of the Chat Completions request built from it (its path is in
Chat Completions terms, translated back here).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from llmgate.core.errors import InvalidRequest

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
