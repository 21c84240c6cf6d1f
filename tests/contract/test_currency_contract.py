"""The contract and the validator agree on currencies.

- Every currency a request sends (body field or query parameter) is the ``Currency``
  component: an enum of exactly the codes the validator accepts, all lower case, so a
  client generated from the spec cannot send one the validator refuses as malformed.
- Upper case is refused with its own error type, never normalised.
- A supported code that has no amount limits is refused by the routes that need them
  with the declared problem ``currency_not_supported``: each of those routes lists it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from payments_api.main import create_app
from payments_api.money import CURRENCY_EXPONENTS
from payments_api.settings import Settings
from tests.factories import create_user
from tests.helpers import auth

CURRENCY_REF = "#/components/schemas/Currency"


def _spec(settings: Settings) -> dict[str, Any]:
    spec: dict[str, Any] = create_app(settings).openapi()
    return spec


def _refs_currency(schema: dict[str, Any]) -> bool:
    if schema.get("$ref") == CURRENCY_REF:
        return True
    return any(_refs_currency(option) for option in schema.get("anyOf", []))


def _request_currencies(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every ``currency`` a request can carry: (where, its schema)."""
    found: list[tuple[str, dict[str, Any]]] = []
    schemas = spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if "currenc" in parameter["name"]:
                    found.append((f"{method} {path} ?{parameter['name']}", parameter["schema"]))
            body = operation.get("requestBody", {}).get("content", {})
            for content in body.values():
                ref = content.get("schema", {}).get("$ref", "")
                model = schemas.get(ref.rsplit("/", 1)[-1], {})
                for name, schema in model.get("properties", {}).items():
                    if "currenc" in name:
                        found.append((f"{method} {path} {ref} .{name}", schema))
    return found


def test_every_request_currency_is_the_enum_the_validator_accepts(settings: Settings) -> None:
    spec = _spec(settings)
    enum = spec["components"]["schemas"]["Currency"]["enum"]
    assert enum == sorted(CURRENCY_EXPONENTS)
    assert all(re.fullmatch(r"[a-z]{3}", code) for code in enum)
    found = _request_currencies(spec)
    assert len(found) >= 15
    assert [where for where, schema in found if not _refs_currency(schema)] == []
    # A pattern next to the enum may only say what the enum says.
    for _where, schema in found:
        for option in [schema, *schema.get("anyOf", [])]:
            if "pattern" in option:
                assert all(re.search(option["pattern"], code) for code in enum)


class TestTheValidatorAcceptsExactlyTheEnum:
    async def test_every_code_of_the_enum_is_accepted(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        headers = auth("cur-contract")
        refused = []
        for code in _spec(settings)["components"]["schemas"]["Currency"]["enum"]:
            response = await client.get(f"/api/v1/me/ledger?currency={code}", headers=headers)
            if response.status_code != 200:
                refused.append((code, response.status_code))
        assert refused == []

    @pytest.mark.parametrize(
        ("currency", "error"),
        [
            ("USD", "currency_not_lowercase"),
            ("Eur", "currency_not_lowercase"),
            ("xyz", "currency_unsupported"),  # the shape of a code, not one of the enum
            ("usdd", "currency_unsupported"),
        ],
    )
    async def test_anything_else_is_refused_with_its_own_type(
        self, client: httpx.AsyncClient, currency: str, error: str
    ) -> None:
        for request in (
            client.get(f"/api/v1/me/ledger?currency={currency}", headers=auth("cur-contract")),
            client.post(
                "/api/v1/topups",
                json={"amount": 2_000, "currency": currency},
                headers={**auth("cur-contract"), "Idempotency-Key": uuid.uuid4().hex},
            ),
        ):
            response = await request
            assert response.status_code == 422, response.text
            assert response.json()["code"] == "validation_error"
            assert [e["type"] for e in response.json()["errors"]] == [error]


# A supported currency the test settings give no limits (tests/conftest.py).
UNLIMITED = "cad"


def _limited_requests(user: str) -> list[tuple[str, str, dict[str, Any], list[str]]]:
    urls = {"success_url": "http://localhost:3000/ok", "cancel_url": "http://localhost:3000/no"}
    return [
        ("POST", "/api/v1/topups", {"amount": 2_000, "currency": UNLIMITED}, ["customer"]),
        (
            "POST",
            "/api/v1/checkout/sessions",
            {"purpose": "topup", "amount": 2_000, "currency": UNLIMITED, **urls},
            ["customer"],
        ),
        (
            "PUT",
            "/api/v1/me/auto-reloads",
            {"currency": UNLIMITED, "threshold": 1_000, "amount": 2_000},
            ["customer"],
        ),
        ("POST", "/api/v1/me/payouts", {"amount": 2_000, "currency": UNLIMITED}, ["payee"]),
        ("POST", "/api/v1/me/wallet/refunds", {"amount": 2_000, "currency": UNLIMITED}, []),
        (
            "POST",
            f"/api/v1/wallets/{user}/debits",
            {"amount": 2_000, "currency": UNLIMITED, "description": "seat"},
            ["service"],
        ),
    ]


async def test_a_supported_code_without_limits_is_the_declared_currency_not_supported(
    client: httpx.AsyncClient, session: Any, settings: Settings
) -> None:
    assert UNLIMITED in CURRENCY_EXPONENTS
    assert settings.limits(UNLIMITED, "topup") is None
    spec = _spec(settings)
    user = f"cur-limits-{uuid.uuid4().hex[:8]}"
    await create_user(session, id=user, roles=["customer", "payee"])
    answers = []
    for method, path, body, roles in _limited_requests(user):
        spec_path = path.replace(user, "{user_id}")
        declared = [
            code
            for response in spec["paths"][spec_path][method.lower()]["responses"].values()
            for code in response.get("x-problem-codes", [])
        ]
        response = await client.request(
            method,
            path,
            json=body,
            headers={
                **auth(user if "service" not in roles else "svc", roles or ["customer"]),
                "Idempotency-Key": uuid.uuid4().hex,
            },
        )
        answers.append(
            (
                path,
                response.status_code,
                response.json().get("code"),
                "currency_not_supported" in declared,
            )
        )
    assert answers == [
        (path, 422, "currency_not_supported", True) for _m, path, _b, _r in _limited_requests(user)
    ]
