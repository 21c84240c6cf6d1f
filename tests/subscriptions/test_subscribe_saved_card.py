"""Subscribe with a saved card as Stripe answers it under ``default_incomplete``.

Stripe does not pay the first invoice of a ``default_incomplete`` subscription by itself,
saved card or not: the subscription is created ``incomplete`` with its first invoice
open. With a card (named, or the customer's default saved card) the service pays it
(``POST /v1/invoices/{id}/pay``): a card that needs no authentication makes the
subscription active at once; one that needs it leaves the client secret for the
customer to confirm, and Stripe's events make the subscription active afterwards.
tests/subscriptions/test_subscriptions.py's "without SCA" case has Stripe answer
``active`` at once instead (as the sandbox does)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.payment_methods.models import PaymentMethod
from tests.factories import create_user, emitted, ledger_invariants
from tests.helpers import stripe_key, stripe_object
from tests.subscriptions.conftest import (
    FakeBilling,
    fee_routes,
    form_of,
    invoice,
    seed_plans,
    send,
    subscribe,
    unique_user,
)
from tests.subscriptions.test_subscriptions import (
    available,
    ledger_rows,
    mine,
    stripe_state,
    the_row,
)


def card_error(code: str, decline_code: str | None = None) -> httpx.Response:
    error: dict[str, Any] = {"type": "card_error", "code": code, "message": "LEAK-" + code}
    if decline_code:
        error["decline_code"] = decline_code
    return httpx.Response(402, json={"error": error})


class FirstInvoicePayments:
    """Stripe's ``POST /v1/invoices/{id}/pay`` (answer given per test) and the
    subscription read back after it, active once its invoice was paid."""

    def __init__(self, billing: FakeBilling, answer: str = "paid") -> None:
        self.billing = billing
        self.answer = answer
        self.pay = billing.router.post(path__regex=r"^/v1/invoices/[^/]+/pay$").mock(
            side_effect=self.on_pay
        )
        self.read = billing.router.get(path__regex=r"^/v1/subscriptions/[^/]+$").mock(
            side_effect=self.on_read
        )

    def on_pay(self, request: httpx.Request) -> httpx.Response:
        if self.answer == "requires_action":
            return card_error("invoice_payment_intent_requires_action")
        if self.answer == "declined":
            return card_error("card_declined", "insufficient_funds")
        invoice_id = request.url.path.split("/")[3]
        paid = stripe_object("invoice")
        paid.update(id=invoice_id, status="paid", amount_paid=paid["amount_due"])
        for obj in self.billing.created.values():
            if obj["latest_invoice"]["id"] == invoice_id:
                obj.update(status="active")
                obj["latest_invoice"].update(status="paid")
        return httpx.Response(200, json=paid)

    def on_read(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=self.billing.created[request.url.path.split("/")[3]])


async def saved_default_card(session: AsyncSession) -> tuple[str, str]:
    user = await create_user(session)
    card = f"pm_saved_{uuid.uuid4().hex[:10]}"
    session.add(
        PaymentMethod(
            user_id=user.id,
            stripe_payment_method_id=card,
            brand="visa",
            last4="4242",
            exp_month=12,
            exp_year=2031,
            fingerprint=uuid.uuid4().hex[:16],
            is_default=True,
        )
    )
    await session.commit()
    return user.id, card


async def test_card_without_challenge_pays_the_first_invoice_server_side(
    client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
) -> None:
    await seed_plans(client)
    billing.status = "incomplete"  # what Stripe answers under default_incomplete
    stripe = FirstInvoicePayments(billing)
    user = unique_user()
    response = await subscribe(client, user, "price_pro", payment_method="pm_card_visa")
    assert response.status_code == 201, response.text
    body = response.json()
    row = await the_row(session, user)
    assert stripe.pay.call_count == 1
    call = stripe.pay.calls.last.request
    assert call.url.path == f"/v1/invoices/in_first_{row.id}/pay"
    assert form_of(call) == {"payment_method": "pm_card_visa", "off_session": "false"}
    assert call.headers["Idempotency-Key"] == stripe_key("subscription_first_invoice", row.id)
    assert (
        stripe.read.calls.last.request.url.path == f"/v1/subscriptions/{row.stripe_subscription_id}"
    )
    # Paid: active at once, nothing for the client to confirm.
    assert (body["status"], body["entitled"]) == ("active", True)
    assert (body["client_secret"], body["client_secret_type"]) == (None, None)

    # A retry of the request replays it: no second subscription, no second payment.
    again = await subscribe(client, user, "price_pro", payment_method="pm_card_visa")
    assert again.status_code == 201, again.text
    assert again.json()["status"] == "active"
    assert (billing.router.routes["subscriptions"].call_count, stripe.pay.call_count) == (1, 1)

    # Stripe's events book the invoice as always, once.
    first = invoice(
        f"in_first_{row.id}",
        stripe_sub=str(row.stripe_subscription_id),
        amount=1_900,
        reason="subscription_create",
        our_id=row.id,
    )
    fee_routes(billing.router, first["id"], fee=85)
    for _ in range(2):
        await send(client, "invoice.paid", first)
    assert await ledger_rows(session, first["id"]) == [
        ("subscription_payment", f"stripe:invoice:{first['id']}"),
        ("processing_fee", f"stripe:fee:txn_{first['id']}"),
        ("subscription_credit", f"subscription_credit:{first['id']}"),
    ]
    assert await available(client, user) == 500
    assert await ledger_invariants(session) == []


async def test_default_saved_card_pays_when_none_is_named(
    client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
) -> None:
    await seed_plans(client)
    billing.status = "incomplete"
    stripe = FirstInvoicePayments(billing)
    user, card = await saved_default_card(session)
    response = await subscribe(client, user, "price_basic")
    assert response.status_code == 201, response.text
    form = form_of(billing.router.routes["subscriptions"].calls.last.request)
    assert "default_payment_method" not in form
    assert form_of(stripe.pay.calls.last.request)["payment_method"] == card
    assert response.json()["status"] == "active"


async def test_no_card_leaves_the_first_invoice_to_the_customer(
    client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
) -> None:
    await seed_plans(client)
    billing.status = "incomplete"
    stripe = FirstInvoicePayments(billing)
    user = unique_user()
    response = await subscribe(client, user, "price_basic")
    assert response.status_code == 201, response.text
    row = await the_row(session, user)
    assert stripe.pay.call_count == 0
    assert response.json()["client_secret"] == f"pi_first_{row.id}_secret_abc"


async def test_declined_card_leaves_the_client_secret(
    client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
) -> None:
    await seed_plans(client)
    billing.status = "incomplete"
    stripe = FirstInvoicePayments(billing, answer="declined")
    user = unique_user()
    response = await subscribe(client, user, "price_pro", payment_method="pm_card_declined")
    assert response.status_code == 201, response.text
    row = await the_row(session, user)
    assert stripe.pay.call_count == 1
    assert stripe.read.call_count == 0
    body = response.json()
    assert (body["status"], body["client_secret"]) == (
        "incomplete",
        f"pi_first_{row.id}_secret_abc",
    )
    assert "LEAK" not in response.text


async def test_saved_card_needing_authentication_becomes_active_from_stripes_events(
    client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
) -> None:
    await seed_plans(client)
    billing.status = "incomplete"  # what Stripe answers under default_incomplete
    stripe = FirstInvoicePayments(billing, answer="requires_action")
    user = unique_user()
    response = await subscribe(client, user, "price_pro", payment_method="pm_card_visa")
    assert response.status_code == 201, response.text
    body = response.json()
    row = await the_row(session, user)
    form = form_of(billing.router.routes["subscriptions"].calls.last.request)
    assert (form["payment_behavior"], form["default_payment_method"]) == (
        "default_incomplete",
        "pm_card_visa",
    )
    # Stripe asked for authentication: the customer confirms the first invoice's
    # PaymentIntent with the card (3-D Secure), as before.
    assert stripe.pay.call_count == 1
    assert stripe.read.call_count == 0
    assert (body["status"], body["entitled"]) == ("incomplete", False)
    assert (body["client_secret"], body["client_secret_type"]) == (
        f"pi_first_{row.id}_secret_abc",
        "payment_intent",
    )

    first = invoice(
        f"in_first_{row.id}",
        stripe_sub=str(row.stripe_subscription_id),
        amount=1_900,
        reason="subscription_create",
        our_id=row.id,
    )
    fee_routes(billing.router, first["id"], fee=85)
    t0 = int(time.time())
    # Stripe's events, the subscription's change first, invoice.paid twice.
    await send(client, "customer.subscription.updated", stripe_state(row, "active"), created=t0)
    for _ in range(2):
        await send(client, "invoice.paid", first, created=t0)
    now = await mine(client, user)
    assert (now["status"], now["entitled"]) == ("active", True)
    assert await ledger_rows(session, first["id"]) == [
        ("subscription_payment", f"stripe:invoice:{first['id']}"),
        ("processing_fee", f"stripe:fee:txn_{first['id']}"),
        ("subscription_credit", f"subscription_credit:{first['id']}"),
    ]
    assert await available(client, user) == 500
    assert [t for t, _ in await emitted(session, user)] == [
        "subscription.created",
        "subscription.updated",
        "invoice.paid",
    ]
    assert await ledger_invariants(session) == []


async def test_failed_payment_call_is_retried_with_the_same_key(
    client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
) -> None:
    """Stripe unavailable when paying: 503, the subscription is recorded; the client's
    retry (same Idempotency-Key) reads it back and pays with the same Stripe key."""
    await seed_plans(client)
    billing.status = "incomplete"
    stripe = FirstInvoicePayments(billing)
    answers = iter([httpx.Response(500, json={"error": {"type": "api_error"}})])

    def flaky(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or stripe.on_pay(request)

    stripe.pay.mock(side_effect=flaky)
    user = unique_user()
    failed = await subscribe(client, user, "price_pro", payment_method="pm_card_visa")
    assert failed.status_code == 503, failed.text
    assert failed.json()["code"] == "payment_provider_unavailable"
    row = await the_row(session, user)
    assert row.stripe_subscription_id is not None  # recorded before the payment call

    retried = await subscribe(client, user, "price_pro", payment_method="pm_card_visa")
    assert retried.status_code == 201, retried.text
    assert retried.json()["status"] == "active"
    assert billing.router.routes["subscriptions"].call_count == 1
    keys = {call.request.headers["Idempotency-Key"] for call in stripe.pay.calls}
    assert (stripe.pay.call_count, keys) == (2, {stripe_key("subscription_first_invoice", row.id)})


async def test_payment_that_took_effect_is_read_back_not_repeated(
    client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
) -> None:
    """The payment went through but its answer was lost: the retry reads the
    subscription back (active) and does not pay again."""
    await seed_plans(client)
    billing.status = "incomplete"
    stripe = FirstInvoicePayments(billing)
    lost = iter([True])

    def timeout_after_effect(request: httpx.Request) -> httpx.Response:
        stripe.on_pay(request)
        if next(lost, False):
            raise httpx.ReadTimeout("answer lost", request=request)
        raise AssertionError("paid twice")

    stripe.pay.mock(side_effect=timeout_after_effect)
    user = unique_user()
    failed = await subscribe(client, user, "price_pro", payment_method="pm_card_visa")
    assert failed.status_code == 503, failed.text
    retried = await subscribe(client, user, "price_pro", payment_method="pm_card_visa")
    assert retried.status_code == 201, retried.text
    assert retried.json()["status"] == "active"
    assert (billing.router.routes["subscriptions"].call_count, stripe.pay.call_count) == (1, 1)
