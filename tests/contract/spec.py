"""The OpenAPI document as generated clients see it, and walks over its operations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from payments_api.main import create_app
from payments_api.settings import Settings

COMMITTED_SPEC = Path(__file__).resolve().parents[2] / "openapi.json"
METHODS = ("get", "put", "post", "delete", "patch")
JSON = "application/json"
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def secured(self) -> bool:
        return bool(self.spec.get("security"))

    @property
    def path_params(self) -> list[str]:
        return [p["name"] for p in self.spec.get("parameters", []) if p["in"] == "path"]


@cache
def _app_spec() -> str:
    # The app's own document, as `payments-api openapi` prints it (no .env read).
    return json.dumps(create_app(Settings(_env_file=None)).openapi())


def app_spec() -> dict[str, Any]:
    """A fresh copy of the app's document (tests may not share mutations)."""
    spec: dict[str, Any] = json.loads(_app_spec())
    return spec


def operations(spec: dict[str, Any]) -> Iterator[Operation]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield Operation(method, path, item[method])


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema
