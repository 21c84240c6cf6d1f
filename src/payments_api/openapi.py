"""OpenAPI shaped for generated clients (TypeScript, Swift, Kotlin).

FastAPI's defaults are adjusted in one place: every error response is the shared
``Problem`` schema as ``application/problem+json`` (FastAPI's own 422 schema is
replaced), and the document is deterministic so the committed copy can be diffed.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from payments_api.problems import PROBLEM_MEDIA_TYPE, Problem

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        tags=[
            {"name": "me", "description": "The calling user."},
            {"name": "balance", "description": "Wallet balances and ledger entries."},
            {"name": "checkout", "description": "Stripe Checkout pay-ins (top-up, order, escrow)."},
            {"name": "topups", "description": "PaymentIntent top-ups for mobile apps."},
            {"name": "orders", "description": "Pay-in history and status."},
            {"name": "escrow", "description": "Jobs paid into escrow and settled to payees."},
            {"name": "earnings", "description": "What payees earned."},
            {"name": "payout-account", "description": "Stripe Connect Express onboarding."},
            {"name": "payouts", "description": "Withdrawals and payouts to payees."},
            {"name": "webhooks", "description": "Stripe webhook endpoints (signed)."},
            {"name": "admin", "description": "Operator actions (role admin), all audited."},
            {"name": "operations", "description": "Health, readiness and metrics."},
        ],
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in problem_schema.pop("$defs", {}).items():
        schemas[name] = definition
    schemas["Problem"] = problem_schema
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                if status.isdigit() and int(status) >= 400:
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": PROBLEM_REF}}
                    if status == "422":
                        response["description"] = "Request validation failed"
    return spec
