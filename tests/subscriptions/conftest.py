"""Stripe Billing answered by respx, and Stripe-shaped billing events signed as Stripe
signs them."""

from __future__ import annotations

import copy
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from tests.conftest import TEST_WEBHOOK_SECRET
from tests.helpers import auth, make_event, signed_webhook, stripe_object

MONTH = 30 * 24 * 3600


def form_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def product(
    product_id: str = "prod_studio", *, family: str = "studio", **extra: Any
) -> dict[str, Any]:
    obj = stripe_object("product")
    obj.update(id=product_id, metadata={"family": family}, **extra)
    return obj


def price(
    price_id: str,
    amount: int,
    *,
    product_id: str = "prod_studio",
    credit: int | None = None,
    trial_days: int | None = None,
    interval: str = "month",
    active: bool = True,
    currency: str = "usd",
) -> dict[str, Any]:
    obj = stripe_object("price")
    obj.update(
        id=price_id,
        currency=currency,
        product=product_id,
        unit_amount=amount,
        unit_amount_decimal=str(amount),
        active=active,
        lookup_key=None,
        metadata={"monthly_credit": str(credit)} if credit else {},
    )
    obj["recurring"] = {
        **obj["recurring"],
        "interval": interval,
        "trial_period_days": trial_days,
    }
    return obj


def subscription(
    stripe_id: str,
    *,
    status: str,
    price_id: str,
    our_id: int,
    user: str,
    customer: str = "cus_fixture0001",
    start: int | None = None,
    trial_end: int | None = None,
    cancel_at_period_end: bool = False,
    latest_invoice: Any = None,
    item_id: str | None = None,
) -> dict[str, Any]:
    start = start if start is not None else int(time.time())
    obj = stripe_object("subscription")
    item = copy.deepcopy(obj["items"]["data"][0])
    item.update(
        id=item_id or f"si_{stripe_id[4:]}",
        subscription=stripe_id,
        current_period_start=start,
        current_period_end=start + MONTH,
    )
    item["price"] = {**item["price"], "id": price_id}
    obj.update(
        id=stripe_id,
        status=status,
        customer=customer,
        created=start,
        start_date=start,
        trial_end=trial_end,
        trial_start=start if trial_end else None,
        cancel_at_period_end=cancel_at_period_end,
        canceled_at=int(time.time()) if status == "canceled" or cancel_at_period_end else None,
        ended_at=int(time.time()) if status == "canceled" else None,
        latest_invoice=latest_invoice,
        metadata={"subscription_id": str(our_id), "user_id": user},
    )
    obj["items"] = {**obj["items"], "data": [item]}
    return obj


def invoice(
    invoice_id: str,
    *,
    stripe_sub: str,
    amount: int,
    status: str = "paid",
    reason: str = "subscription_cycle",
    our_id: int | None = None,
    attempt_count: int = 1,
    currency: str = "usd",
) -> dict[str, Any]:
    obj = stripe_object("invoice")
    obj.update(
        id=invoice_id,
        currency=currency,
        amount_due=amount,
        amount_paid=amount if status == "paid" else 0,
        amount_remaining=0 if status == "paid" else amount,
        status=status,
        billing_reason=reason,
        attempt_count=attempt_count,
    )
    obj["parent"] = {
        **obj["parent"],
        "subscription_details": {
            "metadata": {"subscription_id": str(our_id)} if our_id is not None else {},
            "subscription": stripe_sub,
        },
    }
    return obj


async def deliver(client: httpx.AsyncClient, event: dict[str, Any]) -> httpx.Response:
    body, headers = signed_webhook(event, TEST_WEBHOOK_SECRET)
    response = await client.post("/api/v1/webhooks/stripe", content=body, headers=headers)
    return response


async def send(
    client: httpx.AsyncClient, event_type: str, obj: dict[str, Any], *, created: int | None = None
) -> httpx.Response:
    response = await deliver(client, make_event(event_type, obj, created=created))
    assert response.status_code == 200, response.text
    return response


async def seed_plans(client: httpx.AsyncClient) -> None:
    """Studio (basic 9.00, pro 19.00 with 5.00 credit, trial 14 days) by Stripe's events."""
    await send(client, "product.created", product())
    await send(client, "price.created", price("price_basic", 900))
    await send(client, "price.created", price("price_pro", 1900, credit=500))
    await send(client, "price.created", price("price_trial", 1500, trial_days=14))


