"""Replies as pydantic models: the ``response_format`` a model class asks for, and the reply parsed."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llmgate.core.errors import SchemaViolation
from llmgate.policies.structured import parse_json

Parsed = TypeVar("Parsed", bound=BaseModel)


def response_format_of(model: type[BaseModel]) -> dict[str, Any]:
    """``response_format`` asking for the model's JSON schema (named after the class)."""
    schema = {"name": model.__name__[:64], "schema": model.model_json_schema()}
    return {"type": "json_schema", "json_schema": schema}


def parsed(model: type[Parsed], text: str) -> Parsed:
    """The reply's JSON as a ``model`` instance (``SchemaViolation`` when it is not one)."""
    try:
        return model.model_validate(parse_json(text))
    except (ValueError, ValidationError) as bad:
        raise SchemaViolation(f"the reply does not parse as {model.__name__}: {bad}") from None
