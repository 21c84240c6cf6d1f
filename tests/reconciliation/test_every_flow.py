"""The reconciliation day with every flow, driven through the API and Stripe's signed
events (not seeded postings): card top-ups, a card order granting credit and one paid
from the wallet, a job paid by card and one paid from the wallet (both completed and
partly refunded), a wallet debit, refunds of a top-up, an order, a card job and a wallet
job, a wallet cash-out, a dispute lost and one won, a withdrawal; beside them the seeded
day (charge with Stripe's fee, refund, lost dispute, withdrawal, payout, manual
correction) and the direct payments with their refunds (test_direct_flows). Stripe's
side is what Stripe reports for the objects these flows created. It reconciles to 0
mismatches; one missing ledger entry, one extra Stripe object and one changed amount
are exactly 3."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy.ext.asyncio import AsyncSession

from payments_api.money import CurrencyLimits, OperationLimits
from payments_api.payout_accounts.models import PayoutAccount
from payments_api.settings import Settings
from tests.disputes.test_webhook_handlers import dispute
from tests.factories import create_user, ledger_invariants
from tests.helpers import auth, make_event
from tests.orders.conftest import stripe_payins  # noqa: F401 - card pay-ins' Stripe mocks
from tests.payouts.test_withdrawals import transfer_response
from tests.reconciliation.conftest import CURRENCY, SeededDay, StripeDay, balance_transaction
from tests.reconciliation.test_direct_flows import FEE, FEE_BACK, DirectDay, direct_day  # noqa: F401
from tests.reconciliation.test_router import ours, reconcile, remove_ledger_entry
from tests.refunds.helpers import ADMIN, deliver, form, paid_order, refund_from_request
from tests.wallets.test_spend_properties import card_pay

NZD = OperationLimits(min=Decimal(1), max=Decimal(10_000))


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """This day runs in the reconciliation tests' own currency (nzd), so other tests'
    committed entries never mix in: it gets limits like the others."""
    limits = CurrencyLimits(topup=NZD, debit=NZD, withdrawal=NZD, cashout=NZD)
    return settings.model_copy(
        update={"amount_limits": {**settings.amount_limits, CURRENCY: limits}}
    )


@dataclass
class Flows:
    charges: dict[str, int] = field(default_factory=dict)
    """PaymentIntent -> amount charged by card."""
    refunds: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    """What each Stripe refund was for -> (its id, its amount, its PaymentIntent)."""
    transfer: str = ""


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def ok(response: httpx.Response, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def admin_refund(
    client: httpx.AsyncClient, flows: Flows, route: respx.Route, what: str, **body: Any
) -> dict[str, Any]:
    calls = route.call_count
    refund = await ok(await client.post("/api/v1/admin/refunds", json=body, headers=ADMIN | key()))
    assert refund["status"] == "succeeded", refund
    if route.call_count > calls:
        intent = form(route.calls.last.request)["payment_intent"]
        flows.refunds[what] = (str(refund["stripe_refund_id"]), int(refund["amount"]), intent)
    return refund


async def run_flows(
    client: httpx.AsyncClient, session: AsyncSession, mock: respx.MockRouter, seeded: SeededDay
) -> Flows:
    flows = Flows()
    refunds = mock.post("/v1/refunds").mock(
        side_effect=lambda request: httpx.Response(
            200, json=refund_from_request(request, status="succeeded", currency=CURRENCY)
        )
    )
    transfers = mock.post("/v1/transfers", name="transfers").mock(side_effect=transfer_response)
    customer, other = seeded.sid("every_c"), seeded.sid("every_d")
    payee = seeded.sid("every_p")
    await create_user(session, id=customer, roles=["customer"])
    await create_user(session, id=payee, roles=["payee"])
    session.add(
        PayoutAccount(
            user_id=payee,
            stripe_account_id=seeded.sid("acct_every"),
            status="enabled",
            charges_enabled=True,
            payouts_enabled=True,
            details_submitted=True,
            requirements_currently_due=[],
            requirements_past_due=[],
            requirements_pending_verification=[],
        )
    )
    await session.flush()
    as_customer = auth(customer, ["customer"])

    # top-ups by card: 300.00, then 50.00
    for amount in (30_000, 5_000):
        topup = await paid_order(
            client, session, user_id=customer, amount=amount, currency=CURRENCY
        )
        assert topup.stripe_payment_intent_id is not None
        flows.charges[topup.stripe_payment_intent_id] = amount
    newest_topup = topup
    # a wallet debit by the platform's backend
    await ok(
        await client.post(
            f"/api/v1/wallets/{customer}/debits",
            json={"amount": 1_000, "currency": CURRENCY, "description": "usage"},
            headers=auth("backend", ["service"]) | key(),
        )
    )
    # a job paid from the wallet, completed, then partly refunded to the wallet
    job = await ok(
        await client.post(
            "/api/v1/escrows",
            json={"payee_id": payee, "amount": 4_000, "currency": CURRENCY, "reference": "w"},
            headers=as_customer | key(),
        )
    )
    for action, actor, role in (("accept", payee, "payee"), ("complete", customer, "customer")):
        await ok(
            await client.post(
                f"/api/v1/escrows/{job['id']}/{action}",
                json={},
                headers=auth(actor, [role]) | key(),
            ),
            200,
        )
    await admin_refund(client, flows, refunds, "wallet_job", escrow_id=job["id"], amount=1_000)
    # a job paid by card, completed, then partly refunded to the card
    paid = await card_pay(
        client,
        session,
        customer,
        {
            "purpose": "escrow",
            "payee_id": payee,
            "amount": 5_000,
            "currency": CURRENCY,
            "reference": "c",
        },
    )
    assert paid is not None
    assert paid.stripe_payment_intent_id is not None
    flows.charges[paid.stripe_payment_intent_id] = paid.amount
    card_job = f"esc_{paid.reference['escrow_id']}"
    for action, actor, role in (("accept", payee, "payee"), ("complete", customer, "customer")):
        await ok(
            await client.post(
                f"/api/v1/escrows/{card_job}/{action}",
                json={},
                headers=auth(actor, [role]) | key(),
            ),
            200,
        )
    await admin_refund(client, flows, refunds, "card_job", escrow_id=card_job, amount=1_000)
    # a credit pack bought by card, partly refunded; one bought from the wallet, refunded
    price = seeded.sid("every_pack")
    await ok(
        await client.post(
            "/api/v1/admin/prices",
            json={
                "lookup_key": price,
                "name": "Pack",
                "unit_amount": 1_500,
                "currency": CURRENCY,
                "grants_credit": 2_000,
            },
            headers=ADMIN | key(),
        )
    )
    pack = await card_pay(client, session, customer, {"purpose": "order", "price": price})
    assert pack is not None
    assert pack.stripe_payment_intent_id is not None
    flows.charges[pack.stripe_payment_intent_id] = pack.amount
    await admin_refund(client, flows, refunds, "order", order_id=f"ord_{pack.id}", amount=500)
    bought = await ok(
        await client.post(
            "/api/v1/orders",
            json={"source": "wallet", "purpose": "order", "price": price},
            headers=as_customer | key(),
        )
    )
    await admin_refund(client, flows, refunds, "wallet_order", order_id=bought["id"])
    # a refund of the newest top-up, then a cash-out of what is left of it
    await admin_refund(
        client, flows, refunds, "topup", order_id=f"ord_{newest_topup.id}", amount=2_000
    )
    calls = refunds.call_count
    cash_out = await ok(
        await client.post(
            "/api/v1/me/wallet/refunds",
            json={"amount": 3_000, "currency": CURRENCY},
            headers=as_customer | key(),
        )
    )
    assert (cash_out["status"], refunds.call_count) == ("succeeded", calls + 1)
    [part] = cash_out["refunds"]
    assert form(refunds.calls.last.request)["payment_intent"] == (
        newest_topup.stripe_payment_intent_id
    )
    flows.refunds["cash_out"] = (
        str(part["stripe_refund_id"]),
        int(part["amount"]),
        str(newest_topup.stripe_payment_intent_id),
    )
    # disputes on another customer's top-ups: one lost, one won
    for outcome, amount in (("lost", 2_000), ("won", 3_000)):
        disputed = await paid_order(
            client, session, user_id=other, amount=10_000, currency=CURRENCY
        )
        assert disputed.stripe_payment_intent_id is not None
        flows.charges[disputed.stripe_payment_intent_id] = 10_000
        dp = seeded.sid(f"dp_every_{outcome}")
        opened = dispute(disputed, dp, "needs_response", amount=amount)
        for transaction in opened["balance_transactions"]:
            transaction["currency"] = CURRENCY
        assert (await deliver(client, make_event("charge.dispute.created", opened))).json()[
            "status"
        ] == "processed"
        closed = dispute(disputed, dp, outcome, amount=amount, reinstated=outcome == "won")
        for transaction in closed["balance_transactions"]:
            transaction["currency"] = CURRENCY
        assert (await deliver(client, make_event("charge.dispute.closed", closed))).status_code == (
            200
        )
    # the payee withdraws part of what the jobs earned
    withdrawal = await ok(
        await client.post(
            "/api/v1/me/payouts",
            json={"amount": 2_000, "currency": CURRENCY},
            headers=auth(payee, ["payee"]) | key(),
        )
    )
    assert withdrawal["status"] == "transferred", withdrawal
    assert transfers.call_count == 1
    flows.transfer = str(transfers.calls.last.response.json()["id"])
    return flows


def stripe_side(flows: Flows, seeded: SeededDay) -> list[dict[str, Any]]:
    """What Stripe reports for the objects the flows created."""
    at = seeded.created
    found = []
    for intent, amount in flows.charges.items():
        charge = {"id": f"ch_{intent[3:]}", "object": "charge", "payment_intent": intent}
        found.append(balance_transaction(f"txn_{intent[3:]}", "charge", amount, charge, at))
    for refund_id, amount, intent in flows.refunds.values():
        source = {"id": refund_id, "object": "refund", "payment_intent": intent}
        found.append(balance_transaction(f"txn_{refund_id}", "refund", -amount, source, at))
    for outcome, amount in (("lost", 2_000), ("won", 3_000)):
        dp = seeded.sid(f"dp_every_{outcome}")
        found.append(
            balance_transaction(
                seeded.sid(f"txn_dpw_{outcome}"),
                "adjustment",
                -amount,
                dp,
                at,
                fee=1_500,
                reporting_category="dispute",
            )
        )
        if outcome == "won":
            found.append(
                balance_transaction(
                    seeded.sid("txn_dpr_won"),
                    "adjustment",
                    amount,
                    dp,
                    at,
                    reporting_category="dispute_reversal",
                )
            )
    found.append(
        balance_transaction(f"txn_{flows.transfer}", "transfer", -2_000, {"id": flows.transfer}, at)
    )
    return found


# The seeded day's net (test_router), the direct payments' (test_direct_flows) and these
# flows': charges, less refunds to cards, less disputes (amount + fee; the won one's
# amount back), less the transfer.
SEEDED_NET = 10_000 - 320 - 2_000 - 3_500 - 1_500
DIRECT_NET = 2 * (FEE - FEE_BACK)


@pytest.fixture
async def every_flow(
    client: httpx.AsyncClient,
    session: AsyncSession,
    stripe_payins: respx.MockRouter,  # noqa: F811
    direct_day: DirectDay,  # noqa: F811 - the direct payments join the day first
    seeded_day: SeededDay,
    stripe_day: StripeDay,
) -> Flows:
    flows = await run_flows(client, session, stripe_payins, seeded_day)
    stripe_day.transactions += stripe_side(flows, seeded_day)
    return flows


class TestEveryFlowDay:
    async def test_reconciles_with_no_mismatch(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        every_flow: Flows,
        seeded_day: SeededDay,
        stripe_day: StripeDay,
    ) -> None:
        assert set(every_flow.refunds) == {"card_job", "order", "topup", "cash_out"}
        assert len(every_flow.charges) == 6

        run = await reconcile(client, seeded_day)

        assert run["status"] == "completed"
        assert ours(run) == []
        [snapshot] = [s for s in run["snapshots"] if s["currency"] == CURRENCY]
        flows_net = (
            sum(every_flow.charges.values())
            - sum(amount for _id, amount, _intent in every_flow.refunds.values())
            - (2_000 + 1_500)
            - (3_000 + 1_500 - 3_000)
            - 2_000
        )
        assert snapshot["stripe_day_net"] == SEEDED_NET + DIRECT_NET + flows_net
        assert snapshot["ledger_day_net"] == snapshot["stripe_day_net"]
        assert snapshot["ledger_unattributed_net"] == -5  # the seeded manual correction
        assert await ledger_invariants(session) == []

    async def test_missing_entry_extra_object_and_changed_amount_are_exactly_listed(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        every_flow: Flows,
        seeded_day: SeededDay,
        stripe_day: StripeDay,
    ) -> None:
        assert ours(await reconcile(client, seeded_day)) == []
        cash_out, _amount, _intent = every_flow.refunds["cash_out"]

        # 1. the ledger lost the cash-out's settlement
        await remove_ledger_entry(session, f"stripe:refund:{cash_out}")
        # 2. Stripe reports a refund the ledger never heard of
        ghost = {"id": seeded_day.sid("re_every_ghost"), "object": "refund"}
        stripe_day.transactions.append(
            balance_transaction(
                seeded_day.sid("txn_every_ghost"), "refund", -700, ghost, seeded_day.created
            )
        )
        # 3. the transfer of the withdrawal is 20.01 at Stripe
        transfer = next(
            t for t in stripe_day.transactions if t["id"] == f"txn_{every_flow.transfer}"
        )
        transfer.update(amount=-2_001, net=-2_001)

        broken = await reconcile(client, seeded_day)

        # Sorted as ``ours`` sorts: the two refund ids carry random suffixes, so their
        # order differs from run to run.
        assert ours(broken) == sorted(
            [
                ("amount_differs", "transfer", every_flow.transfer),
                ("missing_in_ledger", "refund", cash_out),
                ("missing_in_ledger", "refund", seeded_day.sid("re_every_ghost")),
            ]
        )
        assert broken["mismatch_count"] == len(broken["mismatches"])