@dataclass
class FakeBilling:
    """Stripe's subscription endpoints, answering from what was asked."""

    router: respx.MockRouter
    status: str = "active"
    """The status a new subscription gets (active: paid at once; incomplete: SCA)."""
    created: dict[str, dict[str, Any]] = field(default_factory=dict)

    def on_create(self, request: httpx.Request) -> httpx.Response:
        form = form_of(request)
        our_id = int(form["metadata[subscription_id]"])
        key = request.headers["Idempotency-Key"].encode()
        stripe_id = f"sub_test_{hashlib.sha256(key).hexdigest()[:12]}"
        now = int(time.time())
        trial = form.get("trial_from_plan") == "true"
        status = "trialing" if trial else self.status
        latest: dict[str, Any] = stripe_object("invoice")
        latest.update(
            id=f"in_first_{our_id}",
            status="open" if status == "incomplete" else "paid",
            confirmation_secret={
                "client_secret": f"pi_first_{our_id}_secret_abc",
                "type": "payment_intent",
            },
        )
        obj = subscription(
            stripe_id,
            status=status,
            price_id=form["items[0][price]"],
            our_id=our_id,
            user=form["metadata[user_id]"],
            customer=form["customer"],
            start=now,
            trial_end=now + 14 * 86400 if trial else None,
            latest_invoice=latest,
        )
        if trial:
            obj["pending_setup_intent"] = {
                "id": f"seti_{our_id}",
                "object": "setup_intent",
                "client_secret": f"seti_{our_id}_secret_xyz",
                "status": "requires_payment_method",
            }
        self.created[stripe_id] = obj
        return httpx.Response(200, json=obj)


@pytest.fixture
def billing(stripe_mock: respx.MockRouter) -> FakeBilling:
    fake = FakeBilling(stripe_mock)

    def customer_response(request: httpx.Request) -> httpx.Response:
        customer = stripe_object("customer")
        key = request.headers.get("Idempotency-Key", "")
        customer["id"] = "cus_" + hashlib.sha256(key.encode()).hexdigest()[:14]
        return httpx.Response(200, json=customer)

    stripe_mock.post("/v1/customers", name="customers").mock(side_effect=customer_response)
    stripe_mock.post("/v1/subscriptions", name="subscriptions").mock(side_effect=fake.on_create)
    return fake


def fee_routes(
    router: respx.MockRouter,
    invoice_id: str,
    *,
    fee: int,
    charge: str = "ch_renewal",
    payment_intent: str | None = None,
    currency: str = "usd",
) -> tuple[respx.Route, respx.Route]:
    """Stripe's answers for the fee of a paid invoice: its payment, then the charge
    (whose PaymentIntent is ``pi_{invoice_id}`` unless given)."""
    payment_intent = payment_intent or f"pi_{invoice_id}"
    payment = stripe_object("invoice_payment")
    payment.update(
        invoice=invoice_id,
        payment={
            "type": "payment_intent",
            "payment_intent": {
                "id": payment_intent,
                "object": "payment_intent",
                "latest_charge": charge,
            },
        },
    )
    payments = router.get("/v1/invoice_payments", params={"invoice": invoice_id}).mock(
        return_value=httpx.Response(
            200,
            json={
                "object": "list",
                "data": [payment],
                "has_more": False,
                "url": "/v1/invoice_payments",
            },
        )
    )
    charge_obj = stripe_object("charge")
    txn = stripe_object("balance_transaction")
    txn.update(id=f"txn_{invoice_id}", fee=fee, currency=currency)
    charge_obj.update(id=charge, balance_transaction=txn, payment_intent=payment_intent)
    charges = router.get(f"/v1/charges/{charge}").mock(
        return_value=httpx.Response(200, json=charge_obj)
    )
    return payments, charges


def unique_user() -> str:
    return f"u_{uuid.uuid4().hex[:12]}"


async def subscribe(
    client: httpx.AsyncClient, user: str, price_id: str, key: str = "sub-key-1", **extra: Any
) -> httpx.Response:
    return await client.post(
        "/api/v1/me/subscriptions",
        json={"price": price_id, **extra},
        headers={**auth(user), "Idempotency-Key": key},
    )
