"""Every request header the service reads is declared in the OpenAPI document.

The names are found in the source, where they are read (``request.headers``,
``Header(alias=...)``, the ASGI middlewares' ``_header(scope, b"...")``), so a header
read in a new place without a declaration fails here. HTTP's own framing headers and
``Authorization`` are declared otherwise (request bodies' media types, the bearer
security scheme).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from payments_api.kit.middleware import REQUEST_ID_PATTERN
from payments_api.main import create_app
from payments_api.settings import Settings
from tests.helpers import auth

SRC = Path(__file__).resolve().parents[2] / "src" / "payments_api"
# The sandbox's Stripe stand-in (not part of this API's document) reads Stripe's headers.
NOT_THIS_API = {SRC / "sandbox" / "api.py"}
DECLARED_OTHERWISE = {
    "authorization": "the bearer security scheme",
    "content-type": "each request body's media types",
    "content-length": "HTTP framing",
    "transfer-encoding": "HTTP framing",
}
_READS = (
    re.compile(r"""_header\(\s*scope,\s*b["']([A-Za-z0-9-]+)["']"""),
    re.compile(r"""headers\.get\(\s*["']([A-Za-z0-9-]+)["']"""),
    re.compile(r"""Header\([^)]*alias=["']([A-Za-z0-9-]+)["']"""),
)


def headers_read_by_the_service() -> dict[str, set[str]]:
    """Header name (lower case) -> the source files that read it."""
    found: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        if path in NOT_THIS_API:
            continue
        text = path.read_text()
        for pattern in _READS:
            for name in pattern.findall(text):
                found.setdefault(name.lower(), set()).add(str(path.relative_to(SRC)))
    return found


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = create_app(Settings(_env_file=None)).openapi()
    return document


def _declared_headers(operation: dict[str, Any]) -> set[str]:
    return {p["name"].lower() for p in operation.get("parameters", []) if p["in"] == "header"}


def test_the_source_scan_finds_the_headers_read_today() -> None:
    read = headers_read_by_the_service()
    assert {"x-request-id", "idempotency-key", "stripe-signature", "authorization"} <= set(read)


def test_every_header_the_service_reads_is_declared(spec: dict[str, Any]) -> None:
    declared = {
        name
        for item in spec["paths"].values()
        for operation in item.values()
        for name in _declared_headers(operation)
    }
    undeclared = {
        name: files
        for name, files in headers_read_by_the_service().items()
        if name not in declared and name not in DECLARED_OTHERWISE
    }
    assert undeclared == {}


def test_every_operation_declares_x_request_id(spec: dict[str, Any]) -> None:
    # kit/middleware.py reads it before routing, for every request.
    missing = [
        f"{method.upper()} {path}"
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if "x-request-id" not in _declared_headers(operation)
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("sent", "kept"),
    [("app-trace.0001", True), ("short", False), ("has space in it", False)],
)
async def test_x_request_id_is_kept_exactly_when_it_matches_the_declared_pattern(
    client: httpx.AsyncClient, spec: dict[str, Any], sent: str, kept: bool
) -> None:
    parameter = next(
        p
        for p in spec["paths"]["/api/v1/escrows/{escrow_id}"]["get"]["parameters"]
        if p["name"] == "X-Request-ID"
    )
    assert f"`{REQUEST_ID_PATTERN}`" in parameter["description"]
    assert bool(re.match(REQUEST_ID_PATTERN, sent)) is kept
    response = await client.get(
        "/api/v1/escrows/esc_404", headers={**auth("request-id-user"), "X-Request-ID": sent}
    )
    assert response.status_code == 404
    assert (response.headers["x-request-id"] == sent) is kept
    assert (response.json()["request_id"] == sent) is kept
