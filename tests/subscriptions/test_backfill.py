"""The backfill of invoices booked before they kept their PaymentIntent and charge:
Stripe's answers from respx (what was asked is asserted), the ids stored once, the fee
booked once, bounded pages, and reconciliation matching them afterwards."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from typer.testing import CliRunner

from payments_api.cli import app
from payments_api.settings import Settings, get_settings
from payments_api.stripe.gateway import StripeGateway
from payments_api.subscriptions.backfill import BackfillResult, InvoicePaymentBackfill
from payments_api.subscriptions.models import SubscriptionInvoice
from tests.conftest import STRIPE_API
from tests.helpers import stripe_object
from tests.reconciliation.conftest import balance_transaction, db_now
from tests.refunds.helpers import cause_count
from tests.subscriptions.conftest import (
    FakeBilling,
    invoice,
    price,
    product,
    seed_plans,
    send,
    subscribe,
    unique_user,
)
from tests.subscriptions.test_cli import REPO
from tests.subscriptions.test_receipts import subscriber
from tests.subscriptions.test_reconciliation import StripeSide, reconcile
from tests.subscriptions.test_subscriptions import the_row

Sessions = async_sessionmaker[AsyncSession]


@dataclass
class StripePayments:
    """Stripe's invoice payments and charges. An invoice it does not know has no payment
    (as for invoices paid before this test's invoices are given theirs)."""

    mock: respx.MockRouter
    paid: dict[str, tuple[str, str, int, str]] = field(default_factory=dict)
    """invoice id -> (PaymentIntent, charge, fee, currency)"""
    fail: set[str] = field(default_factory=set)
    """invoices whose payments Stripe answers with a 500"""

    def __post_init__(self) -> None:
        self.payments = self.mock.get("/v1/invoice_payments").mock(side_effect=self.on_payments)
        self.charges = self.mock.get(path__regex=r"^/v1/charges/ch_[A-Za-z0-9_]+$").mock(
            side_effect=self.on_charge
        )

    def on_payments(self, request: httpx.Request) -> httpx.Response:
        invoice_id = request.url.params["invoice"]
        if invoice_id in self.fail:
            return httpx.Response(500, json={"error": {"type": "api_error", "message": "x"}})
        data = []
        if invoice_id in self.paid:
            intent, charge, _fee, _currency = self.paid[invoice_id]
            payment = stripe_object("invoice_payment")
            payment.update(
                invoice=invoice_id,
                status="paid",
                payment={
                    "type": "payment_intent",
                    "payment_intent": {
                        "id": intent,
                        "object": "payment_intent",
                        "latest_charge": charge,
                    },
                },
            )
            data.append(payment)
        return httpx.Response(
            200,
            json={"object": "list", "data": data, "has_more": False, "url": "/v1/invoice_payments"},
        )

    def on_charge(self, request: httpx.Request) -> httpx.Response:
        charge_id = request.url.path.rsplit("/", 1)[1]
        for invoice_id, (intent, charge, fee, currency) in self.paid.items():
            if charge == charge_id:
                obj = stripe_object("charge")
                txn = stripe_object("balance_transaction")
                txn.update(id=f"txn_{invoice_id}", fee=fee, currency=currency)
                obj.update(id=charge, payment_intent=intent, balance_transaction=txn)
                return httpx.Response(200, json=obj)
        return httpx.Response(404, json={"error": {"type": "invalid_request_error"}})

    def asked_for(self, invoice_id: str) -> int:
        return sum(1 for c in self.payments.calls if c.request.url.params["invoice"] == invoice_id)


async def legacy_invoices(
    client: httpx.AsyncClient, session: AsyncSession, price_id: str, count: int, **extra: Any
) -> list[str]:
    """Paid invoices booked as before the change: Stripe named no payment at the time."""
    user = unique_user()
    await subscribe(client, user, price_id, key=f"legacy-{uuid.uuid4().hex[:6]}")
    row = await the_row(session, user)
    tag = uuid.uuid4().hex[:8]
    ids = [f"in_legacy_{tag}_{n}" for n in range(count)]
    for invoice_id in ids:
        paid = invoice(invoice_id, stripe_sub=str(row.stripe_subscription_id), **extra)
        await send(client, "invoice.paid", paid)
    return ids


async def candidates(session: AsyncSession) -> int:
    """Invoices the backfill reads (other tests' committed ones may be among them)."""
    count = await session.scalar(
        select(func.count())
        .select_from(SubscriptionInvoice)
        .where(
            SubscriptionInvoice.status == "paid",
            SubscriptionInvoice.amount_paid > 0,
            or_(
                SubscriptionInvoice.stripe_payment_intent_id.is_(None),
                SubscriptionInvoice.stripe_charge_id.is_(None),
            ),
        )
    )
    return int(count or 0)


async def stored(session: AsyncSession, invoice_id: str) -> tuple[str | None, ...]:
    row = await session.scalar(
        select(SubscriptionInvoice)
        .where(SubscriptionInvoice.stripe_invoice_id == invoice_id)
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return (row.stripe_payment_intent_id, row.stripe_charge_id, str(row.processing_fee_amount))


async def test_backfill_stores_the_payment_ids_and_the_fee_once(
    client: httpx.AsyncClient,
    billing: FakeBilling,
    session: AsyncSession,
    sessionmaker: Sessions,
    gateway: StripeGateway,
    settings: Settings,
) -> None:
    await seed_plans(client)
    stripe = StripePayments(billing.router)
    first, second = await legacy_invoices(client, session, "price_pro", 2, amount=1_900)
    assert await stored(session, first) == (None, None, "None")
    others = await candidates(session) - 2
    stripe.paid[first] = (f"pi_{first}", f"ch_{first}", 85, "usd")
    stripe.paid[second] = (f"pi_{second}", f"ch_{second}", 90, "usd")

    backfill = InvoicePaymentBackfill(sessionmaker, gateway, settings, page_size=3, max_pages=50)
    assert await backfill.run() == BackfillResult(
        scanned=others + 2, filled=2, fees_recorded=2, without_charge=others
    )
    assert await stored(session, first) == (f"pi_{first}", f"ch_{first}", "85")
    assert await stored(session, second) == (f"pi_{second}", f"ch_{second}", "90")
    assert await cause_count(session, f"stripe:fee:txn_{first}") == 1
    request = next(
        c.request for c in stripe.payments.calls if c.request.url.params["invoice"] == first
    )
    assert request.url.params["expand[0]"] == "data.payment.payment_intent"
    assert "Stripe-Account" not in request.headers
    charge_request = next(
        c.request for c in stripe.charges.calls if c.request.url.path.endswith(f"ch_{first}")
    )
    assert charge_request.url.params["expand[0]"] == "balance_transaction"

    # Again: nothing of ours is read or written twice (each was asked for twice: by its
    # invoice.paid, then by the first run).
    again = await backfill.run()
    assert again == BackfillResult(scanned=others, without_charge=others)
    assert (stripe.asked_for(first), stripe.asked_for(second)) == (2, 2)
    assert await cause_count(session, f"stripe:fee:txn_{first}") == 1


async def test_backfill_reads_at_most_its_pages_and_retries_what_stripe_failed(
    client: httpx.AsyncClient,
    billing: FakeBilling,
    session: AsyncSession,
    sessionmaker: Sessions,
    gateway: StripeGateway,
    settings: Settings,
) -> None:
    await seed_plans(client)
    stripe = StripePayments(billing.router)
    ids = await legacy_invoices(client, session, "price_basic", 3, amount=900)
    for invoice_id in ids:
        stripe.paid[invoice_id] = (f"pi_{invoice_id}", f"ch_{invoice_id}", 56, "usd")

    asked = len(stripe.payments.calls)  # by the invoices' invoice.paid
    bounded = InvoicePaymentBackfill(sessionmaker, gateway, settings, page_size=1, max_pages=2)
    assert (await bounded.run()).has_more is True
    assert len(stripe.payments.calls) == asked + 2

    stripe.fail.add(ids[2])
    whole = InvoicePaymentBackfill(sessionmaker, gateway, settings, max_pages=100)
    result = await whole.run()
    assert (result.failed, result.has_more) == (1, False)
    assert await stored(session, ids[2]) == (None, None, "None")
    assert await cause_count(session, f"stripe:fee:txn_{ids[2]}") == 0
    stripe.fail.clear()
    assert (await whole.run()).failed == 0
    for invoice_id in ids:
        assert await stored(session, invoice_id) == (
            f"pi_{invoice_id}",
            f"ch_{invoice_id}",
            "56",
        )
        assert await cause_count(session, f"stripe:fee:txn_{invoice_id}") == 1


CURRENCY = "myr"  # as tests/subscriptions/test_reconciliation.py: no other test books it
FEE = 85


async def test_reconciliation_matches_legacy_invoices_once_backfilled(
    client: httpx.AsyncClient,
    billing: FakeBilling,
    session: AsyncSession,
    sessionmaker: Sessions,
    gateway: StripeGateway,
    settings: Settings,
    stripe_mock: respx.MockRouter,
) -> None:
    await send(client, "product.created", product("prod_legacy", family="legacy"))
    await send(
        client,
        "price.created",
        price("price_legacy", 1_900, product_id="prod_legacy", currency=CURRENCY),
    )
    stripe = StripePayments(billing.router)
    side = StripeSide(stripe_mock)
    ids = await legacy_invoices(client, session, "price_legacy", 2, amount=1_900, currency=CURRENCY)
    now = await db_now(session)
    for invoice_id in ids:
        charge = stripe_object("charge")
        charge.update(
            id=f"ch_{invoice_id}",
            payment_intent=f"pi_{invoice_id}",
            currency=CURRENCY,
            amount=1_900,
        )
        txn = balance_transaction(
            f"txn_{invoice_id}", "charge", 1_900, charge, int(now.timestamp()), fee=FEE
        )
        txn["currency"] = CURRENCY
        side.transactions.append(txn)
    day = now.date().isoformat()

    def ours(run: dict[str, Any]) -> list[tuple[str, str, str]]:
        return sorted(
            (m["kind"], m["object_type"], m["stripe_object_id"])
            for m in run["mismatches"]
            if any(i in m["stripe_object_id"] for i in ids)
        )

    before = await reconcile(client, day)
    assert ours(before) == sorted(
        [("missing_in_ledger", "charge", f"pi_{i}") for i in ids]
        + [("missing_in_ledger", "stripe_fee", f"txn_{i}") for i in ids]
    )

    for invoice_id in ids:
        stripe.paid[invoice_id] = (f"pi_{invoice_id}", f"ch_{invoice_id}", FEE, CURRENCY)
    result = await InvoicePaymentBackfill(sessionmaker, gateway, settings, max_pages=100).run()
    assert (result.filled, result.fees_recorded, result.failed) == (2, 2, 0)

    after = await reconcile(client, day)
    assert after["status"] == "completed"
    assert ours(after) == []
    # The ledger entries themselves are unchanged (append-only): the match comes from the
    # invoice's stored PaymentIntent.
    metadata = await session.scalar(
        text("SELECT metadata FROM ledger_transactions WHERE cause_key = :key"),
        {"key": f"stripe:invoice:{ids[0]}"},
    )
    assert "payment_intent" not in metadata


def test_backfill_command(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    """``payments-api invoices backfill-payments`` against the configured database (it
    commits: the legacy invoice is committed first, and filled by the command)."""
    monkeypatch.chdir(REPO / "tests")  # no .env from the working tree
    monkeypatch.setenv("PAYMENTS_DATABASE_URL", database_url)
    monkeypatch.setenv("PAYMENTS_STRIPE_SECRET_KEY", "sk_test_123")
    monkeypatch.setenv("PAYMENTS_STRIPE_API_BASE", STRIPE_API)
    monkeypatch.setenv("PAYMENTS_STRIPE_MAX_NETWORK_RETRIES", "0")
    get_settings.cache_clear()
    invoice_id = f"in_cli_{uuid.uuid4().hex[:10]}"

    # A sync test (the command runs its own event loop): its own engine per loop.
    async def legacy() -> None:
        engine = create_async_engine(database_url)
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        who = await subscriber(sessions, "usd", 900)
        async with sessions.begin() as session:
            session.add(
                SubscriptionInvoice(
                    stripe_invoice_id=invoice_id,
                    subscription_id=who.our_id,
                    user_id=who.user,
                    status="paid",
                    amount_due=900,
                    amount_paid=900,
                    currency="usd",
                    stripe_state_at=0,
                )
            )
        await engine.dispose()

    async def row() -> tuple[str | None, ...]:
        engine = create_async_engine(database_url)
        try:
            async with AsyncSession(engine) as session:
                return await stored(session, invoice_id)
        finally:
            await engine.dispose()

    asyncio.run(legacy())
    with respx.mock(base_url=STRIPE_API) as mock:
        stripe = StripePayments(mock)
        stripe.paid[invoice_id] = (f"pi_{invoice_id}", f"ch_{invoice_id}", 56, "usd")
        result = CliRunner().invoke(
            app, ["invoices", "backfill-payments", "--page-size", "50", "--max-pages", "100"]
        )
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    printed = BackfillResult.model_validate_json(result.stdout)
    assert (printed.filled, printed.fees_recorded, printed.failed) == (1, 1, 0)
    assert stripe.asked_for(invoice_id) == 1
    assert asyncio.run(row()) == (f"pi_{invoice_id}", f"ch_{invoice_id}", "56")
