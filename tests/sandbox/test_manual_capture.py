"""Escrows paid by authorization, offline: the sandbox authorizes on the hosted checkout
page (`capture_method=manual`), captures all or part on acceptance, cancels on release,
and lets an authorization expire from its admin page, each step sending Stripe's events
to the real webhook routes."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from payments_api.ledger.kinds import AccountKind
from payments_api.orders.refund_models import Refund
from payments_api.webhooks.models import WebhookEvent
from payments_sandbox import objects
from payments_sandbox.models import SandboxObject
from payments_sandbox.service import SandboxStripe
from tests.sandbox.helpers import CANCEL_URL, SUCCESS_URL, Sandbox, path_of

CUSTOMER = ["customer"]
PAYEE = ["payee"]


def uid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def intent(sandbox: Sandbox, intent_id: str) -> dict[str, Any]:
    async with sandbox.sessionmaker() as session:
        row = await session.scalar(select(SandboxObject).where(SandboxObject.id == intent_id))
        assert row is not None
        return dict(row.body)


async def authorized(sandbox: Sandbox) -> tuple[str, str, str, str]:
    """A 100.00 job paid by authorization on the hosted page: (customer, payee, escrow,
    PaymentIntent)."""
    customer, payee = uid("cust"), uid("payee")
    await sandbox.api("GET", "/api/v1/me/balance", payee, PAYEE)  # the payee, first seen
    checkout = await sandbox.api(
        "POST",
        "/api/v1/checkout/sessions",
        customer,
        CUSTOMER,
        json={
            "purpose": "escrow",
            "capture_method": "manual",
            "payee_id": payee,
            "amount": 10_000,
            "currency": "usd",
            "reference": "job-auth",
            "success_url": SUCCESS_URL,
            "cancel_url": CANCEL_URL,
        },
    )
    assert checkout.status_code == 201, checkout.text
    paid = await sandbox.click(path_of(checkout.json()["url"]), action="pay")
    assert paid.status_code == 303, paid.text
    delivered = await sandbox.deliver()
    assert "payment_intent.amount_capturable_updated" in delivered
    assert "payment_intent.succeeded" not in delivered
    [escrow] = (await sandbox.api("GET", "/api/v1/escrows", customer, CUSTOMER)).json()["data"]
    assert (escrow["status"], escrow["authorized_amount"]) == ("authorized", 10_500)
    async with sandbox.sessionmaker() as session:
        session_row = await session.scalar(
            select(SandboxObject).where(SandboxObject.id == checkout.json()["id"])
        )
        assert session_row is not None
        assert session_row.body["payment_status"] == "unpaid"
        pi = str(session_row.body["payment_intent"])
    body = await intent(sandbox, pi)
    assert (body["status"], body["amount_capturable"], body["capture_method"]) == (
        "requires_capture",
        10_500,
        "manual",
    )
    assert await sandbox.balance(customer) == 0
    assert await sandbox.balance(customer, AccountKind.escrow) == 0
    return customer, payee, str(escrow["id"]), pi


class TestManualCaptureInSandbox:
    async def test_partial_capture_on_acceptance(self, sandbox: Sandbox) -> None:
        customer, payee, escrow, pi = await authorized(sandbox)

        accepted = await sandbox.api(
            "POST",
            f"/api/v1/escrows/{escrow}/accept",
            payee,
            PAYEE,
            json={"amount_to_capture": 8_400},
        )
        assert accepted.status_code == 200, accepted.text
        delivered = await sandbox.deliver()

        # Stripe since 2025-03-31.basil: the released 21.00 is no refund (no Refund, no
        # charge.refunded, amount_refunded untouched).
        assert delivered == ["charge.captured", "payment_intent.succeeded"]
        body = await intent(sandbox, pi)
        assert (body["status"], body["amount_received"]) == ("succeeded", 8_400)
        charge = await sandbox.stripe_object(str(body["latest_charge"]))
        assert (charge["amount_captured"], charge["amount_refunded"], charge["refunded"]) == (
            8_400,
            0,
            False,
        )
        assert [r for r in await sandbox.objects_of("refund") if r["charge"] == charge["id"]] == []
        got = (await sandbox.api("GET", f"/api/v1/escrows/{escrow}", customer, CUSTOMER)).json()
        assert (got["status"], got["capture_status"], got["amount"], got["hold_amount"]) == (
            "accepted",
            "captured",
            8_000,
            8_400,
        )
        assert await sandbox.balance(customer, AccountKind.escrow) == 8_000
        assert await sandbox.balance(customer) == 0
        assert await sandbox.undelivered() == []

    async def test_cancel_releases_the_authorization(self, sandbox: Sandbox) -> None:
        customer, _payee, escrow, pi = await authorized(sandbox)

        cancelled = await sandbox.api(
            "POST", f"/api/v1/escrows/{escrow}/cancel", customer, CUSTOMER, json={}
        )
        assert cancelled.status_code == 200, cancelled.text
        assert await sandbox.deliver() == ["payment_intent.canceled"]

        body = await intent(sandbox, pi)
        assert (body["status"], body["cancellation_reason"]) == (
            "canceled",
            "requested_by_customer",
        )
        got = (await sandbox.api("GET", f"/api/v1/escrows/{escrow}", customer, CUSTOMER)).json()
        assert (got["status"], got["capture_status"]) == ("cancelled", "released")
        assert await sandbox.balance(customer) == 0

    async def test_authorization_expiry_from_the_admin_page(self, sandbox: Sandbox) -> None:
        customer, _payee, escrow, pi = await authorized(sandbox)

        expired = await sandbox.click(f"/sandbox/admin/payment_intents/{pi}/expire_authorization")
        assert expired.status_code == 303, expired.text
        assert await sandbox.deliver() == ["charge.expired", "payment_intent.canceled"]

        assert (await intent(sandbox, pi))["cancellation_reason"] == "expired"
        got = (await sandbox.api("GET", f"/api/v1/escrows/{escrow}", customer, CUSTOMER)).json()
        assert (got["status"], got["capture_status"], got["cancel_reason"]) == (
            "cancelled",
            "expired",
            "authorization_expired",
        )
        assert await sandbox.balance(customer) == 0
        assert await sandbox.balance(customer, AccountKind.escrow) == 0

    async def test_a_refund_for_the_released_rest_as_older_api_versions_sent_books_nothing(
        self, sandbox: Sandbox
    ) -> None:
        """Before 2025-03-31.basil Stripe recorded the released rest of a partial capture
        as a Refund and sent charge.refunded for it. Such an event (an endpoint on an
        older version, a resent old event) must not pay the rest back a second time."""
        customer, payee, escrow, pi = await authorized(sandbox)
        accepted = await sandbox.api(
            "POST",
            f"/api/v1/escrows/{escrow}/accept",
            payee,
            PAYEE,
            json={"amount_to_capture": 8_400},
        )
        assert accepted.status_code == 200, accepted.text
        await sandbox.deliver()
        escrow_before = await sandbox.balance(customer, AccountKind.escrow)
        charge_id = str((await intent(sandbox, pi))["latest_charge"])

        async with sandbox.sessionmaker.begin() as session:
            stripe = SandboxStripe(session, sandbox.settings)
            row = await stripe.load(charge_id, "charge")
            release = objects.refund(
                charge_body=row.body,
                amount=10_500 - 8_400,
                reason=None,
                metadata={},
                balance_transaction_id=objects.new_id("txn"),
            )
            await stripe.objects.add("refund", release)
            legacy_charge = {**row.body, "amount_refunded": 10_500 - 8_400}
            await stripe.objects.save(row, legacy_charge)
            await stripe.emit("charge.refunded", legacy_charge)
        assert await sandbox.deliver() == ["charge.refunded"]

        async with sandbox.sessionmaker() as session:
            statuses = list(
                await session.scalars(
                    select(WebhookEvent.status).where(
                        WebhookEvent.type == "charge.refunded",
                        WebhookEvent.payload["data"]["object"]["id"].astext == charge_id,
                    )
                )
            )
            refunds = await session.scalar(
                select(func.count()).select_from(Refund).where(Refund.user_id == customer)
            )
        assert statuses == ["processed"]
        assert refunds == 0
        assert await sandbox.balance(customer, AccountKind.escrow) == escrow_before == 8_000
        assert await sandbox.balance(customer) == 0
        assert await sandbox.undelivered() == []
