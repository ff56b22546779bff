"""JSON Schema, as OpenAI callers write it, -> the OpenAPI-subset ``Schema`` Gemini accepts.

Gemini's function ``parameters`` and ``generationConfig.responseSchema`` take a subset of OpenAPI 3.0
(https://ai.google.dev/api/caching#Schema); a key outside it fails the whole call with 400 "Invalid JSON
payload received. Unknown name ..." (e.g. ``additionalProperties``, ``$schema``, ``$defs``). So the
conversion keeps what Gemini reads and rewrites what has an equivalent:

- ``$ref`` into ``$defs``/``definitions`` is inlined (Gemini has no references); a recursive reference is
  cut at its first repetition and becomes a bare ``{"type": "object"}``.
- ``oneOf`` becomes ``anyOf``; ``allOf`` is merged into one schema; ``const`` (string) becomes a one-value
  ``enum``.
- ``"type": [..., "null"]`` and an ``anyOf`` member ``{"type": "null"}`` become ``"nullable": true``.
- ``enum`` is kept only when every value is a string (Gemini enums are strings); ``format`` only where
  Gemini documents it (``enum``/``date-time`` for strings, ``int32``/``int64``, ``float``/``double``).
- Everything else (``additionalProperties``, ``exclusiveMinimum``, ``examples``, ``patternProperties``,
  ``if``/``then``/``else``, ...) is dropped: the model is then asked for less than the caller constrained,
  never for something else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmgate.core.errors import InvalidRequest

JSONObject = dict[str, Any]

_KEPT = frozenset(
    {
        "type",
        "format",
        "title",
        "description",
        "nullable",
        "enum",
        "maxItems",
        "minItems",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "example",
        "default",
        "propertyOrdering",
        "minimum",
        "maximum",
    }
)
_FORMATS = {
    "string": frozenset({"enum", "date-time"}),
    "integer": frozenset({"int32", "int64"}),
    "number": frozenset({"float", "double"}),
}
_REF_PREFIXES = ("#/$defs/", "#/definitions/")


def to_gemini_schema(schema: Mapping[str, Any], *, param: str) -> JSONObject:
    """The Gemini ``Schema`` for a JSON schema; ``param`` names the field in errors."""
    definitions: dict[str, Any] = {}
    for key in ("definitions", "$defs"):  # the schema is the caller's: any member may have any shape
        found = schema.get(key)
        if isinstance(found, Mapping):
            definitions.update(found)
    return _Converter(definitions, param).convert(schema, ())


class _Converter:
    def __init__(self, definitions: Mapping[str, Any], param: str) -> None:
        self._definitions = definitions
        self._param = param

    def convert(self, node: Any, expanding: tuple[str, ...]) -> JSONObject:
        """One schema node; ``expanding`` is the chain of references being inlined (cycle guard)."""
        if not isinstance(node, Mapping):
            return {}  # JSON Schema's ``true`` (anything): Gemini's closest is no constraint at all
        if "$ref" in node:
            return self._reference(node, expanding)
        if "allOf" in node:
            return self._merge_all(node, expanding)
        out: JSONObject = {key: value for key, value in node.items() if key in _KEPT}
        self._type(out, node)
        if "const" in node and isinstance(node["const"], str):
            out["enum"] = [node["const"]]
        self._enum(out)
        self._format(out)
        self._children(out, node, expanding)
        return out

    def _reference(self, node: Mapping[str, Any], expanding: tuple[str, ...]) -> JSONObject:
        ref = node["$ref"]
        name = next(
            (ref[len(p) :] for p in _REF_PREFIXES if isinstance(ref, str) and ref.startswith(p)), None
        )
        if name is None or name not in self._definitions:
            raise InvalidRequest(
                f"Gemini cannot resolve the schema reference {ref!r}: only local '#/$defs/...' "
                "and '#/definitions/...' references are supported.",
                param=self._param,
            )
        if name in expanding:
            resolved: JSONObject = {"type": "object"}
        else:
            resolved = self.convert(self._definitions[name], (*expanding, name))
        siblings = self.convert({k: v for k, v in node.items() if k != "$ref"}, expanding)
        return {**resolved, **siblings}

    def _merge_all(self, node: Mapping[str, Any], expanding: tuple[str, ...]) -> JSONObject:
        merged = self.convert({k: v for k, v in node.items() if k != "allOf"}, expanding)
        members = node["allOf"]
        for member in members if isinstance(members, list) else ():
            part = self.convert(member, expanding)
            properties = {**part.pop("properties", {}), **merged.get("properties", {})}
            required = [*merged.get("required", []), *part.pop("required", [])]
            merged = {**part, **merged}
            if properties:
                merged["properties"] = properties
            if required:
                merged["required"] = list(dict.fromkeys(required))
        return merged

    @staticmethod
    def _type(out: JSONObject, node: Mapping[str, Any]) -> None:
        kind = node.get("type")
        if not isinstance(kind, list):
            return
        kinds = [k for k in kind if k != "null"]
        if len(kinds) < len(kind):
            out["nullable"] = True
        if len(kinds) == 1:
            out["type"] = kinds[0]
        else:
            out.pop("type", None)
            if kinds:
                out["anyOf"] = [{"type": k} for k in kinds]

    @staticmethod
    def _enum(out: JSONObject) -> None:
        values = out.get("enum")
        if values is None:
            return
        if isinstance(values, list) and values and all(isinstance(v, str) for v in values):
            out.setdefault("type", "string")
        else:
            del out["enum"]  # Gemini enums are strings; a numeric enum would change the answer's type

    @staticmethod
    def _format(out: JSONObject) -> None:
        known = _FORMATS.get(str(out.get("type")), frozenset())
        if "format" in out and not (isinstance(out["format"], str) and out["format"] in known):
            del out["format"]

    def _children(self, out: JSONObject, node: Mapping[str, Any], expanding: tuple[str, ...]) -> None:
        properties = node.get("properties")
        if isinstance(properties, Mapping):
            out["properties"] = {name: self.convert(sub, expanding) for name, sub in properties.items()}
            required = node.get("required")
            if isinstance(required, list):
                out["required"] = [n for n in required if isinstance(n, str) and n in out["properties"]]
        if isinstance(node.get("items"), Mapping):
            out["items"] = self.convert(node["items"], expanding)
        members = node.get("anyOf", node.get("oneOf"))
        if isinstance(members, list):
            self._any_of(out, [m for m in members if isinstance(m, Mapping)], expanding)

    def _any_of(self, out: JSONObject, members: list[Mapping[str, Any]], expanding: tuple[str, ...]) -> None:
        options = [self.convert(m, expanding) for m in members if m.get("type") != "null"]
        if len(options) < len(members):
            out["nullable"] = True
        if len(options) == 1:  # ``X | None`` as pydantic writes it: just a nullable X
            out.update({key: value for key, value in options[0].items() if key not in out})
        elif options:
            out["anyOf"] = [*out.get("anyOf", []), *options]
