"""Examples: the null fields FastAPI drops from a model's own example put back, and an
example assembled for every JSON request and success body that has none."""

from __future__ import annotations

from typing import Any

from payments_api.openapi.components import is_money_field
from payments_api.openapi.walk import operations, resolve


def _nullable(spec: dict[str, Any], schema: dict[str, Any]) -> bool:
    schema = resolve(spec, schema)
    return schema.get("type") == "null" or any(
        branch.get("type") == "null" for branch in schema.get("anyOf", [])
    )


def _with_nulls(spec: dict[str, Any], schema: dict[str, Any], example: Any) -> Any:
    """``example`` with the required, nullable fields that are missing set to null."""
    schema = resolve(spec, schema)
    if isinstance(example, list) and isinstance(schema.get("items"), dict):
        return [_with_nulls(spec, schema["items"], item) for item in example]
    if not isinstance(example, dict) or "properties" not in schema:
        return example
    restored = dict(example)
    for name, prop in schema["properties"].items():
        if name in restored:
            branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
            if len(branches) == 1:
                restored[name] = _with_nulls(spec, branches[0], restored[name])
        elif name in schema.get("required", []) and _nullable(spec, prop):
            restored[name] = None
    return restored


def restore_null_examples(spec: dict[str, Any]) -> None:
    """FastAPI drops every null from the document (``exclude_none``), examples
    included, which leaves a model's own example without its required nullable fields
    (and so invalid against its schema). Put them back."""
    for schema in spec["components"]["schemas"].values():
        if isinstance(schema.get("examples"), list):
            schema["examples"] = [_with_nulls(spec, schema, e) for e in schema["examples"]]


_SAMPLE_BY_NAME: dict[str, Any] = {"currency": "usd", "url": "https://example.com/"}
_SAMPLE_STRINGS = {
    "date-time": "2026-11-23T20:00:00Z",
    "date": "2026-11-23",
    "uri": "https://app.example.com/",
    "email": "alice@example.com",
    "uuid": "5f0c8a7e-2b1d-4c3e-9a8f-7d6e5c4b3a21",
}


def example_of(
    spec: dict[str, Any], schema: dict[str, Any], *, request: bool, depth: int = 0
) -> Any:
    """An example value for ``schema``: the schema's own example if it has one, else
    one assembled from its fields. Request examples carry the required fields and the
    optional ones that have examples; response examples carry every field."""
    schema = resolve(spec, schema)
    if schema.get("examples"):
        return schema["examples"][0]
    if "example" in schema:
        return schema["example"]
    if "const" in schema:
        return schema["const"]
    if schema.get("default") is not None:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        return example_of(spec, branches[0], request=request, depth=depth) if branches else None
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if depth > 6:
            return {}
        required = set(schema.get("required", []))
        example = {}
        for name, prop in schema.get("properties", {}).items():
            resolved = resolve(spec, prop)
            if request and name not in required and not resolved.get("examples"):
                continue
            if not resolved.get("examples") and name in _SAMPLE_BY_NAME:
                example[name] = _SAMPLE_BY_NAME[name]
            elif not resolved.get("examples") and is_money_field(schema, name):
                example[name] = 1050
            else:
                example[name] = example_of(spec, prop, request=request, depth=depth + 1)
        return example
    if kind == "array":
        items = schema.get("items")
        return [example_of(spec, items, request=request, depth=depth + 1)] if items else []
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1) or 1)
    if kind == "number":
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "string":
        return _SAMPLE_STRINGS.get(str(schema.get("format")), "string")
    return None


def add_examples(spec: dict[str, Any]) -> None:
    """Every JSON request body and success response gets an example, unless its schema
    or media type already has one."""
    for operation in operations(spec):
        contents = [(True, operation.get("requestBody", {}).get("content", {}))]
        contents += [
            (False, response.get("content", {}))
            for status, response in operation.get("responses", {}).items()
            if status.startswith("2")
        ]
        for request, content in contents:
            for media_type, media in content.items():
                if "json" not in media_type or "example" in media or "examples" in media:
                    continue
                schema = media.get("schema")
                if not isinstance(schema, dict) or resolve(spec, schema).get("examples"):
                    continue
                media["example"] = example_of(spec, schema, request=request)
