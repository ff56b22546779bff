"""Settings of the toolkit: prompt templates, condensing, structured output (SPEC.md section 9)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

VariableType = Literal["string", "integer", "number", "boolean", "list", "object", "any"]
ContextOverflow = Literal["error", "truncate", "condense"]
PROMPT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariableSettings(_Frozen):
    """A template variable: its type, and a default (a variable with no default must be given)."""

    type: VariableType = "string"
    default: str | int | float | bool | list[object] | dict[str, object] | None = None
    required: bool | None = None
    """``None``: required when there is no default."""
    description: str = ""


class PromptSettings(_Frozen):
    """A named prompt: a Jinja2 template for the user message (``template``, or a ``file`` beside the
    config, which the loader reads into ``template``), an optional system template, and its typed
    variables."""

    template: str | None = None
    file: str | None = None
    """Where ``template`` was read from (the loader sets both)."""
    system: str | None = None
    description: str = ""
    variables: dict[str, VariableType | VariableSettings] = {}

    @model_validator(mode="after")
    def _has_template(self) -> PromptSettings:
        if self.template is None:
            raise ValueError("give a prompt 'template' (the text) or 'file' (a path beside the config)")
        return self


class CondenseSettings(_Frozen):
    """How conversations are condensed: the summariser model (a group or ``provider:model``; ``None``:
    the conversation's own model) and the longest summary it may write."""

    model: str | None = None
    max_summary_tokens: int = Field(512, ge=16, le=16_384)


class StructuredOutputSettings(_Frozen):
    """A ``json_schema`` reply is validated against its schema; an invalid one is asked for again
    ``retries`` times, then the call fails naming the first violation."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    retries: int = Field(1, ge=0, le=5)
    validate_replies: bool = Field(True, alias="validate")
