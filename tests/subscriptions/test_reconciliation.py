"""The daily reconciliation over a day of subscription renewals (one with tax) and one
invoice refund: every invoice charge, its fee and the refund matched object by object."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import respx
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers import stripe_object
from tests.reconciliation.conftest import balance_transaction, db_now, list_page
from tests.reconciliation.test_router import RUNS, remove_ledger_entry
from tests.refunds.helpers import ADMIN
from tests.subscriptions.conftest import (
    FakeBilling,
    fee_routes,
    invoice,
    price,
    product,
    send,
    subscribe,
    unique_user,
)
from tests.subscriptions.test_invoice_refunds import StripeRefunds, refund
from tests.subscriptions.test_invoice_tax import taxed
from tests.subscriptions.test_subscriptions import the_row

CURRENCY = "myr"
"""A currency no other test books in, so committed entries of other tests never mix in."""
FEE = 85
TAX = 190


def charge_transaction(
    invoice_id: str, amount: int, created: int, fee: int = FEE
) -> dict[str, Any]:
    charge = stripe_object("charge")
    charge.update(
        id=f"ch_{invoice_id}", payment_intent=f"pi_{invoice_id}", currency=CURRENCY, amount=amount
    )
    txn = balance_transaction(f"txn_{invoice_id}", "charge", amount, charge, created, fee=fee)
    txn["currency"] = CURRENCY
    return txn


class StripeSide:
    def __init__(self, mock: respx.MockRouter) -> None:
        self.transactions: list[dict[str, Any]] = []
        balance = stripe_object("balance")
        balance["available"] = [{"amount": 0, "currency": CURRENCY, "source_types": {}}]
        balance["pending"] = []
        mock.get("/v1/balance").mock(return_value=httpx.Response(200, json=balance))
        mock.get("/v1/balance_transactions").mock(
            side_effect=lambda _r: list_page(self.transactions, False, "/v1/balance_transactions")
        )
        mock.get("/v1/events").mock(side_effect=lambda _r: list_page([], False, "/v1/events"))


def ours(run: dict[str, Any]) -> list[tuple[str, str, str]]:
    return sorted(
        (m["kind"], m["object_type"], m["stripe_object_id"])
        for m in run["mismatches"]
        if m["currency"] == CURRENCY
    )


async def reconcile(client: httpx.AsyncClient, day: str) -> dict[str, Any]:
    response = await client.post(RUNS, json={"date": day}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_day_of_renewals_and_a_refund_reconciles_then_shows_exactly_what_broke(
    client: httpx.AsyncClient,
    billing: FakeBilling,
    session: AsyncSession,
    stripe_mock: respx.MockRouter,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    await send(client, "product.created", product("prod_recon", family="recon"))
    await send(
        client,
        "price.created",
        price("price_recon", 1900, product_id="prod_recon", credit=500, currency=CURRENCY),
    )
    now = await db_now(session)
    created = int(now.timestamp())
    stripe = StripeSide(stripe_mock)
    invoices = [f"in_recon_{suffix}_{n}" for n in range(3)]
    for n, invoice_id in enumerate(invoices):
        user = unique_user()
        await subscribe(client, user, "price_recon", key=f"recon-{n}")
        row = await the_row(session, user)
        fee_routes(
            billing.router, invoice_id, fee=FEE, charge=f"ch_{invoice_id}", currency=CURRENCY
        )
        paid = invoice(
            invoice_id, stripe_sub=str(row.stripe_subscription_id), amount=1900, currency=CURRENCY
        )
        if n == 0:
            taxed(paid, TAX)  # its tax goes to tax_collected; Stripe's charge is the total
        await send(client, "invoice.paid", paid)
        stripe.transactions.append(charge_transaction(invoice_id, paid["amount_paid"], created))
    refunds = StripeRefunds(billing.router, status="succeeded")
    refunded = await refund(client, invoices[0], 700)
    assert refunded.status_code == 201, refunded.text
    assert refunded.json()["status"] == "succeeded"
    re_id = refunds.made[0]["id"]
    refund_txn = balance_transaction(f"txn_{re_id}", "refund", -700, re_id, created)
    refund_txn["currency"] = CURRENCY
    stripe.transactions.append(refund_txn)

    day = now.date().isoformat()
    clean = await reconcile(client, day)
    assert clean["status"] == "completed"
    assert ours(clean) == []
    [snapshot] = [s for s in clean["snapshots"] if s["currency"] == CURRENCY]
    assert snapshot["stripe_day_net"] == 3 * (1900 - FEE) + TAX - 700
    assert snapshot["ledger_day_net"] == snapshot["stripe_day_net"]

    # one ledger entry lost, one charge Stripe made for no invoice, one amount changed
    await remove_ledger_entry(session, f"stripe:invoice:{invoices[1]}")
    # (with no fee: a fee would be a fourth object, Stripe's fee, also unknown to the ledger)
    extra = charge_transaction(f"in_stray_{suffix}", 1900, created, fee=0)
    stripe.transactions.append(extra)
    changed = next(t for t in stripe.transactions if t["id"] == f"txn_{invoices[2]}")
    changed.update(amount=2000, net=2000 - FEE)
    changed["source"]["amount"] = 2000

    broken = await reconcile(client, day)
    assert ours(broken) == sorted(
        [
            ("missing_in_ledger", "charge", f"pi_{invoices[1]}"),
            ("missing_in_ledger", "charge", f"pi_in_stray_{suffix}"),
            ("amount_differs", "charge", f"pi_{invoices[2]}"),
        ]
    )
