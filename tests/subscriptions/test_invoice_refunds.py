"""Refunds of paid subscription invoices through ``POST /api/v1/admin/refunds``."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from payments_api.kit.clock import utcnow
from payments_api.ledger.kinds import AccountKind, CauseType
from payments_api.ledger.service import AccountRef, LedgerService, NewTransaction, PostingSpec
from payments_api.refunds.invoices import InvoiceRefundService
from payments_api.settings import Settings
from payments_api.stripe.gateway import StripeGateway
from tests.factories import emitted, ledger_invariants
from tests.helpers import auth, stripe_key, stripe_object
from tests.subscriptions.conftest import (
    FakeBilling,
    fee_routes,
    form_of,
    invoice,
    price,
    product,
    seed_plans,
    send,
    subscribe,
    unique_user,
)
from tests.subscriptions.test_subscriptions import available, the_row

ADMIN = auth("admin_subs", ["admin"])


def refund_object(
    refund_id: str, *, amount: int, status: str, payment_intent: str, metadata: dict[str, str]
) -> dict[str, Any]:
    obj = stripe_object("refund")
    obj.update(
        id=refund_id,
        amount=amount,
        currency="usd",
        status=status,
        payment_intent=payment_intent,
        charge=f"ch_of_{payment_intent}",
        metadata=metadata,
    )
    return obj


class StripeRefunds:
    """``POST /v1/refunds`` answering ``pending`` (Stripe's word comes by webhook)."""

    def __init__(self, router: respx.MockRouter, status: str = "pending") -> None:
        self.made: list[dict[str, Any]] = []
        self.status = status
        self.route = router.post("/v1/refunds").mock(side_effect=self.create)

    def create(self, request: httpx.Request) -> httpx.Response:
        form = form_of(request)
        obj = refund_object(
            f"re_{uuid.uuid4().hex[:12]}",
            amount=int(form["amount"]),
            status=self.status,
            payment_intent=form["payment_intent"],
            metadata={k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
        )
        self.made.append(obj)
        return httpx.Response(200, json=obj)


async def paid_pro(
    client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession, invoice_id: str
) -> tuple[str, dict[str, Any]]:
    """A subscriber of the pro plan (19.00, 5.00 credit) whose invoice was paid."""
    await seed_plans(client)
    user = unique_user()
    await subscribe(client, user, "price_pro")
    row = await the_row(session, user)
    paid = invoice(invoice_id, stripe_sub=str(row.stripe_subscription_id), amount=1900)
    fee_routes(billing.router, invoice_id, fee=85, charge=f"ch_{invoice_id}")
    await send(client, "invoice.paid", paid)
    assert await available(client, user) == 500
    return user, paid


async def refund(
    client: httpx.AsyncClient, invoice_id: str, amount: int | None, **extra: Any
) -> httpx.Response:
    body: dict[str, Any] = {"invoice_id": invoice_id, **extra}
    if amount is not None:
        body["amount"] = amount
    return await client.post(
        "/api/v1/admin/refunds",
        json=body,
        headers={**ADMIN, "Idempotency-Key": uuid.uuid4().hex},
    )


async def kinds_of(session: AsyncSession, cause_key: str) -> list[tuple[str, str | None, int]]:
    rows = await session.execute(
        text(
            "SELECT a.kind, a.owner_user_id, p.amount FROM ledger_postings p"
            " JOIN ledger_accounts a ON a.id = p.account_id"
            " JOIN ledger_transactions t ON t.id = p.transaction_id"
            " WHERE t.cause_key = :key ORDER BY a.kind, p.amount"
        ),
        {"key": cause_key},
    )
    return [(r.kind, r.owner_user_id, r.amount) for r in rows]


async def settle(client: httpx.AsyncClient, made: dict[str, Any], times: int = 1) -> None:
    for _ in range(times):
        await send(client, "refund.updated", {**made, "status": "succeeded"})


class TestInvoiceRefunds:
    async def test_partial_refunds_reverse_revenue_and_credit_in_proportion(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        user, _ = await paid_pro(client, billing, session, "in_refund_a")
        stripe = StripeRefunds(billing.router)

        first = await refund(client, "in_refund_a", 1000, note="goodwill")
        assert first.status_code == 201, first.text
        body = first.json()
        assert body["id"].startswith("rfi_")
        assert body["invoice_id"] == "in_refund_a"
        assert body["order_id"] is None
        assert body["status"] == "pending"
        # 1000 of 1900 takes back 263 of the 500 credit (largest remainder), held meanwhile
        assert body["credit_taken_back"] == 263
        assert body["held_amount"] == 263
        assert await available(client, user) == 237
        call = stripe.route.calls.last.request
        form = form_of(call)
        number = int(body["id"].removeprefix("rfi_"))
        assert call.headers["Idempotency-Key"] == stripe_key("invoice_refund", number)
        assert form["payment_intent"] == "pi_in_refund_a"
        assert form["amount"] == "1000"
        assert form["metadata[invoice_refund_id]"] == str(number)

        await settle(client, stripe.made[0], times=3)  # delivered three times: applied once
        re_first = stripe.made[0]["id"]
        assert await kinds_of(session, f"stripe:refund:{re_first}") == [
            ("sales", None, -1000),
            ("stripe_balance", None, 1000),
        ]
        assert await kinds_of(session, f"invoice_refund:{number}:credit") == [
            ("sales", None, 263),
            ("withdrawing", user, -263),
        ]
        got = await client.get(f"/api/v1/admin/refunds/{body['id']}", headers=ADMIN)
        assert got.json()["status"] == "succeeded"
        assert got.json()["held_amount"] == 0

        # the rest of the invoice: 900 takes back the remaining 237
        second = await refund(client, "in_refund_a", None)
        assert second.status_code == 201, second.text
        assert second.json()["amount"] == 900
        assert second.json()["credit_taken_back"] == 237
        await settle(client, stripe.made[1])
        assert await available(client, user) == 0

        more = await refund(client, "in_refund_a", 100)
        assert more.status_code == 409
        assert more.json()["code"] == "refund_exceeds_refundable"
        assert stripe.route.call_count == 2

        events = await emitted(session, user)
        assert [t for t, _ in events].count("refund.succeeded") == 2
        refunded = [p for t, p in events if t == "invoice.refunded"]
        assert [p["refunded_amount"] for p in refunded] == [1000, 1900]
        assert refunded[-1]["credit_reversed"] == 500
        listed = await client.get(
            "/api/v1/admin/refunds", params={"invoice_id": "in_refund_a"}, headers=ADMIN
        )
        assert [r["amount"] for r in listed.json()["data"]] == [900, 1000]
        assert await ledger_invariants(session) == []

    async def test_spent_credit_is_refused_unless_forced(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        user, _ = await paid_pro(client, billing, session, "in_refund_b")
        stripe = StripeRefunds(billing.router)
        # the subscriber spends 400 of the 500 credit
        await LedgerService(session).post(
            NewTransaction(
                type="wallet_debit",
                cause_type=CauseType.system,
                cause_key=f"test:spend:{user}",
                description="spent",
                metadata={},
                postings=[
                    PostingSpec(AccountRef.user(user, AccountKind.available, "usd"), -400),
                    PostingSpec(AccountRef.platform(AccountKind.sales, "usd"), 400),
                ],
            )
        )
        await session.commit()

        refused = await refund(client, "in_refund_b", None)
        assert refused.status_code == 409
        problem = refused.json()
        assert problem["code"] == "refund_credit_spent"
        assert problem["available"] == 100
        assert problem["credit_share"] == 500
        assert stripe.route.call_count == 0
        count = await session.scalar(text("SELECT count(*) FROM invoice_refunds"))
        assert count == 0

        forced = await refund(client, "in_refund_b", None, force=True)
        assert forced.status_code == 201, forced.text
        assert forced.json()["held_amount"] == 100
        await settle(client, stripe.made[0])
        number = int(forced.json()["id"].removeprefix("rfi_"))
        # the wallet gives back what it held; the platform bears the 400 spent
        assert await kinds_of(session, f"invoice_refund:{number}:credit") == [
            ("adjustments", None, -400),
            ("sales", None, 500),
            ("withdrawing", user, -100),
        ]
        assert await available(client, user) == 0
        assert await ledger_invariants(session) == []

    async def test_refund_made_in_the_dashboard_is_recorded_and_settled(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        user, _ = await paid_pro(client, billing, session, "in_refund_c")
        dashboard = refund_object(
            "re_dashboard_c",
            amount=1900,
            status="succeeded",
            payment_intent="pi_in_refund_c",
            metadata={},
        )
        charge = stripe_object("charge")
        charge.update(
            id="ch_in_refund_c",
            payment_intent="pi_in_refund_c",
            amount_refunded=1900,
            refunded=True,
            refunds={"object": "list", "data": [dashboard], "has_more": False, "url": "/"},
        )
        for _ in range(2):
            await send(client, "charge.refunded", charge)
        rows = await session.execute(
            text("SELECT origin, status, credit_share FROM invoice_refunds")
        )
        assert [tuple(r) for r in rows] == [("stripe", "succeeded", 500)]
        assert await kinds_of(session, "stripe:refund:re_dashboard_c") == [
            ("sales", None, -1900),
            ("stripe_balance", None, 1900),
        ]
        assert await available(client, user) == 0
        assert await ledger_invariants(session) == []

    async def test_stripe_refusal_releases_the_hold(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        user, _ = await paid_pro(client, billing, session, "in_refund_d")
        billing.router.post("/v1/refunds").mock(
            return_value=httpx.Response(
                400,
                json={
                    "error": {
                        "type": "invalid_request_error",
                        "code": "charge_already_refunded",
                        "message": "Charge has already been refunded.",
                    }
                },
            )
        )
        refused = await refund(client, "in_refund_d", 500)
        assert refused.status_code == 409
        assert refused.json()["code"] == "refund_rejected"
        assert await available(client, user) == 500
        failed = [t for t, _ in await emitted(session, user) if t == "refund.failed"]
        assert failed == ["refund.failed"]
        assert await ledger_invariants(session) == []

    async def test_unknown_or_unpaid_invoices(
        self, client: httpx.AsyncClient, billing: FakeBilling
    ) -> None:
        missing = await refund(client, "in_nope", 100)
        assert missing.status_code == 404
        assert missing.json()["code"] == "invoice_not_found"
        both = await client.post(
            "/api/v1/admin/refunds",
            json={"invoice_id": "in_x", "order_id": "ord_1"},
            headers={**ADMIN, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert both.status_code == 422


class TestInvoiceRefundRecovery:
    async def test_stripe_down_leaves_it_pending_and_recovery_finishes_it(
        self,
        client: httpx.AsyncClient,
        billing: FakeBilling,
        session: AsyncSession,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: StripeGateway,
        settings: Settings,
    ) -> None:
        user, _ = await paid_pro(client, billing, session, "in_refund_e")
        down = billing.router.post("/v1/refunds").mock(return_value=httpx.Response(500, json={}))
        pending = await refund(client, "in_refund_e", 1900)
        assert pending.status_code == 202, pending.text
        assert (pending.json()["status"], pending.json()["held_amount"]) == ("pending", 500)
        assert await available(client, user) == 0
        number = int(pending.json()["id"].removeprefix("rfi_"))

        stripe = StripeRefunds(billing.router, status="succeeded")
        listing = billing.router.get("/v1/refunds").mock(
            return_value=httpx.Response(
                200, json={"object": "list", "data": [], "has_more": False, "url": "/v1/refunds"}
            )
        )
        recovered = await InvoiceRefundService(
            sessionmaker, gateway, settings, now=lambda: utcnow() + timedelta(hours=1)
        ).recover()
        assert recovered >= 1
        assert listing.calls.last.request.url.params["payment_intent"] == "pi_in_refund_e"
        keys = {c.request.headers["Idempotency-Key"] for c in [*down.calls, *stripe.route.calls]}
        assert keys == {stripe_key("invoice_refund", number)}  # one key, every attempt
        got = await client.get(f"/api/v1/admin/refunds/rfi_{number}", headers=ADMIN)
        assert (got.json()["status"], got.json()["credit_taken_back"]) == ("succeeded", 500)
        assert await available(client, user) == 0
        assert await ledger_invariants(session) == []

    async def test_a_refund_failing_after_it_succeeded_is_reversed_whole(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        user, _ = await paid_pro(client, billing, session, "in_refund_f")
        stripe = StripeRefunds(billing.router, status="succeeded")
        done = await refund(client, "in_refund_f", 950)
        assert done.json()["status"] == "succeeded"
        assert await available(client, user) == 250
        failed = {
            **stripe.made[0],
            "status": "failed",
            "failure_reason": "expired_or_canceled_card",
        }
        for _ in range(2):
            await send(client, "refund.updated", failed)
        got = await client.get(f"/api/v1/admin/refunds/{done.json()['id']}", headers=ADMIN)
        assert (got.json()["status"], got.json()["failure_reason"]) == (
            "failed",
            "expired_or_canceled_card",
        )
        assert await available(client, user) == 500  # the credit is back
        assert await kinds_of(session, f"stripe:refund_failed:{stripe.made[0]['id']}") == [
            ("available", user, 250),
            ("sales", None, -250),
            ("sales", None, 950),
            ("stripe_balance", None, -950),
        ]
        invoice_row = await session.scalar(
            text(
                "SELECT refunded_amount || '/' || credit_reversed FROM subscription_invoices"
                " WHERE stripe_invoice_id = 'in_refund_f'"
            )
        )
        assert invoice_row == "0/0"
        assert await ledger_invariants(session) == []


@pytest.fixture
def committed(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def test_two_full_refunds_at_once_refund_the_invoice_once(
    committed_client: httpx.AsyncClient,
    committed: async_sessionmaker[AsyncSession],
    billing: FakeBilling,
) -> None:
    """Both requests commit for real on their own connections: the invoice row lock lets
    one through and the other finds nothing left to refund."""
    client = committed_client
    suffix = uuid.uuid4().hex[:8]
    plan_product = product(f"prod_race_{suffix}", family=f"r{suffix}")
    plan_price = price(
        f"price_race_{suffix}", 1900, product_id=f"prod_race_{suffix}", credit=500, currency="brl"
    )
    await send(client, "product.created", plan_product)
    await send(client, "price.created", plan_price)
    try:
        await _race(client, committed, billing, suffix)
    finally:  # committed for real: archive the plan, so other tests' plan lists hold
        later = int(time.time()) + 60
        await send(client, "price.updated", {**plan_price, "active": False}, created=later)
        await send(client, "product.updated", {**plan_product, "active": False}, created=later)


async def _race(
    client: httpx.AsyncClient,
    committed: async_sessionmaker[AsyncSession],
    billing: FakeBilling,
    suffix: str,
) -> None:
    user = unique_user()
    created = await subscribe(client, user, f"price_race_{suffix}")
    assert created.status_code == 201, created.text
    invoice_id = f"in_race_{suffix}"
    fee_routes(billing.router, invoice_id, fee=85, charge=f"ch_{invoice_id}", currency="brl")
    await send(
        client,
        "invoice.paid",
        invoice(
            invoice_id,
            stripe_sub=created.json()["stripe_subscription_id"],
            amount=1900,
            currency="brl",
        ),
    )
    stripe = StripeRefunds(billing.router, status="succeeded")

    answers = await asyncio.gather(*(refund(client, invoice_id, None) for _ in range(2)))

    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409)
    assert refused.json()["code"] == "refund_exceeds_refundable"
    assert stripe.route.call_count == 1
    async with committed() as session:
        row = await session.scalar(
            text(
                "SELECT refunded_amount || '/' || credit_reversed FROM subscription_invoices"
                " WHERE stripe_invoice_id = :i"
            ),
            {"i": invoice_id},
        )
        assert row == "1900/500"
        balance = await LedgerService(session).balance_of(
            AccountRef.user(user, AccountKind.available, "brl")
        )
        assert balance == 0
