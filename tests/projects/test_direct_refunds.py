"""Refunds of direct payments (destination charges with an application fee) through
``POST /api/v1/admin/refunds``: Stripe is asked to reverse the transfer and refund the
application fee; the ledger takes back the payee's share and the fee in proportion,
largest remainder, exact to the minor unit."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.kit.clock import utcnow
from payments_api.orders.models import Order
from payments_api.orders.refund_models import Refund
from payments_api.projects.models import DirectPayment
from payments_api.refunds.service import RefundService
from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway
from tests.factories import ledger_invariants
from tests.helpers import auth, make_event, stripe_key
from tests.projects.conftest import (
    balance_object,
    completed_session,
    create_project,
    deliver,
    enable_payouts,
    form_of,
    ledger_postings,
    new_customer,
    new_payee,
    orders_of,
    start_direct,
)
from tests.refunds.helpers import ADMIN, refund_from_request, reload

REFUNDS = "/api/v1/admin/refunds"


async def paid_tip(
    client: httpx.AsyncClient, session: AsyncSession, amount: int = 2_500
) -> tuple[Order, str]:
    """A confirmed direct payment of ``amount`` usd (10% application fee) and the
    payee's connected account."""
    payee = new_payee()
    project_id = await create_project(client, payee)
    await enable_payouts(client, payee)
    customer, headers = new_customer()
    body = {"payee_id": payee.id, "project_id": project_id, "amount": amount, "currency": "usd"}
    response = await start_direct(client, headers, body)
    assert response.status_code == 201, response.text
    [order] = await orders_of(session, customer)
    pi = f"pi_{uuid.uuid4().hex[:20]}"
    await deliver(client, make_event("checkout.session.completed", completed_session(order, pi)))
    return await reload(session, order), payee.account_id


def connected_balance(mock: respx.MockRouter, available: int, pending: int = 0) -> respx.Route:
    return mock.get("/v1/balance", name="balance").mock(
        return_value=httpx.Response(
            200, json=balance_object([(available, "usd")], [(pending, "usd")])
        )
    )


def stripe_refunds(mock: respx.MockRouter, status: str = "succeeded") -> respx.Route:
    return mock.post("/v1/refunds", name="refunds").mock(
        side_effect=lambda request: httpx.Response(
            200, json=refund_from_request(request, status=status, currency="usd")
        )
    )


async def refund(
    client: httpx.AsyncClient, order: Order, key: str | None = None, **body: Any
) -> httpx.Response:
    return await client.post(
        REFUNDS,
        json={"order_id": f"ord_{order.id}", **body},
        headers={**ADMIN, "Idempotency-Key": key or uuid.uuid4().hex},
    )


