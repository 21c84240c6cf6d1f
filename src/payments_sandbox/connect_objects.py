"""Stripe-shaped Connect objects: Express accounts (and their onboarding outcome),
transfers, transfer reversals, payouts. Built as ``objects.py`` builds the rest."""

from __future__ import annotations

import copy
from typing import Any

from payments_sandbox.objects import (
    SANDBOX_BANK_LAST4,
    empty_list,
    money_object,
    new_id,
    new_object,
    now,
)

ONBOARDING_REQUIREMENTS = [
    "business_profile.mcc",
    "business_profile.url",
    "business_type",
    "external_account",
    "individual.dob.day",
    "individual.first_name",
    "individual.last_name",
    "tos_acceptance.date",
    "tos_acceptance.ip",
]
_COUNTRY_CURRENCY = {"US": "usd", "GB": "gbp", "CA": "cad", "AU": "aud", "JP": "jpy"}


def _requirements(
    due: list[str], disabled_reason: str | None, errors: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "alternatives": [],
        "current_deadline": None,
        "currently_due": list(due),
        "disabled_reason": disabled_reason,
        "errors": errors,
        "eventually_due": list(due),
        "past_due": list(due),
        "pending_verification": [],
    }


def express_account(
    *,
    country: str | None,
    email: str | None,
    capabilities: list[str],
    metadata: dict[str, str],
    business_type: str | None,
) -> dict[str, Any]:
    account_id = new_id("acct", 16)
    country = (country or "US").upper()
    body = new_object(
        "account",
        account_id,
        type="express",
        country=country,
        default_currency=_COUNTRY_CURRENCY.get(country, "eur"),
        email=email,
        metadata=metadata,
        business_type=business_type,
        capabilities=dict.fromkeys(capabilities, "inactive"),
        charges_enabled=False,
        payouts_enabled=False,
        details_submitted=False,
        controller={
            "fees": {"payer": "application"},
            "is_controller": True,
            "losses": {"payments": "application"},
            "requirement_collection": "stripe",
            "stripe_dashboard": {"type": "express"},
            "type": "application",
        },
        external_accounts=empty_list(f"/v1/accounts/{account_id}/external_accounts"),
        requirements=_requirements(ONBOARDING_REQUIREMENTS, "requirements.past_due", []),
        future_requirements=_requirements([], None, []),
    )
    body["future_requirements"]["past_due"] = []
    return body


def onboarded(account: dict[str, Any], outcome: str) -> dict[str, Any]:
    """The account after the payee finished the sandbox's onboarding form.

    ``enabled``: everything verified, charges and payouts on. ``restricted``: details
    submitted but identity verification failed, so Stripe disables the account.
    """
    body = copy.deepcopy(account)
    body["details_submitted"] = True
    body["business_type"] = body.get("business_type") or "individual"
    body["tos_acceptance"] = {"date": now(), "ip": "127.0.0.1", "user_agent": "sandbox"}
    if not body["external_accounts"]["data"]:
        body["external_accounts"]["data"] = [
            {
                "id": new_id("ba"),
                "object": "bank_account",
                "account": body["id"],
                "account_holder_name": "Sandbox Payee",
                "account_holder_type": "individual",
                "bank_name": "STRIPE TEST BANK",
                "country": body["country"],
                "currency": body["default_currency"],
                "default_for_currency": True,
                "last4": SANDBOX_BANK_LAST4,
                "metadata": {},
                "routing_number": "110000000",
                "status": "new",
            }
        ]
    if outcome == "enabled":
        body["charges_enabled"] = True
        body["payouts_enabled"] = True
        body["capabilities"] = dict.fromkeys(body.get("capabilities") or {}, "active")
        body["requirements"] = _requirements([], None, [])
        body["requirements"]["past_due"] = []
    else:
        document = "individual.verification.document"
        body["charges_enabled"] = False
        body["payouts_enabled"] = False
        body["capabilities"] = dict.fromkeys(body.get("capabilities") or {}, "inactive")
        body["requirements"] = _requirements(
            [document],
            "requirements.past_due",
            [
                {
                    "code": "verification_failed_other",
                    "reason": "The identity document could not be verified (sandbox).",
                    "requirement": document,
                }
            ],
        )
    return body


def external_account_id(account: dict[str, Any]) -> str | None:
    data = (account.get("external_accounts") or {}).get("data") or []
    return str(data[0]["id"]) if data else None


def transfer(
    *,
    amount: int,
    currency: str,
    destination: str,
    destination_payment: str,
    balance_transaction_id: str,
    description: str | None,
    metadata: dict[str, str],
    transfer_group: str | None,
    source_transaction: str | None,
) -> dict[str, Any]:
    transfer_id = new_id("tr")
    return money_object(
        "transfer",
        transfer_id,
        amount=amount,
        currency=currency,
        amount_reversed=0,
        destination=destination,
        destination_payment=destination_payment,
        balance_transaction=balance_transaction_id,
        description=description,
        metadata=metadata,
        transfer_group=transfer_group,
        source_transaction=source_transaction,
        reversed=False,
        reversals=empty_list(f"/v1/transfers/{transfer_id}/reversals"),
    )


def transfer_reversal(
    *, transfer_id: str, amount: int, currency: str, metadata: dict[str, str], txn: str
) -> dict[str, Any]:
    return money_object(
        "transfer_reversal",
        new_id("trr"),
        amount=amount,
        currency=currency,
        transfer=transfer_id,
        metadata=metadata,
        balance_transaction=txn,
    )


def payout(
    *,
    amount: int,
    currency: str,
    destination: str | None,
    balance_transaction_id: str,
    automatic: bool,
    description: str | None,
    metadata: dict[str, str],
) -> dict[str, Any]:
    body = money_object(
        "payout",
        new_id("po"),
        amount=amount,
        currency=currency,
        destination=destination,
        balance_transaction=balance_transaction_id,
        automatic=automatic,
        description=description or "STRIPE PAYOUT",
        metadata=metadata,
        status="pending",
        trace_id={"status": "pending", "value": None},
        reconciliation_status="not_applicable" if not automatic else "in_progress",
    )
    body["arrival_date"] = body["created"] + 2 * 86400
    return body
