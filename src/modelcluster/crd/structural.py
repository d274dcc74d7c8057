"""Turn a pydantic JSON schema into a Kubernetes structural OpenAPI v3 schema.

Structural schemas allow no ``$ref``, no ``anyOf`` of types, no ``title``, no
``additionalProperties`` next to ``properties`` and no ``null`` defaults. This
module inlines references, drops the ``null`` branch of optional fields, and
keeps descriptions, defaults, bounds, enums and every ``x-kubernetes-*`` key.
"""

from __future__ import annotations

from typing import Any

JsonSchema = dict[str, Any]

_KEPT_KEYS = (
    "type",
    "format",
    "enum",
    "default",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
)


def _resolve(schema: JsonSchema, defs: dict[str, JsonSchema]) -> JsonSchema:
    """Inline a ``$ref``; keys beside the reference (description, default) win."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    target = defs[ref.removeprefix("#/$defs/")]
    siblings = {key: value for key, value in schema.items() if key != "$ref"}
    return {**target, **siblings}


def _drop_null_branch(schema: JsonSchema) -> JsonSchema:
    """``anyOf: [X, {type: null}]`` (an optional field) becomes X with the outer keys."""
    branches = schema.get("anyOf")
    if branches is None:
        return schema
    concrete = [branch for branch in branches if branch.get("type") != "null"]
    if len(concrete) != 1:
        raise ValueError(f"cannot express a union of {len(concrete)} types structurally: {schema}")
    outer = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**concrete[0], **outer}


def to_structural(schema: JsonSchema, defs: dict[str, JsonSchema] | None = None) -> JsonSchema:
    """A structural copy of ``schema``; ``defs`` defaults to the schema's own ``$defs``."""
    if defs is None:
        defs = schema.get("$defs", {})
    schema = _drop_null_branch(_resolve(schema, defs))
    schema = _resolve(schema, defs)

    result: JsonSchema = {}
    if "description" in schema:
        result["description"] = " ".join(str(schema["description"]).split())
    for key in _KEPT_KEYS:
        if key in schema and not (key == "default" and schema[key] is None):
            result[key] = schema[key]
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        # JSON Schema 2020 gives the bound itself; OpenAPI v3 (the apiserver's dialect) a flag on the limit.
        if isinstance(result.get(bound), int | float) and not isinstance(result.get(bound), bool):
            result[limit] = result[bound]
            result[bound] = True

    properties = schema.get("properties")
    if properties is not None:
        result["type"] = "object"
        result["properties"] = {name: to_structural(prop, defs) for name, prop in properties.items()}
        if schema.get("required"):
            result["required"] = list(schema["required"])
    elif "items" in schema:
        result["items"] = to_structural(schema["items"], defs)
    elif "type" not in schema:
        # ``Any``: anything goes, kept as is by the apiserver.
        result["x-kubernetes-preserve-unknown-fields"] = True

    for key, value in schema.items():
        if key.startswith("x-kubernetes-"):
            result[key] = value
    return result
