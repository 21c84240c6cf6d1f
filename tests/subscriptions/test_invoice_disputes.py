"""Disputes on the charge that paid a subscription invoice, through signed Stripe events:
the subscriber's dispute (events, frozen wallet), Stripe's withdrawal in the ledger, the
plan credit taken back, and given back when won."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import respx
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.ledger.kinds import AccountKind
from tests.disputes.test_webhook_handlers import (
    FEE,
    balance_transaction,
    spend,
    the_dispute,
    the_user,
)
from tests.factories import emitted, ledger_invariants
from tests.helpers import auth, make_event, stripe_object
from tests.refunds.helpers import ADMIN, cause_count, deliver, platform, wallet
from tests.subscriptions.conftest import (
    FakeBilling,
    fee_routes,
    invoice,
    seed_plans,
    send,
    subscribe,
    unique_user,
)
from tests.subscriptions.test_subscriptions import the_row

PRICE = 1_900
CREDIT = 500  # price_pro's monthly credit


async def paid_invoice(
    client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
) -> tuple[str, str, respx.Route]:
    """A subscriber to price_pro whose renewal is paid (charge ``ch_{invoice}``,
    PaymentIntent ``pi_{invoice}``): (user, invoice id, Stripe's charge route)."""
    await seed_plans(client)
    user = unique_user()
    await subscribe(client, user, "price_pro")
    row = await the_row(session, user)
    invoice_id = f"in_dsp_{uuid.uuid4().hex[:10]}"
    _payments, charge = fee_routes(billing.router, invoice_id, fee=85, charge=f"ch_{invoice_id}")
    paid = invoice(invoice_id, stripe_sub=str(row.stripe_subscription_id), amount=PRICE)
    await send(client, "invoice.paid", paid)
    assert (await wallet(session, user))["available"] == CREDIT
    return user, invoice_id, charge


def disputed(
    invoice_id: str,
    dp: str,
    status: str,
    *,
    withdrawn: bool = True,
    reinstated: bool = False,
    with_intent: bool = True,
) -> dict[str, Any]:
    transactions = []
    if withdrawn:
        transactions.append(balance_transaction(dp, -PRICE, FEE, category="dispute"))
    if reinstated:
        transactions.append(balance_transaction(dp, PRICE, 0, category="dispute_reversal"))
    data = stripe_object("dispute")
    data.update(
        id=dp,
        amount=PRICE,
        currency="usd",
        charge=f"ch_{invoice_id}",
        payment_intent=f"pi_{invoice_id}" if with_intent else None,
        status=status,
        reason="fraudulent",
        balance_transactions=transactions,
    )
    return data


def dispute_event(kind: str, data: dict[str, Any], created: int) -> dict[str, Any]:
    return make_event(f"charge.dispute.{kind}", data, created=created)


async def test_a_disputed_invoice_takes_the_credit_back_and_gives_it_back_when_won(
    client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
) -> None:
    user, invoice_id, _charge = await paid_invoice(client, billing, session)
    dp = f"dp_{invoice_id}"
    stripe_before = await platform(session, AccountKind.stripe_balance)
    disputes_before = await platform(session, AccountKind.disputes)
    t0 = int(time.time())

    created = dispute_event("created", disputed(invoice_id, dp, "needs_response"), t0)
    for _ in range(2):  # redelivered: applied once
        response = await deliver(client, created)
        assert response.status_code == 200, response.text
    row = await the_dispute(session, dp)
    assert (row.stripe_invoice_id, row.user_id, row.order_id) == (invoice_id, user, None)
    assert (row.withdrawn_amount, row.fee_amount, row.user_debited_amount) == (
        PRICE + FEE,
        FEE,
        CREDIT,
    )
    # Stripe took the amount and its fee; the subscriber gave back the plan credit (the
    # platform's accounts carry money at Stripe with a negative sign).
    assert await platform(session, AccountKind.stripe_balance) == stripe_before + PRICE + FEE
    assert await platform(session, AccountKind.disputes) == disputes_before - PRICE - FEE + CREDIT
    assert (await wallet(session, user))["available"] == 0
    assert (await the_user(session, user)).frozen is True
    shown = await client.get(f"/api/v1/admin/disputes/dsp_{row.id}", headers=ADMIN)
    assert shown.status_code == 200, shown.text
    assert (shown.json()["invoice_id"], shown.json()["user_id"]) == (invoice_id, user)

    won = disputed(invoice_id, dp, "won", reinstated=True)
    for kind, at in (("funds_reinstated", t0 + 5), ("closed", t0 + 6), ("closed", t0 + 6)):
        assert (await deliver(client, dispute_event(kind, won, at))).status_code == 200
    row = await the_dispute(session, dp)
    assert (row.status, row.reinstated_amount, row.platform_loss_amount) == ("won", PRICE, None)
    assert (await wallet(session, user))["available"] == CREDIT
    assert (await the_user(session, user)).frozen is False
    # Stripe kept its dispute fee: the platform's cost.
    assert await platform(session, AccountKind.stripe_balance) == stripe_before + FEE
    assert await platform(session, AccountKind.disputes) == disputes_before - FEE
    assert await cause_count(session, f"stripe:dispute:{dp}:%") == 2
    assert await cause_count(session, f"dispute:{dp}:%") == 2
    assert await ledger_invariants(session) == []
    events = [(t, p["status"]) for t, p in await emitted(session, user) if t.startswith("dispute")]
    assert events == [("dispute.created", "needs_response"), ("dispute.closed", "won")]


async def test_a_lost_invoice_dispute_with_the_credit_spent_is_the_platforms_loss(
    client: httpx.AsyncClient, billing: FakeBilling, session: AsyncSession
) -> None:
    user, invoice_id, _charge = await paid_invoice(client, billing, session)
    await spend(session, user, 200)  # part of the credit is spent
    dp = f"dp_{invoice_id}"
    t0 = int(time.time())
    created = dispute_event("created", disputed(invoice_id, dp, "needs_response"), t0)
    assert (await deliver(client, created)).status_code == 200
    assert (await wallet(session, user))["available"] == -200
    balance = (await client.get("/api/v1/me/balance", headers=auth(user))).json()
    assert balance["frozen"] is True

    lost = dispute_event("closed", disputed(invoice_id, dp, "lost"), t0 + 10)
    assert (await deliver(client, lost)).status_code == 200
    row = await the_dispute(session, dp)
    # Stripe withdrew 19.00 + 15.00; the wallet covered 3.00 of the 5.00 credit.
    assert (row.status, row.platform_loss_amount) == ("lost", PRICE + FEE - CREDIT + 200)
    assert (await the_user(session, user)).frozen is True
    assert await ledger_invariants(session) == []
    events = [(t, p["invoice_id"]) for t, p in await emitted(session, user) if "dispute" in t]
    assert events == [("dispute.created", invoice_id), ("dispute.closed", invoice_id)]


async def test_a_dispute_naming_only_the_charge_is_matched_through_stripe(
    client: httpx.AsyncClient,
    billing: FakeBilling,
    session: AsyncSession,
    stripe_mock: respx.MockRouter,
) -> None:
    user, invoice_id, charge = await paid_invoice(client, billing, session)
    dp = f"dp_{invoice_id}"
    # The event names the charge only (Stripe is asked for its PaymentIntent) and holds
    # no balance transactions (Stripe is asked for the dispute).
    fresh = disputed(invoice_id, dp, "needs_response")
    retrieve = stripe_mock.get(f"/v1/disputes/{dp}").mock(
        return_value=httpx.Response(200, json=fresh)
    )
    charge_calls = charge.call_count
    bare = disputed(invoice_id, dp, "needs_response", withdrawn=False, with_intent=False)
    response = await deliver(client, dispute_event("created", bare, int(time.time())))
    assert response.status_code == 200, response.text
    assert retrieve.call_count == 1
    assert retrieve.calls.last.request.headers.get("Stripe-Account") is None
    assert charge.call_count == charge_calls + 1
    row = await the_dispute(session, dp)
    assert (row.stripe_invoice_id, row.user_id, row.stripe_payment_intent_id) == (
        invoice_id,
        user,
        f"pi_{invoice_id}",
    )
    assert (row.withdrawn_amount, row.user_debited_amount) == (PRICE + FEE, CREDIT)
    assert await ledger_invariants(session) == []
