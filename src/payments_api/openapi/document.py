"""The document: FastAPI's, with the passes of the modules beside this one applied in
order, the tags declared and the amount limits described."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from payments_api.money import DEFAULT_AMOUNT_LIMITS, CurrencyLimits, LimitedOperation
from payments_api.openapi.components import (
    document_minor_units,
    name_currency_enum,
    name_inline_enums,
    name_inline_schemas,
    require_response_fields,
)
from payments_api.openapi.examples import add_examples, restore_null_examples
from payments_api.openapi.protocol import (
    PROBLEM_REF,
    declare_generic_problems,
    declare_optional_idempotency_keys,
    declare_problem_codes,
    declare_rate_limits,
    declare_request_id,
)
from payments_api.problems import PROBLEM_MEDIA_TYPE, Problem


def _untitle_parameters(spec: dict[str, Any]) -> None:
    """Drop the ``title`` FastAPI gives each parameter's schema (``Type``, ``Limit``…).

    Generators take a titled inline schema for a model to declare: Swift's named one
    ``Type`` -- a reserved word -- and renamed it; a parameter needs no model at all.
    """
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                parameter.get("schema", {}).pop("title", None)


LIMITED_OPERATIONS: dict[str, tuple[LimitedOperation, str]] = {
    "createCheckoutSession": ("topup", "Top-ups and direct payments"),
    "createTopup": ("topup", "Top-ups"),
    "createWithdrawal": ("withdrawal", "Withdrawals"),
    "createWalletRefund": ("cashout", "Wallet refunds"),
}


def limits_description(limits: Mapping[str, CurrencyLimits], operation: LimitedOperation) -> str:
    """A Markdown table of one operation's per-currency limits (this configuration's)."""
    rows = [
        f"| `{currency}` | {table.of(operation).min} | {table.of(operation).max} |"
        for currency, table in sorted(limits.items())
    ]
    return "\n".join(
        [
            "| currency | minimum | maximum |",
            "|---|---|---|",
            *rows,
        ]
    )


def _describe_limits(spec: dict[str, Any], limits: Mapping[str, CurrencyLimits]) -> None:
    for path_item in spec.get("paths", {}).values():
        for operation in path_item.values():
            found = LIMITED_OPERATIONS.get(operation.get("operationId", ""))
            if found is None:
                continue
            kind, what = found
            operation["description"] = (
                f"{operation.get('description', '')}\n\n{what} per currency, in the "
                "currency's major unit (the `amount` field is in minor units); another "
                "currency is refused with `currency_not_supported`:\n\n"
                + limits_description(limits, kind)
            ).strip()


# The tags in the order the document lists them: (name, description).
TAGS: tuple[tuple[str, str], ...] = (
    ("me", "The calling user."),
    ("balance", "Wallet balances and ledger entries."),
    ("checkout", "Stripe Checkout pay-ins (top-up, order, escrow)."),
    ("topups", "PaymentIntent top-ups for mobile apps."),
    ("payment-methods", "Saved cards: SetupIntents, default card, removal."),
    ("orders", "Pay-in history and status."),
    ("escrow", "Jobs paid into escrow and settled to payees."),
    ("earnings", "What payees earned."),
    ("payout-account", "Stripe Connect Express onboarding."),
    ("payouts", "Withdrawals and payouts to payees."),
    ("projects", "A payee's earning contexts and their wallets."),
    ("subscriptions", "Plans from Stripe Billing and the caller's subscriptions."),
    ("refunds", "Refunds of pay-ins."),
    ("disputes", "Card disputes (chargebacks)."),
    ("reconciliation", "The ledger matched against Stripe."),
    ("sandbox", "Local pages of the offline Stripe sandbox."),
    ("webhooks", "Stripe webhook endpoints (signed)."),
    ("wallets", "Debits of a user's wallet by a service."),
    (
        "events",
        "Events to the platform's apps: feeds, endpoints, deliveries "
        "(the `webhooks` section lists every event's body).",
    ),
    (
        "outgoing-events",
        "What this service POSTs to registered endpoints, signed "
        "per Standard Webhooks (one entry per event type).",
    ),
    ("admin", "Operator actions (role admin), all audited."),
    ("operations", "Health, readiness and metrics."),
)


def build_openapi(
    app: FastAPI, *, limits: Mapping[str, CurrencyLimits] | None = None
) -> dict[str, Any]:
    spec = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
        webhooks=app.webhooks.routes,
        tags=[{"name": name, "description": description} for name, description in TAGS],
    )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for path_item in spec.get("webhooks", {}).values():
        for operation in path_item.values():
            # What the receiver answers: any 2xx acknowledges; anything else is retried.
            operation["responses"] = {
                "2XX": {"description": "Received; anything else is retried (docs/events.md)."}
            }
            for parameter in operation.get("parameters", []):
                parameter.get("schema", {}).pop("title", None)
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
    restore_null_examples(spec)
    _untitle_parameters(spec)
    declare_generic_problems(spec)
    declare_rate_limits(spec)
    declare_optional_idempotency_keys(spec)
    declare_request_id(spec)
    declare_problem_codes(spec)
    _describe_limits(spec, DEFAULT_AMOUNT_LIMITS if limits is None else limits)
    name_inline_schemas(spec)
    name_currency_enum(schemas)
    name_inline_enums(spec)
    document_minor_units(schemas)
    require_response_fields(spec)
    add_examples(spec)
    spec["components"]["schemas"] = dict(sorted(schemas.items()))
    return spec
