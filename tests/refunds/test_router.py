"""Refunds through the HTTP API, Stripe answering through respx in its own shapes and
its events signed as Stripe signs them."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import respx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from payments_api.audit.models import AuditLogEntry
from payments_api.kit.clock import utcnow
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from payments_api.orders.models import Order
from payments_api.orders.refund_models import Refund
from payments_api.refunds.service import RefundService
from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway
from tests.factories import emitted, ledger_invariants
from tests.helpers import auth, make_event, stripe_key, stripe_object
from tests.refunds.helpers import (
    ADMIN,
    cause_count,
    deliver,
    form,
    paid_order,
    platform,
    refund_from_request,
    reload,
    stripe_refund,
    wallet,
)

REFUNDS = "/api/v1/admin/refunds"
AVAILABLE = AccountKind.available


def stripe_refunds(
    mock: respx.MockRouter, *, status: str = "succeeded", currency: str = "usd"
) -> respx.Route:
    return mock.post("/v1/refunds", name="refunds").mock(
        side_effect=lambda request: httpx.Response(
            200, json=refund_from_request(request, status=status, currency=currency)
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


async def refund_rows(session: AsyncSession, order: Order) -> list[Refund]:
    rows = await session.scalars(
        select(Refund)
        .where(Refund.order_id == order.id)
        .order_by(Refund.id)
        .execution_options(populate_existing=True)
    )
    return list(rows.all())


async def audit_count(session: AsyncSession, action: str) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(AuditLogEntry).where(AuditLogEntry.action == action)
        )
        or 0
    )


def charge_refunded(order: Order, refunds: list[dict[str, Any]] | None) -> dict[str, Any]:
    charge = stripe_object("charge")
    charge.update(
        id=f"ch_{order.id}",
        amount=order.amount,
        amount_captured=order.amount,
        currency=order.currency,
        payment_intent=order.stripe_payment_intent_id,
        refunded=True,
        amount_refunded=sum(r["amount"] for r in refunds or []),
    )
    if refunds is None:
        charge.pop("refunds")  # API versions since 2022-11-15 do not embed them
    else:
        charge["refunds"] = {"object": "list", "data": refunds, "has_more": False}
    return charge


class TestCreateRefund:
    async def test_full_refund_moves_the_ledger_once(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        route = stripe_refunds(stripe_mock)
        order = await paid_order(client, session, amount=2_000)
        stripe_before = await platform(session, AccountKind.stripe_balance)

        response = await refund(client, order, key="refund-key-1", note="Customer asked")

        assert response.status_code == 201, response.text
        body = response.json()
        [row] = await refund_rows(session, order)
        assert body["id"] == f"rfd_{row.id}"
        assert body["status"] == "succeeded"
        assert body["amount"] == 2_000
        assert body["origin"] == "admin"
        call = route.calls.last.request
        assert call.url.path == "/v1/refunds"
        assert call.headers["Idempotency-Key"] == stripe_key("refund", row.id)
        assert "Stripe-Account" not in call.headers
        assert form(call) == {
            "payment_intent": order.stripe_payment_intent_id,
            "amount": "2000",
            "reason": "requested_by_customer",
            "metadata[refund_id]": str(row.id),
            "metadata[order_id]": str(order.id),
        }
        assert await wallet(session, order.user_id) == {
            "available": 0,
            "escrow": 0,
            "withdrawing": 0,
        }
        assert await platform(session, AccountKind.stripe_balance) == stripe_before + 2_000
        order = await reload(session, order)
        assert (order.status, order.refunded_amount) == ("refunded", 2_000)

        # Stripe's events for the same refund afterwards change nothing.
        refunded = stripe_refund(
            refund_id=body["stripe_refund_id"],
            amount=2_000,
            payment_intent=str(order.stripe_payment_intent_id),
            metadata={"refund_id": str(row.id), "order_id": str(order.id)},
        )
        for event in (
            make_event("charge.refunded", charge_refunded(order, [refunded])),
            make_event("refund.updated", refunded),
        ):
            assert (await deliver(client, event)).json()["status"] == "processed"
        assert await cause_count(session, f"stripe:refund:{body['stripe_refund_id']}") == 1
        assert (await wallet(session, order.user_id))["available"] == 0
        assert (await reload(session, order)).refunded_amount == 2_000
        assert await ledger_invariants(session) == []
        # The refund and what it did to the order: one event each, whatever Stripe resends.
        events = [e for e in await emitted(session, order.user_id) if e[0] != "topup.succeeded"]
        assert [(kind, payload["id"]) for kind, payload in events] == [
            ("refund.succeeded", body["id"]),
            ("order.refunded", f"ord_{order.id}"),
        ]
        assert events[1][1]["status"] == "refunded"

        [entry] = (
            await session.scalars(
                select(AuditLogEntry).where(AuditLogEntry.target_id == body["id"])
            )
        ).all()
        assert entry.action == "refund.create"
        assert entry.actor_id == "admin_1"
        assert entry.reason == "Customer asked"
        assert entry.before is not None
        assert entry.after is not None
        assert entry.before["order"]["refundable"] == 2_000
        assert entry.before["customer_available"] == 2_000
        assert entry.after["order"]["refundable"] == 0
        assert entry.after["refund"]["held_amount"] == 2_000

    async def test_two_partial_refunds_accumulate(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        stripe_refunds(stripe_mock)
        order = await paid_order(client, session, amount=3_000)

        first = await refund(client, order, amount=1_000)
        assert first.status_code == 201, first.text
        order = await reload(session, order)
        assert (order.status, order.refunded_amount) == ("partially_refunded", 1_000)

        second = await refund(client, order, amount=500)
        assert second.status_code == 201, second.text
        order = await reload(session, order)
        assert (order.status, order.refunded_amount) == ("partially_refunded", 1_500)
        assert (await wallet(session, order.user_id))["available"] == 1_500

        too_much = await refund(client, order, amount=1_501)
        assert too_much.status_code == 409
        assert too_much.json()["code"] == "refund_exceeds_refundable"
        assert too_much.json()["refundable"] == 1_500

        rest = await refund(client, order)  # no amount: everything still refundable
        assert rest.status_code == 201, rest.text
        assert rest.json()["amount"] == 1_500
        order = await reload(session, order)
        assert (order.status, order.refunded_amount) == ("refunded", 3_000)
        assert (await wallet(session, order.user_id))["available"] == 0
        listed = await client.get(REFUNDS, params={"order_id": f"ord_{order.id}"}, headers=ADMIN)
        assert [r["amount"] for r in listed.json()["data"]] == [1_500, 500, 1_000]
        assert await ledger_invariants(session) == []

    async def test_over_refund_is_refused_and_writes_nothing(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        route = stripe_refunds(stripe_mock)
        order = await paid_order(client, session, amount=2_000)
        audits = await audit_count(session, "refund.create")

        response = await refund(client, order, amount=2_001)

        assert response.status_code == 409
        problem = response.json()
        assert problem["code"] == "refund_exceeds_refundable"
        assert (problem["refundable"], problem["requested"]) == (2_000, 2_001)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert not route.called
        assert await refund_rows(session, order) == []
        assert await audit_count(session, "refund.create") == audits
        assert (await wallet(session, order.user_id))["available"] == 2_000
        assert (await reload(session, order)).status == "succeeded"

    async def test_refund_above_what_the_customer_still_holds_is_refused(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        route = stripe_refunds(stripe_mock)
        order = await paid_order(client, session, amount=2_000)
        # The customer spent 1,500 of it (held in escrow for a job).
        await LedgerService(session).post(
            NewTransaction(
                type="escrow_hold",
                cause_type=CauseType.escrow,
                cause_key=f"test-spend:{order.id}",
                postings=[
                    PostingSpec(
                        AccountRef.user(order.user_id, AccountKind.available, "usd"), -1_500
                    ),
                    PostingSpec(AccountRef.user(order.user_id, AccountKind.escrow, "usd"), 1_500),
                ],
            )
        )

        response = await refund(client, order, amount=600)

        assert response.status_code == 409
        assert response.json()["code"] == "refund_exceeds_available"
        assert response.json()["available"] == 500
        assert not route.called
        assert await refund_rows(session, order) == []
        assert await wallet(session, order.user_id) == {
            "available": 500,
            "escrow": 1_500,
            "withdrawing": 0,
        }
        assert (await refund(client, order, amount=500)).status_code == 201

    async def test_pending_refund_holds_the_money_until_stripe_confirms(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        stripe_refunds(stripe_mock, status="pending")
        order = await paid_order(client, session, amount=2_000)

        response = await refund(client, order, amount=800)

        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["status"], body["held_amount"]) == ("pending", 800)
        # Neither spendable nor withdrawable meanwhile, and not refunded yet.
        assert await wallet(session, order.user_id) == {
            "available": 1_200,
            "escrow": 0,
            "withdrawing": 800,
        }
        assert (await reload(session, order)).refunded_amount == 0
        # A second refund sees the first one in flight.
        over = await refund(client, order, amount=1_201)
        assert over.json()["code"] == "refund_exceeds_refundable"

        succeeded = stripe_refund(
            refund_id=body["stripe_refund_id"],
            amount=800,
            payment_intent=str(order.stripe_payment_intent_id),
            metadata={"refund_id": body["id"].removeprefix("rfd_"), "order_id": str(order.id)},
        )
        event = make_event("refund.updated", succeeded)
        assert (await deliver(client, event)).json()["status"] == "processed"
        assert await wallet(session, order.user_id) == {
            "available": 1_200,
            "escrow": 0,
            "withdrawing": 0,
        }
        order = await reload(session, order)
        assert (order.status, order.refunded_amount) == ("partially_refunded", 800)
        got = await client.get(f"{REFUNDS}/{body['id']}", headers=ADMIN)
        assert (got.json()["status"], got.json()["held_amount"]) == ("succeeded", 0)
        assert await ledger_invariants(session) == []

    async def test_failed_refund_releases_the_hold(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        stripe_refunds(stripe_mock, status="pending")
        order = await paid_order(client, session, amount=2_000)
        body = (await refund(client, order, amount=2_000)).json()

        failed = stripe_refund(
            refund_id=body["stripe_refund_id"],
            amount=2_000,
            payment_intent=str(order.stripe_payment_intent_id),
            status="failed",
            failure_reason="expired_or_canceled_card",
            metadata={"refund_id": body["id"].removeprefix("rfd_")},
        )
        for _ in range(2):
            response = await deliver(client, make_event("refund.failed", failed))
            assert response.json()["status"] == "processed"

        assert await wallet(session, order.user_id) == {
            "available": 2_000,
            "escrow": 0,
            "withdrawing": 0,
        }
        [row] = await refund_rows(session, order)
        assert (row.status, row.failure_reason) == ("failed", "expired_or_canceled_card")
        order = await reload(session, order)
        assert (order.status, order.refunded_amount) == ("succeeded", 0)
        assert await ledger_invariants(session) == []
        refund_events = [e for e in await emitted(session, order.user_id) if "refund" in e[0]]
        assert [(kind, payload["status"]) for kind, payload in refund_events] == [
            ("refund.failed", "failed")
        ]

    async def test_refund_failing_after_success_gives_the_money_back(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        stripe_refunds(stripe_mock)
        order = await paid_order(client, session, amount=2_000)
        body = (await refund(client, order, amount=700)).json()
        stripe_before = await platform(session, AccountKind.stripe_balance)

        failed = stripe_refund(
            refund_id=body["stripe_refund_id"],
            amount=700,
            payment_intent=str(order.stripe_payment_intent_id),
            status="failed",
            failure_reason="lost_or_stolen_card",
        )
        assert (await deliver(client, make_event("refund.failed", failed))).status_code == 200

        assert (await wallet(session, order.user_id))["available"] == 2_000
        assert await platform(session, AccountKind.stripe_balance) == stripe_before - 700
        order = await reload(session, order)
        assert (order.status, order.refunded_amount) == ("succeeded", 0)
        assert await cause_count(session, f"stripe:refund_failed:{body['stripe_refund_id']}") == 1

    async def test_stripe_refusing_the_refund_records_it_failed(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        stripe_mock.post("/v1/refunds").mock(
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
        order = await paid_order(client, session, amount=2_000)

        response = await refund(client, order, amount=2_000)

        assert response.status_code == 409
        assert response.json()["code"] == "refund_rejected"
        assert "ch_x" not in response.text  # Stripe's words never reach the client
        [row] = await refund_rows(session, order)
        assert (row.status, row.failure_reason) == ("failed", "provider_rejected")
        assert (await wallet(session, order.user_id))["available"] == 2_000

    async def test_stripe_down_leaves_it_pending_and_recovery_finishes_it(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        stripe_mock: respx.MockRouter,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: StripeGateway,
        settings: Settings,
    ) -> None:
        down = stripe_mock.post("/v1/refunds").mock(return_value=httpx.Response(500, json={}))
        order = await paid_order(client, session, amount=2_000)

        response = await refund(client, order, amount=900)

        assert response.status_code == 202, response.text
        assert response.json()["status"] == "pending"
        assert response.json()["stripe_refund_id"] is None
        assert (await wallet(session, order.user_id))["withdrawing"] == 900

        down.mock(
            side_effect=lambda request: httpx.Response(
                200, json=refund_from_request(request, status="succeeded", currency="usd")
            )
        )
        listing = stripe_mock.get("/v1/refunds").mock(
            return_value=httpx.Response(
                200, json={"object": "list", "data": [], "has_more": False, "url": "/v1/refunds"}
            )
        )
        recovered = await RefundService(
            sessionmaker, gateway, settings, now=lambda: utcnow() + timedelta(hours=1)
        ).recover()

        assert recovered >= 1
        [row] = await refund_rows(session, order)
        assert row.status == "succeeded"
        assert listing.calls.last.request.url.params["payment_intent"] == (
            order.stripe_payment_intent_id
        )
        keys = {call.request.headers["Idempotency-Key"] for call in down.calls}
        assert keys == {stripe_key("refund", row.id)}  # the retry reused the first call's key
        assert await wallet(session, order.user_id) == {
            "available": 1_100,
            "escrow": 0,
            "withdrawing": 0,
        }

    async def test_same_idempotency_key_refunds_once(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        route = stripe_refunds(stripe_mock)
        order = await paid_order(client, session, amount=2_000)

        first = await refund(client, order, key="same-key", amount=300)
        second = await refund(client, order, key="same-key", amount=300)

        assert first.status_code == second.status_code == 201
        assert first.json()["id"] == second.json()["id"]
        assert route.call_count == 1
        assert len(await refund_rows(session, order)) == 1
        assert (await wallet(session, order.user_id))["available"] == 1_700

    async def test_only_admins_refund(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        order = await paid_order(client, session, amount=2_000)
        body = {"order_id": f"ord_{order.id}"}
        customer = await client.post(
            REFUNDS, json=body, headers={**auth(order.user_id), "Idempotency-Key": "k"}
        )
        assert customer.status_code == 403
        no_key = await client.post(REFUNDS, json=body, headers=ADMIN)
        assert (no_key.status_code, no_key.json()["code"]) == (400, "idempotency_key_required")
        unknown = await client.post(
            REFUNDS, json={"order_id": "ord_999999999"}, headers={**ADMIN, "Idempotency-Key": "u"}
        )
        assert (unknown.status_code, unknown.json()["code"]) == (404, "order_not_found")
        listing = await client.get(REFUNDS, headers=auth(order.user_id))
        assert listing.status_code == 403


class TestCatalogOrderRefund:
    async def test_refund_comes_out_of_sales_not_a_wallet(
        self, client: httpx.AsyncClient, session: AsyncSession, stripe_mock: respx.MockRouter
    ) -> None:
        stripe_refunds(stripe_mock)
        order = await paid_order(client, session, amount=4_000, purpose="order")
        sales_before = await platform(session, AccountKind.sales)

        response = await refund(client, order, amount=1_000)

        assert response.status_code == 201, response.text
        assert response.json()["held_amount"] == 0
        assert await platform(session, AccountKind.sales) == sales_before - 1_000
        assert (await wallet(session, order.user_id))["available"] == 0
        assert (await reload(session, order)).status == "partially_refunded"