async def payment_row(session: AsyncSession, order: Order) -> DirectPayment:
    row = await session.scalar(
        select(DirectPayment)
        .where(DirectPayment.order_id == order.id)
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


async def refund_row(session: AsyncSession, public: str) -> Refund:
    row = await session.scalar(
        select(Refund)
        .where(Refund.id == int(public.removeprefix("rfd_")))
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


def assert_sent(call: httpx.Request, *, refund_id: int, order: Order, amount: int) -> None:
    assert call.url.path == "/v1/refunds"
    assert call.headers["Idempotency-Key"] == stripe_key("refund", refund_id)
    assert "Stripe-Account" not in call.headers  # the platform's charge is refunded
    form = form_of(call)
    assert form["payment_intent"] == order.stripe_payment_intent_id
    assert form["amount"] == str(amount)
    assert form["reverse_transfer"] == "true"
    assert form["refund_application_fee"] == "true"
    assert form["metadata[refund_id]"] == str(refund_id)


async def postings(session: AsyncSession, cause_key: str) -> list[tuple[str, int]]:
    return sorted(await ledger_postings(session, cause_key))


class TestDirectRefunds:
    async def test_partial_then_full_refund_split_exactly(
        self,
        client: httpx.AsyncClient,
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
    ) -> None:
        order, account = await paid_tip(client, session, 2_500)
        balance = connected_balance(stripe_direct, 10_000)
        route = stripe_refunds(stripe_direct)

        # 3.33 of 25.00: the fee's quota is 33.3 cents -> 33, the payee's 299.7 -> 300
        first = await refund(client, order, amount=333)

        assert first.status_code == 201, first.text
        body = first.json()
        assert (body["status"], body["amount"], body["held_amount"]) == ("succeeded", 333, 0)
        row = await refund_row(session, body["id"])
        assert_sent(route.calls.last.request, refund_id=row.id, order=order, amount=333)
        assert balance.calls.last.request.headers["Stripe-Account"] == account
        assert (row.payee_share, row.fee_share, row.platform_covered) == (300, 33, 0)
        assert await postings(session, f"stripe:refund:{body['stripe_refund_id']}") == [
            ("platform_fees", -33),
            ("stripe_balance", -300),
            ("stripe_balance", 333),
        ]
        order = await reload(session, order)
        assert (order.status, order.refunded_amount) == ("partially_refunded", 333)

        # 3.33 more: 666 refunded in all -> fee 66.6 -> 67 in all, so 34 now
        second = await refund(client, order, amount=333)
        assert second.status_code == 201, second.text
        assert await postings(session, f"stripe:refund:{second.json()['stripe_refund_id']}") == [
            ("platform_fees", -34),
            ("stripe_balance", -299),
            ("stripe_balance", 333),
        ]

        # the rest (no amount): 18.34, of which the fee's last 1.83
        rest = await refund(client, order)
        assert rest.status_code == 201, rest.text
        assert rest.json()["amount"] == 1_834
        row = await refund_row(session, rest.json()["id"])
        assert_sent(route.calls.last.request, refund_id=row.id, order=order, amount=1_834)
        assert (row.payee_share, row.fee_share) == (1_651, 183)

        payment = await payment_row(session, order)
        assert (payment.refunded_amount, payment.refunded_fee_amount) == (2_500, 250)
        order = await reload(session, order)
        assert (order.status, order.refunded_amount) == ("refunded", 2_500)
        # the payee's take was all reversed: its earnings entry says so
        payee = str(order.reference["payee_id"])
        earnings = (await client.get("/api/v1/me/earnings", headers=auth(payee, ["payee"]))).json()
        assert [(e["amount"], e["payout_status"]) for e in earnings["data"]] == [
            (2_250, "reversed")
        ]
        assert earnings["summary"][0]["by_payout_status"]["reversed"] == 2_250
        # the application fee's ledger entry is exactly undone, and nothing more
        fee_in = await ledger_postings(session, f"stripe:payment:{order.stripe_payment_intent_id}")
        assert fee_in == [("platform_fees", 250), ("stripe_balance", -250)]
        assert await ledger_invariants(session) == []

    async def test_over_refund_is_refused_and_nothing_is_sent(
        self,
        client: httpx.AsyncClient,
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
    ) -> None:
        order, _account = await paid_tip(client, session, 2_500)
        connected_balance(stripe_direct, 10_000)
        route = stripe_refunds(stripe_direct)
        assert (await refund(client, order, amount=2_000)).status_code == 201

        too_much = await refund(client, order, amount=501)

        assert too_much.status_code == 409, too_much.text
        problem = too_much.json()
        assert (problem["code"], problem["refundable"]) == ("refund_exceeds_refundable", 500)
        assert route.call_count == 1
        refunds = await session.scalars(select(Refund).where(Refund.order_id == order.id))
        assert len(refunds.all()) == 1

    async def test_in_flight_refund_counts_against_what_is_refundable(
        self,
        client: httpx.AsyncClient,
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
    ) -> None:
        order, _account = await paid_tip(client, session, 2_500)
        connected_balance(stripe_direct, 10_000)
        stripe_refunds(stripe_direct, status="pending")
        first = await refund(client, order, amount=2_000)
        assert (first.status_code, first.json()["status"]) == (201, "pending")
        assert (
            await ledger_postings(session, f"stripe:refund:{first.json()['stripe_refund_id']}")
            == []
        )

        second = await refund(client, order, amount=501)

        assert (second.status_code, second.json()["code"]) == (409, "refund_exceeds_refundable")
        assert second.json()["refundable"] == 500

    async def test_payee_cannot_cover_the_platform_does_and_it_is_recorded(
        self,
        client: httpx.AsyncClient,
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
    ) -> None:
        order, _account = await paid_tip(client, session, 2_500)
        # the payee's account was paid out: 4.00 available, 1.00 pending
        connected_balance(stripe_direct, 400, 100)
        stripe_refunds(stripe_direct)

        response = await refund(client, order, amount=1_000)

        assert response.status_code == 201, response.text
        row = await refund_row(session, response.json()["id"])
        assert (row.payee_share, row.fee_share, row.payee_coverable) == (900, 100, 500)
        assert row.platform_covered == 400
        assert await postings(session, f"stripe:refund:{row.stripe_refund_id}") == [
            ("platform_fees", -100),
            ("stripe_balance", -900),
            ("stripe_balance", 1_000),
        ]
        assert await postings(session, f"refund:{row.id}:platform_cover") == [
            ("adjustments", -400),
            ("stripe_balance", 400),
        ]
        assert await ledger_invariants(session) == []

    @pytest.mark.parametrize("event_type", ["refund.created", "charge.refund.updated"])
    async def test_webhook_before_the_api_response_settles_once(
        self,
        client: httpx.AsyncClient,
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
        event_type: str,
    ) -> None:
        order, _account = await paid_tip(client, session, 2_500)
        connected_balance(stripe_direct, 10_000)
        deliveries: list[httpx.Response] = []

        async def refunds_then_emits(request: httpx.Request) -> httpx.Response:
            created = refund_from_request(request, status="succeeded", currency="usd")
            deliveries.append(await deliver(client, make_event(event_type, created)))
            return httpx.Response(200, json=created)

        route = stripe_direct.post("/v1/refunds").mock(side_effect=refunds_then_emits)

        response = await refund(client, order, amount=1_000)

        assert response.status_code == 201, response.text
        assert [d.json()["status"] for d in deliveries] == ["processed"]
        row = await refund_row(session, response.json()["id"])
        assert_sent(route.calls.last.request, refund_id=row.id, order=order, amount=1_000)
        assert await postings(session, f"stripe:refund:{row.stripe_refund_id}") == [
            ("platform_fees", -100),
            ("stripe_balance", -900),
            ("stripe_balance", 1_000),
        ]
        payment = await payment_row(session, order)
        assert (payment.refunded_amount, payment.refunded_fee_amount) == (1_000, 100)
        assert await ledger_invariants(session) == []

    async def test_webhook_after_the_api_response_changes_nothing(
        self,
        client: httpx.AsyncClient,
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
    ) -> None:
        order, _account = await paid_tip(client, session, 2_500)
        connected_balance(stripe_direct, 10_000)
        answers: list[dict[str, Any]] = []

        def refunds(request: httpx.Request) -> httpx.Response:
            answers.append(refund_from_request(request, status="succeeded", currency="usd"))
            return httpx.Response(200, json=answers[-1])

        stripe_direct.post("/v1/refunds").mock(side_effect=refunds)
        response = await refund(client, order, amount=1_000)
        assert response.status_code == 201, response.text

        for event_type in ("refund.created", "refund.updated"):
            delivered = await deliver(client, make_event(event_type, answers[0]))
            assert delivered.json()["status"] == "processed"

        row = await refund_row(session, response.json()["id"])
        assert await postings(session, f"stripe:refund:{row.stripe_refund_id}") == [
            ("platform_fees", -100),
            ("stripe_balance", -900),
            ("stripe_balance", 1_000),
        ]
        payment = await payment_row(session, order)
        assert (payment.refunded_amount, payment.refunded_fee_amount) == (1_000, 100)
        order = await reload(session, order)
        assert order.refunded_amount == 1_000

    async def test_stripe_failure_then_recovery_with_the_same_key(
        self,
        client: httpx.AsyncClient,
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: StripeGateway,
        settings: Settings,
    ) -> None:
        order, _account = await paid_tip(client, session, 2_500)
        connected_balance(stripe_direct, 10_000)
        down = stripe_direct.post("/v1/refunds").mock(return_value=httpx.Response(500, json={}))

        response = await refund(client, order, amount=1_250)

        assert response.status_code == 202, response.text
        assert (response.json()["status"], response.json()["stripe_refund_id"]) == (
            "pending",
            None,
        )
        row = await refund_row(session, response.json()["id"])
        assert (row.payee_share, row.fee_share) == (0, 0)  # nothing settled yet
        payment = await payment_row(session, order)
        assert payment.refunded_amount == 0
        # the rest is refundable only once Stripe's answer is known: 1250 are in flight
        assert (await refund(client, order, amount=1_251)).json()["refundable"] == 1_250

        down.mock(
            side_effect=lambda request: httpx.Response(
                200, json=refund_from_request(request, status="succeeded", currency="usd")
            )
        )
        listing = stripe_direct.get("/v1/refunds").mock(
            return_value=httpx.Response(
                200, json={"object": "list", "data": [], "has_more": False, "url": "/v1/refunds"}
            )
        )
        recovered = await RefundService(
            sessionmaker, gateway, settings, now=lambda: utcnow() + timedelta(hours=1)
        ).recover()

        assert recovered >= 1
        row = await refund_row(session, response.json()["id"])
        assert row.status == "succeeded"
        assert listing.calls.last.request.url.params["payment_intent"] == (
            order.stripe_payment_intent_id
        )
        assert {call.request.headers["Idempotency-Key"] for call in down.calls} == {
            stripe_key("refund", row.id)
        }
        assert_sent(down.calls.last.request, refund_id=row.id, order=order, amount=1_250)
        # half of 25.00: exactly half of the payee's 22.50 and of the fee's 2.50
        assert (row.payee_share, row.fee_share) == (1_125, 125)
        assert await postings(session, f"stripe:refund:{row.stripe_refund_id}") == [
            ("platform_fees", -125),
            ("stripe_balance", -1_125),
            ("stripe_balance", 1_250),
        ]
        assert await ledger_invariants(session) == []

    async def test_stripe_refusing_writes_no_ledger_entry(
        self,
        client: httpx.AsyncClient,
        stripe_direct: respx.MockRouter,
        session: AsyncSession,
    ) -> None:
        order, _account = await paid_tip(client, session, 2_500)
        connected_balance(stripe_direct, 10_000)
        stripe_direct.post("/v1/refunds").mock(
            return_value=httpx.Response(
                400,
                json={
                    "error": {
                        "type": "invalid_request_error",
                        "code": "charge_already_refunded",
                        "message": "Charge ch_x has already been refunded.",
                    }
                },
            )
        )

        response = await refund(client, order, amount=1_000)

        assert (response.status_code, response.json()["code"]) == (409, "refund_rejected")
        payment = await payment_row(session, order)
        assert (payment.refunded_amount, payment.refunded_fee_amount) == (0, 0)
        order = await reload(session, order)
        assert (order.status, order.refunded_amount) == ("succeeded", 0)
        assert await ledger_invariants(session) == []
