"""Validated structured output: a ``json_schema`` (or ``json_object``) reply is checked for every provider.

The schema is compiled before any upstream call (a schema that is not valid JSON Schema is the caller's
400, and no remote ``$ref`` is ever fetched). An invalid reply is asked for again ``retries`` times,
each an ordinary call with its own usage record; then, with ``strict``, the call fails naming the first
violation (a reply that does not match never reaches a strict caller), and without ``strict`` the last
reply is returned marked ``invalid`` (the ``x-llmgate-schema`` header). A strict streamed reply is
checked when it ends: one that does not match ends with an error event instead of ``[DONE]`` (it cannot
be asked for again once its content has gone out).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from llmgate.core.errors import InvalidRequest, SchemaViolation
from llmgate.core.request import ChatRequest
from llmgate.core.results import ChatResult

MAX_COMPILED = 256
_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n(?P<body>.*?)\n?```\s*$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a reply must be: JSON (an object for ``json_object``), matching ``validator`` if given."""

    name: str
    validator: Any
    strict: bool


def _refuse(uri: str) -> Any:
    raise ValueError(f"remote references are not fetched ({uri[:200]})")


class StructuredOutput:
    """The structured-output stage of one gateway."""

    def __init__(self, *, retries: int = 1, enabled: bool = True) -> None:
        self.retries = retries
        self.enabled = enabled
        self._compiled: dict[bytes, Any] = {}

    def expectation(self, request: ChatRequest, *, require: bool = False) -> Expectation | None:
        """What the request's ``response_format`` asks for (``None``: nothing to check). The schema is
        compiled here, before routing: an invalid one is a 400 naming it. ``require``: an invalid reply
        fails even without ``strict``."""
        wanted = request.response_format
        if not self.enabled or wanted is None or wanted.type == "text":
            return None
        if wanted.type == "json_object" or wanted.json_schema is None:
            return Expectation("json_object", None, require)
        spec = wanted.json_schema
        strict = bool(spec.strict) or require
        if spec.schema is None:
            return Expectation(spec.name, None, strict)
        return Expectation(spec.name, self._validator(spec.schema), strict)

    def _validator(self, schema: dict[str, Any]) -> Any:
        key = msgspec.json.encode(schema)
        found = self._compiled.get(key)
        if found is None:
            import jsonschema_rs  # with the first schema a caller sends

            try:
                # Patterns run on Rust's regex engine (linear time, no look-around or backreferences):
                # a caller's pattern cannot make a reply's check take seconds.
                options = jsonschema_rs.RegexOptions()
                found = jsonschema_rs.validator_for(schema, retriever=_refuse, pattern_options=options)
            except (jsonschema_rs.ValidationError, ValueError) as bad:
                first = str(bad).split("\n", 1)[0][:300]
                raise InvalidRequest(
                    f"response_format.json_schema.schema is not a valid JSON Schema: {first}",
                    param="response_format.json_schema.schema",
                ) from None
            if len(self._compiled) >= MAX_COMPILED:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[key] = found
        return found

    async def run(
        self, expected: Expectation | None, call: Callable[[], Awaitable[ChatResult]]
    ) -> ChatResult:
        """``call`` until its reply is as expected (at most ``retries`` more times)."""
        result = await call()
        if expected is None:
            return result
        attempts = 1
        violation = violation_of(expected, result)
        while violation is not None and attempts <= self.retries:
            result = await call()
            attempts += 1
            violation = violation_of(expected, result)
        if violation is None:
            return dataclasses.replace(result, info=dataclasses.replace(result.info, schema="valid"))
        if expected.strict:
            raise SchemaViolation(
                f"the reply does not match the response_format schema '{expected.name[:64]}' after "
                f"{attempts} attempt{'s' if attempts != 1 else ''}: {violation}",
                provider=result.info.provider,
            )
        return dataclasses.replace(result, info=dataclasses.replace(result.info, schema="invalid"))


def violation_of(expected: Expectation, result: ChatResult) -> str | None:
    """The first way the reply differs from what was asked (``None``: it matches)."""
    for choice in result.response.choices:
        message = choice.message
        if message.content is None and message.refusal:  # the model declined: that is an answer
            continue
        if choice.finish_reason == "length":
            return "the reply was cut off at max_tokens before the JSON was complete"
        problem = _content_violation(expected, message.content or "")
        if problem is not None:
            return problem if len(result.response.choices) == 1 else f"choice {choice.index}: {problem}"
    return None


def text_violation(expected: Expectation, text: str, finish_reason: str | None) -> str | None:
    """The first way a streamed reply's text differs from what was asked (``None``: it matches)."""
    if finish_reason == "length":
        return "the reply was cut off at max_tokens before the JSON was complete"
    return _content_violation(expected, text)


def parse_json(text: str) -> Any:
    """The reply's JSON value (a surrounding Markdown code fence is tolerated); raises ``ValueError``."""
    fenced = _FENCE.match(text)
    body = fenced.group("body") if fenced is not None else text
    try:
        return msgspec.json.decode(body.strip().encode())
    except msgspec.DecodeError as bad:
        raise ValueError(str(bad)) from None
    except RecursionError:  # nested deeper than the decoder goes
        raise ValueError("nested too deeply") from None


def _content_violation(expected: Expectation, content: str) -> str | None:
    try:
        value = parse_json(content)
    except ValueError as bad:
        return f"the reply is not JSON ({bad})"
    if expected.validator is None:
        if expected.name == "json_object" and not isinstance(value, dict):
            return "the reply is JSON but not an object"
        return None
    for error in expected.validator.iter_errors(value):
        path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.instance_path)
        return f"at ${path}: {error.message[:300]}"
    return None
