"""Stripe objects as the sandbox returns them.

Every object starts from Stripe's own published example (``stripe_objects/*.json``,
from Stripe's OpenAPI fixtures, MIT) and overrides the fields the sandbox knows, so
the field names are Stripe's and nothing is invented. Example values that would
mislead (a transfer destination on every charge, a discount on every customer) are
reset to what Stripe sends for a plain card payment.
"""

from __future__ import annotations

import copy
import json
import secrets
import string
import time
from functools import cache
from pathlib import Path
from typing import Any

from payments_api.money import basis_points_of, exponent

_TEMPLATES = Path(__file__).with_name("stripe_objects")
_ALPHABET = string.ascii_letters + string.digits

# Stripe's standard card pricing in the US: 2.9% + 30 cents. The fixed part is scaled to
# the currency's minor unit (0.30 of the major unit), so the fee looks right everywhere.
CARD_FEE_BPS = 290
CARD_FEE_FIXED_MAJOR_HUNDREDTHS = 30
# Stripe's dispute fee: 15.00 in the currency's major unit.
DISPUTE_FEE_MAJOR = 15

TEST_CARD = {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034}
SANDBOX_BANK_LAST4 = "6789"


def now() -> int:
    return int(time.time())


def random_tail(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 24) -> str:
    """An id with Stripe's prefix (``ch``, ``acct``, ``txn`` ...) and a random tail."""
    return f"{prefix}_{random_tail(length)}"


