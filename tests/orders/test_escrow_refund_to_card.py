"""An escrow paid by card and cancelled before acceptance can go back to the card
(`refund_to: "card"`): cancel and refund hold in one transaction, Stripe refunds the
PaymentIntent with a key derived from the refund, the ledger settles on its word."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import respx
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.orders.models import Order
from tests.factories import create_user, ledger_invariants
from tests.helpers import auth, make_event, stripe_key
from tests.orders.test_checkout import (
    URLS,
    balance,
    completed_session,
    deliver,
    succeeded_intent,
    the_order,
)
from tests.refunds.helpers import form, refund_from_request


async def card_escrow(
    client: httpx.AsyncClient, session: AsyncSession, customer: str, payee: str
) -> tuple[str, Order]:
    """A 100.00 job paid by card (105.00 with the platform fee), funded by Stripe."""
    await create_user(session, id=payee, roles=["payee"])
    response = await client.post(
        "/api/v1/checkout/sessions",
        json={
            "purpose": "escrow",
            "payee_id": payee,
            "amount": 10_000,
            "currency": "usd",
            "reference": "job-card",
            **URLS,
        },
        headers={**auth(customer, ["customer"]), "Idempotency-Key": f"job-{customer}"},
    )
    assert response.status_code == 201, response.text
    order = await the_order(session, customer)
    pi = f"pi_{uuid.uuid4().hex[:16]}"
    for event in (
        make_event("checkout.session.completed", completed_session(order, payment_intent=pi)),
        make_event("payment_intent.succeeded", succeeded_intent(order, pi)),
    ):
        assert (await deliver(client, event)).status_code == 200
    escrows = await client.get("/api/v1/escrows", headers=auth(customer, ["customer"]))
    [escrow] = escrows.json()["data"]
    assert escrow["status"] == "created"
    return str(escrow["id"]), await the_order(session, customer)


async def cancel(
    client: httpx.AsyncClient, escrow_id: str, user: str, roles: list[str], **body: Any
) -> httpx.Response:
    return await client.post(
        f"/api/v1/escrows/{escrow_id}/cancel",
        json=body,
        headers={**auth(user, roles), "Idempotency-Key": uuid.uuid4().hex},
    )


def stripe_refunds(mock: respx.MockRouter, status: str = "succeeded") -> respx.Route:
    return mock.post("/v1/refunds", name="refunds").mock(
        side_effect=lambda request: httpx.Response(
            200, json=refund_from_request(request, status=status, currency="usd")
        )
    )


class TestRefundToCard:
    async def test_cancel_before_acceptance_refunds_the_card(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        escrow_id, order = await card_escrow(client, session, "rtc_cust", "rtc_payee")
        route = stripe_refunds(stripe_payins)

        response = await cancel(
            client, escrow_id, "rtc_cust", ["customer"], refund_to="card", reason="plans"
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "cancelled"
        refund = body["refund"]
        assert (refund["amount"], refund["currency"], refund["status"]) == (
            10_500,
            "usd",
            "succeeded",
        )
        call = route.calls.last.request
        assert call.url.path == "/v1/refunds"
        number = int(refund["id"].removeprefix("rfd_"))
        assert call.headers["Idempotency-Key"] == stripe_key("refund", number)
        assert "Stripe-Account" not in call.headers
        sent = form(call)
        assert (sent["payment_intent"], sent["amount"]) == (order.stripe_payment_intent_id, "10500")
        assert "reverse_transfer" not in sent
        # the money left the wallet for the card: nothing available, nothing held
        assert "usd" not in await balance(client, "rtc_cust")  # zero balances are omitted
        order = await the_order(session, "rtc_cust")
        assert (order.status, order.refunded_amount) == ("refunded", 10_500)
        assert await ledger_invariants(session) == []

        # the same cancel again: no second refund
        again = await cancel(client, escrow_id, "rtc_cust", ["customer"], refund_to="card")
        assert again.status_code == 200, again.text
        assert again.json()["refund"]["id"] == refund["id"]
        assert route.call_count == 1

    async def test_stripe_refusing_leaves_the_money_in_the_wallet(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        escrow_id, _order = await card_escrow(client, session, "rtc_cust2", "rtc_payee2")
        stripe_payins.post("/v1/refunds").mock(
            return_value=httpx.Response(
                400,
                json={
                    "error": {
                        "type": "invalid_request_error",
                        "code": "charge_expired_for_refund",
                        "message": "This charge is too old to be refunded.",
                    }
                },
            )
        )

        response = await cancel(client, escrow_id, "rtc_cust2", ["customer"], refund_to="card")

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["status"], body["refund"]["status"]) == ("cancelled", "failed")
        wallet = (await balance(client, "rtc_cust2"))["usd"]
        assert (wallet["available"], wallet["escrow"], wallet["withdrawing"]) == (10_500, 0, 0)
        assert await ledger_invariants(session) == []

    async def test_refused_when_accepted_or_paid_from_the_wallet(
        self, client: httpx.AsyncClient, stripe_payins: respx.MockRouter, session: AsyncSession
    ) -> None:
        route = stripe_refunds(stripe_payins)
        escrow_id, _order = await card_escrow(client, session, "rtc_cust3", "rtc_payee3")
        accepted = await client.post(
            f"/api/v1/escrows/{escrow_id}/accept",
            headers={**auth("rtc_payee3", ["payee"]), "Idempotency-Key": "acc"},
        )
        assert accepted.status_code == 200, accepted.text

        late = await cancel(client, escrow_id, "rtc_cust3", ["customer"], refund_to="card")

        assert (late.status_code, late.json()["code"]) == (409, "refund_to_card_unavailable")
        assert route.call_count == 0
        escrow = await client.get(
            f"/api/v1/escrows/{escrow_id}", headers=auth("rtc_cust3", ["customer"])
        )
        assert escrow.json()["status"] == "accepted"  # nothing was cancelled

        # the default still returns the money to the wallet
        wallet_way = await cancel(client, escrow_id, "rtc_cust3", ["customer"])
        assert wallet_way.status_code == 200, wallet_way.text
        assert wallet_way.json()["refund"] is None
