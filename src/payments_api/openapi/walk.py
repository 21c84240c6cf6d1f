"""Walking the document: its operations and its schemas behind ``$ref``s."""

from __future__ import annotations

from typing import Any


def operations(spec: dict[str, Any]) -> list[dict[str, Any]]:
    methods = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
    return [
        operation
        for path_item in spec.get("paths", {}).values()
        for method, operation in path_item.items()
        if method in methods
    ]


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        resolved: dict[str, Any] = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        schema = {**resolved, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema
