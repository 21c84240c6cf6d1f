"""The problem-code contract: routes declare the codes they answer, from one registry.

tests/problem_codes.py checks every response of every test against the OpenAPI
document; these tests check that checker and the registry it relies on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from payments_api.main import create_app
from payments_api.problems import GENERIC_CODES, IDEMPOTENCY_CODES, ProblemError
from payments_api.settings import Settings
from tests.helpers import auth
from tests.problem_codes import _SEEN, Seen, undeclared


def _leaves(cls: type[ProblemError]) -> Iterator[type[ProblemError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _leaves(sub)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = create_app(Settings(_env_file=None)).openapi()
    return document


def test_a_declared_code_passes_and_an_undeclared_one_is_named() -> None:
    assert undeclared(Seen("GET", "/api/v1/escrows/esc_1", 404, "escrow_not_found")) is None
    reason = undeclared(Seen("GET", "/api/v1/escrows/esc_1", 404, "refund_not_found"))
    assert reason is not None
    assert "GET /api/v1/escrows/{escrow_id} 404 answered code 'refund_not_found'" in reason
    missing_status = undeclared(Seen("GET", "/api/v1/escrows/esc_1", 418, "teapot"))
    assert missing_status == "GET /api/v1/escrows/{escrow_id} does not declare status 418"


async def test_the_watch_records_what_a_route_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/escrows/esc_missing", headers=auth("watcher"))
    assert response.status_code == 404
    assert Seen("GET", "/api/v1/escrows/esc_missing", 404, "escrow_not_found") in _SEEN


def test_every_declared_code_is_in_the_registry(spec: dict[str, Any]) -> None:
    registry: dict[str, set[int]] = {}
    for leaf in _leaves(ProblemError):
        registry.setdefault(leaf.code, set()).add(leaf.status)
    for table in (GENERIC_CODES, IDEMPOTENCY_CODES):
        for status, codes in table.items():
            for code in codes:
                registry.setdefault(code, set()).add(status)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                for code in response.get("x-problem-codes", []):
                    assert int(status) in registry.get(code, set()), (path, method, status, code)


def test_every_problem_response_lists_its_codes(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.isdigit() and int(status) >= 400:
                    assert response.get("x-problem-codes"), (path, method, status)
                    assert "Codes: " in response["description"], (path, method, status)


def test_a_code_means_one_status() -> None:
    statuses: dict[str, set[int]] = {}
    for leaf in _leaves(ProblemError):
        statuses.setdefault(leaf.code, set()).add(leaf.status)
    assert {code: s for code, s in statuses.items() if len(s) > 1} == {}


def test_every_write_route_declares_the_idempotency_key(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        if not path.startswith("/api/v1/") or path.startswith("/api/v1/webhooks/"):
            continue
        for method, operation in item.items():
            if method in {"post", "put", "patch", "delete"}:
                names = {p["name"].lower() for p in operation.get("parameters", [])}
                assert "idempotency-key" in names, (method, path)


def test_write_routes_declare_the_idempotency_codes(spec: dict[str, Any]) -> None:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            keys = [
                p for p in operation.get("parameters", []) if p["name"].lower() == "idempotency-key"
            ]
            if keys:
                for status, codes in IDEMPOTENCY_CODES.items():
                    if status == 400 and not keys[0]["required"]:
                        continue
                    declared = operation["responses"][str(status)]["x-problem-codes"]
                    assert set(codes) <= set(declared), (path, method, status)