@cache
def _template(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((_TEMPLATES / f"{name}.json").read_text())
    return data


def template(name: str) -> dict[str, Any]:
    """A fresh deep copy of Stripe's example object ``name``."""
    return copy.deepcopy(_template(name))


def new_object(example: str, object_id: str, /, **fields: Any) -> dict[str, Any]:
    """A new object ``object_id``, made now: Stripe's example object ``example`` with
    ``fields`` set (in the example's key order)."""
    body = template(example)
    body.update(id=object_id, created=now(), **fields)
    return body


def money_object(
    example: str, object_id: str, /, *, amount: int, currency: str, **fields: Any
) -> dict[str, Any]:
    """A new object of Stripe's type ``example`` (made now) that moves ``amount`` of
    ``currency``."""
    return new_object(example, object_id, amount=amount, currency=currency, **fields)


def empty_list(url: str) -> dict[str, Any]:
    return {"object": "list", "data": [], "has_more": False, "url": url}


def authenticate_next_action(url: str) -> dict[str, Any]:
    """The ``next_action`` of an intent waiting for 3-D Secure: the bank's page ``url``."""
    return {"type": "redirect_to_url", "redirect_to_url": {"return_url": None, "url": url}}


def card_fee(amount: int, currency: str) -> int:
    """Stripe's processing fee on a card charge of ``amount`` (minor units)."""
    exp = exponent(currency)
    fixed: int = CARD_FEE_FIXED_MAJOR_HUNDREDTHS * 10 ** (exp - 2) if exp >= 2 else 0
    return basis_points_of(amount, CARD_FEE_BPS) + fixed


def dispute_fee(currency: str) -> int:
    fee: int = DISPUTE_FEE_MAJOR * 10 ** exponent(currency)
    return fee


def customer(
    *, email: str | None, name: str | None, metadata: dict[str, str], description: str | None
) -> dict[str, Any]:
    return new_object(
        "customer",
        new_id("cus", 14),
        email=email,
        name=name,
        description=description,
        metadata=metadata,
        discount=None,
        currency=None,
        invoice_prefix=secrets.token_hex(4).upper(),
    )


def checkout_session(
    *,
    url_base: str,
    amount_total: int,
    currency: str,
    customer_id: str | None,
    customer_email: str | None,
    client_reference_id: str | None,
    success_url: str | None,
    cancel_url: str | None,
    expires_at: int,
    metadata: dict[str, str],
) -> dict[str, Any]:
    session_id = "cs_test_a1" + random_tail(56)
    return new_object(
        "checkout.session",
        session_id,
        url=f"{url_base}/sandbox/checkout/{session_id}",
        expires_at=expires_at,
        amount_subtotal=amount_total,
        amount_total=amount_total,
        currency=currency,
        customer=customer_id,
        customer_email=customer_email,
        customer_creation=None if customer_id else "if_required",
        customer_details=None,
        client_reference_id=client_reference_id,
        success_url=success_url,
        cancel_url=cancel_url,
        metadata=metadata,
        mode="payment",
        payment_intent=None,
        payment_status="unpaid",
        status="open",
        adaptive_pricing={"enabled": False},
        after_expiration=None,
        collected_information=None,
        currency_conversion=None,
        custom_text={
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        invoice_creation={"enabled": False, "invoice_data": None},
        managed_payments={"enabled": False},
        payment_method_configuration_details=None,
        shipping_address_collection=None,
        shipping_cost=None,
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
    )


def payment_intent(
    *,
    amount: int,
    currency: str,
    customer_id: str | None,
    metadata: dict[str, str],
    description: str | None,
    payment_method: str | None,
    receipt_email: str | None,
    automatic_payment_methods: bool,
) -> dict[str, Any]:
    intent_id = new_id("pi")
    return money_object(
        "payment_intent",
        intent_id,
        amount=amount,
        currency=currency,
        client_secret=f"{intent_id}_secret_{random_tail(25)}",
        amount_capturable=0,
        amount_received=0,
        customer=customer_id,
        metadata=metadata,
        description=description,
        payment_method=payment_method,
        receipt_email=receipt_email,
        automatic_payment_methods={"enabled": True, "allow_redirects": "always"}
        if automatic_payment_methods
        else None,
        canceled_at=None,
        last_payment_error=None,
        latest_charge=None,
        managed_payments={"enabled": False},
        next_action=None,
        payment_method_configuration_details=None,
        processing=None,
        shipping=None,
        transfer_data=None,
        status="requires_confirmation" if payment_method else "requires_payment_method",
    )


def balance_transaction(
    *,
    amount: int,
    currency: str,
    type: str,
    reporting_category: str,
    source: str | None,
    description: str | None = None,
    fee: int = 0,
    fee_description: str = "Stripe processing fees",
) -> dict[str, Any]:
    body = money_object(
        "balance_transaction",
        new_id("txn"),
        amount=amount,
        currency=currency,
        fee=fee,
        net=amount - fee,
        fee_details=[
            {
                "amount": fee,
                "application": None,
                "currency": currency,
                "description": fee_description,
                "type": "stripe_fee",
            }
        ]
        if fee
        else [],
        type=type,
        reporting_category=reporting_category,
        source=source,
        description=description,
        status="available",
    )
    body["available_on"] = body["created"]
    return body


def charge(
    *,
    intent: dict[str, Any],
    succeeded: bool,
    balance_transaction_id: str | None,
    three_d_secure: bool,
    failure_code: str | None = None,
    failure_message: str | None = None,
) -> dict[str, Any]:
    charge_id = new_id("ch")
    body = money_object(
        "charge",
        charge_id,
        amount=intent["amount"],
        currency=intent["currency"],
        amount_captured=intent["amount"] if succeeded else 0,
        amount_refunded=0,
        customer=intent.get("customer"),
        description=intent.get("description"),
        metadata=dict(intent.get("metadata") or {}),
        payment_intent=intent["id"],
        payment_method=intent.get("payment_method"),
        receipt_email=intent.get("receipt_email"),
        balance_transaction=balance_transaction_id,
        captured=succeeded,
        paid=succeeded,
        status="succeeded" if succeeded else "failed",
        failure_code=failure_code,
        failure_message=failure_message,
        outcome={
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network" if succeeded else "declined_by_network",
            "reason": None if succeeded else "generic_decline",
            "risk_level": "normal",
            "risk_score": 12,
            "seller_message": "Payment complete."
            if succeeded
            else "The bank did not return any further details with this decline.",
            "type": "authorized" if succeeded else "issuer_declined",
        },
        receipt_url=None,
        refunded=False,
        refunds=empty_list(f"/v1/charges/{charge_id}/refunds"),
        shipping=None,
        source=None,
        transfer_data=None,
        calculated_statement_descriptor="SANDBOX",
    )
    card = body["payment_method_details"]["card"]
    card.update(TEST_CARD)
    card["wallet"] = None
    card["overcapture"] = {"maximum_amount_capturable": intent["amount"], "status": "unavailable"}
    card["three_d_secure"] = (
        {
            "authentication_flow": "challenge",
            "electronic_commerce_indicator": "05",
            "exemption_indicator": None,
            "result": "authenticated",
            "result_reason": None,
            "transaction_id": random_tail(32),
            "version": "2.2.0",
        }
        if three_d_secure
        else None
    )
    body["billing_details"]["name"] = "Sandbox Customer"
    return body


def refund(
    *,
    charge_body: dict[str, Any],
    amount: int,
    reason: str | None,
    metadata: dict[str, str],
    balance_transaction_id: str,
) -> dict[str, Any]:
    return money_object(
        "refund",
        new_id("re"),
        amount=amount,
        currency=charge_body["currency"],
        **_of_charge(charge_body),
        payment_method=charge_body.get("payment_method"),
        customer=charge_body.get("customer"),
        reason=reason,
        metadata=metadata,
        balance_transaction=balance_transaction_id,
        status="succeeded",
    )


def _of_charge(charge_body: dict[str, Any]) -> dict[str, Any]:
    """The fields by which a refund or a dispute points at its charge."""
    return {"charge": charge_body["id"], "payment_intent": charge_body.get("payment_intent")}


def dispute(
    *, charge_body: dict[str, Any], amount: int, reason: str, transactions: list[dict[str, Any]]
) -> dict[str, Any]:
    body = money_object(
        "dispute",
        new_id("dp"),
        amount=amount,
        currency=charge_body["currency"],
        **_of_charge(charge_body),
        reason=reason,
        status="needs_response",
        is_charge_refundable=False,
        balance_transactions=transactions,
    )
    body["evidence_details"]["due_by"] = body["created"] + 7 * 86400
    body["payment_method_details"]["card"]["case_type"] = "chargeback"
    return body


# Requirements Stripe asks of a fresh individual Express account in the US.


def event(
    *,
    type: str,
    data_object: dict[str, Any],
    api_version: str,
    account: str | None,
    request_id: str | None,
    idempotency_key: str | None,
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": copy.deepcopy(data_object)}
    if previous_attributes:
        data["previous_attributes"] = previous_attributes
    body = new_object(
        "event",
        new_id("evt"),
        type=type,
        api_version=api_version,
        livemode=False,
        pending_webhooks=1,
        data=data,
        request={"id": request_id, "idempotency_key": idempotency_key},
    )
    if account is not None:
        body["account"] = account
    return body


def payment_method(
    *, brand: str, last4: str, fingerprint: str, exp_month: int, exp_year: int
) -> dict[str, Any]:
    """A card PaymentMethod as Stripe shows it: never the number or the CVC."""
    return {
        "id": new_id("pm"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": {
            "address": {
                "city": None,
                "country": None,
                "line1": None,
                "line2": None,
                "postal_code": None,
                "state": None,
            },
            "email": None,
            "name": None,
            "phone": None,
        },
        "card": {
            "brand": brand,
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass",
            },
            "country": "US",
            "display_brand": brand,
            "exp_month": exp_month,
            "exp_year": exp_year,
            "fingerprint": fingerprint,
            "funding": "credit",
            "last4": last4,
            "networks": {"available": [brand], "preferred": None},
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": now(),
        "customer": None,
        "livemode": False,
        "metadata": {},
        "type": "card",
    }


def setup_intent(
    *,
    customer_id: str | None,
    metadata: dict[str, str],
    usage: str,
    description: str | None,
    payment_method: str | None,
) -> dict[str, Any]:
    intent_id = new_id("seti")
    return {
        "id": intent_id,
        "object": "setup_intent",
        "application": None,
        "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
        "cancellation_reason": None,
        "client_secret": f"{intent_id}_secret_{random_tail(25)}",
        "created": now(),
        "customer": customer_id,
        "description": description,
        "flow_directions": None,
        "last_setup_error": None,
        "latest_attempt": None,
        "livemode": False,
        "mandate": None,
        "metadata": metadata,
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": payment_method,
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "single_use_mandate": None,
        "status": "requires_confirmation" if payment_method else "requires_payment_method",
        "usage": usage,
    }
