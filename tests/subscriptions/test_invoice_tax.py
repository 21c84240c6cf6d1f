"""Tax on subscription invoices: booked to ``tax_collected``, refunded in proportion."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.stripe.billing_objects import Invoice
from payments_api.stripe.objects import parse_object
from payments_api.subscriptions.tax import invoice_tax, paid_tax, refund_tax_share
from tests.factories import emitted, ledger_invariants
from tests.subscriptions.conftest import (
    FakeBilling,
    fee_routes,
    invoice,
    seed_plans,
    send,
    subscribe,
    unique_user,
)
from tests.subscriptions.test_invoice_refunds import StripeRefunds, kinds_of, refund, settle
from tests.subscriptions.test_subscriptions import available, the_row


def taxed(obj: dict[str, Any], tax: int) -> dict[str, Any]:
    """Stripe's shape of an invoice with one exclusive tax rate (pinned API version)."""
    subtotal = int(obj["amount_paid"])
    total = subtotal + tax
    obj.update(
        subtotal=subtotal,
        subtotal_excluding_tax=subtotal,
        total_excluding_tax=subtotal,
        total=total,
        amount_due=total,
        amount_paid=total,
        total_taxes=[
            {
                "amount": tax,
                "tax_behavior": "exclusive",
                "taxability_reason": "standard_rated",
                "taxable_amount": subtotal,
                "type": "tax_rate_details",
                "tax_rate_details": {"tax_rate": "txr_vat_10"},
            }
        ],
    )
    return obj


async def paid_invoice(
    client: httpx.AsyncClient,
    billing: FakeBilling,
    session: AsyncSession,
    invoice_id: str,
    *,
    tax: int,
) -> str:
    """A pro subscriber (19.00 plus ``tax``, 5.00 credit) whose invoice was paid twice."""
    await seed_plans(client)
    user = unique_user()
    await subscribe(client, user, "price_pro")
    row = await the_row(session, user)
    paid = invoice(invoice_id, stripe_sub=str(row.stripe_subscription_id), amount=1900)
    if tax:
        taxed(paid, tax)
    fee_routes(billing.router, invoice_id, fee=85, charge=f"ch_{invoice_id}")
    for _ in range(2):
        await send(client, "invoice.paid", paid)
    return user


class TestInvoiceTax:
    async def test_taxed_invoice_books_tax_apart_from_revenue(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        user = await paid_invoice(client, billing, session, "in_tax_a", tax=190)
        assert await kinds_of(session, "stripe:invoice:in_tax_a") == [
            ("sales", None, 1900),
            ("stripe_balance", None, -2090),
            ("tax_collected", None, 190),
        ]
        assert await kinds_of(session, "stripe:fee:txn_in_tax_a") == [
            ("processing_fees", None, -85),
            ("stripe_balance", None, 85),
        ]
        assert await available(client, user) == 500
        assert await ledger_invariants(session) == []
        # the invoice.paid event (the REST shape of the invoice) says what was tax
        paid = [p for t, p in await emitted(session, user) if t == "invoice.paid"]
        assert [(p["id"], p["amount_paid"], p["tax_amount"]) for p in paid] == [
            ("in_tax_a", 2090, 190)
        ]

    async def test_untaxed_invoice_is_all_revenue(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        user = await paid_invoice(client, billing, session, "in_tax_b", tax=0)
        assert await kinds_of(session, "stripe:invoice:in_tax_b") == [
            ("sales", None, 1900),
            ("stripe_balance", None, -1900),
        ]
        paid = [p for t, p in await emitted(session, user) if t == "invoice.paid"]
        assert [p["tax_amount"] for p in paid] == [0]
        assert await ledger_invariants(session) == []

    async def test_partial_refunds_of_a_taxed_invoice_give_the_tax_back_in_proportion(
        self, client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
    ) -> None:
        user = await paid_invoice(client, billing, session, "in_tax_c", tax=190)
        stripe = StripeRefunds(billing.router)

        first = await refund(client, "in_tax_c", 1000)
        assert first.status_code == 201, first.text
        await settle(client, stripe.made[0], times=2)
        # 1000 of 2090 carries 90.9 of the 190 tax: 91 by largest remainder
        assert await kinds_of(session, f"stripe:refund:{stripe.made[0]['id']}") == [
            ("sales", None, -909),
            ("stripe_balance", None, 1000),
            ("tax_collected", None, -91),
        ]
        second = await refund(client, "in_tax_c", None)
        assert second.status_code == 201, second.text
        assert second.json()["amount"] == 1090
        await settle(client, stripe.made[1])
        # the rest gives back exactly the remaining tax: 91 + 99 = 190
        assert await kinds_of(session, f"stripe:refund:{stripe.made[1]['id']}") == [
            ("sales", None, -991),
            ("stripe_balance", None, 1090),
            ("tax_collected", None, -99),
        ]
        assert await available(client, user) == 0
        assert await ledger_invariants(session) == []


def taxes_of(**fields: Any) -> Invoice:
    """An invoice with only the tax fields given (and what every invoice has)."""
    return parse_object(Invoice, {"id": "in_tax", "currency": "usd", **fields})


class TestTaxArithmetic:
    def test_older_api_versions_fields(self) -> None:
        assert invoice_tax(taxes_of(total_tax_amounts=[{"amount": 70}, {"amount": 30}])) == 100
        assert invoice_tax(taxes_of(tax=55, total_taxes=None)) == 55
        assert invoice_tax(taxes_of(total_taxes=[])) == 0
        assert invoice_tax(taxes_of()) == 0

    def test_partly_paid_invoice_carries_its_tax_in_proportion(self) -> None:
        # 1100 total with 100 tax, 550 paid by the card (the rest by customer balance)
        assert paid_tax(taxes_of(total=1100, total_taxes=[{"amount": 100}]), 550) == 50
        assert paid_tax(taxes_of(total=1100, total_taxes=[{"amount": 100}]), 1100) == 100
        assert paid_tax(taxes_of(total=1100, total_taxes=[{"amount": 100}]), 0) == 0

    def test_refund_shares_add_up_to_the_tax(self) -> None:
        parts, before = [], 0
        for amount in (333, 333, 333, 101):
            parts.append(refund_tax_share(amount, 1100, 100, before))
            before += amount
        assert sum(parts) == 100
        assert parts == [30, 31, 30, 9]
